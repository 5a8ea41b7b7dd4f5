"""muleteer/job_rules.py (Galaxy's dynamic destinations) and how the job configuration and
the handler use it: rules loaded once with file and line in their errors, the arguments a
rule asks for, what it may return, its failures and time bound, and the handler's one
write of the chosen destination under the job's lease."""
import textwrap
import threading

import pytest

from muleteer import job_rules
from muleteer.job_config import JobConfError, load_job_conf
from muleteer.job_rules import (InputDataset, JobFacts, RuleFailed, RulesError,
                                check_rule, choose, load_rules)
from mules.runners import RUNNER_SPECS

RULES = {
    "000_site.py": """
        from muleteer.job_rules import JobDestination, JobMappingException
        from ._shared import BIG

        def by_size(input_size, big=BIG):
            return "big" if input_size > int(big) else "small"

        def overridden():
            return "small"

        def with_params(resource_params):
            return JobDestination(id="small", params={"local_slots": resource_params["cores"]})

        def refuse(user_email):
            raise JobMappingException(f"{user_email} may not")

        def crash():
            return {}["missing"]

        def not_a_destination():
            return 42

        def url():
            return "local:///"

        def unknown():
            return "nowhere"

        def to_tag():
            return "hpc"

        def chain():
            return "sized"

        def loop():
            return "looping"

        def params_for_a_dynamic():
            return JobDestination(id="sized", params={"x": 1})

        def wrong_runner():
            return JobDestination(id="small", runner="slurm")
    """,
    "100_local.py": """
        def overridden():
            return "big"
    """,
    "_shared.py": "BIG = 100\n",
}
JOB_CONF = """<?xml version="1.0"?>
<job_conf>
    <plugins>
        <plugin id="local" type="runner" load="galaxy.jobs.runners.local:LocalJobRunner" workers="4"/>
        <plugin id="dynamic"><param id="rules_module">rules</param></plugin>
    </plugins>
    <destinations default="sized">
        <destination id="sized" runner="dynamic"><param id="function">by_size</param></destination>
        <destination id="looping" runner="dynamic"><param id="function">loop</param></destination>
        <destination id="small" runner="local"/>
        <destination id="big" runner="local" tags="hpc">
            <param id="local_slots">2</param>
            <resubmit condition="walltime_reached" destination="small"/>
        </destination>
        {extra}
    </destinations>
</job_conf>
"""


@pytest.fixture
def rules_dir(tmp_path):
    directory = tmp_path / "rules"
    directory.mkdir()
    for name, text in RULES.items():
        (directory / name).write_text(textwrap.dedent(text).lstrip())
    return directory


def job_conf(tmp_path, extra=""):
    path = tmp_path / "job_conf.xml"
    path.write_text(JOB_CONF.replace("{extra}", extra))
    return load_job_conf(str(path), RUNNER_SPECS)


class Facts:
    """JobFacts' interface without a store."""

    def __init__(self, **values):
        self.values = values

    def value(self, name, referrer):
        return referrer if name == "referrer" else self.values[name]


def dynamic(conf, function):
    """The configuration's `sized` destination with another function."""
    from dataclasses import replace
    sized = conf.destinations["sized"]
    return replace(sized, params={**sized.params, "function": function})


# -- loading ---------------------------------------------------------------------------------------
def test_rules_load_once_in_name_order_skipping_underscore_files(rules_dir):
    rules = load_rules(str(rules_dir))
    assert load_rules(str(rules_dir) + "/") is rules
    assert "overridden" in rules.rules and rules.get("overridden").path.endswith("100_local.py")
    assert rules.get("overridden").function() == "big"  # the later file wins (Galaxy's order)
    assert "BIG" not in rules.rules and "JobDestination" not in rules.rules
    by_size = rules.get("by_size")
    assert by_size.arguments == ("input_size", "big") and by_size.required == ("input_size",)
    assert by_size.line == 4 and str(by_size) == f"rule 'by_size' ({rules_dir}/000_site.py, line 4)"


