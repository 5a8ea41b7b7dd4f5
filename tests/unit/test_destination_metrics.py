"""Galaxy's per-destination job metrics in the job configuration: job_conf.xml's
metrics="false", metrics="FILE" and <job_metrics> element, job_conf.yml's `metrics:` (a list
of plugins, or src: default | disabled | path); the same setup in both formats loads equal,
and every mistake names the file, the line and the place."""
import pytest

from muleteer.job_config import JobConfError, load_job_conf
from muleteer.job_files import JobFiles
from muleteer.job_metrics import JobMetrics
from mules.runners import RUNNER_SPECS

OTHER_METRICS = "<job_metrics><core/><hostname/></job_metrics>\n"
PLUGINS = '<plugins><plugin id="local" type="runner" load="galaxy.jobs.runners.local:LocalJobRunner"/></plugins>'
XML = f"""
    <job_conf>
        {PLUGINS}
        <destinations default="plain">
            <destination id="plain" runner="local"/>
            <destination id="quiet" runner="local" metrics="false"/>
            <destination id="from_file" runner="local" metrics="other_metrics.xml"/>
            <destination id="inline" runner="local">
                <job_metrics><core/><cgroup params="memory.peak"/></job_metrics>
            </destination>
        </destinations>
    </job_conf>
"""
YAML = """
    runners:
      local:
        load: galaxy.jobs.runners.local:LocalJobRunner
    execution:
      default: plain
      environments:
        plain:
          runner: local
        quiet:
          runner: local
          metrics: {src: disabled}
        from_file:
          runner: local
          metrics:
            src: path
            path: other_metrics.xml
        inline:
          runner: local
          metrics:
            - type: core
            - type: cgroup
              params: memory.peak
"""


def plugins_of(conf, destination_id):
    metrics = conf.destinations[destination_id].job_metrics
    return None if metrics is None else [(p.type, p.conf.attributes) for p in metrics.plugins]


@pytest.mark.parametrize("name, text", [("job_conf.xml", XML), ("job_conf.yml", YAML)])
def test_each_form_of_a_destinations_metrics(write, name, text):
    write("other_metrics.xml", OTHER_METRICS)
    conf = load_job_conf(write(name, text), RUNNER_SPECS)
    assert plugins_of(conf, "plain") is None  # galaxy.yml's job_metrics_config_file
    assert plugins_of(conf, "quiet") == []
    assert plugins_of(conf, "from_file") == [("core", {}), ("hostname", {})]
    assert plugins_of(conf, "inline") == [("core", {}), ("cgroup", {"params": "memory.peak"})]
    # A metrics key is the destination's, never one of its params.
    assert all("metrics" not in d.params for d in conf.destinations.values())


def test_the_same_setup_in_xml_and_yaml_loads_equal(write):
    write("other_metrics.xml", OTHER_METRICS)
    xml = load_job_conf(write("job_conf.xml", XML), RUNNER_SPECS)
    yaml = load_job_conf(write("job_conf.yml", YAML), RUNNER_SPECS)
    assert xml.destinations == yaml.destinations
    assert xml.destinations["inline"] != xml.destinations["from_file"]


def test_no_plugin_collects_nothing_not_even_the_runners_figures(tmp_path):
    (tmp_path / "__instrument_core_metrics").write_text("runtime 3\n")
    files = JobFiles(str(tmp_path))
    assert JobMetrics.disabled().collect(files, max_rss_bytes=10 ** 6, cpu_seconds=1.0) == []
    assert JobMetrics.default().collect(files, max_rss_bytes=10 ** 6, cpu_seconds=1.0) != []


def xml_with(destination: str) -> str:
    return f"""
        <job_conf>
            {PLUGINS}
            <destinations default="x">
                {destination}
            </destinations>
        </job_conf>
    """


@pytest.mark.parametrize("destination, says", [
    ('<destination id="x" runner="local"><job_metrics><cgroup nonsense="1"/></job_metrics></destination>',
     "line 4: <job_metrics>: <cgroup>: nonsense='1': unknown setting"),
    ('<destination id="x" runner="local"><job_metrics><bogus/></job_metrics></destination>',
     "line 4: <job_metrics>: <bogus>: no such job metrics plugin here"),
    ('<destination id="x" runner="local" metrics="missing.xml"/>',
     "line 4: <destination>: metrics='missing.xml': "),
    ('<destination id="x" runner="local" metrics="false"><job_metrics/></destination>',
     "line 4: <job_metrics>: and metrics= both given"),
    ('<destination id="x" runner="local"><job_metrics/><job_metrics/></destination>',
     "line 4: <job_metrics>: given twice"),
    ('<destination id="x" runner="local"><job_metrics><core><x/></core></job_metrics></destination>',
     "line 4: <x>: <core> takes no child elements"),
])
def test_a_bad_destination_metrics_in_xml_names_file_line_and_place(write, destination, says):
    path = write("job_conf.xml", xml_with(destination))
    with pytest.raises(JobConfError) as caught:
        load_job_conf(path, RUNNER_SPECS)
    assert str(caught.value).startswith(f"{path}, ") and says in str(caught.value), caught.value


@pytest.mark.parametrize("metrics, says", [
    ("\n        - type: cgroup\n          nonsense: 1",
     "line 9: execution.environments.x.metrics[0]: <cgroup>: nonsense=1: unknown setting"),
    ("\n        - core", "line 9: execution.environments.x.metrics[0]: expected a mapping"),
    (" {src: xml_element}", "line 8: execution.environments.x.metrics.src: 'xml_element': "
                            "expected default, disabled, path"),
    (" {src: path}", "line 8: execution.environments.x.metrics: missing required key 'path'"),
    (" {src: disabled, file: x}", "line 8: execution.environments.x.metrics.file: unknown key"),
    (" 7", "line 8: execution.environments.x.metrics: expected a mapping, got int"),
])
def test_a_bad_destination_metrics_in_yaml_names_file_line_and_key_path(write, metrics, says):
    path = write("job_conf.yml", "runners:\n  local:\n    load: galaxy.jobs.runners.local:"
                                 "LocalJobRunner\nexecution:\n  environments:\n    x:\n"
                                 f"      runner: local\n      metrics:{metrics}\n")
    with pytest.raises(JobConfError) as caught:
        load_job_conf(path, RUNNER_SPECS)
    assert str(caught.value).startswith(f"{path}, ") and says in str(caught.value), caught.value


def test_a_dynamic_destinations_own_metrics_are_not_used_and_it_says_so(write, caplog):
    write("job_rules/rules.py", "def pick(job):\n    return 'plain'\n")
    path = write("job_conf.xml", f"""
        <job_conf>
            {PLUGINS}
            <destinations default="plain">
                <destination id="plain" runner="local"/>
                <destination id="chooser" runner="dynamic" metrics="false">
                    <param id="function">pick</param>
                </destination>
            </destinations>
        </job_conf>
    """)
    with caplog.at_level("WARNING"):
        conf = load_job_conf(path, RUNNER_SPECS)
    assert conf.destinations["chooser"].job_metrics is None
    assert any("not used on a dynamic destination" in r.getMessage() for r in caplog.records)
