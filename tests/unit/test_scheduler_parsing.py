"""The runners' parsers on real outputs captured from this project's clusters
(tests/data/cluster: see its README for the commands and the job behind each id)."""
import os
from types import SimpleNamespace

import pytest

from mules.lifecycle import MEMORY, WALLTIME
from mules.runners.cluster import ACTIVE, FINISHED, PENDING, SchedulerError, killed_for
from mules.runners.drmaa import (GridEngineLimits, describe_exit, judge_exit, parse_sge_memory,
                                 parse_sge_time, requested_limits, usage_of)
from mules.runners.pbs import parse_exit_status, parse_qstat, parse_qsub, qsub_options
from mules.runners.slurm import parse_sbatch, parse_squeue

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "cluster")


def fixture(name):
    with open(os.path.join(DATA, name)) as fh:
        return fh.read()


def roles():
    lines = fixture("jobs.tsv").splitlines()[1:]
    return dict(line.split("\t") for line in lines)


def test_squeue_of_finished_jobs_maps_every_end_state():
    ids = roles()
    found = parse_squeue(fixture("slurm/squeue-jobs-t-all-final.txt"))
    assert found[ids["completed"]].state == FINISHED and found[ids["completed"]].reason is None
    assert found[ids["failed_exit3"]].state == FINISHED
    assert found[ids["failed_exit3"]].detail == "FAILED (NonZeroExitCode)"
    assert found[ids["timeout"]].reason == "walltime_reached"
    assert found[ids["timeout"]].detail == "TIMEOUT (TimeLimit)"
    assert found[ids["memory_killed"]].reason == "memory_limit_reached"
    assert found[ids["cancelled"]].reason == "cancelled"


def test_squeue_of_live_jobs_tells_pending_from_running():
    ids = roles()
    found = parse_squeue(fixture("slurm/squeue-jobs-t-all.txt"))
    assert found[ids["running"]].state == ACTIVE
    for role in ("pending_resources", "pending_held", "pending_begin", "pending_dependency"):
        assert found[ids[role]].state == PENDING, role
    assert "JobHeldUser" in found[ids["pending_held"]].detail


def test_squeue_with_unknown_ids_lists_only_the_known_ones():
    found = parse_squeue(fixture("slurm/squeue-t-all-known-and-unknown-ids.txt"))
    assert "999999" not in found and len(found) >= 1
    assert parse_squeue(fixture("slurm/squeue-t-all-unknown-id.txt")) == {}
    assert "Invalid job id" in fixture("slurm/squeue-t-all-unknown-id.stderr")


def test_squeue_ignores_blank_and_malformed_lines():
    assert parse_squeue("\n  \nnot a line\n12|RUNNING|None\n") == {"12": parse_squeue("12|RUNNING|None")["12"]}


def test_sbatch_parsable_output():
    assert parse_sbatch(fixture("slurm/sbatch-parsable.txt")) == fixture("slurm/sbatch-parsable.txt").strip()
    assert parse_sbatch("4242;cluster1\n") == "4242"
    with pytest.raises(SchedulerError):
        parse_sbatch("sbatch: error: something\n")


def test_qstat_of_the_torque_wrappers():
    ids = roles()
    found = parse_qstat(fixture("torque/qstat-ids.txt"))
    assert found[ids["completed"]].state == FINISHED
    assert found[ids["running"]].state == ACTIVE
    assert found[ids["torque_queued_then_completed"]].state == PENDING
    everything = parse_qstat(fixture("torque/qstat.txt"))
    assert everything and all(s.state in (PENDING, ACTIVE, FINISHED) for s in everything.values())
    assert parse_qstat(fixture("torque/qstat-unknown-id.txt")) == {}


def test_qstat_ids_with_a_server_suffix_answer_to_the_bare_id_too():
    table = ("Job ID                    Name             User            Time Use S Queue\n"
             "------------------------- ---------------- --------------- -------- - -----\n"
             "1234.pbs.example.org      muleteer-7       galaxy          00:00:01 R batch\n")
    found = parse_qstat(table)
    assert found["1234.pbs.example.org"].state == ACTIVE and found["1234"].state == ACTIVE


def test_qstat_f_has_no_exit_status_so_the_exit_code_file_is_needed():
    # The reason the runners read the job script's exit-code file (docs/schedulers.md).
    assert "exit_status" not in fixture("torque/qstat-f-failed-exit3.txt")


