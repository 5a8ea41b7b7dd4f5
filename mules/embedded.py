"""A job handler thread inside a web worker: handler `main.web.N` (web worker N).

Used for tools mapped to main.web.N and for the all-in-one deployment (no mules).
The worker's own submissions wake it through an in-process queue; jobs sent to it
by other workers are found by its sweep.
"""
import threading

from muleteer import uwsgi_env
from muleteer.handler_names import web_name
from mules.handler_loop import JobHandler, QueueInbox


def start_web_handler(ctx, dispatcher) -> JobHandler | None:
    worker = uwsgi_env.worker_id()
    if worker < 1:
        return None
    name = web_name(worker)
    inbox = QueueInbox()
    handler = JobHandler(ctx, name, ctx.job_conf.handler_tags(name), strategy="web", inbox=inbox)
    handler.dispatcher = dispatcher
    dispatcher.local_inbox = inbox
    dispatcher.local_name = name
    threading.Thread(target=handler.run, args=(threading.Event(),), name=f"handler-{name}",
                     daemon=True).start()
    return handler
