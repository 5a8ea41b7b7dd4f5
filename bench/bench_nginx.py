"""Benchmark Muleteer behind nginx against uWSGI's own HTTP server.

    .venv/bin/python bench/bench_nginx.py [-n 2000] [--clients 4] [--size-mb 1024] [--repeat 3]

Starts its own servers (generated configs, free ports of 127.0.0.1, temporary
directories; scripts/nginx-install first): a uWSGI server with both a unix socket, behind
a private nginx configured from contrib/nginx/muleteer.conf, and its own `http:` port,
so "through nginx" and "straight" reach the very same web workers. It prints:

- POST /api/jobs and GET /api/jobs/N requests/s, through nginx and straight: N requests
  from a few client processes on keep-alive connections (http.client), median of
  --repeat rounds. The jobs are written but never run (their handler is not started),
  so this measures the HTTP path and the app, not job execution competing for the CPU.
- A --size-mb output download (sparse file, so the disk is not what is measured):
  through nginx with X-Accel-Redirect (nginx sends the file), straight from the web
  worker (uWSGI's http router, a second server without nginx_x_accel_redirect_base),
  and through nginx from the worker (the same second server behind nginx): seconds and
  the CPU seconds of the web workers (pids from GET /api/handlers, strategy "web") and of
  the front (nginx's workers, or uWSGI's http router) during it, median of --repeat.
"""
from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import statistics
import sys
import tempfile
import time

import requests


from muleteer.job_files import working_directory  # noqa: E402
from tests.support.nginx_server import NGINX, NginxServer, start_stack  # noqa: E402
from tests.support.uwsgi_server import UwsgiServer  # noqa: E402

# cat_lines (what the request benchmark submits) goes to the tag `bench`, whose handler
# is never started: its jobs stay `new` and nothing competes with the web workers.
# word_count (the download) runs in web worker 1, which needs no mule.
JOB_CONF = """<?xml version="1.0"?>
<job_conf>
    <plugins workers="2">
        <plugin id="local" type="runner" load="galaxy.jobs.runners.local:LocalJobRunner"/>
    </plugins>
    <handlers default="bench">
        <handler id="bench_handler_never_started" tags="bench"/>
    </handlers>
    <destinations default="local">
        <destination id="local" runner="local"/>
    </destinations>
    <tools>
        <tool id="word_count" handler="main.web.1"/>
    </tools>
</job_conf>
"""
CLK_TCK = os.sysconf("SC_CLK_TCK")


def api_headers(server: UwsgiServer) -> dict:
    """The server's admin API key, if this version of the test support has one."""
    key = getattr(server, "api_key", None) or os.environ.get("MULETEER_TEST_API_KEY")
    return {"x-api-key": key} if key else {}


# -- requests/s ---------------------------------------------------------------------------
def _client(args):
    """One client process: `count` requests on one keep-alive connection (reopened only if
    the server closes it). Returns (start, end, statuses, connections opened)."""
    port, method, paths, body, headers, start_at = args
    headers = {"Content-Type": "application/json", **headers}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connections, statuses = 1, {}
    while time.monotonic() < start_at:  # all clients start together
        time.sleep(0.001)
    start = time.monotonic()
    for path in paths:
        for attempt in (1, 2):
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                if attempt == 2:
                    raise
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                connections += 1
        statuses[response.status] = statuses.get(response.status, 0) + 1
        if response.getheader("Connection", "").lower() == "close":
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connections += 1
    end = time.monotonic()
    conn.close()
    return start, end, statuses, connections


def load(pool, port: int, method: str, paths: list[str], body: bytes | None, headers: dict,
         clients: int) -> dict:
    """len(paths) requests split over `clients` processes; requests/s over the wall time."""
    shares = [paths[i::clients] for i in range(clients)]
    start_at = time.monotonic() + 0.3
    results = pool.map(_client, [(port, method, share, body, headers, start_at) for share in shares])
    wall = max(r[1] for r in results) - min(r[0] for r in results)
    statuses: dict[int, int] = {}
    for r in results:
        for status, count in r[2].items():
            statuses[status] = statuses.get(status, 0) + count
    return {"rps": len(paths) / wall, "statuses": statuses,
            "connections": sum(r[3] for r in results)}


