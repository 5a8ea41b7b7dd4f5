"""Which handler a new job goes to, and the wake-up message that tells it.

Only the job id is sent, and only after the job is committed. A send that fails
(queue full, unknown mule) loses nothing: the handlers' sweep finds the row.

    tool mapped to main.job-handlers.N  -> uwsgi.mule_msg(id, N)
    the farm, or a tag with a sub-farm  -> uwsgi.mule_msg(id, M), M the next mule of
                                           farm job-handlers[.tag], round-robin
    main.web.N                          -> this worker's own handler thread, if N is us
    anything else (webless handlers)    -> nothing: they grab rows from the database

job_conf's assign_with, as Galaxy's scaling documentation defines them:
    mem-self, db-self          the web worker that takes the job handles it (main.web.N)
    db-preassign               the web worker picks one handler of the tag and writes it
    uwsgi-mule-message         (the default with mules) message a mule of the farm
    db-skip-locked             nothing is sent: handlers grab jobs from the database
                               (FOR UPDATE SKIP LOCKED on PostgreSQL, one conditional
                               UPDATE on SQLite)
    db-transaction-isolation   refused at load: it exists for databases without SKIP
                               LOCKED; Muleteer's two both do what db-skip-locked needs
"""
from __future__ import annotations

import logging
import random
import threading

from muleteer import uwsgi_env
from muleteer.handler_names import FARM, farm_for_tag, mule_number, web_name, web_number
from muleteer.job_config import JobConfError

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(self, job_conf):
        self.job_conf = job_conf
        self.farms = uwsgi_env.farms()
        self.mules = uwsgi_env.mule_ids()
        self._next = {farm: random.randrange(len(m)) for farm, m in self.farms.items() if m}
        if uwsgi_env.running():
            self._check_handler_ids()
        self.local_inbox = None  # this web worker's own handler, once started
        self.local_name = None
        self._lock = threading.Lock()
        self.sent = 0
        self.failed = 0

    def handler_for(self, tool_id: str) -> str:
        """The handler id or tag a new job of this tool is written with."""
        ref = self.job_conf.handler_for(tool_id)
        method = self.job_conf.assign_with
        if method in ("mem-self", "db-self"):
            return web_name(uwsgi_env.worker_id() or 1)
        if ref and method == "db-preassign" and ref not in self.job_conf.handlers:
            # Galaxy's db-preassign: the web worker picks one handler of the tag itself.
            members = [h.id for h in self.job_conf.handlers.values() if ref in h.tags]
            if members:
                return random.choice(members)
        if ref:
            return ref
        if FARM in self.farms:
            return FARM
        # All-in-one: the web worker that takes the job handles it.
        return web_name(uwsgi_env.worker_id() or 1)

    def _check_handler_ids(self) -> None:
        """A job sent to a mule or web worker that does not exist would wait forever:
        refuse to start instead (uWSGI's mule_msg does not check mule ids)."""
        workers = int((uwsgi_env.option("processes") or ["1"])[0])
        refs = [(f"tool {t.id}", t.handler) for t in self.job_conf.tools.values() if t.handler]
        refs.append(("<handlers default>", self.job_conf.default_handler))
        # db-preassign writes a job with one of the <handler> ids; a <resubmit handler=>
        # sends the next attempt to one.
        refs += [(f"<handler id={h.id!r}>", h.id) for h in self.job_conf.handlers.values()]
        refs += [(f"destination {d.id} <resubmit>", r.get("handler"))
                 for d in self.job_conf.destinations.values() for r in d.resubmit
                 if r.get("handler")]
        for where, ref in refs:
            mule, web = mule_number(ref or ""), web_number(ref or "")
            if mule is not None and mule not in self.mules:
                raise JobConfError(f"{self.job_conf.path}: {where} is sent to {ref}, but uWSGI runs "
                                   f"mules {sorted(self.mules) or 'none'} (galaxy.yml mule:/farm:)")
            if web is not None and not 1 <= web <= workers:
                raise JobConfError(f"{self.job_conf.path}: {where} is sent to {ref}, but uWSGI runs "
                                   f"web workers 1..{workers} (galaxy.yml processes:)")

    def _next_mule(self, farm: str) -> int:
        # Not uwsgi.mule_msg(id, farm): see uwsgi_env.get_message for why.
        members = self.farms[farm]
        with self._lock:
            index = self._next[farm] = (self._next[farm] + 1) % len(members)
        return members[index]

    def notify(self, job_id: int, handler: str) -> bool:
        """Wake whoever handles `handler`; False when nobody could be told (the sweep will)."""
        data = str(job_id).encode()
        mule = mule_number(handler)
        if mule is not None:
            ok = mule in self.mules and uwsgi_env.send_to_mule(data, mule)
        elif self.job_conf.assign_with == "db-skip-locked":
            return False  # Galaxy's db-skip-locked: handlers grab their jobs from the database
        elif handler in self.farms or farm_for_tag(handler) in self.farms:
            farm = handler if handler in self.farms else farm_for_tag(handler)
            ok = uwsgi_env.send_to_mule(data, self._next_mule(farm))
        elif web_number(handler) is not None:
            ok = handler == self.local_name and self.local_inbox is not None and self.local_inbox.put(data)
        else:
            return False  # a webless handler's tag: they poll the database by design
        with self._lock:
            if ok:
                self.sent += 1
            else:
                self.failed += 1
        if not ok:
            log.warning("job %s: could not message handler %s; its sweep will pick the job up",
                        job_id, handler)
        return ok
