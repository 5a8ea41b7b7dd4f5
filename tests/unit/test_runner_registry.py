"""The runner registry (mules/runners/__init__.py) and the specs the runners declare
(muleteer/runner_spec.py): the job configuration is checked against them when it loads."""
import ast
import os
import subprocess
import sys

import pytest

from muleteer.job_config import JobConfError, destination_from_url, load_job_conf
from muleteer.runner_spec import Param, RunnerSpec, param_values
from mules.runners import RUNNER_SPECS, RUNNERS, drmaa, local, pbs, slurm
from mules.runners.cluster import CLUSTER_PARAMS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_one_registry_entry_per_runner_module():
    assert list(RUNNERS) == ["local", "pbs", "drmaa", "slurm"]
    for module, cls in ((local, local.LocalRunner), (pbs, pbs.PbsRunner),
                        (drmaa, drmaa.DrmaaRunner), (slurm, slurm.SlurmRunner)):
        assert RUNNERS[module.SPEC.type] == (module.SPEC, cls)
        assert RUNNER_SPECS[module.SPEC.type] is module.SPEC


def test_runner_modules_are_cheap_to_import():
    # The registry imports every runner module; none may load a scheduler library.
    code = "import sys, mules.runners; print(sorted(m for m in ('drmaa', 'flask') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == "[]"


def _imports(directory):
    for root, _, files in os.walk(os.path.join(REPO, directory)):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                for node in ast.walk(ast.parse(open(path).read())):
                    if isinstance(node, ast.Import):
                        yield path, [a.name for a in node.names]
                    elif isinstance(node, ast.ImportFrom) and node.module:
                        yield path, [node.module]


@pytest.mark.parametrize("directory, forbidden", [("muleteer", ("mules", "app", "flask")),
                                                  ("app", ("mules",))])
def test_the_arrows_stay_one_way(directory, forbidden):
    wrong = [(path, names) for path, names in _imports(directory)
             if any(n.split(".")[0] in forbidden for n in names)]
    assert wrong == []


def test_every_cluster_runner_takes_the_cluster_params():
    for spec in (RUNNER_SPECS["slurm"], RUNNER_SPECS["pbs"], RUNNER_SPECS["drmaa"]):
        assert set(CLUSTER_PARAMS) <= set(spec.plugin_params)
    assert RUNNER_SPECS["local"].plugin_params == ()


def test_plugin_values_are_typed_with_defaults():
    values = slurm.SPEC.plugin_values({"submit_retries": "7", "bin_dir": "/opt/slurm/bin"})
    assert values == {"bin_dir": "/opt/slurm/bin", "submit_retries": 7, "submit_retry_delay": 2.0,
                      "vanished_after_checks": 3, "exit_code_check_interval": 0.25}
    assert param_values(CLUSTER_PARAMS, {"submit_retry_delay": 0.5})["submit_retry_delay"] == 0.5


@pytest.mark.parametrize("param, raw, value", [
    (Param("n", int), "3", 3), (Param("n", int), 3, 3), (Param("n", int), " 12 ", 12),
    (Param("x", float), "0.5", 0.5), (Param("x", float), 2, 2.0),
    (Param("s", str), "a b", "a b"), (Param("s", str), 5, "5"),
    (Param("b", bool), "true", True), (Param("b", bool), "no", False), (Param("b", bool), False, False),
])
def test_param_coerce(param, raw, value):
    assert param.coerce(raw) == value and type(param.coerce(raw)) is type(value)


@pytest.mark.parametrize("param, raw", [
    (Param("n", int), "many"), (Param("n", int), "²"), (Param("n", int), 1.5), (Param("n", int), True),
    (Param("n", int, minimum=0), "-1"), (Param("x", float), "nan"), (Param("x", float), "soon"),
    (Param("s", str), ["a"]), (Param("s", str), None), (Param("b", bool), "maybe"),
])
def test_param_coerce_refuses(param, raw):
    with pytest.raises(ValueError, match="expected"):
        param.coerce(raw)


def xml_plugin(write, params: str, plugin="slurm"):
    return write("job_conf.xml", f"""
        <job_conf>
            <plugins>
                <plugin id="{plugin}" type="runner" load="galaxy.jobs.runners.{plugin}:X">
                    {params}
                </plugin>
            </plugins>
            <destinations><destination id="d" runner="{plugin}"/></destinations>
        </job_conf>
    """)


def test_xml_plugin_params_are_typed_at_load(write):
    conf = load_job_conf(xml_plugin(write, '<param id="submit_retries">3</param>'
                                           '<param id="exit_code_check_interval">0</param>'),
                         RUNNER_SPECS)
    assert conf.plugins["slurm"].params == {"submit_retries": 3, "exit_code_check_interval": 0.0}


