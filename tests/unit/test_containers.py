"""muleteer/containers.py and mules/job_command.py's container part: which image a tool
gets, its volumes, the `docker run` argv and the shell lines that run it (run under bash
with a fake container command that records its argv), and the job configuration's checks
of the container params."""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from types import SimpleNamespace

import pytest

from muleteer import containers
from muleteer.containers import (ContainerError, ContainerRun, ContainerSettings, JobPaths,
                                 Volume, check_image, parse_volumes, tool_image, volumes)
from muleteer.job_config import JobConfError, load_job_conf
from muleteer.job_files import JobFiles
from muleteer.tools.model import Container, Output, Requirement, Tool
from mules import job_command
from mules.job_command import JobCommand, JobLayout, JobSetupError
from mules.runners import RUNNER_SPECS

IMAGE = "localhost/muleteer-hello:1"
PATHS = JobPaths("/jobs/000/7", tool_directory="/tools/hello",
                 default_file_path="/data/files", galaxy_root="/srv/muleteer")


# -- images -------------------------------------------------------------------------------
@pytest.mark.parametrize("reference", [
    "debian", "debian:bookworm", "localhost/muleteer-hello:1",
    "quay.io/biocontainers/samtools:1.17--h00cdaf9_0", "localhost:5000/a/b_c.d:v1.2-3",
    "busybox@sha256:" + "a" * 64, "registry.example.org/x/y:latest@sha256:" + "0" * 64])
def test_plain_image_references_are_accepted(reference):
    assert check_image(reference) == reference


@pytest.mark.parametrize("reference", [
    "", "--privileged", "-v", "debian bookworm", "debian;id", "$(id)", "`id`", "Debian",
    "debian:bookworm\nid", "debian:", "/debian", "debian:-x", "a//b", "debian@sha256:xyz",
    "debian:bookworm'"])
def test_anything_else_is_refused_as_an_image(reference):
    with pytest.raises(ContainerError, match="not a plain image reference"):
        check_image(reference)


def test_galaxys_order_override_then_the_tools_own_then_the_default():
    own = (Container("singularity", "/images/x.sif"), Container("docker", "own:1"),
           Container("docker", "second:1"))
    enabled = ContainerSettings(enabled=True, default_container_id="default:1")
    assert tool_image(own, enabled) == "own:1"  # the first docker one; singularity ignored
    assert tool_image((), enabled) == "default:1"
    assert tool_image(own[:1], enabled) == "default:1"
    override = ContainerSettings(enabled=True, container_id_override="override:1",
                                 default_container_id="default:1")
    assert tool_image(own, override) == "override:1"
    assert tool_image(own, ContainerSettings(enabled=False, default_container_id="d:1")) is None
    assert tool_image((), ContainerSettings(enabled=True)) is None
    with pytest.raises(ContainerError, match="not a plain image reference"):
        tool_image((Container("docker", "x; rm -rf /"),), enabled)


# -- volumes ------------------------------------------------------------------------------
def test_volume_specs_as_galaxy_reads_them():
    specs = parse_volumes("/a, /b:ro , /c:/d, /e:/f:default_ro, $tool_directory:z,,")
    assert [(s.source, s.target, s.mode) for s in specs] == [
        ("/a", "/a", "rw"), ("/b", "/b", "ro"), ("/c", "/d", "rw"),
        ("/e", "/f", "default_ro"), ("$tool_directory", "$tool_directory", "z")]


@pytest.mark.parametrize("text, message", [
    ("/a:/b:ro:x", "expected SOURCE[:TARGET][:MODE]"),
    ("/a:/b:rx", "mode 'rx' is not one of"),
    ("$tool_data_path:ro", "unknown variable $tool_data_path"),
    ("${nope}/x:/x", "unknown variable $nope"),
    ("/a\n/b", "newline"),
    ("$defaults:ro", "unknown variable $defaults"),
    ("/a::ro", "an empty path"),
])
def test_bad_volume_specs_say_which_volume_and_why(text, message):
    with pytest.raises(ContainerError, match=message.replace("$", r"\$").replace("[", r"\[")):
        parse_volumes(text)


