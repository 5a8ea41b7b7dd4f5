"""app.dispatch.Dispatcher without uWSGI: the functions of muleteer.uwsgi_env it uses are
replaced by a fake deployment (farms, mules, web workers, a mule queue that records sends
or refuses them), and job configurations are real files loaded from tmp_path."""
from __future__ import annotations

import logging
import types

import pytest

import app.dispatch as dispatch
from app.dispatch import Dispatcher
from mules.handler_loop import QueueInbox
from mules.runners import RUNNER_SPECS

try:  # the job configuration package (job_conf.xml, job_conf.yml, inline)
    from muleteer.job_config import JobConfError, load_job_conf
except ImportError:  # pragma: no cover - before the move to a package
    from muleteer.job_conf import JobConfError, load_job_conf


class FakeUwsgi:
    """What app.dispatch asks of muleteer.uwsgi_env, as a deployment's facts."""

    def __init__(self, farms=None, mules=None, processes=2, worker=1, running=True):
        self.farms = dict(farms or {})
        self.mules = set(mules if mules is not None else
                         {m for members in self.farms.values() for m in members})
        self.processes = processes
        self.worker = worker
        self.is_running = running
        self.accept = True  # what send_to_mule answers
        self.sent: list[tuple[bytes, int]] = []

    def send_to_mule(self, data: bytes, mule: int) -> bool:
        self.sent.append((data, mule))
        return self.accept

    def option(self, name):
        return [str(self.processes)] if name == "processes" and self.is_running else []

    def mule_sequence(self):
        return [mule for _, mule in self.sent]


@pytest.fixture
def uwsgi(monkeypatch):
    """The fake deployment; change it before building a Dispatcher."""
    fake = FakeUwsgi(farms={"job-handlers": [1, 2, 3]})
    env = dispatch.uwsgi_env
    monkeypatch.setattr(env, "farms", lambda: {k: list(v) for k, v in fake.farms.items()})
    monkeypatch.setattr(env, "mule_ids", lambda: set(fake.mules))
    monkeypatch.setattr(env, "running", lambda: fake.is_running)
    monkeypatch.setattr(env, "worker_id", lambda: fake.worker)
    monkeypatch.setattr(env, "option", fake.option)
    monkeypatch.setattr(env, "send_to_mule", fake.send_to_mule)
    return fake


@pytest.fixture
def job_conf(tmp_path):
    """job_conf(handlers="", tools="") -> a loaded job_conf.xml with the local destination."""
    count = [0]

    def _load(handlers: str = "", tools: str = ""):
        count[0] += 1
        path = tmp_path / f"job_conf_{count[0]}.xml"
        path.write_text(f"""<?xml version="1.0"?>
<job_conf>
    <plugins><plugin id="local" type="runner" load="galaxy.jobs.runners.local:LocalJobRunner"/></plugins>
    {handlers}
    <destinations default="local"><destination id="local" runner="local"/></destinations>
    <tools>{tools}</tools>
</job_conf>
""")
        return load_job_conf(str(path), RUNNER_SPECS)
    return _load


@pytest.fixture
def fixed_random(monkeypatch):
    """random inside app.dispatch only: the farm rotation starts at index 0 (so the first
    send goes to the farm's second mule), and choice() records what it chose from."""
    choices = []

    def choice(seq):
        choices.append(list(seq))
        return seq[-1]

    monkeypatch.setattr(dispatch, "random",
                        types.SimpleNamespace(randrange=lambda n: 0, choice=choice))
    return choices


# -- handler_for ------------------------------------------------------------------------
def test_a_tool_mapped_to_a_mule_goes_to_that_mule(uwsgi, job_conf):
    conf = job_conf(tools='<tool id="checksum" handler="main.job-handlers.2"/>')
    dispatcher = Dispatcher(conf)
    assert dispatcher.handler_for("checksum") == "main.job-handlers.2"
    assert dispatcher.handler_for("cat_lines") == "job-handlers"  # unmapped: the farm


