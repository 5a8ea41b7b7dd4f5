"""Benchmark staged jobs (default_file_action remote_transfer) on the real single-node Slurm.

    scripts/cluster/up && . scripts/cluster/env.sh
    .venv/bin/python bench/bench_staging.py [--size-mb 100] [--repeat 3]

Starts its own uWSGI server (a temporary directory, a free port of 127.0.0.1, one mule)
with two Slurm destinations, one on the shared filesystem and one staged, and the same
copy tool (`cat input > output`) on each. One dataset of --size-mb MB of random bytes is
uploaded once. Per round, in this order, each next to its own floor:

1. submit->finished (POST /api/jobs to the job's `ok`, polled every 0.05 s) of the
   copy job, shared filesystem vs staged, and the difference: what staging costs.
2. The staging transfer rate, from the wrapper's own log (staging.log, uploaded with
   the results): the downloads (the input, job.sh) and the uploads (the output, stdout,
   stderr), each as MB/s and as a ratio to a plain `curl` of the same file against the
   same server in the same round: GET /api/datasets/N/display (download floor) and a
   multipart POST /api/datasets (upload floor; the server also hashes and stores it).

Medians of --repeat rounds; the ratios are the medians of each round's own ratio.
The node is this machine, so the network is the loopback: the figures are what the
server and the wrapper cost, not a network's.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import requests

from tests.support.clusters import require_cluster  # noqa: E402
from tests.support.uwsgi_server import UwsgiServer

COPY_TOOL = """<tool id="{id}" name="Copy" version="1.0">
    <command><![CDATA[cat '$input' > '$output']]></command>
    <inputs><param name="input" type="data" format="data" label="Input"/></inputs>
    <outputs><data name="output" format="data"/></outputs>
</tool>
"""
JOB_CONF = """<job_conf>
    <plugins><plugin id="slurm" type="runner" load="galaxy.jobs.runners.slurm:SlurmJobRunner" workers="2"/></plugins>
    <destinations default="shared">
        <destination id="shared" runner="slurm"><param id="nativeSpecification">-p debug -c 1 --mem=200</param></destination>
        <destination id="staged" runner="slurm">
            <param id="nativeSpecification">-p debug -c 1 --mem=200</param>
            <param id="default_file_action">remote_transfer</param>
        </destination>
    </destinations>
    <tools><tool id="copy_shared" destination="shared"/><tool id="copy_staged" destination="staged"/></tools>