def test_defaults_mount_the_tool_read_only_the_directory_read_write_and_the_datasets_read_only():
    assert volumes("$defaults", PATHS) == [
        Volume("/tools/hello", "/tools/hello", "ro"),
        Volume("/jobs/000/7", "/jobs/000/7", "rw"),
        Volume("/data/files", "/data/files", "ro")]


def test_a_directory_the_job_does_not_have_leaves_its_volume_out():
    paths = JobPaths("/jobs/000/7")  # no tool directory; no dataset read from file_path
    assert volumes("$defaults,$galaxy_root:ro,$tool_directory/sub:/t", paths) == [
        Volume("/jobs/000/7", "/jobs/000/7", "rw")]


def test_the_jobs_own_inputs_are_mounted_read_only_last_over_the_read_write_directory():
    paths = JobPaths("/scratch/j7", tool_directory="/scratch/j7/tool",
                     inputs="/scratch/j7/inputs")
    assert volumes("$defaults", paths) == [
        Volume("/scratch/j7/tool", "/scratch/j7/tool", "ro"),
        Volume("/scratch/j7", "/scratch/j7", "rw"),
        Volume("/scratch/j7/inputs", "/scratch/j7/inputs", "ro")]


def test_variables_extra_volumes_and_a_later_volume_on_the_same_target_wins():
    found = volumes("$defaults,/refdata:/refdata:ro,cache:/cache,$galaxy_root:ro,"
                    "$job_directory:ro,$home_directory:/home/me,/data/files:rw", PATHS)
    assert found == [
        Volume("/tools/hello", "/tools/hello", "ro"),
        Volume("/refdata", "/refdata", "ro"),
        Volume("cache", "/cache", "rw"),  # a named volume
        Volume("/srv/muleteer", "/srv/muleteer", "ro"),
        Volume("/jobs/000/7", "/jobs/000/7", "ro"),  # replaces the default's rw
        Volume("/jobs/000/7/home", "/home/me", "rw"),
        Volume("/data/files", "/data/files", "rw")]


@pytest.mark.parametrize("paths, text, message", [
    (JobPaths("/jobs/a,b"), "$defaults", "colon, a comma or a newline"),
    (JobPaths("/jobs/a:b"), "$defaults", "colon, a comma or a newline"),
    (JobPaths("/jobs/a\nb"), "$defaults", "colon, a comma or a newline"),
    (PATHS, "/x:relative/y", "'relative/y' is not an absolute path"),
    (PATHS, "../x:/y", "'../x' is not an absolute path"),
])
def test_a_path_docker_cannot_carry_is_refused(paths, text, message):
    with pytest.raises(ContainerError, match=message):
        volumes(text, paths)


# -- the command line ---------------------------------------------------------------------
def run_of(options: ContainerSettings, command="hello", environment=()) -> ContainerRun:
    return ContainerRun(command=command, image=IMAGE, options=options,
                        volumes=tuple(volumes(options.volumes, PATHS)),
                        working_directory=PATHS.working_directory,
                        environment=environment, name="muleteer-job-7-abcd")


def test_the_run_argv_galaxys_way():
    argv = containers.render(run_of(ContainerSettings(enabled=True, cmd=("podman",)),
                                    environment=("TOOL_VAR",)).run_argv())
    assert argv.startswith("podman run --name muleteer-job-7-abcd "
                           '${GALAXY_SLOTS+"--env=GALAXY_SLOTS=$GALAXY_SLOTS"} ')
    assert '${TOOL_VAR+"--env=TOOL_VAR=$TOOL_VAR"}' in argv
    assert argv.endswith(
        " --env=HOME=/jobs/000/7/home --env=TMPDIR=/jobs/000/7/tmp --env=TMP=/jobs/000/7/tmp"
        " --env=TEMP=/jobs/000/7/tmp -v /tools/hello:/tools/hello:ro"
        " -v /jobs/000/7:/jobs/000/7:rw -v /data/files:/data/files:ro -w /jobs/000/7"
        ' --net none --rm --user="$(id -u):$(id -g)" localhost/muleteer-hello:1 /bin/sh -c hello')


