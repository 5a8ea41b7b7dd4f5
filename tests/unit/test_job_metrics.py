"""Job metrics (muleteer/job_metrics/): Galaxy's configuration file in both forms, the
plugins' job-script lines run by a real bash, reading back what they wrote (and refusing
what a job may have put there instead), the runner's usage where no cgroup of the job's
own exists, Galaxy's words for values, and the store (SQLite and PostgreSQL)."""
import os
import pathlib
import subprocess
import textwrap

import pytest

from muleteer.config import load_config
from muleteer.job import JobState
from muleteer.job_files import JobFiles
from muleteer.job_metrics import (PEAK_MEMORY_NAMES, JobMetric, JobMetrics, JobMetricsConfError,
                                  Safety, load_job_metrics)
from muleteer.job_metrics.cgroup import with_usage
from muleteer.job_metrics.conf import read_conf
from muleteer.job_metrics.values import nice_size, parse_decimal, parse_int, seconds_to_str

ALL = """<?xml version="1.0"?>
<job_metrics>
  <!-- every plugin -->
  <core/>
  <cgroup/>
  <hostname/>
  <uname/>
  <cpuinfo/>
  <meminfo/>
  <env variables="HOME,MULETEER_TEST_VAR"/>
</job_metrics>
"""


def metrics_from(tmp_path, text, name="job_metrics_conf.xml") -> JobMetrics:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return JobMetrics.from_confs(read_conf(str(path)), str(path))


def error_of(tmp_path, text, name="job_metrics_conf.xml") -> str:
    with pytest.raises(JobMetricsConfError) as caught:
        metrics_from(tmp_path, text, name)
    return str(caught.value)


def run_script(directory, metrics: JobMetrics, command: str, env: dict | None = None):
    """Run the plugins' lines around `command` in `directory` with a real bash, as job.sh
    does (the command in a subshell, $rc kept), and return the script's exit status."""
    script = "\n".join(["export GALAXY_SLOTS=3", f"cd {directory}", *metrics.script_before(),
                        f"( {command} )", "rc=$?", *metrics.script_after(), "exit $rc", ""])
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30,
                            env={**os.environ, **(env or {})})
    return result


def by_name(metrics):
    return {(m.plugin, m.name): m.value for m in metrics}


# -- configuration ---------------------------------------------------------------------
def test_the_xml_and_the_yaml_forms_list_the_same_plugins(tmp_path):
    xml = metrics_from(tmp_path, ALL)
    yml = metrics_from(tmp_path, """
        - type: core
        - type: cgroup
        - type: hostname
        - type: uname
        - type: cpuinfo
        - type: meminfo
        - type: env
          variables: [HOME, MULETEER_TEST_VAR]
    """, "job_metrics_conf.yml")
    assert [p.type for p in xml.plugins] == [p.type for p in yml.plugins] == [
        "core", "cgroup", "hostname", "uname", "cpuinfo", "meminfo", "env"]
    assert xml.plugins[-1].variables == yml.plugins[-1].variables == ["HOME", "MULETEER_TEST_VAR"]
    assert xml.script_before() == yml.script_before()


def test_the_shipped_sample_turns_on_core_and_cgroup(repo):
    sample = JobMetrics.from_confs(read_conf(os.path.join(repo, "job_metrics_conf.xml.sample")))
    assert [p.type for p in sample.plugins] == ["core", "cgroup"]


def test_no_file_at_the_default_place_means_the_core_plugin_alone(tmp_path):
    (tmp_path / "galaxy.yml").write_text("galaxy: {}\n")
    metrics = load_job_metrics(load_config(str(tmp_path / "galaxy.yml")))
    assert [p.type for p in metrics.plugins] == ["core"] and metrics.source is None
    (tmp_path / "job_metrics_conf.xml").write_text("<job_metrics><core/><hostname/></job_metrics>")
    metrics = load_job_metrics(load_config(str(tmp_path / "galaxy.yml")))
    assert [p.type for p in metrics.plugins] == ["core", "hostname"]


