"""muleteer/job_config: Galaxy 21+'s job_conf.yml, and the same inline as galaxy.yml's
`job_config:`. The same setup in XML and in YAML loads into equal JobConfig objects."""
import os
import textwrap

import pytest

from muleteer.config import ConfigError, load_config
from muleteer.job_config import (Destination, Handler, JobConfError, Limit, Plugin, ToolMapping,
                                 load_job_conf, load_job_config)
from mules.runners import RUNNER_SPECS

XML = """
<?xml version="1.0"?>
<job_conf>
    <plugins workers="3">
        <plugin id="local" type="runner" load="galaxy.jobs.runners.local:LocalJobRunner"/>
        <plugin id="slurm" type="runner" load="galaxy.jobs.runners.slurm:SlurmJobRunner" workers="2">
            <param id="submit_retries">7</param>
            <param id="submit_retry_delay">0.5</param>
            <param id="bin_dir">/opt/slurm/bin</param>
        </plugin>
        <plugin id="sge" type="runner" load="galaxy.jobs.runners.drmaa:DRMAAJobRunner">
            <param id="drmaa_library_path">/usr/lib/libdrmaa.so</param>
        </plugin>
    </plugins>
    <handlers default="handlers" assign_with="db-skip-locked" max_grab="8">
        <handler id="handler0" tags="handlers"/>
        <handler id="handler1" tags="handlers,special"/>
        <handler id="main.job-handlers.1"/>
    </handlers>
    <destinations default="local">
        <destination id="local" runner="local" tags="small">
            <env id="LC_ALL">C</env>
            <env file="/etc/profile.d/site.sh"/>
            <env exec="module load samtools"/>
        </destination>
        <destination id="slurm_big" runner="slurm" tags="big,hpc">
            <param id="nativeSpecification">-p debug -c 2 --mem=512</param>
            <resubmit condition="walltime_reached" destination="sge_long" handler="handler1" delay="30"/>
            <resubmit condition="any_failure and attempt &lt; 3"/>
        </destination>
        <destination id="sge_long" runner="sge">
            <param id="nativeSpecification">-q all.q</param>
        </destination>
        <destination id="torque" url="pbs://server/queue/-l nodes=1/"/>
    </destinations>
    <tools>
        <tool id="checksum" handler="main.job-handlers.1"/>
        <tool id="sort_lines" handler="special" destination="hpc"/>
        <tool id="noop" destination="drmaa://-q all.q/"/>
    </tools>
    <limits>
        <limit type="registered_user_concurrent_jobs">4</limit>
        <limit type="destination_user_concurrent_jobs" id="slurm_big">2</limit>
        <limit type="destination_total_concurrent_jobs" tag="hpc">10</limit>
        <limit type="walltime">24:00:00</limit>
        <limit type="output_size">10GB</limit>
    </limits>
</job_conf>
"""

YAML = """
runners:
  local:
    load: galaxy.jobs.runners.local:LocalJobRunner
    workers: 3
  slurm:
    load: galaxy.jobs.runners.slurm:SlurmJobRunner
    workers: 2
    submit_retries: 7
    submit_retry_delay: 0.5
    bin_dir: /opt/slurm/bin
  sge:
    load: galaxy.jobs.runners.drmaa:DRMAAJobRunner
    workers: 3
    drmaa_library_path: /usr/lib/libdrmaa.so

handling:
  assign: [db-skip-locked]
  max_grab: 8
  default: handlers
  processes:
    handler0:
      tags: [handlers]
    handler1:
      tags: [handlers, special]
    main.job-handlers.1:

execution:
  default: local
  environments:
    local:
      runner: local
      tags: [small]
      env:
        - name: LC_ALL
          value: C
        - file: /etc/profile.d/site.sh
        - execute: module load samtools
    slurm_big:
      runner: slurm
      tags: [big, hpc]
      native_specification: -p debug -c 2 --mem=512   # Galaxy's other name
      resubmit:
        - condition: walltime_reached
          environment: sge_long
          handler: handler1
          delay: 30
        - condition: any_failure and attempt < 3
    sge_long:
      runner: sge
      nativeSpecification: -q all.q
    torque:
      url: pbs://server/queue/-l nodes=1/

tools:
  - id: checksum
    handler: main.job-handlers.1
  - id: sort_lines
    handler: special
    environment: hpc
  - id: noop
    environment: drmaa://-q all.q/

limits:
  - type: registered_user_concurrent_jobs
    value: 4
  - type: environment_user_concurrent_jobs   # Galaxy 21's name of destination_user_...
    id: slurm_big
    value: 2
  - type: environment_total_concurrent_jobs
    tag: hpc
    value: 10
  - type: walltime
    value: 24:00:00       # YAML 1.1 reads this as 86400 (seconds): the same
  - type: output_size
    value: 10GB
"""


