"""muleteer/job_config: job_conf.xml, Galaxy's schema, its legacy runner URLs and macros."""
import os

import pytest

from muleteer.handler_names import mule_number, web_number
from muleteer.job_config import (JobConfError, destination_from_url, load_job_conf as _load,
                                 parse_size, parse_walltime)
from mules.runners import RUNNER_SPECS


def load_job_conf(path):
    return _load(path, RUNNER_SPECS)

FULL = """
<?xml version="1.0"?>
<job_conf>
    <plugins workers="3">
        <plugin id="local" type="runner" load="galaxy.jobs.runners.local:LocalJobRunner"/>
        <plugin id="drmaa" type="runner" load="galaxy.jobs.runners.drmaa:DRMAAJobRunner" workers="2">
            <param id="drmaa_library_path">/usr/lib/slurm-drmaa/lib/libdrmaa.so</param>
        </plugin>
        <plugin id="slurm" type="runner" load="galaxy.jobs.runners.slurm:SlurmJobRunner"/>
    </plugins>
    <handlers default="handlers" assign_with="db-skip-locked">
        <handler id="main.job-handlers.1" tags="handlers"/>
        <handler id="main.job-handlers.2" tags="handlers, special"/>
        <handler id="main.job-handlers.3"/>
    </handlers>
    <destinations default="local_dest">
        <destination id="local_dest" runner="local" tags="small">
            <env id="LC_ALL">C</env>
            <env file="/etc/profile.d/site.sh"/>
            <env exec="module load samtools"/>
            <env id="EMPTY"/>
        </destination>
        <destination id="cluster" runner="slurm" tags="big,hpc">
            <param id="nativeSpecification">--time=01:00:00 --mem=1G</param>
            <resubmit condition="walltime_reached" destination="cluster_long"/>
            <resubmit condition="memory_limit_reached and attempt &lt; 3" destination="cluster_long"
                      handler="main.job-handlers.3" delay="30"/>
        </destination>
        <destination id="cluster_long" runner="drmaa">
            <param id="nativeSpecification">-l h_rt=48:00:00</param>
        </destination>
        <destination id="legacy_local" url="local:///"/>
        <destination id="legacy_pbs" url="pbs://server/queue/-l nodes=1:ppn=2/"/>
        <destination id="legacy_drmaa" url="drmaa://-q all.q/">
            <param id="extra">1</param>
        </destination>
    </destinations>
    <tools>
        <tool id="checksum" handler="main.job-handlers.2"/>
        <tool id="sort_lines" handler="special" destination="hpc"/>
        <tool id="word_count" destination="cluster"/>
        <tool id="cat_lines" destination="local:///"/>
        <tool id="fail" destination="pbs://server/queue/-l nodes=1:ppn=2/"/>
        <tool id="noop" handler="job-handlers" destination="drmaa://-q all.q/"/>
    </tools>
    <limits>
        <limit type="registered_user_concurrent_jobs">4</limit>
        <limit type="anonymous_user_concurrent_jobs">1</limit>
        <limit type="destination_user_concurrent_jobs" id="cluster">2</limit>
        <limit type="destination_total_concurrent_jobs" tag="hpc">10</limit>
        <limit type="walltime">24:00:00</limit>
        <limit type="output_size">10GB</limit>
    </limits>
</job_conf>
"""


@pytest.fixture
def full(write):
    return load_job_conf(write("job_conf.xml", FULL))


def test_the_repositorys_job_conf_loads(repo):
    path = os.path.join(repo, "job_conf.xml")
    conf = load_job_conf(path)
    assert conf.path == path
    assert set(conf.plugins) == {"local"}
    assert conf.plugins["local"].type == "local"
    assert conf.default_destination == "local"
    assert conf.destination_for("cat_lines").runner == "local"
    assert conf.handlers == {} and conf.default_handler is None
    assert conf.handler_for("checksum") == "main.job-handlers.2"
    assert conf.handler_for("cat_lines") is None  # the deployment's default: the farm