</job_conf>"""
_LOGGED = re.compile(r"(downloaded|uploaded) (\d+) files in ([0-9.]+) s")


def start_server(directory: str) -> UwsgiServer:
    tools = os.path.join(directory, "tools")
    os.makedirs(tools)
    for tool_id in ("copy_shared", "copy_staged"):
        with open(os.path.join(tools, f"{tool_id}.xml"), "w") as fh:
            fh.write(COPY_TOOL.format(id=tool_id))
    srv = UwsgiServer(directory, job_conf=JOB_CONF, mules=1,
                      galaxy={"job_runner_monitor_sleep": 0.5, "tool_path": tools,
                              "galaxy_infrastructure_url": "PLACEHOLDER"})
    with open(srv.config_file) as fh:
        text = fh.read()
    with open(srv.config_file, "w") as fh:
        fh.write(text.replace("PLACEHOLDER", srv.url))
    return srv.start()


def curl(*args: str) -> float:
    t0 = time.monotonic()
    subprocess.run(["curl", "--silent", "--show-error", "--fail", *args], check=True,
                   stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def upload_floor(srv: UwsgiServer, path: str) -> float:
    return curl("-H", f"x-api-key: {srv.api_key}", "-F", f"file=@{path}", "-F", "format=data",
                f"{srv.url}/api/datasets")


def download_floor(srv: UwsgiServer, dataset_id: int) -> float:
    return curl("-H", f"x-api-key: {srv.api_key}", "-o", "/dev/null",
                f"{srv.url}/api/datasets/{dataset_id}/display")


def run_job(srv: UwsgiServer, tool_id: str, dataset_id: int) -> tuple[float, dict]:
    t0 = time.monotonic()
    answer = srv.http.post(f"{srv.url}/api/jobs", timeout=60, json={
        "tool_id": tool_id, "params": {"input": {"src": "dataset", "id": dataset_id}}})
    answer.raise_for_status()
    job_id = answer.json()["id"]
    deadline = t0 + 600
    while time.monotonic() < deadline:
        job = srv.job(job_id)
        if job["state"] in ("ok", "error", "deleted"):
            elapsed = time.monotonic() - t0
            if job["state"] != "ok":
                sys.exit(f"job {job_id} ended {job['state']}: {job.get('info')}")
            return elapsed, job
        time.sleep(0.05)
    sys.exit(f"job {job_id} did not finish within 600 s")


def staging_times(srv: UwsgiServer, job_id: int) -> dict[str, float]:
    path = os.path.join(srv.directory, "database", "jobs", f"{job_id // 1000:03d}", str(job_id),
                        "staging.log")
    with open(path) as fh:
        return {m.group(1): float(m.group(3)) for m in _LOGGED.finditer(fh.read())}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    require_cluster("slurm")
    size = args.size_mb * 1000 * 1000
    mb = size / 1e6
    work = tempfile.mkdtemp(prefix="bench-staging-")
    srv = None
    try:
        srv = start_server(os.path.join(work, "server"))
        data = os.path.join(work, "input.dat")
        with open(data, "wb") as fh:
            for _ in range(args.size_mb):
                fh.write(os.urandom(1000 * 1000))
        with open(data, "rb") as fh:
            answer = srv.http.post(f"{srv.url}/api/datasets", timeout=600,
                                   files={"file": ("input.dat", fh)}, data={"format": "data"})
        answer.raise_for_status()
        dataset_id = answer.json()["id"]
        rows = []
        for n in range(args.repeat):
            shared, _ = run_job(srv, "copy_shared", dataset_id)
            staged, job = run_job(srv, "copy_staged", dataset_id)
            times = staging_times(srv, job["id"])
            down_floor = download_floor(srv, dataset_id)
            up_floor = upload_floor(srv, data)
            rows.append(dict(shared=shared, staged=staged, down=times["downloaded"],
                             up=times["uploaded"], down_floor=down_floor, up_floor=up_floor))
            print(f"  round {n + 1}: shared {shared:.2f} s, staged {staged:.2f} s; staged "
                  f"download {times['downloaded']:.2f} s (curl {down_floor:.2f} s), upload "
                  f"{times['uploaded']:.2f} s (curl {up_floor:.2f} s)", flush=True)

        def med(key):
            return statistics.median(r[key] for r in rows)

        def ratio(floor, ours):  # rate ratio: the floor's time over ours
            return statistics.median(r[floor] / r[ours] for r in rows)

        print(f"Staged jobs on Slurm, a {mb:.0f} MB input copied to a {mb:.0f} MB output; "
              f"medians of {args.repeat}")
        print(f"1. submit->finished: shared filesystem {med('shared'):.2f} s, staged "
              f"{med('staged'):.2f} s (staging adds {med('staged') - med('shared'):+.2f} s; "
              f"median of each round's difference "
              f"{statistics.median(r['staged'] - r['shared'] for r in rows):+.2f} s)")
        print(f"2. download (input + job.sh): {mb / med('down'):.0f} MB/s in {med('down'):.2f} s;"
              f" floor: curl GET display {mb / med('down_floor'):.0f} MB/s in "
              f"{med('down_floor'):.2f} s; ratio {ratio('down_floor', 'down'):.2f}")
        print(f"   upload (output + stdout, stderr): {mb / med('up'):.0f} MB/s in "
              f"{med('up'):.2f} s; floor: curl multipart POST /api/datasets "
              f"{mb / med('up_floor'):.0f} MB/s in {med('up_floor'):.2f} s; ratio "
              f"{ratio('up_floor', 'up'):.2f}")
    finally:
        if srv is not None:
            srv.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