def test_a_tag_with_a_sub_farm(uwsgi, job_conf):
    uwsgi.farms = {"job-handlers": [1, 2], "job-handlers.fast": [3, 4]}
    uwsgi.mules = {1, 2, 3, 4}
    conf = job_conf(tools='<tool id="sort" handler="fast"/>')
    dispatcher = Dispatcher(conf)
    assert dispatcher.handler_for("sort") == "fast"
    assert dispatcher.notify(7, "fast") is True
    assert uwsgi.sent[0][0] == b"7" and uwsgi.sent[0][1] in (3, 4)


def test_the_farm_is_the_default(uwsgi, job_conf):
    dispatcher = Dispatcher(job_conf())
    assert dispatcher.handler_for("anything") == "job-handlers"


def test_the_handlers_default_wins_over_the_farm(uwsgi, job_conf):
    conf = job_conf(handlers='<handlers default="main.job-handlers.3">'
                             '<handler id="main.job-handlers.3"/></handlers>')
    assert Dispatcher(conf).handler_for("anything") == "main.job-handlers.3"


@pytest.mark.parametrize("worker, expected", [(2, "main.web.2"), (0, "main.web.1")])
def test_all_in_one_the_web_worker_handles_its_jobs(uwsgi, job_conf, worker, expected):
    uwsgi.farms, uwsgi.mules, uwsgi.worker = {}, set(), worker
    uwsgi.is_running = worker != 0  # worker 0: outside uWSGI
    assert Dispatcher(job_conf()).handler_for("anything") == expected


@pytest.mark.parametrize("method", ["mem-self", "db-self"])
def test_self_assignment_keeps_the_job_in_this_web_worker(uwsgi, job_conf, method):
    uwsgi.worker = 2
    conf = job_conf(handlers=f'<handlers assign_with="{method}">'
                             '<handler id="main.job-handlers.1"/></handlers>',
                    tools='<tool id="checksum" handler="main.job-handlers.1"/>')
    dispatcher = Dispatcher(conf)
    assert dispatcher.handler_for("checksum") == "main.web.2"
    assert dispatcher.handler_for("other") == "main.web.2"


def test_db_preassign_picks_one_handler_of_the_tag(uwsgi, job_conf, fixed_random):
    conf = job_conf(handlers='<handlers assign_with="db-preassign" default="fast">'
                             '<handler id="main.job-handlers.1" tags="fast"/>'
                             '<handler id="main.job-handlers.2" tags="fast, slow"/>'
                             '<handler id="main.job-handlers.3" tags="slow"/></handlers>',
                    tools='<tool id="big" handler="slow"/>'
                          '<tool id="one" handler="main.job-handlers.1"/>')
    dispatcher = Dispatcher(conf)
    assert dispatcher.handler_for("anything") == "main.job-handlers.2"
    assert dispatcher.handler_for("big") == "main.job-handlers.3"
    assert fixed_random == [["main.job-handlers.1", "main.job-handlers.2"],
                            ["main.job-handlers.2", "main.job-handlers.3"]]
    assert dispatcher.handler_for("one") == "main.job-handlers.1"  # a handler id: kept
    assert len(fixed_random) == 2


def test_db_preassign_really_spreads_over_the_tag(uwsgi, job_conf):
    conf = job_conf(handlers='<handlers assign_with="db-preassign" default="fast">'
                             '<handler id="main.job-handlers.1" tags="fast"/>'
                             '<handler id="main.job-handlers.2" tags="fast"/></handlers>')
    dispatcher = Dispatcher(conf)
    chosen = {dispatcher.handler_for("anything") for _ in range(200)}
    assert chosen == {"main.job-handlers.1", "main.job-handlers.2"}


# -- notify -----------------------------------------------------------------------------
def test_notify_sends_the_job_id_to_the_mapped_mule(uwsgi, job_conf):
    dispatcher = Dispatcher(job_conf())
    assert dispatcher.notify(42, "main.job-handlers.2") is True
    assert uwsgi.sent == [(b"42", 2)]
    assert (dispatcher.sent, dispatcher.failed) == (1, 0)