def test_plugins(full):
    assert set(full.plugins) == {"local", "drmaa", "slurm", "pbs"}  # pbs: from legacy_pbs's URL
    assert full.plugins["local"].type == "local"
    assert full.plugins["local"].workers == 3  # <plugins workers="3">
    assert full.plugins["drmaa"].workers == 2
    assert full.plugins["drmaa"].params == {
        "drmaa_library_path": "/usr/lib/slurm-drmaa/lib/libdrmaa.so"}
    assert full.plugins["slurm"].type == "slurm"
    assert full.plugins["pbs"].type == "pbs"


def test_handlers(full):
    assert list(full.handlers) == ["main.job-handlers.1", "main.job-handlers.2",
                                   "main.job-handlers.3"]
    assert full.default_handler == "handlers"
    assert full.assign_with == "db-skip-locked"
    assert full.handler_tags("main.job-handlers.2") == ("handlers", "special")
    assert full.handler_tags("main.job-handlers.3") == ()
    assert full.handler_tags("no-such-handler") == ()


def test_destinations(full):
    assert full.default_destination == "local_dest"
    local = full.destinations["local_dest"]
    assert local.runner == "local" and local.tags == ("small",)
    assert local.env == [{"name": "LC_ALL", "value": "C"}, {"file": "/etc/profile.d/site.sh"},
                         {"exec": "module load samtools"}, {"name": "EMPTY", "value": ""}]
    cluster = full.destinations["cluster"]
    assert cluster.runner == "slurm"
    assert cluster.tags == ("big", "hpc")
    assert cluster.params == {"nativeSpecification": "--time=01:00:00 --mem=1G"}
    assert cluster.resubmit == [
        {"condition": "walltime_reached", "destination": "cluster_long", "handler": None,
         "delay": 0.0},
        {"condition": "memory_limit_reached and attempt < 3", "destination": "cluster_long",
         "handler": "main.job-handlers.3", "delay": 30.0},
    ]
    assert full.destinations["cluster_long"].runner == "drmaa"


def test_legacy_urls_as_destinations(full):
    local = full.destinations["legacy_local"]
    assert (local.runner, local.params) == ("local", {})
    pbs = full.destinations["legacy_pbs"]
    assert pbs.runner == "pbs"
    assert pbs.params == {"server": "server", "queue": "queue",
                          "nativeSpecification": "-l nodes=1:ppn=2"}
    drmaa = full.destinations["legacy_drmaa"]
    assert drmaa.runner == "drmaa"
    assert drmaa.params == {"nativeSpecification": "-q all.q", "extra": "1"}


def test_legacy_urls_as_tool_destinations(full):
    assert full.destination_for("cat_lines").runner == "local"
    fail = full.destination_for("fail")
    assert fail.id == "pbs://server/queue/-l nodes=1:ppn=2/"
    assert fail.runner == "pbs"
    assert fail.params == {"server": "server", "queue": "queue",
                           "nativeSpecification": "-l nodes=1:ppn=2"}
    noop = full.destination_for("noop")
    assert (noop.runner, noop.params) == ("drmaa", {"nativeSpecification": "-q all.q"})
    # A job records the destination id; the handler resolves it again later.
    assert full.resolve_destination(fail.id) is fail


def test_tool_mapping(full):
    assert full.tools["sort_lines"].handler == "special"
    assert full.handler_for("checksum") == "main.job-handlers.2"
    assert full.handler_for("sort_lines") == "special"
    assert full.handler_for("noop") == "job-handlers"
    assert full.handler_for("word_count") == "handlers"  # mapped, but no handler=: default
    assert full.handler_for("not_mapped") == "handlers"
    assert full.destination_for("sort_lines").id == "cluster"  # by tag hpc
    assert full.destination_for("word_count").id == "cluster"
    assert full.destination_for("checksum").id == "local_dest"  # mapped, but no destination=
    assert full.destination_for("not_mapped").id == "local_dest"
    with pytest.raises(KeyError):
        full.resolve_destination("nowhere")


