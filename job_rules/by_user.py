"""Example rule: where a job runs depends on who runs it.

In job_conf.yml:

    execution:
      environments:
        by_user:
          runner: dynamic
          function: by_user
          priority_users: alice@example.org,bob@example.org
          priority_destination: slurm_priority
          default_destination: slurm

Admins (galaxy.yml's admin_users, and admin accounts: `roles` holds "admin") and the
listed users run with two more cores on the priority destination; anonymous visitors
(require_login: false; their `user_email` is None) may not run this tool at all: the
job fails with this rule's message.
"""
from muleteer.job_rules import JobDestination, JobMappingException


def by_user(user_email, roles, priority_users="", priority_destination="slurm_priority",
            default_destination="slurm"):
    if user_email is None:
        raise JobMappingException("log in to run this tool: anonymous jobs are not accepted")
    listed = {email.strip().lower() for email in priority_users.split(",") if email.strip()}
    if "admin" in roles or user_email.lower() in listed:
        return JobDestination(id=priority_destination,
                              params={"nativeSpecification": "--cpus-per-task=2"})
    return default_destination