def load(path):
    return load_job_conf(path, RUNNER_SPECS)


@pytest.fixture
def yaml_conf(write):
    return load(write("job_conf.yml", YAML))


def test_xml_and_yaml_of_the_same_setup_are_equal(write, yaml_conf):
    xml_conf = load(write("job_conf.xml", XML))
    assert xml_conf == yaml_conf
    assert xml_conf.path.endswith("job_conf.xml") and yaml_conf.path.endswith("job_conf.yml")


def test_runners(yaml_conf):
    assert yaml_conf.plugins == {
        "local": Plugin("local", "local", 3),
        "slurm": Plugin("slurm", "slurm", 2, {"submit_retries": 7, "submit_retry_delay": 0.5,
                                              "bin_dir": "/opt/slurm/bin"}),
        "sge": Plugin("sge", "drmaa", 3, {"drmaa_library_path": "/usr/lib/libdrmaa.so"}),
        "pbs": Plugin("pbs", "pbs", 4),  # from torque's legacy URL, with defaults
        "drmaa": Plugin("drmaa", "drmaa", 4),  # from noop's legacy URL
    }


def test_runner_params_may_be_under_kwds(write):
    conf = load(write("job_conf.yml", """
        runners:
          slurm:
            load: galaxy.jobs.runners.slurm:SlurmJobRunner
            kwds: {submit_retries: 2}
        execution:
          environments:
            s: {runner: slurm}
    """))
    assert conf.plugins["slurm"].params == {"submit_retries": 2}


def test_handling(yaml_conf):
    assert yaml_conf.assign == ("db-skip-locked",) and yaml_conf.assign_with == "db-skip-locked"
    assert yaml_conf.max_grab == 8
    assert yaml_conf.default_handler == "handlers"
    assert yaml_conf.handlers == {"handler0": Handler("handler0", ("handlers",)),
                                  "handler1": Handler("handler1", ("handlers", "special")),
                                  "main.job-handlers.1": Handler("main.job-handlers.1")}


def test_handling_assign_keeps_every_method_in_order(write):
    conf = load(write("job_conf.yml", """
        handling:
          assign: [db-preassign, db-skip-locked]
          handlers: {handler0: {tags: [a]}}    # also accepted for Galaxy's `processes`
    """))
    assert conf.assign == ("db-preassign", "db-skip-locked")
    assert conf.assign_with == "db-preassign"
    assert conf.handler_tags("handler0") == ("a",) and conf.default_handler == "handler0"


def test_environments(yaml_conf):
    local = yaml_conf.destinations["local"]
    assert local == Destination("local", "local", {}, [
        {"name": "LC_ALL", "value": "C"}, {"file": "/etc/profile.d/site.sh"},
        {"exec": "module load samtools"}], [], ("small",))
    big = yaml_conf.destinations["slurm_big"]
    assert big.params == {"nativeSpecification": "-p debug -c 2 --mem=512"}
    assert big.resubmit == [
        {"condition": "walltime_reached", "destination": "sge_long", "handler": "handler1",
         "delay": 30.0},
        {"condition": "any_failure and attempt < 3", "destination": None, "handler": None,
         "delay": 0.0}]
    assert big.tags == ("big", "hpc")
    assert yaml_conf.destinations["torque"] == Destination(
        "torque", "pbs", {"server": "server", "queue": "queue", "nativeSpecification": "-l nodes=1"})
    assert yaml_conf.default_destination == "local"
    assert yaml_conf.destination_for("sort_lines").id == "slurm_big"  # by tag