def test_limits(full):
    limits = [(l.type, l.value, l.id, l.tag) for l in full.limits]
    assert limits == [
        ("registered_user_concurrent_jobs", 4, None, None),
        ("anonymous_user_concurrent_jobs", 1, None, None),
        ("destination_user_concurrent_jobs", 2, "cluster", None),
        ("destination_total_concurrent_jobs", 10, None, "hpc"),
        ("walltime", 24 * 3600, None, None),
        ("output_size", 10 * 1024 ** 3, None, None),
    ]


def test_minimal_file_gets_a_local_default(write):
    conf = load_job_conf(write("job_conf.xml", "<job_conf/>"))
    assert set(conf.plugins) == {"local"} and conf.plugins["local"].workers == 4
    assert conf.default_destination == "local"
    assert conf.destination_for("anything").runner == "local"
    assert conf.handler_for("anything") is None
    assert conf.tools == {} and conf.limits == [] and conf.assign_with is None


def test_single_handler_and_destination_are_the_defaults(write):
    conf = load_job_conf(write("job_conf.xml", """
        <job_conf>
            <handlers><handler id="main.job-handlers.1"/></handlers>
            <destinations><destination id="only" url="local:///"/></destinations>
        </job_conf>
    """))
    assert conf.handler_for("x") == "main.job-handlers.1"
    assert conf.destination_for("x").id == "only"


def test_handler_refs_may_name_mules_web_workers_and_sub_farms(write):
    conf = load_job_conf(write("job_conf.xml", """
        <job_conf>
            <handlers default="main.job-handlers.2"><handler id="main.job-handlers.1"/></handlers>
            <tools>
                <tool id="a" handler="main.web.1"/>
                <tool id="b" handler="job-handlers.gpu"/>
            </tools>
        </job_conf>
    """))
    assert conf.handler_for("x") == "main.job-handlers.2"
    assert conf.handler_for("a") == "main.web.1"
    assert conf.handler_for("b") == "job-handlers.gpu"


def test_legacy_url_as_tool_destination_gets_its_runner_plugin(write):
    # Like <destination url=...>, a URL as a tool's destination brings its runner plugin;
    # without it every job of the tool would fail with "runner 'pbs' is not a plugin".
    conf = load_job_conf(write("job_conf.xml", """
        <job_conf>
            <tools><tool id="t" destination="pbs://server/queue/-l nodes=1:ppn=2/"/></tools>
        </job_conf>
    """))
    destination = conf.destination_for("t")
    assert destination.runner == "pbs"
    assert conf.plugins["pbs"].type == "pbs"


@pytest.mark.parametrize("url, runner, params", [
    ("local:///", "local", {}),
    ("local://", "local", {}),
    ("pbs://server/queue/-l nodes=1:ppn=2/", "pbs",
     {"server": "server", "queue": "queue", "nativeSpecification": "-l nodes=1:ppn=2"}),
    ("pbs://server/", "pbs", {"server": "server"}),
    ("pbs:///queue/", "pbs", {"queue": "queue"}),
    ("pbs://s/q/-l walltime=1:00:00 -o /dev/null/", "pbs",
     {"server": "s", "queue": "q", "nativeSpecification": "-l walltime=1:00:00 -o /dev/null"}),
    ("drmaa://-q all.q/", "drmaa", {"nativeSpecification": "-q all.q"}),
    ("drmaa:///", "drmaa", {}),
    ("slurm://--time=10/", "slurm", {"nativeSpecification": "--time=10"}),
])
def test_destination_from_url(url, runner, params):
    destination = destination_from_url("d", url, RUNNER_SPECS)
    assert (destination.id, destination.runner, destination.params) == ("d", runner, params)


@pytest.mark.parametrize("url", ["condor://x/", "local", "", "LOCAL:///"])
def test_destination_from_bad_url(url):
    with pytest.raises(ValueError, match="runner URL"):
        destination_from_url("d", url, RUNNER_SPECS)


