"""Entry point of a `job-handlers` mule: `mule: mules/handler.py` in galaxy.yml.

The mule is named `main.job-handlers.N` (N = its mule id). It takes jobs sent to
that name, to each farm it belongs to (`job-handlers`, and `job-handlers.<tag>`
also as `<tag>`), and to the tags job_conf.xml gives its name.
"""
import sys
import threading

from muleteer import uwsgi_env
from muleteer.handler_names import mule_name, tag_of_farm
from muleteer.context import build_context
from mules.handler_loop import JobHandler
from mules.runners import RUNNER_SPECS


class MuleInbox:
    def get(self, timeout: float):
        return uwsgi_env.get_message(timeout)


def mule_tags(mule: int, farms: dict, job_conf) -> list[str]:
    name = mule_name(mule)
    tags = []
    for farm, members in farms.items():
        if mule in members:
            tags.append(farm)
            if tag_of_farm(farm):
                tags.append(tag_of_farm(farm))
    return tags + list(job_conf.handler_tags(name))


def main() -> None:
    if not uwsgi_env.running():
        sys.exit("mules/handler.py runs inside uWSGI as a mule; "
                 "use scripts/job-handler for a handler without uWSGI")
    ctx = build_context(uwsgi_env.config_file(), runner_specs=RUNNER_SPECS)
    mule = uwsgi_env.mule_id()
    name = mule_name(mule)
    handler = JobHandler(ctx, name, mule_tags(mule, uwsgi_env.farms(), ctx.job_conf),
                         strategy="mule", inbox=MuleInbox())
    handler.run(threading.Event())


if __name__ == "__main__":
    main()