def test_a_rule_asking_for_what_nobody_gives_is_refused(rules_dir):
    (rules_dir / "200_app.py").write_text("def needs_app(app, tool_id, extra):\n    return 'small'\n")
    (rules_dir / "300_positional.py").write_text("def positional(tool_id, /):\n    return 'small'\n")
    rule = load_rules(str(rules_dir)).get("needs_app")
    with pytest.raises(RulesError, match=r"asks for app, extra, which Muleteer does not give"):
        check_rule(rule, {})
    with pytest.raises(RulesError, match=r"asks for app,"):
        check_rule(rule, {"extra": "1"})
    check_rule(rule, {"extra": "1", "app": "given by its destination"})
    with pytest.raises(RulesError, match=r"asks for tool_id,"):
        check_rule(load_rules(str(rules_dir)).get("positional"), {})


def test_the_configuration_loads_the_rules_and_names_what_is_wrong(tmp_path, rules_dir):
    conf = job_conf(tmp_path)
    sized = conf.destinations["sized"]
    assert sized.dynamic and sized.runner == "dynamic" and "dynamic" not in conf.plugins
    assert sized.params == {"function": "by_size", "type": "python",
                            "rules_module": str(rules_dir)}
    cases = [
        ('<destination id="d" runner="dynamic"><param id="function">nope</param></destination>',
         r"job_conf.xml, line 15: <param id=\"function\">: 'nope': no function 'nope' in the rules of "
         r".*rules \(its rules: by_size, chain, crash,"),
        ('<destination id="d" runner="dynamic"/>',
         r"line 15: <destination>: a dynamic destination needs the param `function`"),
        ('<destination id="d" runner="dynamic"><param id="type">choose_one</param></destination>',
         r"line 15: <param id=\"type\">: 'choose_one': Galaxy's stock rules .* not available"),
        ('<destination id="d" runner="dynamic"><param id="function">by_size</param>'
         '<param id="rules_module">elsewhere</param></destination>',
         r"line 15: <param id=\"rules_module\">: rules_module: .*elsewhere: no such directory"),
    ]
    for extra, expected in cases:
        with pytest.raises(JobConfError, match=expected):
            job_conf(tmp_path, extra)


def test_a_rule_file_that_does_not_import_stops_start_up_with_both_places(tmp_path, rules_dir):
    (rules_dir / "300_broken.py").write_text("import os\n\ndef oops(:\n    pass\n")
    with pytest.raises(JobConfError) as caught:
        job_conf(tmp_path)
    message = str(caught.value)
    assert "job_conf.xml, line 5: <param id=\"rules_module\">" in message, message
    assert "300_broken.py, line 3: SyntaxError" in message, message
    (rules_dir / "300_broken.py").write_text("x = 1\nundefined_name\n")
    with pytest.raises(JobConfError, match=r"300_broken.py, line 2: NameError: name 'undefined_name'"):
        job_conf(tmp_path)


def test_the_yaml_form_and_its_default_rules_directory(tmp_path, rules_dir):
    (tmp_path / "job_rules").mkdir()
    (tmp_path / "job_rules" / "mine.py").write_text("def pick(tool_id, size='1'):\n    return 'local'\n")
    path = tmp_path / "job_conf.yml"
    path.write_text(textwrap.dedent("""
        runners:
          local: {load: galaxy.jobs.runners.local:LocalJobRunner}
        execution:
          default: picked
          environments:
            picked: {runner: dynamic, function: pick, size: 3}
            local: {runner: local}
            missing: {runner: dynamic, function: nope}
    """))
    with pytest.raises(JobConfError, match=r"job_conf.yml, line 9: execution.environments.missing."
                                           r"function: 'nope': no function 'nope'"):
        load_job_conf(str(path), RUNNER_SPECS)
    path.write_text(path.read_text().replace("    missing: {runner: dynamic, function: nope}\n", ""))
    picked = load_job_conf(str(path), RUNNER_SPECS).destinations["picked"]
    assert picked.params == {"function": "pick", "size": 3, "type": "python",
                             "rules_module": str(tmp_path / "job_rules")}