@pytest.mark.parametrize("text, seconds", [
    ("24:00:00", 86400), ("1:30:15", 5415), ("90:00", 5400), ("45", 45), (" 00:00:01 ", 1)])
def test_parse_walltime(text, seconds):
    assert parse_walltime(text) == seconds


@pytest.mark.parametrize("text", ["", "1 day", "1:2:3:4", "-1", "1.5", "a:b"])
def test_parse_walltime_rejects(text):
    with pytest.raises(ValueError):
        parse_walltime(text)


@pytest.mark.parametrize("text, size", [
    ("10GB", 10 * 1024 ** 3), ("500MB", 500 * 1024 ** 2), ("1.5G", int(1.5 * 1024 ** 3)),
    ("2 tb", 2 * 1024 ** 4), ("100", 100), ("64K", 65536), ("7B", 7)])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "10 PB", "-5MB", "GB"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_mule_and_web_numbers():
    assert mule_number("main.job-handlers.3") == 3
    assert mule_number("main.web.3") is None
    assert mule_number(None) is None
    assert web_number("main.web.2") == 2
    assert web_number("main.job-handlers.2") is None


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.xml")
    with pytest.raises(JobConfError, match="cannot read") as info:
        load_job_conf(path)
    assert path in str(info.value)


# Each case: the file, the line at fault, and what the message must name there.
INVALID = {
    "unknown runner": ("""
        <job_conf>
            <plugins>
                <plugin id="condor" type="runner" load="galaxy.jobs.runners.condor:CondorJobRunner"/>
            </plugins>
        </job_conf>
    """, 3, ["<plugin>", "load='galaxy.jobs.runners.condor:CondorJobRunner'", "unknown runner"]),
    "destination runner not a plugin": ("""
        <job_conf>
            <destinations>
                <destination id="x" runner="condor"/>
            </destinations>
        </job_conf>
    """, 3, ["<destination>", "runner='condor'", "not a plugin id"]),
    "plugin type not runner": ("""
        <job_conf>
            <plugins>
                <plugin id="watcher" type="jobs" load="galaxy.jobs.runners.local:LocalJobRunner"/>
            </plugins>
        </job_conf>
    """, 3, ["<plugin>", "type='jobs'"]),
    "missing destination id": ("""
        <job_conf>
            <destinations>
                <destination runner="local"/>
            </destinations>
        </job_conf>
    """, 3, ["<destination>", "missing required attribute 'id'"]),
    "missing plugin id": ("""
        <job_conf>
            <plugins>

                <plugin load="galaxy.jobs.runners.local:LocalJobRunner"/>
            </plugins>
        </job_conf>
    """, 4, ["<plugin>", "missing required attribute 'id'"]),
    "missing tool id": ("""
        <job_conf>
            <tools>
                <tool handler="main.job-handlers.1"/>
            </tools>
        </job_conf>
    """, 3, ["<tool>", "'id'"]),
    "duplicate plugin id": ("""
        <job_conf>
            <plugins>
                <plugin id="local" load="galaxy.jobs.runners.local:LocalJobRunner"/>
                <plugin id="local" load="galaxy.jobs.runners.local:LocalJobRunner"/>
            </plugins>
        </job_conf>
    """, 4, ["<plugin>", "'local'", "defined twice"]),
    "duplicate destination id": ("""
        <job_conf>
            <destinations default="a">
                <destination id="a" runner="local"/>
                <destination id="a" runner="local"/>
            </destinations>
        </job_conf>
    """, 4, ["<destination>", "'a'", "defined twice"]),
    "duplicate handler id": ("""
        <job_conf>
            <handlers>
                <handler id="main.job-handlers.1"/>
                <handler id="main.job-handlers.2"/>
                <handler id="main.job-handlers.1"/>
            </handlers>
        </job_conf>
    """, 5, ["<handler>", "'main.job-handlers.1'", "defined twice"]),
    "default destination missing": ("""
        <job_conf>
            <destinations default="nowhere">
                <destination id="local" runner="local"/>
            </destinations>
        </job_conf>
    """, 2, ["<destinations>", "default='nowhere'"]),
    "several destinations, no default": ("""
        <job_conf>
            <destinations>
                <destination id="a" runner="local"/>
                <destination id="b" runner="local"/>
            </destinations>
        </job_conf>
    """, 2, ["<destinations>", "no default"]),
    "no destination at all": ("""
        <job_conf>

            <destinations/>
        </job_conf>
    """, 3, ["<destinations>", "defines no destination"]),
    "tool to unknown destination": ("""
        <job_conf>
            <destinations>
                <destination id="local" runner="local"/>
            </destinations>
            <tools>
                <tool id="cat_lines" destination="nowhere"/>
            </tools>
        </job_conf>
    """, 6, ["<tool>", "destination='nowhere'"]),
    "tool to unknown handler": ("""
        <job_conf>
            <handlers>
                <handler id="main.job-handlers.1" tags="fast"/>
            </handlers>
            <tools>
                <tool id="cat_lines" handler="slow"/>
            </tools>
        </job_conf>
    """, 6, ["<tool>", "handler='slow'"]),
    "tool to bad legacy URL": ("""
        <job_conf>
            <tools>
                <tool id="cat_lines" destination="condor://pool/"/>
            </tools>
        </job_conf>
    """, 3, ["<tool>", "condor://pool/"]),
    "destination with bad legacy URL": ("""
        <job_conf>
            <destinations>
                <destination id="x" url="condor://pool/"/>
            </destinations>
        </job_conf>
    """, 3, ["<destination>", "condor://pool/"]),
    "zero workers": ("""
        <job_conf>
            <plugins workers="0">
                <plugin id="local" load="galaxy.jobs.runners.local:LocalJobRunner"/>
            </plugins>
        </job_conf>
    """, 2, ["<plugins>", "workers='0'"]),
    "non-numeric workers": ("""
        <job_conf>
            <plugins>
                <plugin id="local" load="galaxy.jobs.runners.local:LocalJobRunner" workers="many"/>
            </plugins>
        </job_conf>
    """, 3, ["<plugin>", "workers='many'"]),
    "negative workers": ("""
        <job_conf>
            <plugins>
                <plugin id="local" load="galaxy.jobs.runners.local:LocalJobRunner" workers="-2"/>
            </plugins>
        </job_conf>
    """, 3, ["<plugin>", "workers='-2'"]),
    "bad concurrent jobs limit": ("""
        <job_conf>
            <limits>
                <limit type="registered_user_concurrent_jobs">many</limit>
            </limits>
        </job_conf>
    """, 3, ["<limit>", "'many'"]),
    "bad walltime limit": ("""
        <job_conf>
            <limits>
                <limit type="walltime">1 day</limit>
            </limits>
        </job_conf>
    """, 3, ["<limit>", "'1 day'"]),
    "bad output_size limit": ("""
        <job_conf>
            <limits>

                <limit type="output_size">lots</limit>
            </limits>
        </job_conf>
    """, 4, ["<limit>", "'lots'"]),
    "unknown limit type": ("""
        <job_conf>
            <limits>
                <limit type="cpu_hours">10</limit>
            </limits>
        </job_conf>
    """, 3, ["<limit>", "type='cpu_hours'"]),
    "limit on unknown destination": ("""
        <job_conf>
            <limits>
                <limit type="destination_total_concurrent_jobs" id="nowhere">1</limit>
            </limits>
        </job_conf>
    """, 3, ["<limit>", "id='nowhere'"]),
    "bad resubmit condition": ("""
        <job_conf>
            <destinations>
                <destination id="local" runner="local">
                    <resubmit condition="walltime_reached or cosmic_rays" destination="local"/>
                </destination>
            </destinations>
        </job_conf>
    """, 4, ["<resubmit>", "condition='walltime_reached or cosmic_rays'", "cosmic_rays"]),
    "resubmit without condition": ("""
        <job_conf>
            <destinations>
                <destination id="local" runner="local">
                    <resubmit destination="local"/>
                </destination>
            </destinations>
        </job_conf>
    """, 4, ["<resubmit>", "'condition'"]),
    "bad resubmit delay": ("""
        <job_conf>
            <destinations>
                <destination id="local" runner="local">
                    <resubmit condition="any_failure" delay="soon"/>
                </destination>
            </destinations>
        </job_conf>
    """, 4, ["<resubmit>", "delay='soon'"]),
    "resubmit to unknown destination": ("""
        <job_conf>
            <destinations default="a">
                <destination id="a" runner="local">
                    <resubmit condition="any_failure" destination="b"/>
                </destination>
                <destination id="c" runner="local"/>
            </destinations>
        </job_conf>
    """, 4, ["<resubmit>", "destination='b'"]),
    "malformed XML": ("""
        <job_conf>
            <plugins>
                <plugin id="local" load="galaxy.jobs.runners.local:LocalJobRunner">
            </plugins>
        </job_conf>
    """, 4, ["not well-formed", "plugin"]),
    "repeated attribute": ("""
        <job_conf>

            <destinations default="a" default="b">
            </destinations>
        </job_conf>
    """, 3, ["not well-formed", "default"]),
    "wrong root": ("""
        <job_config>
            <plugins/>
        </job_config>
    """, 1, ["<job_config>", "root element must be <job_conf>"]),
    "unknown section": ("""
        <job_conf>
            <plugins>
                <plugin id="local" load="galaxy.jobs.runners.local:LocalJobRunner"/>
            </plugins>
            <mystery/>
        </job_conf>
    """, 5, ["<mystery>", "unknown section"]),
    "stray element in plugins": ("""
        <job_conf>
            <plugins>
                <runner id="local"/>
            </plugins>
        </job_conf>
    """, 3, ["<runner>", "<plugin>"]),
    "bad assign_with": ("""
        <job_conf>
            <handlers assign_with="round-robin">
                <handler id="main.job-handlers.1"/>
            </handlers>
        </job_conf>
    """, 2, ["<handlers>", "assign_with='round-robin'"]),
    "unknown default handler": ("""
        <job_conf>
            <handlers default="nobody">
                <handler id="main.job-handlers.1"/>
            </handlers>
        </job_conf>
    """, 2, ["<handlers>", "default='nobody'"]),
    "bad env id": ("""
        <job_conf>
            <destinations>
                <destination id="local" runner="local">
                    <env id="1BAD-NAME">x</env>
                </destination>
            </destinations>
        </job_conf>
    """, 4, ["<env>", "id='1BAD-NAME'"]),
    "env with nothing": ("""
        <job_conf>
            <destinations>
                <destination id="local" runner="local">
                    <env>orphan value</env>
                </destination>
            </destinations>
        </job_conf>
    """, 4, ["<env>", "'id'"]),
    "param without id": ("""
        <job_conf>
            <destinations>
                <destination id="local" runner="local">
                    <param>value</param>
                </destination>
            </destinations>
        </job_conf>
    """, 4, ["<param>", "'id'"]),
}


