"""Muleteer's core: what the web side (app/) and the handler side (mules/) both use.

config (galaxy.yml), job_conf (job_conf.xml), tools (tool XML), models and migrations
(the schema), store (jobs, claims, handlers), job_files (a job's directory), handler_names
(main.web.N, main.job-handlers.N) and uwsgi_env (the one door to uWSGI). Nothing here
imports Flask, app/ or mules/.
"""