# -- choosing ----------------------------------------------------------------------------------
def test_a_rule_chooses_by_id_tag_or_with_params(tmp_path, rules_dir):
    conf = job_conf(tmp_path)
    small = choose(conf, conf.destinations["sized"], Facts(input_size=100))
    big = choose(conf, conf.destinations["sized"], Facts(input_size=101))
    assert (small.destination.id, small.params, small.chain) == ("small", {}, ("sized",))
    assert (big.destination.id, big.destination.params) == ("big", {"local_slots": 2})
    assert choose(conf, dynamic(conf, "to_tag"), Facts()).destination.id == "big"
    chosen = choose(conf, dynamic(conf, "with_params"), Facts(resource_params={"cores": 3}))
    assert (chosen.destination.id, chosen.params) == ("small", {"local_slots": 3})
    assert job_rules.checked_params(chosen, RUNNER_SPECS["local"]) == {"local_slots": 3}
    chained = choose(conf, dynamic(conf, "chain"), Facts(input_size=500))
    assert (chained.destination.id, chained.chain) == ("big", ("sized", "sized"))


def test_what_a_rule_gets_its_destinations_params_first(tmp_path, rules_dir):
    conf = job_conf(tmp_path, '<destination id="d" runner="dynamic"><param id="function">'
                              'by_size</param><param id="big">1000</param></destination>')
    rule = load_rules(str(rules_dir)).get("by_size")
    given = job_rules.arguments(rule, conf.destinations["d"], Facts(input_size=500))
    assert given == {"input_size": 500, "big": "1000"}
    assert choose(conf, conf.destinations["d"], Facts(input_size=500)).destination.id == "small"


@pytest.mark.parametrize("function, expected", [
    ("refuse", r"^bob@example.org may not$"),
    ("crash", r"^rule 'crash' failed \(000_site.py, line 17\): KeyError: 'missing'$"),
    ("not_a_destination", r"returned 42 \(int\): expected a destination id or a JobDestination"),
    ("url", r"returned the runner URL 'local:///'"),
    ("unknown", r"returned 'nowhere', which is not a destination id or tag of .*job_conf.xml"),
    ("loop", r"chained more than 8 times: sized -> looping -> looping"),
    ("params_for_a_dynamic", r"returned params for 'sized', a dynamic destination"),
    ("wrong_runner", r"returned destination 'small' with runner 'slurm'; its runner is 'local'"),
])
def test_a_failing_rule_fails_with_its_message(tmp_path, rules_dir, function, expected):
    conf = job_conf(tmp_path)
    with pytest.raises(RuleFailed, match=expected):
        choose(conf, dynamic(conf, function), Facts(user_email="bob@example.org", input_size=0))


def test_params_a_runner_cannot_take_fail_the_job(tmp_path, rules_dir):
    conf = job_conf(tmp_path)
    chosen = job_rules.Choice(conf.destinations["small"], {"local_slots": "many"}, ("sized",))
    with pytest.raises(RuleFailed, match=r"'sized' set local_slots='many' on destination 'small': "
                                         r"expected a whole number"):
        job_rules.checked_params(chosen, RUNNER_SPECS["local"])
    chosen = job_rules.Choice(conf.destinations["small"], {"odd": {1, 2}}, ("sized",))
    with pytest.raises(RuleFailed, match=r"set odd=\{1, 2\}"):
        job_rules.checked_params(chosen, RUNNER_SPECS["local"])


