"""The runners' parsers on real outputs captured from this project's clusters
(tests/data/cluster: see its README for the commands and the job behind each id)."""
import os
from types import SimpleNamespace

import pytest

from mules.runners.cluster import ACTIVE, FINISHED, PENDING, SchedulerError
from mules.runners.drmaa import describe_exit
from mules.runners.pbs import parse_qstat, parse_qsub, qsub_options
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