@pytest.mark.parametrize("text, line, fragments", list(INVALID.values()), ids=list(INVALID))
def test_invalid_file(write, text, line, fragments):
    path = write("job_conf.xml", text)
    with pytest.raises(JobConfError) as info:
        load_job_conf(path)
    message = str(info.value)
    assert message.startswith(f"{path}, line {line}: "), message
    for fragment in fragments:
        assert fragment in message, message


def test_superscript_digit_workers_is_a_job_conf_error(write):
    path = write("job_conf.xml", """
        <job_conf>
            <plugins workers="²">
                <plugin id="local" load="galaxy.jobs.runners.local:LocalJobRunner"/>
            </plugins>
        </job_conf>
    """)
    with pytest.raises(JobConfError, match="line 2"):
        load_job_conf(path)


# -- Galaxy's <macros> ----------------------------------------------------------------------
MACROS = """
<job_conf>
    <macros>
        <import>site_macros.xml</import>
        <token name="@PARTITION@">debug</token>
        <token name="@SLURM_OPTS@">-p @PARTITION@</token>
        <xml name="slurm_destination" tokens="name,cores" token_mem="512">
            <destination id="@NAME@" runner="slurm" tags="hpc">
                <param id="nativeSpecification">@SLURM_OPTS@ -c @CORES@ --mem=@MEM@</param>
                <yield/>
                <yield name="after"/>
            </destination>
        </xml>
        <macro name="lc_all" type="xml"><env id="LC_ALL">C</env></macro>
    </macros>
    <plugins>
        <expand macro="plugins"/>
    </plugins>
    <destinations default="small">
        <expand macro="slurm_destination" name="small" cores="1">
            <expand macro="lc_all"/>
            <token name="after"><resubmit condition="walltime_reached" destination="big"/></token>
        </expand>
        <expand macro="slurm_destination" name="big" cores="8" mem="4096"/>
    </destinations>
</job_conf>
"""
SITE_MACROS = """
<macros>
    <xml name="plugins">
        <plugin id="local" type="runner" load="galaxy.jobs.runners.local:LocalJobRunner"/>
        <plugin id="slurm" type="runner" load="galaxy.jobs.runners.slurm:SlurmJobRunner">
            <param id="submit_retries">2</param>
        </plugin>
    </xml>
</macros>
"""
EXPANDED = """
<job_conf>
    <plugins>
        <plugin id="local" type="runner" load="galaxy.jobs.runners.local:LocalJobRunner"/>
        <plugin id="slurm" type="runner" load="galaxy.jobs.runners.slurm:SlurmJobRunner">
            <param id="submit_retries">2</param>
        </plugin>
    </plugins>
    <destinations default="small">
        <destination id="small" runner="slurm" tags="hpc">
            <param id="nativeSpecification">-p debug -c 1 --mem=512</param>
            <env id="LC_ALL">C</env>
            <resubmit condition="walltime_reached" destination="big"/>
        </destination>
        <destination id="big" runner="slurm" tags="hpc">
            <param id="nativeSpecification">-p debug -c 8 --mem=4096</param>
        </destination>
    </destinations>
</job_conf>
"""