def test_the_jobs_umask_goes_in_with_the_command():
    run = ContainerRun(command="hello", image=IMAGE, options=ContainerSettings(),
                       volumes=(), working_directory="/j", umask=0o077)
    assert run.run_argv()[-1] == "umask 077\nhello"


def test_each_option_as_galaxy_spells_it():
    options = ContainerSettings(enabled=True, cmd=("podman", "--log-level", "error"),
                                sudo=True, sudo_cmd=("sudo", "-n"), net="", memory="512m",
                                auto_rm=False, set_user="1000:1000",
                                run_extra_arguments=("--cpus", "2", "--label", "a b"))
    argv = run_of(options).run_argv()
    assert argv[:6] == ["sudo", "-n", "podman", "--log-level", "error", "run"]
    words = [w for w in argv if isinstance(w, str)]
    assert "--net" not in words and "--rm" not in words
    tail = words[words.index("-w"):]
    assert tail == ["-w", "/jobs/000/7", "--memory", "512m", "--user", "1000:1000", "--cpus",
                    "2", "--label", "a b", IMAGE, "/bin/sh", "-c", "hello"]
    assert "--user" not in run_of(ContainerSettings(set_user="")).run_argv()
    assert run_of(options).kill_argv() == ["sudo", "-n", "podman", "--log-level", "error",
                                           "kill", "muleteer-job-7-abcd"]


FAKE_DOCKER = """#!/bin/sh
# A container command that records its argv (one JSON list a line) and, for `run`, sleeps
# $FAKE_SLEEP seconds and exits $FAKE_EXIT.
{python} -c 'import json, sys; open(sys.argv[1], "a").write(json.dumps(sys.argv[2:]) + "\\n")' \\
    "$FAKE_LOG" "$@"
if [ "$1" = run ]; then
    [ -n "$FAKE_SLEEP" ] && exec sleep "$FAKE_SLEEP"
    exit "${{FAKE_EXIT:-0}}"
fi
"""


@pytest.fixture
def fake_docker(tmp_path):
    import sys
    path = tmp_path / "fake-docker"
    path.write_text(FAKE_DOCKER.format(python=sys.executable))
    path.chmod(0o755)
    log = tmp_path / "argv.log"

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return SimpleNamespace(path=str(path), log=str(log), calls=calls)


def script_for(tmp_path, fake, command: str, environment=()) -> str:
    workdir = tmp_path / "job"
    workdir.mkdir(exist_ok=True)
    options = ContainerSettings(enabled=True, cmd=(fake.path,))
    return containers.run_script(7, command, IMAGE, options, JobPaths(str(workdir)),
                                 environment=environment)