@pytest.mark.parametrize("params, fragments", [
    ('<param id="submit_retries">many</param>',
     ['<param id="submit_retries">', "'many'", "expected a whole number"]),
    ('<param id="submit_retry_delay">-1</param>',
     ['<param id="submit_retry_delay">', "'-1'", "at least 0"]),
    ('<param id="submit_retriez">3</param>',
     ['<param id="submit_retriez">', "unknown plugin param of runner 'slurm'", "submit_retries"]),
    ('<param id="drmaa_library_path">/x.so</param>',
     ['<param id="drmaa_library_path">', "unknown plugin param", "bin_dir"]),
])
def test_a_bad_plugin_param_names_file_line_and_param(write, params, fragments):
    path = xml_plugin(write, params)
    with pytest.raises(JobConfError) as info:
        load_job_conf(path, RUNNER_SPECS)
    message = str(info.value)
    assert message.startswith(f"{path}, line 4: "), message
    for fragment in fragments:
        assert fragment in message, message


def test_local_takes_no_plugin_params(write):
    path = xml_plugin(write, '<param id="bin_dir">/x</param>', plugin="local")
    with pytest.raises(JobConfError, match=r"line 4: <param id=\"bin_dir\">: unknown plugin param "
                                           r"of runner 'local' \(known: none\)"):
        load_job_conf(path, RUNNER_SPECS)


def test_destination_params_per_runner(write):
    path = write("job_conf.xml", """
        <job_conf>
            <destinations default="torque">
                <destination id="torque" runner="pbs">
                    <param id="Resource_List">nodes=1</param>
                    <param id="-W">x=1</param>
                    <param id="native_specification">-V</param>
                    <param id="singularity_enabled">true</param>
                </destination>
            </destinations>
        </job_conf>
    """)
    conf = load_job_conf(path, RUNNER_SPECS)
    assert conf.destinations["torque"].params == {
        "Resource_List": "nodes=1", "-W": "x=1", "nativeSpecification": "-V",
        "singularity_enabled": "true"}
    known = ", ".join([p.name for p in RUNNER_SPECS["pbs"].destination_params] + ["-*"])
    assert "Resource_List, queue, destination, server, nativeSpecification" in known
    assert conf.warnings == [
        f'{path}, line 7: <param id="singularity_enabled">: not a destination param of runner '
        f"'pbs' (known: {known}): no runner reads it"]


def test_a_param_given_under_both_names_is_refused(write):
    path = write("job_conf.xml", """
        <job_conf>
            <destinations default="s">
                <destination id="s" runner="slurm">
                    <param id="nativeSpecification">-p a</param>
                    <param id="native_specification">-p b</param>
                </destination>
            </destinations>
        </job_conf>
    """)
    with pytest.raises(JobConfError, match="line 5: <param id=\"native_specification\">: "
                                           "'nativeSpecification' is given twice"):
        load_job_conf(path, RUNNER_SPECS)


def test_legacy_urls_come_from_the_specs():
    specs = {**RUNNER_SPECS, "fake": RunnerSpec("fake", url_form=("cluster", "nativeSpecification"),
                                                destination_params=(Param("cluster", str),
                                                                    Param("nativeSpecification", str)))}
    assert destination_from_url("d", "fake://c1/-x 1/y/", specs).params == {
        "cluster": "c1", "nativeSpecification": "-x 1/y"}
    no_url = {"fake": RunnerSpec("fake")}
    with pytest.raises(ValueError, match="expected one of $"):
        destination_from_url("d", "fake://x/", no_url)
    with pytest.raises(ValueError, match="takes no options"):
        destination_from_url("d", "local:///x/", RUNNER_SPECS)


def test_a_new_runner_is_its_spec(write):
    """What the registry lists is what a job configuration may name, nothing else."""
    spec = RunnerSpec("htcondor", plugin_params=(Param("pool", str, ""),),
                      destination_params=(Param("requirements", str, ""),))
    path = write("job_conf.yml", """
        runners:
          condor: {load: galaxy.jobs.runners.htcondor:HTCondorJobRunner, pool: central}
        execution:
          environments:
            c: {runner: condor, requirements: Memory > 1024}
    """)
    conf = load_job_conf(path, {**RUNNER_SPECS, "htcondor": spec})
    assert conf.plugins["condor"].type == "htcondor"
    assert conf.plugins["condor"].params == {"pool": "central"}
    assert conf.destinations["c"].params == {"requirements": "Memory > 1024"}
    with pytest.raises(JobConfError, match="unknown runner"):
        load_job_conf(path, RUNNER_SPECS)


def check(config):
    return subprocess.run([sys.executable, "-m", "check", str(config)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_the_configuration_check_uses_the_registry(tmp_path):
    jobs = tmp_path / "job_conf.yml"
    jobs.write_text("runners:\n  slurm:\n    load: galaxy.jobs.runners.slurm:SlurmJobRunner\n"
                    "    submit_retries: many\n")
    config = tmp_path / "galaxy.yml"
    config.write_text(f"galaxy:\n  job_config_file: {jobs}\n  tool_path: {REPO}/tools\n")
    result = check(config)
    assert result.returncode == 1
    assert f"{jobs}, line 4: runners.slurm.submit_retries: 'many'" in result.stderr
    jobs.write_text("execution:\n  environments:\n    s: {runner: slurm}\n")
    result = check(config)
    assert result.returncode == 0, result.stderr
    assert "1 destinations (default s)" in result.stdout