def test_macros_expand_to_the_same_configuration(write):
    write("site_macros.xml", SITE_MACROS)
    conf = load_job_conf(write("job_conf.xml", MACROS))
    assert conf == load_job_conf(write("expanded.xml", EXPANDED))
    small = conf.destinations["small"]
    assert small.params == {"nativeSpecification": "-p debug -c 1 --mem=512"}
    assert small.env == [{"name": "LC_ALL", "value": "C"}]
    assert small.resubmit[0]["destination"] == "big"
    assert conf.plugins["slurm"].params == {"submit_retries": 2}


def test_an_error_in_an_expanded_macro_names_the_line_of_its_definition(write):
    path = write("job_conf.xml", """
        <job_conf>
            <macros>
                <xml name="bad">
                    <destination id="x" runner="condor"/>
                </xml>
            </macros>
            <destinations><expand macro="bad"/></destinations>
        </job_conf>
    """)
    with pytest.raises(JobConfError, match=r"line 4: <destination>: runner='condor'"):
        load_job_conf(path)


MACRO_ERRORS = {
    "unknown macro": ("""
        <job_conf>
            <macros><xml name="a"><plugin id="local"/></xml></macros>
            <plugins><expand macro="b"/></plugins>
        </job_conf>
    """, 3, ["<expand>", "macro='b'", "no such macro (defined: a)"]),
    "cycle": ("""
        <job_conf>
            <macros>
                <xml name="a"><expand macro="b"/></xml>
                <xml name="b"><expand macro="a"/></xml>
            </macros>
            <plugins><expand macro="a"/></plugins>
        </job_conf>
    """, 4, ["<expand>", "a cycle (a -> b -> a)"]),  # the <expand> inside macro b
    "missing parameter": ("""
        <job_conf>
            <macros><xml name="a" tokens="cores"><plugin id="local" workers="@CORES@"/></xml></macros>
            <plugins><expand macro="a"/></plugins>
        </job_conf>
    """, 3, ["<expand>", "missing required parameter 'cores'"]),
    "expand without macros": ("""
        <job_conf>
            <plugins><expand macro="a"/></plugins>
        </job_conf>
    """, 2, ["<expand>", "no <macros>"]),
    "missing import": ("""
        <job_conf>
            <macros><import>nowhere.xml</import></macros>
        </job_conf>
    """, 2, ["<import>", "nowhere.xml: cannot read"]),
    "unnamed macro": ("""
        <job_conf>
            <macros><xml><plugin id="local"/></xml></macros>
        </job_conf>
    """, 2, ["<xml>", "missing required attribute 'name'"]),
    "named yield missing": ("""
        <job_conf>
            <macros><xml name="a"><plugin id="local"/></xml></macros>
            <plugins><expand macro="a"><token name="extra"/></expand></plugins>
        </job_conf>
    """, 3, ["<token>", "no <yield name='extra'/>"]),
}