def test_environments_as_a_list_and_params_under_params(write):
    conf = load(write("job_conf.yml", """
        execution:
          default: a
          environments:
            - id: a
              runner: local
            - id: b
              runner: slurm
              params: {nativeSpecification: -p debug}
    """))
    assert list(conf.destinations) == ["a", "b"]
    assert conf.destinations["b"].params == {"nativeSpecification": "-p debug"}
    assert conf.plugins["slurm"] == Plugin("slurm", "slurm", 4)


def test_tools(yaml_conf):
    assert yaml_conf.tools == {
        "checksum": ToolMapping("checksum", "main.job-handlers.1", None),
        "sort_lines": ToolMapping("sort_lines", "special", "hpc"),
        "noop": ToolMapping("noop", None, "drmaa://-q all.q/")}
    assert yaml_conf.destination_for("noop").params == {"nativeSpecification": "-q all.q"}


def test_limits(yaml_conf):
    assert yaml_conf.limits == [
        Limit("registered_user_concurrent_jobs", 4),
        Limit("destination_user_concurrent_jobs", 2, id="slurm_big"),
        Limit("destination_total_concurrent_jobs", 10, tag="hpc"),
        Limit("walltime", 86400),
        Limit("output_size", 10 * 1024 ** 3)]


def test_quoted_walltime(write):
    conf = load(write("job_conf.yml", "limits:\n  - {type: walltime, value: '1:30:00'}\n"))
    assert conf.limits == [Limit("walltime", 5400)]


def test_an_empty_file_is_the_local_default(write):
    conf = load(write("job_conf.yml", "# nothing yet\n"))
    assert conf == load(write("job_conf.xml", "<job_conf/>"))
    assert conf.destination_for("x") == Destination("local", "local")


def test_format_is_chosen_by_name_then_by_content(write):
    assert load(write("jobs.conf", YAML)) == load(write("other.conf", XML))


def test_unknown_destination_params_are_kept_with_a_warning(write, caplog):
    path = write("job_conf.yml", """
        execution:
          environments:
            singularity_local:
              runner: local
              singularity_enabled: true
    """)
    conf = load(path)
    assert conf.destinations["singularity_local"].params == {"singularity_enabled": True}
    assert len(conf.warnings) == 1
    assert conf.warnings[0].startswith(
        f"{path}, line 5: execution.environments.singularity_local.singularity_enabled: "
        "not a destination param of runner 'local' (known: docker_enabled, ")
    assert conf.warnings[0].endswith(", local_slots, local_memory_limit, local_walltime): "
                                     "no runner reads it")
    assert conf.warnings[0] in caplog.text


