"""muleteer/job_resources.py: Galaxy's job_resource_params_conf.xml, the job configuration's
`resources` groups, the tool form's "Job Resource Parameters" conditional checked as any
param, and what was asked mapped onto each runner's destination params (numbers only)."""
import os
import textwrap
from dataclasses import replace

import pytest

from muleteer.config import load_config
from muleteer.job_config import JobConfError, load_job_conf, load_job_config
from muleteer.job_resources import (CONDITIONAL, SELECT, ResourceParamsError, Resources,
                                    chosen_resources, destination_changes, load_resource_params,
                                    with_job_resources)
from muleteer.runner_spec import Param as RunnerParam
from muleteer.tools.errors import ParamError
from muleteer.tools.params import check_params
from muleteer.tools.toolbox import load_toolbox
from mules.runners import RUNNER_SPECS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PARAMS = """<parameters>
    <param name="cores" type="integer" label="Cores" min="1" max="8" value=""/>
    <param name="memory" type="float" label="Memory" min="0.5" max="16" value=""/>
    <param name="time" type="integer" label="Hours" min="1" max="48"/>
    <param name="priority" type="select" label="Priority" value="normal">
        <option value="low">Low</option><option value="normal">Normal</option>
    </param>
</parameters>
"""
XML = """<?xml version="1.0"?>
<job_conf>
    <plugins><plugin id="local" type="runner" load="galaxy.jobs.runners.local:LocalJobRunner"/></plugins>
    <destinations default="local"><destination id="local" runner="local"/></destinations>
    <resources default="small">
        <group id="small">cores</group>
        <group id="all">cores,memory,time,priority</group>
        <group id="none"></group>
    </resources>
    <tools>
        <tool id="cat_lines" resources="all"/>
        <tool id="noop" resources="none"/>
    </tools>
</job_conf>
"""
YAML = """
runners:
  local: {load: galaxy.jobs.runners.local:LocalJobRunner}
execution:
  default: local
  environments:
    local: {runner: local}
resources:
  default: small
  groups:
    small: [cores]
    all: cores,memory,time,priority
    none: []
tools:
- {id: cat_lines, resources: all}
- {id: noop, resources: none}
"""


@pytest.fixture
def galaxy(tmp_path):
    """load(job_conf text, name) -> the JobConfig galaxy.yml loads, with PARAMS beside it."""
    (tmp_path / "job_resource_params_conf.xml").write_text(PARAMS)

    def load(text=XML, name="job_conf.xml"):
        (tmp_path / name).write_text(textwrap.dedent(text).lstrip())
        (tmp_path / "galaxy.yml").write_text(f"galaxy:\n  job_config_file: {name}\n")
        return load_job_config(load_config(str(tmp_path / "galaxy.yml")), RUNNER_SPECS)
    return load


def test_the_params_file_as_galaxys_sample_has_it(tmp_path):
    params = load_resource_params(os.path.join(REPO, "job_resource_params_conf.xml.sample")).params
    assert list(params) == ["cores", "memory", "time", "project"]
    assert (params["cores"].min, params["cores"].max, params["cores"].optional) == (1, 16, True)
    missing = load_resource_params(str(tmp_path / "nowhere.xml"))
    assert (missing.params, missing.found) == ({}, False)


@pytest.mark.parametrize("text, expected", [
    ("<params/>", r"line 1: <params>: the root element must be <parameters>"),
    ('<parameters>\n<param name="x" type="data"/></parameters>',
     r"line 2: <param>: param 'x': type 'data' is not a job resource type \(one of integer,"),
    ('<parameters>\n<param name="x" type="integer" min="5" max="2"/></parameters>',
     r"line 2: <param>: param 'x': min 5 is above max 2"),
    ('<parameters>\n<param name="x" type="integer" max="lots"/></parameters>',
     r"line 2: <param>: max='lots' is not a number"),
    ('<parameters>\n<param name="x" type="select"/></parameters>',
     r"line 2: <param>: param 'x': a select needs <option> elements"),
    ('<parameters>\n<param name="x" type="select" value="z"><option value="a"/></param></parameters>',
     r"line 2: <param>: param 'x': value='z' is not one of its options"),
    ('<parameters>\n<param name="__job_resource__select" type="text"/></parameters>',
     r"line 2: <param>: name='__job_resource__select': a name is a letter"),
    ('<parameters><param name="x" type="text"/>\n<param name="x" type="text"/></parameters>',
     r"line 2: <param>: param 'x' is defined twice"),
    ('<parameters><option/></parameters>', r"line 1: <option>: only <param> elements"),
    ("<parameters>", r"line 1: not well-formed XML"),
])
def test_a_bad_params_file_is_named_with_its_line(tmp_path, text, expected):
    path = tmp_path / "job_resource_params_conf.xml"
    path.write_text(text)
    with pytest.raises(ResourceParamsError, match=expected):
        load_resource_params(str(path))