def test_notify_round_robins_over_the_farm(uwsgi, job_conf, fixed_random):
    uwsgi.farms = {"job-handlers": [1, 2, 3], "job-handlers.fast": [4, 5]}
    uwsgi.mules = {1, 2, 3, 4, 5}
    dispatcher = Dispatcher(job_conf())
    for job_id in range(1, 8):
        assert dispatcher.notify(job_id, "job-handlers")
    for job_id in range(8, 11):
        assert dispatcher.notify(job_id, "fast")
    assert dispatcher.notify(11, "job-handlers.fast")  # the sub-farm by its own name
    assert uwsgi.mule_sequence() == [2, 3, 1, 2, 3, 1, 2, 5, 4, 5, 4]
    assert [data for data, _ in uwsgi.sent] == [str(i).encode() for i in range(1, 12)]
    assert (dispatcher.sent, dispatcher.failed) == (11, 0)


def test_round_robin_from_a_random_start_visits_every_mule(uwsgi, job_conf):
    uwsgi.farms = {"job-handlers": [4, 7, 9]}
    dispatcher = Dispatcher(job_conf())
    for job_id in range(9):
        dispatcher.notify(job_id, "job-handlers")
    sequence = uwsgi.mule_sequence()
    members = [4, 7, 9]
    assert sorted(sequence[:3]) == members
    assert all(b == members[(members.index(a) + 1) % 3] for a, b in zip(sequence, sequence[1:]))


def test_a_refused_send_falls_back_to_the_sweep(uwsgi, job_conf, caplog):
    caplog.set_level(logging.WARNING, logger="app.dispatch")
    dispatcher = Dispatcher(job_conf())
    uwsgi.accept = False
    assert dispatcher.notify(5, "main.job-handlers.1") is False
    assert dispatcher.notify(6, "job-handlers") is False
    assert (dispatcher.sent, dispatcher.failed) == (0, 2)
    assert len(uwsgi.sent) == 2
    assert "job 5: could not message handler main.job-handlers.1" in caplog.text
    uwsgi.accept = True
    assert dispatcher.notify(7, "job-handlers") is True
    assert (dispatcher.sent, dispatcher.failed) == (1, 2)


def test_a_mule_that_does_not_exist_is_not_sent_to(uwsgi, job_conf):
    dispatcher = Dispatcher(job_conf())
    assert dispatcher.notify(5, "main.job-handlers.9") is False
    assert uwsgi.sent == []
    assert dispatcher.failed == 1


def test_a_web_handler_of_this_worker_gets_the_message_in_its_inbox(uwsgi, job_conf):
    uwsgi.farms, uwsgi.mules = {}, set()
    dispatcher = Dispatcher(job_conf())
    assert dispatcher.notify(3, "main.web.1") is False  # no handler thread started yet
    dispatcher.local_inbox, dispatcher.local_name = QueueInbox(), "main.web.1"
    assert dispatcher.notify(4, "main.web.1") is True
    assert dispatcher.local_inbox.get(timeout=1) == b"4"
    assert dispatcher.notify(5, "main.web.2") is False  # another worker's: its sweep
    assert dispatcher.local_inbox.get(timeout=0) is None
    assert uwsgi.sent == []
    assert (dispatcher.sent, dispatcher.failed) == (1, 2)


def test_a_webless_handlers_tag_is_sent_nothing(uwsgi, job_conf):
    dispatcher = Dispatcher(job_conf())
    dispatcher.local_inbox, dispatcher.local_name = QueueInbox(), "main.web.1"
    for handler in ("webless", "cluster.1", "main.other.1"):
        assert dispatcher.notify(8, handler) is False
    assert uwsgi.sent == []
    assert dispatcher.local_inbox.get(timeout=0) is None
    assert (dispatcher.sent, dispatcher.failed) == (0, 0)  # not a failure: by design