@pytest.mark.parametrize("text, line, fragments", list(MACRO_ERRORS.values()), ids=list(MACRO_ERRORS))
def test_invalid_macros(write, text, line, fragments):
    path = write("job_conf.xml", text)
    with pytest.raises(JobConfError) as info:
        load_job_conf(path)
    message = str(info.value)
    assert message.startswith(f"{path}, line {line}: "), message
    for fragment in fragments:
        assert fragment in message, message


def test_macro_tokens_with_another_quote(write):
    conf = load_job_conf(write("job_conf.xml", """
        <job_conf>
            <macros>
                <xml name="d" tokens="id" token_quote="%"><destination id="%ID%" runner="local"/></xml>
            </macros>
            <destinations><expand macro="d" id="only"/></destinations>
        </job_conf>
    """))
    assert list(conf.destinations) == ["only"]


@pytest.mark.parametrize("param", [
    '<param id="nativeSpecification">-l nodes=1 -W stagein=in.txt@head:/data/in.txt</param>',
    '<param id="-W">stageout=out.txt@head:/data/out.txt</param>',
    '<param id="-W">umask=022,stagein=in.txt@head:/data/in.txt</param>',
    '<param id="nativeSpecification">-Wstageout=out.txt@head:/data/out.txt</param>',
])
def test_torque_file_staging_is_refused_when_the_file_loads(write, param):
    """Slurm's TORQUE wrappers accept -W stagein/stageout and ignore them (measured: the job
    ran without its file), so a destination asking for them is an error naming it."""
    path = write("job_conf.xml", f"""<job_conf>
        <plugins><plugin id="pbs" type="runner" load="galaxy.jobs.runners.pbs:PBSJobRunner"/></plugins>
        <destinations default="torque">
            <destination id="torque" runner="pbs">{param}</destination>
        </destinations>
    </job_conf>""")
    with pytest.raises(JobConfError) as info:
        load_job_conf(path)
    assert "TORQUE file staging is not supported" in str(info.value)
    assert "torque" in str(info.value) and "line" in str(info.value)


def test_other_torque_attributes_still_load(write):
    path = write("job_conf.xml", """<job_conf>
        <plugins><plugin id="pbs" type="runner" load="galaxy.jobs.runners.pbs:PBSJobRunner"/></plugins>
        <destinations default="torque">
            <destination id="torque" runner="pbs">
                <param id="nativeSpecification">-W depend=afterok:1 -l walltime=00:10:00</param>
                <param id="-W">umask=022</param>
            </destination>
        </destinations>
    </job_conf>""")
    assert load_job_conf(path).destinations["torque"].params["-W"] == "umask=022"