def test_a_file_named_in_galaxy_yml_that_does_not_exist_is_an_error(tmp_path):
    (tmp_path / "galaxy.yml").write_text("galaxy:\n  job_metrics_config_file: metrics.yml\n")
    with pytest.raises(JobMetricsConfError, match=r"galaxy.job_metrics_config_file: .*"
                                                  r"metrics.yml does not exist"):
        load_job_metrics(load_config(str(tmp_path / "galaxy.yml")))


@pytest.mark.parametrize("text, expected", [
    ("<job_metrics>\n  <core>\n</job_metrics>\n", "line 3: not well-formed XML"),
    ("<metrics><core/></metrics>", "line 1: the root element is <metrics>, expected <job_metrics>"),
    ("<job_metrics>\n  <core/>\n  <collectl/>\n</job_metrics>",
     "line 3: <collectl>: no such job metrics plugin here (available: core, cgroup,"),
    ("<job_metrics>\n\n  <uname arg='-a'/>\n</job_metrics>",
     "line 3: <uname>: arg='-a': unknown setting (this plugin's settings: args)"),
    ("<job_metrics>\n  <uname args='-a; rm -rf /'/>\n</job_metrics>",
     "line 2: <uname>: args='-a; rm -rf /': expected uname's options"),
    ("<job_metrics>\n  <cgroup version='3'/>\n</job_metrics>",
     "line 2: <cgroup>: version='3': expected auto, 1 or 2"),
    ("<job_metrics>\n  <cgroup params='memory.peak,memory.bogus'/>\n</job_metrics>",
     "'memory.bogus' is not a value this plugin reads"),
    ("<job_metrics>\n  <cgroup verbose='maybe'/>\n</job_metrics>",
     "line 2: <cgroup>: verbose='maybe': expected true or false"),
    ("<job_metrics>\n  <env variables='HOME,$(id)'/>\n</job_metrics>",
     "'$(id)' is not an environment variable name"),
    ("<job_metrics>\n  <core/>\n  <core/>\n</job_metrics>", "line 3: <core>: listed twice (first at line 2)"),
    ("<job_metrics>\n  <core><param/></core>\n</job_metrics>", "line 2: <core>: takes no child elements"),
])
def test_a_broken_xml_file_says_file_line_and_what(tmp_path, text, expected):
    message = error_of(tmp_path, text)
    assert message.startswith(str(tmp_path / "job_metrics_conf.xml")), message
    assert expected in message, message


@pytest.mark.parametrize("text, expected", [
    ("- type: core\n- type: [1\n", "not valid YAML"),
    ("type: core\n", "expected a list of plugins (`- type: core`), got a mapping"),
    ("- core\n", "plugin 1: expected a mapping with `type`, got 'core'"),
    ("- type: core\n- verbose: true\n", "line 2: plugin 2: `type` must name a plugin"),
    ("- type: core\n- type: cgroup\n\n  cgroup_mount: relative/path\n",
     "line 4: <cgroup>: cgroup_mount='relative/path': expected an absolute path"),
])
def test_a_broken_yaml_file_says_file_line_and_what(tmp_path, text, expected):
    message = error_of(tmp_path, text, "job_metrics_conf.yml")
    assert message.startswith(str(tmp_path / "job_metrics_conf.yml")), message
    assert expected in message, message