def test_groups_in_xml_and_yaml_are_one_model(galaxy):
    xml, yml = galaxy(), galaxy(YAML, "job_conf.yml")
    assert xml == yml
    assert xml.resource_groups == {"small": ("cores",), "none": (),
                                   "all": ("cores", "memory", "time", "priority")}
    assert [p.name for p in xml.resources_for("cat_lines")] == ["cores", "memory", "time", "priority"]
    assert [p.name for p in xml.resources_for("sort_lines")] == ["cores"]  # the default group
    assert xml.resources_for("noop") == ()


@pytest.mark.parametrize("change, expected", [
    (("<group id=\"small\">cores</group>", "<group id=\"small\">cores,gpus</group>"),
     r"job_conf.xml, line 6: <group id=\"small\">: 'gpus' is not a param of .*"
     r"job_resource_params_conf.xml \(its params: cores, memory, time, priority\)"),
    (("<group id=\"small\">cores</group>", "<group id=\"small\">cores,cores</group>"),
     r"line 6: <group id=\"small\">: 'cores' is named twice"),
    (('resources="none"', 'resources="huge"'),
     r"line 12: <tool>: resources='huge': is not a resources group \(defined: small, all, none\)"),
    (('<resources default="small">', '<resources default="big">'),
     r"line 5: <resources>: default='big': is not a resources group"),
    (("<group id=\"none\"></group>", "<group id=\"none\"/><group id=\"none\"/>"),
     r"line 8: <group>: group id 'none' is defined twice"),
])
def test_a_bad_group_is_named_with_its_line(galaxy, change, expected):
    with pytest.raises(JobConfError, match=expected):
        galaxy(XML.replace(*change))


def test_groups_without_a_params_file_say_so(galaxy, tmp_path):
    os.remove(tmp_path / "job_resource_params_conf.xml")
    with pytest.raises(JobConfError, match=r"line 6: <group id=\"small\">: 'cores': no job resource "
                                           r"params are defined \(.*job_resource_params_conf.xml "
                                           r"does not exist\)"):
        galaxy()
    with pytest.raises(JobConfError, match=r"job_conf.yml, line 10: resources.groups.small: 'cores'"):
        galaxy(YAML, "job_conf.yml")
    (tmp_path / "job_resource_params_conf.xml").write_text("<parameters><param/></parameters>")
    with pytest.raises(JobConfError, match=r"job_resource_params_conf.xml, line 1: <param>: name=''"):
        galaxy()


# -- the form's conditional -----------------------------------------------------------------
@pytest.fixture
def tools(galaxy):
    return with_job_resources(load_toolbox(os.path.join(REPO, "tools")), galaxy())


def test_tools_with_a_group_get_the_conditional_last(tools):
    cat_lines = tools.get("cat_lines")
    group = cat_lines.inputs[-1]
    assert group.name == CONDITIONAL and group.test.name == SELECT
    assert group.test.label == "Job Resource Parameters"
    assert [(o.value, o.label) for o in group.test.options] == [
        ("no", "Use default job resource parameters"), ("yes", "Specify job resource parameters")]
    assert [i.name for i in group.when("yes").inputs] == ["cores", "memory", "time", "priority"]
    assert group.when("no").inputs == ()
    assert [i.name for i in tools.get("sort_lines").inputs[-1].when("yes").inputs] == ["cores"]
    assert all(i.name != CONDITIONAL for i in tools.get("noop").inputs)
    assert with_job_resources(tools, load_job_conf(os.path.join(REPO, "job_conf.xml"),
                                                   RUNNER_SPECS)) is tools


def test_the_choices_are_checked_as_any_param(tools):
    tool = tools.get("cat_lines")
    assert check_params(tool, {"text": "a"})[CONDITIONAL] == {SELECT: "no"}
    values = check_params(tool, {"text": "a", f"{CONDITIONAL}|{SELECT}": "yes",
                                 f"{CONDITIONAL}|cores": "4", f"{CONDITIONAL}|memory": 2})
    assert values[CONDITIONAL] == {SELECT: "yes", "cores": 4, "memory": 2.0, "time": None,
                                   "priority": "normal"}
    assert chosen_resources(values) == {"cores": 4, "memory": 2.0, "priority": "normal"}
    assert chosen_resources(check_params(tool, {"text": "a"})) == {}
    for sent, field in (({"cores": 9}, "cores"), ({"memory": "lots"}, "memory"),
                        ({"cores": "2 --wrap=x"}, "cores"), ({"priority": "top"}, "priority")):
        with pytest.raises(ParamError) as caught:
            check_params(tool, {"text": "a", CONDITIONAL: {SELECT: "yes", **sent}})
        assert caught.value.field == f"params.{CONDITIONAL}|{field}"