def test_qsub_output_and_options():
    assert parse_qsub(fixture("torque/qsub.txt")) == fixture("torque/qsub.txt").strip()
    assert parse_qsub("1234.server.example.org\n") == "1234.server.example.org"
    with pytest.raises(SchedulerError):
        parse_qsub("qsub: submit error (Unknown queue)\n")
    assert qsub_options({"queue": "batch", "server": "pbs1", "Resource_List": "nodes=1:ppn=2",
                         "-p": "10", "nativeSpecification": "-j oe"}) == [
        "-q", "batch@pbs1", "-l", "nodes=1:ppn=2", "-p", "10", "-j", "oe"]


def test_drmaa_wait_results_as_seen_in_the_smoke_run():
    smoke = fixture("sge/drmaa-smoke.txt")
    assert "exitStatus=3" in smoke and "DeniedByDrmException" in smoke
    ok = describe_exit(SimpleNamespace(wasAborted=False, hasSignal=False, exitStatus=3,
                                       terminatedSignal=""))
    assert ok.state == FINISHED and ok.detail == "exit status 3" and ok.reason is None
    aborted = describe_exit(SimpleNamespace(wasAborted=True, hasSignal=False, exitStatus=0,
                                            terminatedSignal=""))
    assert aborted.reason == "cancelled"
    killed = describe_exit(SimpleNamespace(wasAborted=False, hasSignal=True, exitStatus=0,
                                           terminatedSignal="SIGKILL"))
    assert killed.detail == "killed by signal SIGKILL"


# -- jobs killed for a limit (measured here: docs/schedulers.md, "Limits") --------------
# What slurmstepd wrote to the job's stderr file (sbatch -e, or the TORQUE wrappers' -e).
SLURM_OOM = ("/var/lib/muleteer-cluster/slurm/spool/d/job00601/slurm_script: line 8: 21299 "
             "Killed                  python3 -c \"\n"
             "slurmstepd-vm: error: Detected 1 oom-kill event(s) in StepId=601.batch. Some of "
             "your processes may have been killed by the cgroup out-of-memory handler.\n")
SLURM_TIMEOUT = ("slurmstepd-vm: error: *** JOB 602 ON vm CANCELLED AT 2026-11-29T11:21:05 "
                 "DUE TO TIME LIMIT ***\n")
# The wrappers' plain qstat of the OUT_OF_MEMORY job: state U, which TORQUE never uses.
QSTAT_OOM = ("Job id              Name             Username        Time Use S Queue          \n"
             "------------------- ---------------- --------------- -------- - ---------------\n"
             "601                 memhog           root            00:00:00 U debug          \n")


def test_the_schedulers_own_kill_messages_say_why():
    assert killed_for(SLURM_OOM) == (MEMORY, SLURM_OOM.splitlines()[-1])
    assert killed_for(SLURM_TIMEOUT) == (WALLTIME, SLURM_TIMEOUT.strip())
    # TORQUE's and PBS Pro's mom (their documentation's examples).
    assert killed_for("=>> PBS: job killed: walltime 152 exceeded limit 120\n")[0] == WALLTIME
    assert killed_for("=>> PBS: job killed: mem 2098176kb exceeded limit 1048576kb")[0] == MEMORY
    assert killed_for("=>> PBS: job killed: vmem 4194304kb exceeded limit 2097152kb")[0] == MEMORY
    # Without cgroups, jobacct_gather's OverMemoryKill (README of tests/data/cluster).
    assert killed_for("slurmstepd: error: Step 7.0 exceeded memory limit (120 > 100), "
                      "being killed")[0] == MEMORY
    for innocent in ("", "Killed\n", "MemoryError\n", "time limit of the tool: 3 s",
                     fixture("torque/torque-job-output.txt")):
        assert killed_for(innocent) is None, innocent


def test_state_u_of_the_torque_wrappers_is_a_finished_job():
    found = parse_qstat(QSTAT_OOM)
    assert found["601"].state == FINISHED and found["601"].detail == "state U"
    # The captured listing of the earlier run shows it too (job "memkill").
    listed = parse_qstat(fixture("torque/qstat-after.txt"))
    assert listed[roles()["memory_killed"]].state == FINISHED


def test_torque_exit_status_of_qstat_f():
    assert parse_exit_status(fixture("torque/qstat-f-completed.txt")) is None  # the wrappers
    assert parse_exit_status("Job Id: 179.host\n    job_state = C\n    exit_status = -11\n") == -11
    assert parse_exit_status("    Exit_status = 271\n") == 271