# The file, the line at fault, and what the message must name there.
INVALID = {
    "unknown section": ("""
        runners: {}
        mystery: {}
    """, 2, ["mystery: unknown key"]),
    "not a mapping": ("""
        - runners
    """, 1, ["(top level)", "expected a mapping"]),
    "invalid YAML": ("""
        runners:
          local: [
    """, 3, ["not valid YAML"]),
    "key given twice": ("""
        execution:
          environments:
            a: {runner: local}
            a: {runner: local}
    """, 4, ["execution.environments.a", "given twice"]),
    "bad workers": ("""
        runners:
          local:
            load: galaxy.jobs.runners.local:LocalJobRunner
            workers: many
    """, 4, ["runners.local.workers: 'many'", "whole number"]),
    "unknown runner": ("""
        runners:
          condor:
            load: galaxy.jobs.runners.condor:CondorJobRunner
    """, 3, ["runners.condor.load: 'galaxy.jobs.runners.condor:CondorJobRunner'",
             "unknown runner"]),
    "unknown plugin param": ("""
        runners:
          slurm:
            load: galaxy.jobs.runners.slurm:SlurmJobRunner
            submit_retriez: 3
    """, 4, ["runners.slurm.submit_retriez", "unknown plugin param", "submit_retries"]),
    "wrong plugin param type": ("""
        runners:
          slurm:
            load: galaxy.jobs.runners.slurm:SlurmJobRunner
            kwds:
              submit_retries: many
    """, 5, ["runners.slurm.kwds.submit_retries: 'many'", "whole number"]),
    "runner not a plugin": ("""
        execution:
          environments:
            x:
              runner: condor
    """, 4, ["execution.environments.x.runner: 'condor'", "not a plugin id"]),
    "no runner": ("""
        execution:
          environments:
            x:
              nativeSpecification: -p debug
    """, 3, ["execution.environments.x", "missing required key 'runner'"]),
    "destination param of the wrong type": ("""
        execution:
          environments:
            x:
              runner: slurm
              nativeSpecification: [-p, debug]
    """, 5, ["execution.environments.x.nativeSpecification", "expected text, got list"]),
    "unknown resubmit condition": ("""
        execution:
          environments:
            slurm_big:
              runner: slurm
              resubmit:
                - condition: walltime_reached or cosmic_rays
    """, 6, ["execution.environments.slurm_big.resubmit[0].condition", "unknown cosmic_rays"]),
    "resubmit to an unknown environment": ("""
        execution:
          environments:
            a:
              runner: local
              resubmit:
                - condition: any_failure
                  environment: nowhere
    """, 7, ["execution.environments.a.resubmit[0].environment: 'nowhere'", "not a destination"]),
    "resubmit with XML's attribute name": ("""
        execution:
          environments:
            a:
              runner: local
              resubmit:
                - condition: any_failure
                  destination: a
    """, 7, ["resubmit[0].destination: unknown key"]),
    "bad resubmit delay": ("""
        execution:
          environments:
            a:
              runner: local
              resubmit:
                - {condition: any_failure, delay: attempt ** 30}
    """, 6, ["resubmit[0].delay: 'attempt ** 30'", "only names, numbers"]),
    "a resubmit delay of another name": ("""
        execution:
          environments:
            a:
              runner: local
              resubmit:
                - {condition: any_failure, delay: walltime * 30}
    """, 6, ["resubmit[0].delay", "unknown name 'walltime'"]),
    "ready_window_size": ("""
        handling:
          ready_window_size: 50
    """, 2, ["handling.ready_window_size: 50", "not supported"]),
    "db-transaction-isolation": ("""
        handling:
          assign: [db-transaction-isolation]
    """, 2, ["handling.assign[0]: 'db-transaction-isolation'", "db-skip-locked"]),
    "a destination limit naming nothing": ("""
        limits:
          - {type: destination_total_concurrent_jobs, value: 2}
    """, 2, ["limits[0]", "id= or tag="]),
    "a limit tag no destination has": ("""
        limits:
          - {type: destination_user_concurrent_jobs, tag: nowhere, value: 2}
    """, 2, ["limits[0].tag: 'nowhere'", "not the tag of any destination"]),
    "raw env": ("""
        execution:
          environments:
            a:
              runner: local
              env:
                - {name: X, value: "'5'", raw: true}
    """, 6, ["env[0].raw: True", "not supported"]),
    "bad env name": ("""
        execution:
          environments:
            a:
              runner: local
              env:
                - name: 1BAD
                  value: x
    """, 6, ["env[0].name: '1BAD'", "environment variable name"]),
    "several environments, no default": ("""
        execution:
          environments:
            a: {runner: local}
            b: {runner: local}
    """, 1, ["execution", "no default"]),
    "default environment missing": ("""
        execution:
          default: nowhere
          environments:
            a: {runner: local}
    """, 2, ["execution.default: 'nowhere'"]),
    "tool to an unknown environment": ("""
        tools:
          - id: cat_lines
            environment: nowhere
    """, 3, ["tools[0].environment: 'nowhere'", "not a destination id or tag"]),
    "tool without id or class": ("""
        tools:
          - handler: main.job-handlers.1
    """, 2, ["tools[0]", "missing required key 'id'"]),
    "a tool class": ("""
        tools:
          - class: local
            environment: local
    """, 2, ["tools[0].class: 'local'", "map tools by id"]),
    "bad limit value": ("""
        limits:
          - type: registered_user_concurrent_jobs
            value: many
    """, 3, ["limits[0].value", "'many'"]),
    "unknown limit type": ("""
        limits:
          - {type: cpu_hours, value: 1}
    """, 2, ["limits[0].type: 'cpu_hours'"]),
    "bad assign method": ("""
        handling:
          assign:
            - db-skip-locked
            - round-robin
    """, 4, ["handling.assign[1]: 'round-robin'", "expected one of"]),
    "unknown default handler": ("""
        handling:
          default: nobody
          processes:
            handler0: {tags: [a]}
    """, 2, ["handling.default: 'nobody'", "not a handler"]),
    "processes and handlers": ("""
        handling:
          processes: {}
          handlers: {}
    """, 3, ["handling.handlers", "not both"]),
    "handler with an unknown key": ("""
        handling:
          processes:
            handler0:
              plugins: [sge]
    """, 4, ["handling.processes.handler0.plugins: unknown key"]),
}