def test_a_rule_that_hangs_fails_its_job_and_is_not_called_again_until_it_returns(rules_dir):
    release, calls = threading.Event(), []

    def hangs(job_id):
        calls.append(job_id)
        release.wait(10)
        return "small"

    rule = job_rules._rule("hangs", hangs, str(rules_dir / "x.py"))
    try:
        with pytest.raises(RuleFailed, match=r"did not return within 0.2 s"):
            job_rules.call_rule(rule, {"job_id": 1}, timeout=0.2)
        with pytest.raises(RuleFailed, match=r"has not returned from an earlier call"):
            job_rules.call_rule(rule, {"job_id": 2}, timeout=0.2)
        assert calls == [1]
    finally:
        release.set()
    job_rules._late[(rule.path, rule.name)].join(5)
    assert job_rules.call_rule(rule, {"job_id": 3}, timeout=5) == "small"
    assert calls == [1, 3]


def test_a_rule_that_exits_fails_its_job_not_the_caller(rules_dir):
    def exits():
        raise SystemExit(3)
    rule = job_rules._rule("exits", exits, str(rules_dir / "x.py"))
    with pytest.raises(RuleFailed, match=r"rule 'exits' failed .*: SystemExit: 3"):
        job_rules.call_rule(rule, {})


# -- facts from the store ------------------------------------------------------------------------------
@pytest.fixture
def sqlite_store(tmp_path):
    from muleteer.store import JobStore
    store = JobStore(f"sqlite:///{tmp_path}/jobs.sqlite")
    store.migrate()
    yield store
    store.engine.dispose()


def add_user(store, email, is_admin=False) -> int:
    from sqlalchemy import insert
    from muleteer.models import galaxy_user
    from muleteer.store import utcnow
    with store.engine.begin() as conn:
        return conn.execute(insert(galaxy_user).values(
            email=email, password_hash="x", is_admin=is_admin, create_time=utcnow())
        ).inserted_primary_key[0]


def new_job(store, user_id, inputs=(), **values):
    return store.create_job(tool_id="noop", tool_version="1.0", params=values.pop("params", {}),
                            command_line="", handler_tag="h", destination_id="sized",
                            runner="dynamic", user_id=user_id, inputs=inputs, **values)[0]


def test_job_facts_read_the_owner_and_inputs_only_when_asked(sqlite_store):
    alice, boss = add_user(sqlite_store, "alice@example.org"), add_user(sqlite_store, "boss@x.org", True)
    listed, anonymous = add_user(sqlite_store, "Chief@x.org"), add_user(sqlite_store, "a1@anonymous.invalid")
    ids = [sqlite_store.create_dataset(user_id=alice, name=f"{n}.txt", format="txt", size=n,
                                       sha256="0" * 64).id for n in (10, 32)]
    job = new_job(sqlite_store, alice, inputs=[("input", ids[0], 0), ("more", ids[1], 0)],
                  params={"__job_resource": {"__job_resource__select": "yes", "cores": 2,
                                             "memory": None}})
    facts = JobFacts(job, sqlite_store, admin_users="chief@x.org")
    assert (facts.user_email, facts.roles, facts.input_size) == ("alice@example.org", [], 42)
    assert facts.input_datasets == (InputDataset("input", ids[0], 10, "txt"),
                                    InputDataset("more", ids[1], 32, "txt"))
    assert facts.resource_params == {"cores": 2}
    facts.params["changed"] = True
    assert "changed" not in facts.params  # a copy each time
    for user_id, email, roles in ((boss, "boss@x.org", ["admin"]), (listed, "Chief@x.org", ["admin"]),
                                  (anonymous, None, [])):
        facts = JobFacts(new_job(sqlite_store, user_id), sqlite_store, admin_users=" chief@X.org ")
        assert (facts.user_email, facts.roles) == (email, roles)


# -- the handler: placed once, under the lease ------------------------------------------------------
@pytest.fixture
def handler(tmp_path, rules_dir, sqlite_store):
    from types import SimpleNamespace
    from mules.handler_loop import JobHandler, QueueInbox
    from muleteer.config import load_config
    (tmp_path / "galaxy.yml").write_text("galaxy:\n  job_working_directory: jobs\n")
    ctx = SimpleNamespace(config=load_config(str(tmp_path / "galaxy.yml")), store=sqlite_store,
                          job_conf=job_conf(tmp_path, '<destination id="refusing" runner="dynamic">'
                                                      '<param id="function">refuse</param>'
                                                      '</destination>'), tools=None)
    return JobHandler(ctx, "h", (), "db-skip-locked", QueueInbox())


