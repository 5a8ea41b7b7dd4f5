"""Benchmark the cluster runners against the real single-node clusters.

    scripts/cluster/up && . scripts/cluster/env.sh
    .venv/bin/python bench/bench_runners.py [--jobs 200] [--runners slurm,pbs,drmaa]

For each runner, with the real runner class, a real (SQLite) store and the real scheduler:
  1. N jobs in flight on one destination: scheduler status calls per monitor interval
     (target: one per destination whatever N; Galaxy's DRMAA runner makes one per job
     per second), and how long the N jobs took;
  2. submit->finished latency of single jobs through the runner (median of --singles),
     next to the scheduler's own (sbatch --wait; qsub -sync y on Grid Engine), and the
     difference: what the runner adds (target: under 0.5 s).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time

from muleteer.config import load_config
from muleteer.context import AppContext
from muleteer.job import TERMINAL, JobState
from muleteer.job_config import Destination, Plugin
from muleteer.store import JobStore
from mules.runners import load_runner

TORQUE_BIN = os.environ.get("MULETEER_TORQUE_BIN", "/opt/muleteer-cluster/torque/bin")
SETUPS = {
    "slurm": (Plugin("slurm", "slurm", 4), Destination("slurm", "slurm",
                                                        {"nativeSpecification": "-p debug --mem=10"})),
    "pbs": (Plugin("pbs", "pbs", 4, {"bin_dir": TORQUE_BIN}),
            Destination("pbs", "pbs", {"Resource_List": "nodes=1:ppn=1,mem=10mb"})),
    "drmaa": (Plugin("drmaa", "drmaa", 4), Destination("sge", "drmaa", {"nativeSpecification": "-q all.q"})),
}


def make_context(tmp, interval):
    config_file = os.path.join(tmp, "galaxy.yml")
    with open(config_file, "w") as fh:
        fh.write(f"galaxy:\n  database_connection: sqlite:///{tmp}/bench.sqlite\n"
                 f"  job_working_directory: {tmp}/jobs\n  new_file_path: {tmp}/tmp\n"
                 f"  job_runner_monitor_sleep: {interval}\n  exit_code_file_wait: 5\n")
    config = load_config(config_file)
    store = JobStore(config.database_connection)
    store.migrate()
    return AppContext(config=config, job_conf=None, tools={}, store=store)


def new_job(store, destination, command="true"):
    job, _ = store.create_job(tool_id="bench", tool_version="1", params={}, command_line=command,
                              handler_tag="bench", destination_id=destination.id,
                              runner=destination.runner)
    return store.claim_job(job.id, "bench", ["bench"])


def wait_done(store, ids, timeout):
    deadline = time.monotonic() + timeout
    pending = set(ids)
    while pending and time.monotonic() < deadline:
        for job_id in list(pending):
            if store.get_job(job_id).state in TERMINAL:
                pending.discard(job_id)
        time.sleep(0.05)
    return pending


def in_flight(runner_name, n, interval, timeout):
    plugin, destination = SETUPS[runner_name]
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        os.chmod(tmp, 0o755)
        ctx = make_context(tmp, interval)
        runner = load_runner(ctx, plugin, "bench")
        ids = [new_job(ctx.store, destination, "sleep 60").id for _ in range(n)]
        for job_id in ids:
            runner.submit(ctx.store.get_job(job_id), destination)
        # Count status calls only once all N are on the scheduler (submitted, not ended).
        deadline = time.monotonic() + timeout
        while runner.watched_count() < n and time.monotonic() < deadline:
            time.sleep(0.05)
        if runner.watched_count() < n:
            print(f"  {runner_name}: only {runner.watched_count()} of {n} jobs in flight")
        calls_before, window_start = runner.status_calls, time.monotonic()
        time.sleep(interval * 5)
        in_flight_seconds = time.monotonic() - window_start
        calls = runner.status_calls - calls_before
        states = {}
        for job_id in ids:
            state = ctx.store.get_job(job_id).state
            states[state] = states.get(state, 0) + 1
        # Two cores drain 200 jobs slowly; the measurement is done: cancel what is left.
        for job_id in ids:
            job = ctx.store.get_job(job_id)
            if job.state not in TERMINAL and ctx.store.request_cancel(job_id):
                runner.cancel(ctx.store.get_job(job_id))
        left = wait_done(ctx.store, ids, timeout)
        runner.shutdown()
    per_interval = calls / (in_flight_seconds / interval)
    print(f"  {runner_name}: {n} jobs in flight: {per_interval:.2f} status calls per "
          f"{interval:g} s interval ({calls} in {in_flight_seconds:.1f} s); states while "
          f"measured {states}{'; NOT ENDED after cancel: ' + str(len(left)) if left else ''}")


def single_latency(runner_name, count, interval):
    plugin, destination = SETUPS[runner_name]
    latencies = []
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        os.chmod(tmp, 0o755)
        ctx = make_context(tmp, interval)
        runner = load_runner(ctx, plugin, "bench")
        for _ in range(count):
            job = new_job(ctx.store, destination)
            t0 = time.monotonic()
            runner.submit(job, destination)
            wait_done(ctx.store, [job.id], 120)
            latencies.append(time.monotonic() - t0)
            row = ctx.store.get_job(job.id)
            if row.state != JobState.OK:
                print(f"  {runner_name}: single job ended {row.state}: {row.info}")
        runner.shutdown()
    return statistics.median(latencies)


def scheduler_own(runner_name, count):
    """The scheduler's own submit->finished for /bin/true, measured as tightly as it allows."""
    times = []
    for _ in range(count):
        t0 = time.monotonic()
        if runner_name == "drmaa":
            # (`qsub -sync y` adds ~0.75 s of its own: submit, then poll qstat every 0.1 s.)
            label = "qsub, then qstat -j every 0.1 s"
            out = subprocess.run(["qsub", "-terse", "-b", "y", "-o", "/dev/null", "-e", "/dev/null",
                                  "/bin/true"], capture_output=True, text=True, check=True,
                                 timeout=60).stdout.strip()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if subprocess.run(["qstat", "-j", out], capture_output=True).returncode != 0:
                    break
                time.sleep(0.1)
        else:
            # pbs here is Slurm's TORQUE wrappers, so Slurm is the scheduler underneath.
            # (`sbatch --wait` polls every 2 s itself: submit, then poll squeue every 0.1 s.)
            label = "sbatch, then squeue every 0.1 s"
            job_id = subprocess.run(["sbatch", "--parsable", "-o", "/dev/null", "--mem=10",
                                     "--wrap", "true"], capture_output=True, text=True,
                                    check=True, timeout=60).stdout.strip().split(";")[0]
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                state = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%T", "-j", job_id],
                                       capture_output=True, text=True).stdout.strip()
                if state in ("COMPLETED", "FAILED", "CANCELLED"):
                    break
                time.sleep(0.1)
        times.append(time.monotonic() - t0)
    return statistics.median(times), label


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--singles", type=int, default=5)
    parser.add_argument("--runners", default="slurm,pbs,drmaa")
    parser.add_argument("--interval", type=float, default=1.0, help="job_runner_monitor_sleep")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    runners = [r for r in args.runners.split(",") if r]
    print(f"1. Status calls with {args.jobs} jobs in flight on one destination "
          f"(monitor interval {args.interval:g} s)")
    for name in runners:
        in_flight(name, args.jobs, args.interval, args.timeout)
    print(f"2. Single-job submit->finished, median of {args.singles} (/bin/true)")
    for name in runners:
        ours = single_latency(name, args.singles, args.interval)
        theirs, label = scheduler_own(name, args.singles)
        print(f"  {name}: through the runner {ours:.2f} s; {label} {theirs:.2f} s; "
              f"the runner adds {ours - theirs:+.2f} s (target: under 0.5 s)")


if __name__ == "__main__":
    main()