@pytest.mark.parametrize("text, line, fragments", list(INVALID.values()), ids=list(INVALID))
def test_invalid_file(write, text, line, fragments):
    path = write("job_conf.yml", text)
    with pytest.raises(JobConfError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(f"{path}, line {line}: "), message
    for fragment in fragments:
        assert fragment in message, message


def galaxy_yml(write, job_config: str, **settings) -> str:
    lines = "".join(f"  {k}: {v}\n" for k, v in settings.items())
    return write("galaxy.yml", "uwsgi:\n  mule: mules/handler.py\n  mule: mules/handler.py\n"
                               "galaxy:\n" + lines + "  job_config:\n"
                 + textwrap.indent(textwrap.dedent(YAML if job_config is None else job_config)
                                   .lstrip("\n"), "    "))


def test_inline_job_config_in_galaxy_yml(write):
    config = load_config(galaxy_yml(write, None))
    assert config.job_config["execution"]["default"] == "local"
    conf = load_job_config(config, RUNNER_SPECS)
    assert conf == load(write("job_conf.xml", XML))
    assert conf.path == config.config_file


def test_inline_job_config_errors_name_galaxy_yml_line_and_key_path(write):
    path = galaxy_yml(write, """
        runners:
          slurm:
            load: galaxy.jobs.runners.slurm:SlurmJobRunner
            submit_retries: many
    """)
    with pytest.raises(JobConfError) as info:
        load_job_config(load_config(path), RUNNER_SPECS)
    assert str(info.value).startswith(
        f"{path}, line 9: galaxy.job_config.runners.slurm.submit_retries: 'many': ")


def test_inline_job_config_wins_over_the_default_file(write):
    config = load_config(galaxy_yml(write, "execution: {environments: {inline: {runner: local}}}"))
    assert os.path.basename(config.job_config_file) == "job_conf.xml"  # the default, unused
    assert list(load_job_config(config, RUNNER_SPECS).destinations) == ["inline"]


def test_inline_job_config_and_another_file_are_refused(write):
    path = galaxy_yml(write, "execution: {}", job_config_file="jobs.yml")
    with pytest.raises(ConfigError, match="galaxy.job_config and galaxy.job_config_file"):
        load_config(path)


def test_job_config_file_may_name_a_yaml_file(write):
    jobs = write("job_conf.yml", YAML)
    config = load_config(write("galaxy.yml", f"galaxy:\n  job_config_file: {jobs}\n"))
    assert config.job_config is None
    assert load_job_config(config, RUNNER_SPECS) == load(jobs)