# -- onto destinations ----------------------------------------------------------------------------
def test_only_positive_finite_numbers_are_resources():
    assert Resources.of({"cores": 4, "memory": 1.5, "time": 2}) == Resources(4, 1536, 7200)
    assert Resources.of({"processors": 2, "walltime": 0.5}) == Resources(cores=2, walltime=1800)
    for bad in ({"cores": True}, {"cores": -1}, {"cores": 2.5}, {"cores": "2"},
                {"memory": float("nan")}, {"memory": float("inf")}, {"time": 1e300},
                {"cores": 10 ** 12}, {"project": 3}):
        assert not Resources.of(bad), bad


def test_slurm_options_replace_the_destinations_own():
    native = "-p debug -c 1 --mem-per-cpu=100 -t 10 --time=00:05:00 --export=NONE"
    changes, unmapped = destination_changes("slurm", RUNNER_SPECS["slurm"],
                                            {"nativeSpecification": native},
                                            Resources(cores=4, memory_mb=2048, walltime=90061))
    assert unmapped == []
    assert changes == {"nativeSpecification": "-p debug --export=NONE --cpus-per-task=4 "
                                              "--mem=2048 --time=25:01:01"}
    assert destination_changes("slurm", RUNNER_SPECS["slurm"], {}, Resources(cores=2))[0] == \
        {"nativeSpecification": "--cpus-per-task=2"}
    assert destination_changes("slurm", RUNNER_SPECS["slurm"], {"nativeSpecification": "-c2"},
                               Resources()) == ({}, [])


def test_pbs_resources_merge_into_the_one_resource_list():
    params = {"Resource_List": "nodes=1:ppn=1,walltime=00:10:00,file=1gb", "queue": "debug"}
    changes, unmapped = destination_changes("pbs", RUNNER_SPECS["pbs"], params,
                                            Resources(cores=2, memory_mb=512, walltime=3600))
    assert (changes, unmapped) == ({"Resource_List": "nodes=1:ppn=2,walltime=1:00:00,file=1gb,"
                                                     "mem=512mb"}, [])


def test_grid_engine_slots_need_a_parallel_environment():
    spec = RUNNER_SPECS["drmaa"]
    with_pe = {"nativeSpecification": "-q all.q -pe smp 1 -l h_vmem=1G,arch=amd64 -l h_rt=0:10:0"}
    changes, unmapped = destination_changes("drmaa", spec, with_pe,
                                            Resources(cores=4, memory_mb=4096, walltime=7200))
    assert unmapped == []
    assert changes == {"nativeSpecification": "-q all.q -pe smp 4 -l arch=amd64 "
                                              "-l h_vmem=1024M,h_rt=2:00:00"}
    changes, unmapped = destination_changes("drmaa", spec, {"nativeSpecification": "-q all.q"},
                                            Resources(cores=4, memory_mb=1000))
    assert (changes, unmapped) == ({"nativeSpecification": "-q all.q -l h_vmem=1000M"}, ["cores"])


def test_the_local_runner_takes_what_its_spec_declares():
    resources = Resources(cores=3, memory_mb=1536, walltime=5400)
    spec = RUNNER_SPECS["local"]
    changes, unmapped = destination_changes("local", spec, {"local_slots": 1}, resources)
    assert changes["local_slots"] == 3
    declared = {p.name for p in spec.destination_params}
    assert set(unmapped) == {n for n, p in (("memory", "local_memory_limit"),
                                            ("walltime", "local_walltime")) if p not in declared}
    # As text where the runner reads text (512M, HH:MM:SS), as numbers where it reads numbers.
    texts = replace(spec, destination_params=(RunnerParam("local_memory_limit", str),
                                              RunnerParam("local_walltime", str)))
    assert destination_changes("local", texts, {}, resources) == (
        {"local_memory_limit": "1536M", "local_walltime": "1:30:00"}, ["cores"])
    numbers = replace(spec, destination_params=(RunnerParam("local_memory_limit", int),
                                                RunnerParam("local_walltime", int)))
    assert destination_changes("local", numbers, {}, resources)[0] == {
        "local_memory_limit": 1536, "local_walltime": 5400}
    assert destination_changes("condor", None, {}, resources) == ({}, ["cores", "memory",
                                                                       "walltime"])
