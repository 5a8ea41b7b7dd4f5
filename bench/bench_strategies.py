"""Benchmark the handler strategies on the same machine with the same 2,000 jobs.

    .venv/bin/python bench/bench_strategies.py [-n 2000]     # PostgreSQL: scripts/postgres-up first

Starts its own servers (generated configs, free ports of 127.0.0.1, temporary
directories) and prints, per strategy (all-in-one, uWSGI + mules, webless handlers on
SQLite and on PostgreSQL): end-to-end jobs/s for N trivial jobs and submit->running
p50/p99. Then the time from a handler's death (kill -9) to its jobs running elsewhere:
a mule (uWSGI respawns it, it recovers its own jobs) and a webless handler (a live
handler of its tag adopts them after handler_heartbeat_timeout, 3 s here).
"""
from __future__ import annotations

import argparse
import os
import signal
import tempfile
import time



from bench_jobs import (Client, fetch_jobs, latencies, percentile, submit_burst,  # noqa: E402
                        ts, wait_quiet)
from tests.support.postgres import fresh_database  # noqa: E402
from tests.support.uwsgi_server import UwsgiServer, WeblessHandler  # noqa: E402

LOCAL = """<destinations default="local"><destination id="local" runner="local"/></destinations>"""
PLUGINS = """<plugins><plugin id="local" type="runner" load="galaxy.jobs.runners.local:LocalJobRunner" workers="4"/></plugins>"""
CONFS = {
    "all-in-one": f"<job_conf>{PLUGINS}{LOCAL}</job_conf>",
    "mules": f"<job_conf>{PLUGINS}{LOCAL}</job_conf>",
    "webless": f"""<job_conf>{PLUGINS}<handlers default="handlers">
        <handler id="handler0" tags="handlers"/><handler id="handler1" tags="handlers"/></handlers>{LOCAL}</job_conf>""",
}


def start(strategy, directory, database=None, heartbeat_timeout=60):
    galaxy = {"handler_heartbeat_timeout": heartbeat_timeout}
    if database:
        galaxy["database_connection"] = database
    conf = CONFS["webless" if strategy.startswith("webless") else strategy]
    mules = 3 if strategy == "mules" else 0
    srv = UwsgiServer(directory, job_conf=conf, mules=mules, galaxy=galaxy).start()
    handlers = []
    if strategy.startswith("webless"):
        handlers = [WeblessHandler(srv.config_file, f"handler{i}").start() for i in range(2)]
    return srv, handlers


def stop(srv, handlers):
    for handler in handlers:
        handler.stop()
    srv.stop()


def throughput(strategy, n, clients, database=None):
    with tempfile.TemporaryDirectory() as tmp:
        srv, handlers = start(strategy, tmp, database)
        try:
            ids, _, errors, server_errors = submit_burst(srv.url, n, "noop", clients, srv.api_key)
            client = Client(srv.url, srv.api_key)
            wait_quiet(client, 600)
            jobs = fetch_jobs(client, ids)
            ends = [ts(j["end_time"]) for j in jobs.values() if j["end_time"]]
            starts = [ts(j["create_time"]) for j in jobs.values()]
            rate = len(ends) / (max(ends) - min(starts))
            to_running, _ = latencies(list(jobs.values()))
            ok = sum(1 for j in jobs.values() if j["state"] == "ok")
            print(f"  {strategy:20} {rate:6.0f} jobs/s   submit->running p50 "
                  f"{percentile(to_running, 50) * 1000:7.1f} ms  p99 {percentile(to_running, 99) * 1000:8.1f} ms"
                  f"   ok {ok}/{n}, 5xx {server_errors}")
        finally:
            stop(srv, handlers)


def submit(srv, tool, **params):
    return srv.http.post(f"{srv.url}/api/jobs", json={"tool_id": tool, "params": params},
                         timeout=30).json()["id"]


def wait_handler_running(srv, ids, not_handler, timeout=120):
    """Seconds until every job in ids has left `not_handler` and is running or ended."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        jobs = [srv.job(i) for i in ids]
        if all(j["handler"] != not_handler and j["state"] in ("running", "ok") for j in jobs):
            return time.monotonic() - t0
        time.sleep(0.05)
    return float("nan")


def death_to_running(n_jobs=20):
    # A mule: uWSGI respawns it under the same name; it recovers its own jobs first.
    with tempfile.TemporaryDirectory() as tmp:
        srv, handlers = start("mules", tmp)
        try:
            conf_mule = "main.job-handlers.1"
            pids = {h["name"]: h["pid"] for h in
                    srv.http.get(f"{srv.url}/api/handlers").json()["handlers"]}
            ids = [submit(srv, "sleep", seconds=3) for _ in range(n_jobs)]
            time.sleep(1.0)
            mine = [i for i in ids if srv.job(i)["handler"] == conf_mule]
            os.kill(pids[conf_mule], signal.SIGKILL)
            t0 = time.monotonic()
            while time.monotonic() - t0 < 60:
                fresh = {h["name"]: h for h in srv.http.get(f"{srv.url}/api/handlers").json()["handlers"]}
                if fresh[conf_mule]["pid"] != pids[conf_mule]:
                    break
                time.sleep(0.05)
            respawn = time.monotonic() - t0
            states = [srv.wait(i, timeout=120)["state"] for i in mine]
            print(f"  mule {conf_mule}: respawned and recovering {respawn:.2f} s after kill -9; "
                  f"its {len(mine)} jobs ended {sorted(set(states))}")
        finally:
            stop(srv, handlers)
    # A webless handler: another handler of the tag adopts its jobs after the timeout.
    with tempfile.TemporaryDirectory() as tmp:
        srv, handlers = start("webless", tmp, heartbeat_timeout=3)
        try:
            handlers[1].stop()
            ids = [submit(srv, "sleep", seconds=30) for _ in range(n_jobs)]
            for job_id in ids:
                srv.wait(job_id, states=("running",), timeout=60)
            handlers[0].kill()
            t0 = time.monotonic()
            handlers[1].start()
            elapsed = wait_handler_running(srv, ids, "handler0")
            print(f"  webless handler0: its {n_jobs} running jobs re-attached by handler1 "
                  f"{elapsed:.2f} s after kill -9 (handler_heartbeat_timeout 3 s)")
            for job_id in ids:
                srv.http.delete(f"{srv.url}/api/jobs/{job_id}", timeout=30)
            for job_id in ids:
                srv.wait(job_id, timeout=60)
        finally:
            stop(srv, handlers)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    print(f"1. {args.n} trivial jobs per strategy ({os.cpu_count()} cores, {args.clients} client processes)")
    throughput("all-in-one", args.n, args.clients)
    throughput("mules", args.n, args.clients)
    throughput("webless-sqlite", args.n, args.clients)
    throughput("webless-postgresql", args.n, args.clients, fresh_database("bench_strategies"))
    print("2. From a handler's death to its jobs running elsewhere")
    death_to_running()


if __name__ == "__main__":
    main()