def test_the_shell_passes_the_command_and_values_as_they_are(tmp_path, fake_docker):
    """What bash makes of the lines: the tool's command one word whatever it holds, each
    variable passed only if set and with its exact value; HOME and TMPDIR made; the exit
    status is the container's."""
    command = """echo "it's $HOME" > 'out put' && printf '%s\\n' $(id -u) `true` ; exit 3"""
    script = script_for(tmp_path, fake_docker, command, environment=("TOOL_VAR",))
    env = dict(os.environ, FAKE_LOG=fake_docker.log, FAKE_EXIT="3", GALAXY_SLOTS="2",
               TOOL_VAR="a 'b' \"c\" $d\nnext", MULETEER_JOB_ID="7")
    env.pop("GALAXY_MEMORY_MB", None)
    result = subprocess.run(["bash", "-c", script], env=env, cwd=tmp_path, timeout=30,
                            capture_output=True, text=True)
    assert result.returncode == 3, result.stderr
    [argv] = fake_docker.calls()
    assert argv[-4:] == [IMAGE, "/bin/sh", "-c", command]
    assert "--env=GALAXY_SLOTS=2" in argv and "--env=MULETEER_JOB_ID=7" in argv
    assert "--env=TOOL_VAR=a 'b' \"c\" $d\nnext" in argv
    assert not any(a.startswith("--env=GALAXY_MEMORY_MB") for a in argv)
    assert f"--user={os.getuid()}:{os.getgid()}" in argv
    assert argv[argv.index("--name") + 1].startswith("muleteer-job-7-")
    for sub in ("home", "tmp"):
        assert (tmp_path / "job" / sub).is_dir()
        assert (tmp_path / "job" / sub).stat().st_mode & 0o777 == 0o700


def watchdogs(marker: str) -> list[str]:
    """The pids of watchdogs whose kill command names `marker` (the fake's path)."""
    out = subprocess.run(["pgrep", "-f", f"muleteer-watchdog .*{marker}"], capture_output=True,
                         text=True).stdout
    return out.split()


@pytest.mark.parametrize("sig, slow_setsid", [(signal.SIGTERM, False), (signal.SIGKILL, False),
                                               (signal.SIGKILL, True)],
                         ids=["SIGTERM", "SIGKILL", "SIGKILL-slow-setsid"])