def info(exit_status=0, signal="", aborted=False, **usage):
    """A JobInfo as drmaa-python gives it (values of resourceUsage are text)."""
    return SimpleNamespace(
        wasAborted=aborted, hasExited=not signal, exitStatus=exit_status, hasSignal=bool(signal),
        terminatedSignal=signal, resourceUsage={k: f"{v:.4f}" for k, v in usage.items()})


def test_grid_engine_limits_of_a_native_specification():
    assert requested_limits("-q all.q -l h_vmem=200M,h_rt=00:00:03 -pe smp 2-4") == \
        GridEngineLimits(h_vmem=200 * 1024 ** 2, h_rt=3.0, slots=2)
    assert requested_limits("-l s_vmem=1g -l s_rt=1:30") == GridEngineLimits(
        s_vmem=10 ** 9, s_rt=90.0)
    assert requested_limits("-soft -l h_rt=10 -q all.q") == GridEngineLimits()
    assert requested_limits("") == requested_limits("-q all.q") == GridEngineLimits()
    assert parse_sge_memory("2G") == 2 * 1024 ** 3 and parse_sge_memory("512") == 512
    assert parse_sge_time("1:0:0") == 3600 and parse_sge_time("::30") == 30


def test_grid_engine_killed_the_job_over_h_vmem():
    # Two processes of 150 MB under h_vmem=200M, each below it: the sum was, and
    # execd killed the job within a second (measured: SIGKILL, maxvmem 345624576).
    killed = info(signal="SIGKILL", maxvmem=345624576, ru_wallclock=1, ru_maxrss=166956,
                  cpu=0.45)
    seen = judge_exit(killed, requested_limits("-l h_vmem=200M"))
    assert seen.reason == MEMORY
    assert seen.detail == "killed by signal SIGKILL; max vmem 330M of h_vmem 200M"
    assert seen.usage.max_rss_bytes == 166956 * 1024 and seen.usage.cpu_seconds == 0.45
    # The same kill without a memory limit asked for is no memory verdict.
    assert judge_exit(killed, GridEngineLimits()).reason is None
    # With 2 slots the job had 400M: 330M was within it.
    assert judge_exit(killed, requested_limits("-pe smp 2 -l h_vmem=200M")).reason is None


def test_grid_engine_killed_the_job_past_h_rt():
    # h_rt=3, sleep 10: SIGKILL after a wallclock of 4 s (measured); s_rt warns with SIGUSR1.
    seen = judge_exit(info(signal="SIGKILL", ru_wallclock=4, maxvmem=4993024),
                      requested_limits("-l h_rt=3"))
    assert seen.reason == WALLTIME and seen.detail == "killed by signal SIGKILL after 4 s, h_rt 3 s"
    assert judge_exit(info(signal="SIGUSR1", ru_wallclock=3), requested_limits("-l s_rt=3")) \
        .reason == WALLTIME
    # Killed long before its time limit: a qdel or a node's trouble, not the walltime.
    assert judge_exit(info(signal="SIGKILL", ru_wallclock=1), requested_limits("-l h_rt=60")) \
        .reason is None


def test_grid_engine_exits_that_are_not_limits():
    limits = requested_limits("-l h_vmem=200M,h_rt=60")
    # A job well within its memory that ended fine (measured: maxvmem 69570560).
    fine = judge_exit(info(maxvmem=69570560, ru_wallclock=1, ru_maxrss=64664, cpu=0.2),
                      limits, exit_code=0)
    assert fine.reason is None and fine.detail == "exit status 0"
    # One allocation over h_vmem's per-process limit fails at once (MemoryError, exit 1):
    # Grid Engine sampled nothing near the limit, so nothing says it was memory.
    assert judge_exit(info(exit_status=1, maxvmem=0), limits, exit_code=1).reason is None
    # A failure with the sampled max vmem at the limit: the limit refused more.
    near = judge_exit(info(exit_status=1, maxvmem=195 * 1024 ** 2), limits, exit_code=1)
    assert near.reason == MEMORY
    assert judge_exit(info(aborted=True), limits).reason == "cancelled"


def test_usage_of_drmaa_resource_usage():
    assert usage_of({}) is None
    usage = usage_of({"ru_maxrss": "13496.0000", "ru_utime": "0.0915", "ru_stime": "0.0719"})
    assert usage.max_rss_bytes == 13496 * 1024 and round(usage.cpu_seconds, 4) == 0.1634