def test_a_broken_file_stops_the_configuration_check(tmp_path, repo):
    """`python -m check` (run.sh, before uWSGI starts) fails with the file and line."""
    (tmp_path / "job_metrics_conf.xml").write_text("<job_metrics>\n  <cgroup version='9'/>\n"
                                                   "</job_metrics>\n")
    (tmp_path / "galaxy.yml").write_text(f"galaxy:\n  job_config_file: {repo}/job_conf.xml\n"
                                         f"  tool_path: {repo}/tools\n")
    result = subprocess.run([os.path.join(repo, ".venv", "bin", "python"), "-m", "check",
                             str(tmp_path / "galaxy.yml")], cwd=repo, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert (f"configuration error: {tmp_path}/job_metrics_conf.xml, line 2: <cgroup>: "
            "version='9': expected auto, 1 or 2") in result.stderr


# -- the script's lines, run by bash, and reading back ----------------------------------
def test_the_lines_record_every_plugins_metrics_and_keep_the_exit_status(tmp_path):
    metrics = metrics_from(tmp_path, ALL)
    job = tmp_path / "job"
    job.mkdir()
    result = run_script(job, metrics, "sleep 0.2; exit 7", {"MULETEER_TEST_VAR": "a\nb=c"})
    assert result.returncode == 7, result.stderr
    assert result.stderr == ""
    found = by_name(metrics.collect(JobFiles(str(job))))
    assert found[("core", "galaxy_slots")] == 3.0
    assert ("core", "galaxy_memory_mb") not in found  # not set: nothing, no garbage
    assert 0.2 <= found[("core", "runtime_seconds")] < 60  # seconds, not ms: however busy
    assert found[("core", "end_epoch")] - found[("core", "start_epoch")] == pytest.approx(
        found[("core", "runtime_seconds")])
    assert found[("hostname", "hostname")] == os.uname().nodename
    assert found[("uname", "uname")].startswith("Linux ")
    assert found[("cpuinfo", "processor_count")] >= 1
    assert found[("meminfo", "memtotal")] > 0
    assert found[("env", "MULETEER_TEST_VAR")] == "a\nb=c"
    assert ("env", "HOME") in found
    # bash's `times`: the CPU time of what the script waited for (the sandbox's memory
    # cgroup is shared, so no cgroup figure: MULETEER_JOB_CGROUP is not set).
    assert 0 <= found[("cgroup", "cpu_seconds")] < 60
    assert not {("cgroup", n) for n in PEAK_MEMORY_NAMES} & set(found)


def test_the_core_lines_need_no_process(tmp_path):
    """Cheap by default: with the core plugin alone, the lines run no program (PATH empty:
    any program would fail to start and write to stderr)."""
    job = tmp_path / "job"
    job.mkdir()
    script = "\n".join([f"cd {job}", "PATH=", *JobMetrics.default().script_before(), "rc=0",
                        *JobMetrics.default().script_after()])
    result = subprocess.run(["/bin/bash", "-c", script], capture_output=True, text=True, timeout=10)
    assert result.returncode == 0 and result.stderr == ""
    assert ("core", "runtime_seconds") in by_name(JobMetrics.default().collect(JobFiles(str(job))))


def test_a_cgroup_of_the_jobs_own_gives_its_peak_memory(tmp_path):
    """A per-job memory cgroup (as the local runner makes one, MULETEER_JOB_CGROUP=1): its
    peak, at least what the job allocated. Needs root and cgroup v1's memory controller."""
    own = open("/proc/self/cgroup").read()
    memory = [line.split(":", 2)[2] for line in own.splitlines() if ":memory:" in line]
    base = f"/sys/fs/cgroup/memory{memory[0] if memory else ''}"
    if os.geteuid() != 0 or not memory or not os.access(base, os.W_OK):
        pytest.skip("needs root and a writable cgroup v1 memory hierarchy")
    cgroup = os.path.join(base, f"muleteer-test-metrics-{os.getpid()}")
    os.mkdir(cgroup)
    try:
        metrics = metrics_from(tmp_path, ALL)
        job = tmp_path / "job"
        job.mkdir()
        command = "python3 -c 'b = bytes(range(256)) * (40 * 4096)'"
        script = "\n".join([f"echo $$ > {cgroup}/cgroup.procs", f"cd {job}",
                            *metrics.script_before(), f"( {command} )", "rc=$?",
                            *metrics.script_after()])
        env = {**os.environ, "MULETEER_JOB_CGROUP": "1"}
        subprocess.run(["bash", "-c", script], check=True, timeout=30, env=env)
    finally:
        os.rmdir(cgroup)
    found = by_name(metrics.collect(JobFiles(str(job)), max_rss_bytes=1))
    assert found[("cgroup", "memory.max_usage_in_bytes")] >= 40 * 2 ** 20
    assert ("cgroup", "memory.peak") not in found  # the runner's figure is not added
    shown = {m.name: m for m in metrics.shown(metrics.collect(JobFiles(str(job))), Safety.SAFE)}
    assert shown["memory.max_usage_in_bytes"].value.endswith(" MB")
    assert shown["memory.max_usage_in_bytes"].title == "Max memory usage (MEM)"


def write_files(directory, files: dict):
    for name, text in files.items():
        (directory / name).write_text(text)


def test_what_a_job_wrote_instead_is_dropped_never_followed_never_fatal(tmp_path, caplog):
    metrics = metrics_from(tmp_path, ALL)
    job = tmp_path / "job"
    job.mkdir()
    write_files(job, {
        "__instrument_core_metrics": "galaxy_slots 4; rm -rf /\nepoch_start 1700000100.5\n"
                                     "epoch_end 1700000000\nrm -rf /\n",  # the end is early
        "__instrument_cpuinfo_cpuinfo": "x" * 100,  # over its size limit
        "__instrument_meminfo_meminfo": "MemTotal 100\nbogus line here\n",
        "__instrument_cgroup__metrics": "__memory.max_usage_in_bytes__\n-5\n__evil__\n1\n"
                                        "__memory.peak__\n1e20\n__memory.failcnt__\n3\n"
                                        "__times__\ngarbage\n",
        "__instrument_uname_uname": "u" * 1024,
    })
    os.symlink("/etc/hostname", job / "__instrument_env_vars")  # not followed
    os.mkfifo(job / "__instrument_hostname_hostname")  # never opened for reading: no hang
    found = by_name(metrics.collect(JobFiles(str(job))))
    assert found == {("meminfo", "memtotal"): 100.0, ("cgroup", "memory.failcnt"): 3.0,
                     ("uname", "uname"): "u" * 1023}
    logged = caplog.text
    for what in ("'4; rm -rf /' is not a whole number from 1 to 1000000 (galaxy_slots)",
                 "'rm -rf /' is not a core metric",
                 "the end (1700000000.0) is before the start (1700000100.5)",
                 "over 64 bytes", "'bogus line here' is not a meminfo entry",
                 # one line per file: the first piece, and how many more ('evil', '1e20')
                 "'-5' is not a number (memory.max_usage_in_bytes): dropped (and 2 more)",
                 "'garbage' is not the output of bash's times"):
        assert what in logged, (what, logged)


def test_env_keeps_variables_and_drops_what_is_not_one(tmp_path, caplog):
    job = tmp_path / "job"
    job.mkdir()
    write_files(job, {"__instrument_env_vars": "HOME=/x\0A=1=2\nz\0no equals sign\0"
                                               "BASH_FUNC_f%%=() {  true\n}\0"})
    every = metrics_from(tmp_path, "<job_metrics><env/></job_metrics>")
    assert by_name(every.collect(JobFiles(str(job)))) == {("env", "HOME"): "/x",
                                                          ("env", "A"): "1=2\nz"}
    assert "'no equals sign' is not NAME=value" in caplog.text
    named = metrics_from(tmp_path, "<job_metrics><env variables='A'/></job_metrics>")
    assert by_name(named.collect(JobFiles(str(job)))) == {("env", "A"): "1=2\nz"}


def test_a_plugin_that_breaks_costs_only_its_own_metrics(tmp_path, monkeypatch, caplog):
    metrics = metrics_from(tmp_path, "<job_metrics><core/><uname/></job_metrics>")
    job = tmp_path / "job"
    job.mkdir()
    write_files(job, {"__instrument_core_metrics": "galaxy_slots 2\n"})
    monkeypatch.setattr(type(metrics.plugins[1]), "read", lambda self, files: 1 / 0)
    assert by_name(metrics.collect(JobFiles(str(job)))) == {("core", "galaxy_slots"): 2.0}
    assert "plugin uname failed" in caplog.text
    assert metrics.collect(JobFiles(str(tmp_path / "gone")), max_rss_bytes=10) == [
        JobMetric("cgroup", "memory.peak", 10.0)]


# -- cgroup v2, params, verbose; the runner's usage ---------------------------------------
V2 = ("__memory.peak__\n73400320\n__memory.max__\nmax\n__memory.events__\nlow 0\nhigh 0\n"
      "max 0\noom 0\noom_kill 1\n__cpu.stat__\nusage_usec 1500000\nuser_usec 1000000\n"
      "system_usec 500000\nnr_periods 0\n")


def test_cgroup_v2_values_as_galaxy_names_them_with_params_and_verbose(tmp_path):
    job = tmp_path / "job"
    job.mkdir()
    write_files(job, {"__instrument_cgroup__metrics":
                      V2 + "__times__\n0m0.001s 0m0.000s\n0m2.500s 0m0,500s\n"})
    found = by_name(metrics_from(tmp_path, "<job_metrics><cgroup/></job_metrics>")
                    .collect(JobFiles(str(job)), max_rss_bytes=5, cpu_seconds=9.0))
    assert found == {("cgroup", "memory.peak"): 73400320.0, ("cgroup", "memory.events.oom_kill"): 1.0,
                     ("cgroup", "cpu.stat.usage_usec"): 1500000.0,
                     ("cgroup", "cpu.stat.user_usec"): 1000000.0,
                     ("cgroup", "cpu.stat.system_usec"): 500000.0}
    some = metrics_from(tmp_path, "<job_metrics><cgroup params='memory.peak'/></job_metrics>")
    assert by_name(some.collect(JobFiles(str(job)))) == {("cgroup", "memory.peak"): 73400320.0,
                                                        ("cgroup", "cpu_seconds"): 3.0}
    verbose = metrics_from(tmp_path, "<job_metrics><cgroup verbose='true'/></job_metrics>")
    assert ("cgroup", "cpu.stat.nr_periods") in by_name(verbose.collect(JobFiles(str(job))))


def test_the_runners_usage_stands_in_where_no_cgroup_of_the_jobs_own_spoke():
    cgroup_v1 = [JobMetric("cgroup", "memory.max_usage_in_bytes", 100.0),
                 JobMetric("cgroup", "cpuacct.usage", 2e9), JobMetric("cgroup", "cpu_seconds", 1.0)]
    assert with_usage(cgroup_v1, 999, 5.0) == cgroup_v1[:2]
    both = [JobMetric("cgroup", "memory.max_usage_in_bytes", 100.0),
            JobMetric("cgroup", "memory.peak", 90.0)]
    assert with_usage(both, None, None) == both[:1]  # one peak per job, for the charts
    times = [JobMetric("core", "runtime_seconds", 3.0), JobMetric("cgroup", "cpu_seconds", 1.0)]
    assert with_usage(times, 2048, 2.5) == [times[0], JobMetric("cgroup", "memory.peak", 2048.0),
                                            JobMetric("cgroup", "cpu_seconds", 2.5)]
    assert with_usage(times, None, None) == times
    assert with_usage([], 0, None) == []


# -- shown as Galaxy shows them -----------------------------------------------------------
def test_values_in_galaxys_words():
    assert seconds_to_str(1) == "1 second" and seconds_to_str(0.314) == "0.31 seconds"
    assert seconds_to_str(59.999) == "60 seconds" and seconds_to_str(60) == "1 minute"
    assert seconds_to_str(150) == "2 minutes"
    assert seconds_to_str(3600 + 60) == "1 hour and 1 minute"
    assert seconds_to_str(7325) == "2 hours and 2 minutes"
    assert nice_size(512) == "512 bytes" and nice_size(1536) == "1.5 KB"
    assert nice_size(1.5 * 2 ** 30) == "1.5 GB" and nice_size(2 ** 70) == "1024.0 EB"
    assert parse_int(" 12\n") == 12 and parse_int("1e3") is None and parse_int("-1") is None
    assert parse_decimal("1700000000,25") == 1700000000.25 and parse_decimal("nan") is None
    assert parse_decimal("1.5.5") is None and parse_decimal("") is None


def test_shown_has_galaxys_fields_titles_and_safety(tmp_path):
    metrics = metrics_from(tmp_path, ALL)
    recorded = [JobMetric("core", "galaxy_slots", 2.0), JobMetric("core", "runtime_seconds", 90.5),
                JobMetric("hostname", "hostname", "node1"), JobMetric("env", "HOME", "/root"),
                JobMetric("cgroup", "memory.peak", 1.5 * 2 ** 30),
                JobMetric("cgroup", "cpuacct.usage", 2.5e9), JobMetric("gone", "x", 1.25)]
    everything = [m.as_dict() for m in metrics.shown(recorded, Safety.UNSAFE)]
    assert everything[0] == {"plugin": "core", "name": "galaxy_slots", "raw_value": "2",
                             "value": "2", "title": "Cores Allocated"}
    assert everything[1]["value"] == "1 minute" and everything[1]["raw_value"] == "90.5"
    assert everything[1]["title"] == "Job Runtime (Wall Clock)"
    assert [m["plugin"] for m in everything] == ["core", "core", "cgroup", "cgroup", "hostname",
                                                 "env", "gone"]  # configured order
    assert everything[2]["value"] == "1.5 GB"
    assert everything[2]["title"] == "Max memory usage recorded"
    assert everything[3]["value"] == "2.5 seconds"
    assert everything[-1] == {"plugin": "gone", "name": "x", "raw_value": "1.25", "value": "1.25",
                              "title": "x"}
    owner = {m.plugin for m in metrics.shown(recorded, Safety.SAFE)}
    assert owner == {"core", "cgroup"}
    exposed = {m.plugin for m in metrics.shown(recorded, Safety.POTENTIALLY_SENSITIVE)}
    assert exposed == {"core", "cgroup", "hostname", "gone"}


# -- the store --------------------------------------------------------------------------
def test_the_store_replaces_a_jobs_metrics_in_one_go_while_its_handler_holds_it(store, make_job):
    """Metrics are written with the state change that carries them, under its lease: the
    job's earlier ones replaced, nothing written for an end not recorded."""
    job = store.claim_job(make_job().id, "h", ["default"])
    first = [JobMetric("core", "runtime_seconds", 1.5), JobMetric("hostname", "hostname", "n1"),
             JobMetric("cgroup", "memory.peak", 2.0 ** 40)]
    assert store.transition(job.id, JobState.RUNNING, lease=job.lease, metrics=first)
    assert store.job_metrics(job.id) == [first[0], first[2], first[1]]
    again = [JobMetric("core", "runtime_seconds", 2.0)]
    # another handler's lease: neither the end nor its metrics
    assert store.transition(job.id, JobState.OK, lease=job.lease + 1, metrics=first) is None
    assert store.job_metrics(job.id) == [first[0], first[2], first[1]]
    assert store.transition(job.id, JobState.OK, lease=job.lease, metrics=again)
    assert store.job_metrics(job.id) == again  # replaced, not added to
    # the end recorded twice (a recovering handler): refused, one set
    assert store.transition(job.id, JobState.OK, lease=job.lease, metrics=first) is None
    assert store.job_metrics(job.id) == again
    assert store.job_metrics(make_job().id) == []


# -- the lifecycle ----------------------------------------------------------------------
def test_a_jobs_end_records_its_metrics_with_its_state(local_ctx, new_job):
    """What the job wrote and what its runner saw are written in the transaction that
    records the job's end: a client that sees it ended finds its metrics, and an end that
    is not recorded (another handler holds the job now) writes none."""
    from muleteer.job_files import working_directory
    from mules.lifecycle import Lifecycle, Outcome, Usage

    outcome = Outcome(0, usage=Usage(max_rss_bytes=50 * 2 ** 20, cpu_seconds=1.25))
    jobs = [new_job("noop"), new_job("noop")]
    for job in jobs:
        files = JobFiles(working_directory(local_ctx.config.job_working_directory, job.id))
        files.create()
        write_files(pathlib.Path(files.directory), {
            "__instrument_core_metrics": "epoch_start 1700000000.25\nepoch_end 1700000002.75\n"})
    row = Lifecycle(local_ctx, "test-handler").ended(jobs[0], outcome)
    assert row.state == JobState.OK
    assert by_name(local_ctx.store.job_metrics(jobs[0].id)) == {
        ("core", "start_epoch"): 1700000000.25, ("core", "end_epoch"): 1700000002.75,
        ("core", "runtime_seconds"): 2.5, ("cgroup", "memory.peak"): 50.0 * 2 ** 20,
        ("cgroup", "cpu_seconds"): 1.25}
    lost = jobs[1].with_(lease=jobs[1].lease + 1)  # as a handler that lost it sees it
    assert Lifecycle(local_ctx, "test-handler").ended(lost, outcome) is None
    assert local_ctx.store.job_metrics(jobs[1].id) == []
    assert local_ctx.store.get_job(jobs[1].id).state == JobState.QUEUED