def test_a_killed_job_shell_gets_its_container_killed_by_name(tmp_path, fake_docker, wait_for,
                                                              sig, slow_setsid):
    """A cancel or a scheduler's kill (Grid Engine's: SIGKILL at once) ends the job's
    processes, not the container, which runs under the engine: the watchdog, in a session
    of its own, kills it by its name once the job's shell is gone. The container starts
    only once the watchdog leads its session, so a job killed the moment its container
    starts (here with a slow setsid, as on a busy machine) does not take the watchdog too."""
    script = script_for(tmp_path, fake_docker, "sleep 600")
    env = dict(os.environ, FAKE_LOG=fake_docker.log, FAKE_SLEEP="30")
    if slow_setsid:
        slow = tmp_path / "slow-bin"
        slow.mkdir()
        (slow / "setsid").write_text("#!/bin/sh\nsleep 1\nexec /usr/bin/setsid \"$@\"\n")
        (slow / "setsid").chmod(0o755)
        env["PATH"] = f"{slow}:{os.environ['PATH']}"
    shell = subprocess.Popen(["bash", "-c", script], env=env, cwd=tmp_path,
                             start_new_session=True)
    try:
        wait_for(fake_docker.calls, timeout=10, interval=0.01, what="the container to start")
        assert [pid for pid in watchdogs(fake_docker.path) if os.getsid(int(pid)) == int(pid)]
        os.killpg(shell.pid, sig)  # the job's processes, the container's client with them
        shell.wait(timeout=10)
        wait_for(lambda: len(fake_docker.calls()) >= 2, timeout=10, what="the kill")
        [run, kill] = fake_docker.calls()
        assert kill == ["kill", run[run.index("--name") + 1]]
    finally:
        for pid in watchdogs(fake_docker.path):
            os.kill(int(pid), signal.SIGKILL)
        try:
            os.killpg(shell.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_job_that_ends_by_itself_stops_its_watchdog(tmp_path, fake_docker):
    script = script_for(tmp_path, fake_docker, "true")
    env = dict(os.environ, FAKE_LOG=fake_docker.log)
    subprocess.run(["bash", "-c", script], env=env, cwd=tmp_path, timeout=30, check=True)
    # A watchdog left running would see the shell gone within its 1 s check and call kill.
    time.sleep(1.5)
    assert watchdogs(fake_docker.path) == []
    assert [c[0] for c in fake_docker.calls()] == ["run"]


def own_cgroup() -> str:
    """This process's cgroup as the job script reads it (v1 memory, else v2)."""
    found = ""
    with open("/proc/self/cgroup") as fh:
        for line in fh:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if "memory" in controllers.split(","):
                return path
            if not controllers:
                found = path
    return found


def test_the_container_can_join_the_jobs_own_cgroup(tmp_path, fake_docker):
    """docker_cgroup_parent $job_cgroup: read by the job when it runs (its scheduler's
    cgroup), so that the scheduler's memory limit covers the container."""
    workdir = tmp_path / "job"
    workdir.mkdir()
    options = ContainerSettings(enabled=True, cmd=(fake_docker.path,),
                                cgroup_parent="$job_cgroup")
    script = containers.run_script(7, "true", IMAGE, options, JobPaths(str(workdir)))
    subprocess.run(["bash", "-c", script], env=dict(os.environ, FAKE_LOG=fake_docker.log),
                   cwd=tmp_path, timeout=30, check=True)
    [argv] = fake_docker.calls()
    expected = own_cgroup()
    if expected in ("", "/"):
        assert not any(a.startswith("--cgroup-parent") for a in argv)
    else:
        assert f"--cgroup-parent={expected}" in argv
    fixed = run_of(ContainerSettings(cgroup_parent="batch.slice")).run_argv()
    assert fixed[fixed.index("--cgroup-parent") + 1] == "batch.slice"
    assert "--cgroup-parent" not in containers.render(run_of(ContainerSettings()).run_argv())


def test_container_names_differ_per_attempt():
    assert containers.container_name(7) != containers.container_name(7)
    assert containers.container_name(7).startswith("muleteer-job-7-")


# -- the destination params, checked when the job configuration loads ---------------------
JOB_CONF = """<job_conf>
    <plugins><plugin id="local" type="runner"
                     load="galaxy.jobs.runners.local:LocalJobRunner"/></plugins>
    <destinations default="d">
        <destination id="d" runner="local">
            <param id="docker_enabled">true</param>
            {param}
        </destination>
    </destinations>
</job_conf>"""


@pytest.mark.parametrize("param, message", [
    ('<param id="docker_volumes">$defaults,/a:/b:rx</param>', "mode 'rx'"),
    ('<param id="docker_volumes">$tool_data_path:ro</param>', "unknown variable"),
    ('<param id="docker_default_container_id">--privileged</param>', "not a plain image"),
    ('<param id="docker_container_id_override">a b</param>', "not a plain image"),
    ('<param id="docker_set_user">$(id)</param>', "expected $UID"),
    ('<param id="docker_net">host;id</param>', "network name"),
    ('<param id="docker_memory">lots</param>', "512m"),
    ('<param id="docker_cmd"> </param>', "expected a command"),
    ('<param id="docker_run_extra_arguments">--label "a</param>', "cannot be split"),
    ('<param id="docker_cgroup_parent">$(id)</param>', "expected $job_cgroup"),
])
def test_a_bad_container_param_fails_the_job_configuration_naming_it(tmp_path, param, message):
    path = tmp_path / "job_conf.xml"
    path.write_text(JOB_CONF.format(param=param))
    with pytest.raises(JobConfError) as info:
        load_job_conf(str(path), RUNNER_SPECS)
    text = str(info.value)
    named = param[:param.index(">") + 1]  # <param id="NAME">
    assert text.startswith(f"{path}, line 7: {named}: ") and message in text, text


def test_good_container_params_load_typed(tmp_path):
    path = tmp_path / "job_conf.xml"
    path.write_text(JOB_CONF.format(param=(
        '<param id="docker_cmd">podman</param><param id="docker_sudo">true</param>'
        '<param id="docker_sudo_cmd">sudo -n</param>'
        f'<param id="docker_default_container_id">{IMAGE}</param>'
        '<param id="docker_volumes">$defaults,/ref:/ref:ro</param>'
        '<param id="docker_run_extra_arguments">--cpus 2</param>'
        '<param id="require_container">true</param>')))
    destination = load_job_conf(str(path), RUNNER_SPECS).resolve_destination("d")
    options = containers.settings(destination)
    assert options == ContainerSettings(
        enabled=True, cmd=("podman",), sudo=True, sudo_cmd=("sudo", "-n"),
        volumes="$defaults,/ref:/ref:ro", run_extra_arguments=("--cpus", "2"),
        default_container_id=IMAGE, require_container=True)


def test_a_rules_bad_value_is_refused_when_the_job_starts():
    destination = SimpleNamespace(id="d", params={"docker_enabled": True,
                                                  "docker_default_container_id": "-x"})
    with pytest.raises(ContainerError, match="not a plain image"):
        containers.settings(destination)


# -- mules/job_command.py: the job's image, require_container, real users ------------------
def tool_with(containers_=(), requirements=()) -> Tool:
    return Tool(id="hello_tool", name="Hello", version="1.0", command="hello > '$out'",
                inputs=(), outputs=(Output("out", format="txt"),), path="/tools/hello/h.xml",
                tool_dir="/tools/hello", containers=tuple(containers_),
                requirements=tuple(requirements))


def destination(**params) -> SimpleNamespace:
    return SimpleNamespace(id="dest", params=params, env=[])


JOB = SimpleNamespace(id=7, tool_id="hello_tool", tool_version="1.0", params={}, user_id=1,
                      command_line=None, destination_id="dest", destination_params=None)


def test_require_container_fails_a_tool_without_one_before_it_starts():
    strict = destination(docker_enabled=True, require_container=True)
    with pytest.raises(JobSetupError) as info:
        job_command.container_image(JOB, strict, tool_with())
    assert str(info.value) == (
        'destination dest requires a container (require_container): tool hello_tool names '
        'none (<requirements><container type="docker">) and the destination sets no '
        'docker_default_container_id')
    with pytest.raises(JobSetupError, match="docker_enabled is false"):
        job_command.container_image(JOB, destination(require_container=True), tool_with())
    assert job_command.container_image(
        JOB, destination(docker_enabled=True, require_container=True,
                         docker_default_container_id=IMAGE), tool_with()) == IMAGE
    assert job_command.container_image(JOB, destination(), tool_with()) is None
    with pytest.raises(JobSetupError, match="destination dest: tool hello_tool's container"):
        job_command.container_image(JOB, destination(docker_enabled=True),
                                    tool_with([Container("docker", "$(reboot)")]))


def ctx_for(tool: Tool, dest, tmp_path) -> SimpleNamespace:
    config = SimpleNamespace(file_path=str(tmp_path / "files"), root=str(tmp_path),
                             new_file_path=str(tmp_path / "tmp"), umask=0o077)
    return SimpleNamespace(tools=SimpleNamespace(get=lambda *_: tool), config=config,
                           job_conf=SimpleNamespace(destination_of=lambda job: dest),
                           store=None)


def test_a_job_as_its_real_user_needs_docker_sudo(tmp_path):
    tool = tool_with([Container("docker", IMAGE)])
    built = JobCommand("hello > out")
    layout = JobLayout(str(tmp_path / "job"), own_inputs=True)
    plain = destination(docker_enabled=True, docker_cmd="podman")
    with pytest.raises(JobSetupError, match="real users.*set docker_sudo"):
        job_command.in_container(ctx_for(tool, plain, tmp_path), JOB, plain, layout, built,
                                 real_user=True)
    sudo = destination(docker_enabled=True, docker_cmd="podman", docker_sudo=True)
    lines = job_command.in_container(ctx_for(tool, sudo, tmp_path), JOB, sudo, layout, built,
                                     real_user=True)
    assert "sudo podman run" in lines and '--user="$(id -u):$(id -g)"' in lines
    # As its own account: no sudo needed; on the host when the destination runs none.
    assert "podman run" in job_command.in_container(ctx_for(tool, plain, tmp_path), JOB,
                                                    plain, layout, built)
    assert job_command.in_container(ctx_for(tool, destination(), tmp_path), JOB,
                                    destination(), layout, built) == "hello > out"


def test_the_job_sees_its_inputs_where_it_reads_them(tmp_path):
    tool = tool_with([Container("docker", IMAGE)])
    dest = destination(docker_enabled=True)
    built = JobCommand("cat in > out", input_ids=(3,))
    shared = job_command.in_container(ctx_for(tool, dest, tmp_path), JOB, dest,
                                      JobLayout("/jobs/000/7"), built)
    assert f"-v {tmp_path}/files:{tmp_path}/files:ro" in shared
    assert "/inputs:" not in shared
    own = job_command.in_container(ctx_for(tool, dest, tmp_path), JOB, dest,
                                   JobLayout("/jobs/000/7", own_inputs=True), built)
    assert "/files:" not in own
    assert "-v /jobs/000/7/inputs:/jobs/000/7/inputs:ro" in own
    no_inputs = job_command.in_container(ctx_for(tool, dest, tmp_path), JOB, dest,
                                         JobLayout("/jobs/000/7"), JobCommand("hello"))
    assert "/files:" not in no_inputs


def test_a_staged_job_mounts_the_nodes_copy_of_the_tool_only_if_it_is_fetched(tmp_path):
    """On a node without the shared disk the tool's files are fetched into the scratch only
    for a tool whose templates name its directory: a volume of a missing one would fail."""
    dest = destination(docker_enabled=True)
    layout = JobLayout("/scratch/j7", own_inputs=True, tool_directory="/scratch/j7/tool",
                       new_file_path="/scratch/j7/tmp")
    built = JobCommand("hello")
    plain = tool_with([Container("docker", IMAGE)])
    lines = job_command.in_container(ctx_for(plain, dest, tmp_path), JOB, dest, layout, built)
    assert "/tool:" not in lines and "/tools/hello" not in lines
    scripted = Tool(**{**plain.__dict__, "command": "python $__tool_directory__/x.py"})
    lines = job_command.in_container(ctx_for(scripted, dest, tmp_path), JOB, dest, layout,
                                     built)
    assert "-v /scratch/j7/tool:/scratch/j7/tool:ro" in lines and "/tools/hello" not in lines


def test_the_local_runner_asks_the_host_for_a_requirement_only_outside_a_container(tmp_path):
    """hello is not on this machine; a tool that runs in its image finds it there."""
    requirement = Requirement(type="package", name="muleteer-no-such-program")
    tool = tool_with([Container("docker", IMAGE)], requirements=[requirement])
    files = JobFiles(str(tmp_path / "job"))
    in_image = ctx_for(tool, destination(docker_enabled=True), tmp_path)
    assert "hello" in job_command.build(in_image, JOB, files, local=True).command
    on_host = ctx_for(tool, destination(), tmp_path)
    with pytest.raises(JobSetupError, match="requires muleteer-no-such-program"):
        job_command.build(on_host, JOB, files, local=True)
    strict = ctx_for(tool_with(requirements=[requirement]),
                     destination(docker_enabled=True, require_container=True), tmp_path)
    with pytest.raises(JobSetupError, match="require_container"):
        job_command.build(strict, JOB, files, local=True)


def test_a_quoted_command_survives_shlex_round_trip():
    run = run_of(ContainerSettings(enabled=True), command="a 'b' \"$c\" `d` \\ e\n f")
    words = shlex.split(containers.render([w for w in run.run_argv() if isinstance(w, str)]))
    assert words[-1] == "a 'b' \"$c\" `d` \\ e\n f"