def bench_requests(server: UwsgiServer, nginx: NginxServer, n: int, clients: int, repeat: int) -> None:
    headers = api_headers(server)
    post_body = b'{"tool_id": "cat_lines", "params": {"text": "bench", "times": 1}}'
    fronts = [("through nginx", nginx.port), ("straight (uWSGI http)", server.port)]
    print(f"\nrequests/s: {n} requests, {clients} client processes on keep-alive connections, "
          f"median of {repeat} rounds (first a warm-up of {n // 10} per front)")
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        for _, port in fronts:  # warm-up: imports, connections, SQLite pages; also job ids
            load(pool, port, "POST", ["/api/jobs"] * (n // 10), post_body, headers, clients)
        job_ids = [j["id"] for j in requests.get(f"{server.url}/api/jobs?limit=100", headers=headers,
                                                 timeout=30).json()["jobs"]]
        get_paths = [f"/api/jobs/{job_ids[i % len(job_ids)]}" for i in range(n)]
        for label, method, paths, body in (("POST /api/jobs", "POST", ["/api/jobs"] * n, post_body),
                                           ("GET /api/jobs/N", "GET", get_paths, None)):
            rounds = {name: [] for name, _ in fronts}
            for _ in range(repeat):
                for name, port in fronts:  # alternate, so drift hits both alike
                    rounds[name].append(load(pool, port, method, paths, body, headers, clients))
            for name, _ in fronts:
                rps = statistics.median(r["rps"] for r in rounds[name])
                statuses: dict[int, int] = {}
                for r in rounds[name]:
                    for status, count in r["statuses"].items():
                        statuses[status] = statuses.get(status, 0) + count
                conns = sum(r["connections"] for r in rounds[name])
                print(f"  {label:<16} {name:<22} {rps:8.0f} req/s   "
                      f"(rounds: {', '.join('%.0f' % r['rps'] for r in rounds[name])}; "
                      f"statuses {dict(sorted(statuses.items()))}; {conns} connections)")


# -- downloads ----------------------------------------------------------------------------
def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes (fields 14 and 15 of /proc/PID/stat)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()  # after "(comm)", which may hold spaces
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as fh:
        return [int(p) for p in fh.read().split()]


def web_worker_pids(server: UwsgiServer) -> list[int]:
    handlers = requests.get(f"{server.url}/api/handlers", headers=api_headers(server),
                            timeout=30).json()["handlers"]
    return [h["pid"] for h in handlers if h["strategy"] == "web"]


def big_output(server: UwsgiServer, size: int) -> str:
    """A finished word_count job whose output `report` is replaced by a sparse file."""
    headers = api_headers(server)
    response = requests.post(f"{server.url}/api/jobs", headers=headers, timeout=30,
                             json={"tool_id": "word_count", "params": {"text": "big"}})
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]
    deadline = time.monotonic() + 60
    while (state := requests.get(f"{server.url}/api/jobs/{job_id}", headers=headers,
                                 timeout=30).json()["state"]) not in ("ok", "error"):
        assert time.monotonic() < deadline, f"job {job_id} still {state}"
        time.sleep(0.1)
    assert state == "ok", state
    path = os.path.join(working_directory(os.path.join(server.directory, "database", "jobs"), job_id),
                        "outputs", "report.txt")
    with open(path, "r+b") as fh:
        fh.truncate(size)  # sparse: reading it costs no disk I/O
    return f"/api/jobs/{job_id}/outputs/report"


def download(port: int, path: str, headers: dict, size: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    start = time.monotonic()
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    assert response.status == 200, (response.status, response.read(500))
    received = 0
    while chunk := response.read(1 << 20):
        received += len(chunk)
    elapsed = time.monotonic() - start
    conn.close()
    assert received == size, f"received {received} of {size} bytes"
    return elapsed


def bench_downloads(cases: list[tuple], size: int, repeat: int) -> None:
    print(f"\n{size / 2**20:.0f} MiB output download, median of {repeat} "
          "(CPU = user+system seconds during the download)")
    print(f"  {'path':<44} {'seconds':>8} {'MB/s':>7} {'web workers CPU':>16} {'front CPU':>10}")
    for label, server, port, front_pids in cases:
        path = big_output(server, size)
        workers = web_worker_pids(server)
        runs = []
        for _ in range(repeat):
            before = cpu_seconds(workers), cpu_seconds(front_pids)
            elapsed = download(port, path, api_headers(server), size)
            after = cpu_seconds(workers), cpu_seconds(front_pids)
            runs.append((elapsed, after[0] - before[0], after[1] - before[1]))
        seconds = statistics.median(r[0] for r in runs)
        print(f"  {label:<44} {seconds:8.2f} {size / seconds / 1e6:7.0f} "
              f"{statistics.median(r[1] for r in runs):15.2f}s {statistics.median(r[2] for r in runs):9.2f}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="requests per front and round (2000)")
    parser.add_argument("--clients", type=int, default=4, help="client processes (4)")
    parser.add_argument("--size-mb", type=int, default=1024, help="download size in MiB (1024)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are printed (3)")
    parser.add_argument("--nginx-workers", type=int, default=1, help="nginx worker_processes (1)")
    args = parser.parse_args()
    if not 1 <= args.n <= 100_000 or not 1 <= args.clients <= 32 or not 1 <= args.repeat <= 10:
        parser.error("keep -n within 1..100000, --clients 1..32, --repeat 1..10")
    if not os.access(NGINX, os.X_OK):
        print(f"{NGINX} is missing: run scripts/nginx-install", file=sys.stderr)
        return 1
    size = args.size_mb * 2**20

    print(f"bench_nginx: {os.cpu_count()} cores; uWSGI 2 web workers x 4 threads, no mules; "
          f"nginx {args.nginx_workers} worker(s), config from contrib/nginx/muleteer.conf")
    started = []
    with tempfile.TemporaryDirectory(prefix="bench-nginx-") as tmp:
        try:
            # A: X-Accel-Redirect on; nginx on its unix socket, and its own http: port.
            accel = start_stack(os.path.join(tmp, "a"), accel=True, workers=args.nginx_workers,
                                processes=2, job_conf=JOB_CONF, mules=0)
            started += accel[::-1]
            # B: X-Accel-Redirect off: files come from the web worker, straight or via nginx.
            plain = start_stack(os.path.join(tmp, "b"), accel=False, workers=args.nginx_workers,
                                processes=2, job_conf=JOB_CONF, mules=0)
            started += plain[::-1]

            bench_requests(*accel, n=args.n, clients=args.clients, repeat=args.repeat)

            def router_pids(server):  # uWSGI's children that are not web workers: its http router
                workers = set(web_worker_pids(server))
                return [p for p in children(server.process.pid) if p not in workers]

            (server_a, nginx_a), (server_b, nginx_b) = accel, plain
            bench_downloads([
                ("through nginx, X-Accel-Redirect (nginx sends)", server_a, nginx_a.port,
                 nginx_a.worker_pids()),
                ("straight from the worker (uWSGI http)", server_b, server_b.port, router_pids(server_b)),
                ("through nginx from the worker (no X-Accel)", server_b, nginx_b.port,
                 nginx_b.worker_pids()),
            ], size, args.repeat)
        finally:
            for process in started:
                process.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