# -- checks at start-up -----------------------------------------------------------------
def test_a_mapping_to_a_missing_mule_is_refused(uwsgi, job_conf):
    conf = job_conf(tools='<tool id="checksum" handler="main.job-handlers.4"/>')
    with pytest.raises(JobConfError) as error:
        Dispatcher(conf)
    message = str(error.value)
    assert "tool checksum" in message and "main.job-handlers.4" in message
    assert "mules [1, 2, 3]" in message and conf.path in message


def test_a_default_to_a_missing_web_worker_is_refused(uwsgi, job_conf):
    uwsgi.processes = 2
    conf = job_conf(handlers='<handlers default="main.web.3"><handler id="main.web.3"/></handlers>')
    with pytest.raises(JobConfError) as error:
        Dispatcher(conf)
    assert "<handlers default>" in str(error.value) and "main.web.3" in str(error.value)
    assert "web workers 1..2" in str(error.value)


def test_existing_mules_and_web_workers_are_accepted(uwsgi, job_conf):
    conf = job_conf(handlers='<handlers default="main.web.2"><handler id="main.web.2"/>'
                             '<handler id="main.job-handlers.3"/></handlers>',
                    tools='<tool id="checksum" handler="main.job-handlers.3"/>')
    Dispatcher(conf)


def test_no_mules_at_all_names_none(uwsgi, job_conf):
    uwsgi.farms, uwsgi.mules = {}, set()
    conf = job_conf(tools='<tool id="checksum" handler="main.job-handlers.1"/>')
    with pytest.raises(JobConfError, match="uWSGI runs mules none"):
        Dispatcher(conf)


def test_outside_uwsgi_nothing_is_checked(uwsgi, job_conf):
    uwsgi.is_running = False
    conf = job_conf(tools='<tool id="checksum" handler="main.job-handlers.4"/>')
    Dispatcher(conf)  # webless tools and unit tests: no uWSGI to check against


# -- known gap: handler ids _check_handler_ids does not look at ------------------------------
MISSING_MULE_REFS = {
    # db-preassign writes the job with one <handler id> of the tag: mule 9 does not exist.
    "a <handler> of a tag": dict(
        handlers='<handlers assign_with="db-preassign" default="fast">'
                 '<handler id="main.job-handlers.1" tags="fast"/>'
                 '<handler id="main.job-handlers.9" tags="fast"/></handlers>'),
    # a resubmitted job is written with the rule's handler: mule 9 does not exist.
    "a <resubmit handler>": dict(
        destinations='<destination id="local" runner="local">'
                     '<resubmit condition="walltime_reached" handler="main.job-handlers.9"/>'
                     '</destination>'),
}


@pytest.mark.parametrize("case", sorted(MISSING_MULE_REFS))
def test_every_reference_to_a_missing_mule_is_refused(uwsgi, tmp_path, fixed_random, case):
    parts = dict(handlers="", destinations='<destination id="local" runner="local"/>')
    parts.update(MISSING_MULE_REFS[case])
    path = tmp_path / "job_conf.xml"
    path.write_text(f"""<?xml version="1.0"?>
<job_conf>
    <plugins><plugin id="local" type="runner" load="galaxy.jobs.runners.local:LocalJobRunner"/></plugins>
    {parts["handlers"]}
    <destinations default="local">{parts["destinations"]}</destinations>
</job_conf>
""")
    conf = load_job_conf(str(path), RUNNER_SPECS)
    try:
        dispatcher = Dispatcher(conf)
    except JobConfError as exc:
        assert "main.job-handlers.9" in str(exc)
        return
    if case == "a <handler> of a tag":
        # what happens instead: the job goes to a mule nobody runs, and waits forever
        assert dispatcher.handler_for("anything") == "main.job-handlers.9"
        assert dispatcher.notify(1, "main.job-handlers.9") is False
    pytest.fail(f"{case} naming main.job-handlers.9 was accepted with mules 1..3")