def test_the_handler_records_the_chosen_destination_once_under_the_lease(handler, sqlite_store):
    store = sqlite_store
    user = add_user(store, "carol@example.org")
    big = store.create_dataset(user_id=user, name="big", format="txt", size=500, sha256="0" * 64)
    job = store.claim_job(new_job(store, user, inputs=[("input", big.id, 0)],
                                  params={"__job_resource": {"__job_resource__select": "yes",
                                                             "cores": 3}}).id, "h", ("h",))
    placed = handler.place(job)
    row = store.get_job(job.id)
    assert (row.destination_id, row.runner, row.destination_params) == ("big", "local",
                                                                        {"local_slots": 3})
    assert (placed.destination_id, placed.runner, placed.destination_params) == (
        "big", "local", {"local_slots": 3})
    assert row.resubmit == placed.resubmit == [{"condition": "walltime_reached",
                                                "destination": "small", "handler": None,
                                                "delay": 0.0}]
    assert not handler.unplaced(row) and handler.unplaced(job)
    assert handler.ctx.job_conf.destination_of(row).params == {"local_slots": 3}
    # Another handler took it meanwhile (a new lease): nothing written, not started here.
    other = store.claim_job(new_job(store, user).id, "h", ("h",))
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE job SET lease = lease + 1 WHERE id = ?", (other.id,))
    assert handler.place(other) is None
    assert store.get_job(other.id).destination_id == "sized"


def test_a_job_whose_rule_fails_ends_error_with_the_rules_message(handler, sqlite_store):
    user = add_user(sqlite_store, "dave@example.org")
    job = sqlite_store.create_job(tool_id="noop", tool_version="1.0", params={}, command_line="",
                                  handler_tag="h", destination_id="refusing", runner="dynamic",
                                  user_id=user)[0]
    job = sqlite_store.claim_job(job.id, "h", ("h",))
    assert handler.place(job) is None
    row = sqlite_store.get_job(job.id)
    assert (row.state.value, row.info, row.destination_id) == ("error", "dave@example.org may not",
                                                               "refusing")


def test_a_static_job_without_resources_is_not_written(handler, sqlite_store):
    job = sqlite_store.create_job(tool_id="noop", tool_version="1.0", params={}, command_line="",
                                  handler_tag="h", destination_id="small", runner="local")[0]
    job = sqlite_store.claim_job(job.id, "h", ("h",))
    assert handler.place(job) is job
    row = sqlite_store.get_job(job.id)
    assert (row.destination_id, row.destination_params, row.update_time) == (
        "small", {}, job.update_time)


def test_a_job_taken_before_its_rule_ran_is_placed_or_cancelled_on_recovery(handler, sqlite_store):
    store = sqlite_store
    user = add_user(store, "erin@example.org")

    def taken(destination_id):
        job = store.create_job(tool_id="noop", tool_version="1.0", params={}, command_line="",
                               handler_tag="h", destination_id=destination_id, runner="dynamic",
                               user_id=user)[0]
        return store.claim_job(job.id, "h", ("h",))

    refused, cancelled, stopped = taken("refusing"), taken("sized"), taken("sized")
    store.request_cancel(cancelled.id)
    store.request_cancel(stopped.id)
    handler.stop(store.get_job(stopped.id))
    assert (store.get_job(stopped.id).state.value, store.get_job(stopped.id).info) == (
        "deleted", "cancelled before it started")
    handler.recover()  # as after a restart: neither job reached a runner
    assert (store.get_job(refused.id).state.value, store.get_job(refused.id).info) == (
        "error", "erin@example.org may not")
    assert store.get_job(cancelled.id).state.value == "deleted"
