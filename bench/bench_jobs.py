"""Benchmark the job server core against a running server (./run.sh --daemon).

    MULETEER_API_KEY=<an admin's key> .venv/bin/python bench/bench_jobs.py [--url http://127.0.0.1:8080] [-n 2000]

Prints, for a trivial tool (noop):
  1. POST /api/jobs requests/s (several client processes, the jobs then run too);
  2. end to end: N jobs submitted at full speed, jobs/s from the first submit to the
     last end, submit->running and submit->finished p50/p99 (server timestamps), and the
     CPU per job of the mules, their job scripts and the web workers (from /proc, when
     the server runs on this machine);
  3. the same latencies paced at --rate jobs/s;
  4. the floors, with no server: fork+exec of /bin/true and the same job scripts, each
     launched by a plain Python loop (one loop, and one loop per core); then end to end as
     a ratio of the /bin/true floor per core (issue 15's target: at least 0.3) and of the
     job scripts' floor per core;
  5. lost or stuck jobs (must be 0), 5xx answers (must be 0), failed mule messages
     (a full queue: those jobs were found by the sweep instead), handler RSS and PSS.
Run it on a quiet server: it waits until no job is active.
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import sys
import tempfile
import time
import urllib.parse
from datetime import datetime
from types import SimpleNamespace


from muleteer.job_files import JobFiles  # noqa: E402

TERMINAL = ("ok", "error", "deleted")


class Client:
    """An HTTP/1.1 client on one kept-alive connection, reopened if the server closes it."""

    def __init__(self, url, key=None):
        parsed = urllib.parse.urlparse(url)
        self.host, self.port = parsed.hostname, parsed.port or 80
        self.key = key or os.environ.get("MULETEER_API_KEY", "")
        self.conn = None

    def request(self, method, path, body=None):
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if self.key:
            headers["x-api-key"] = self.key
        payload = json.dumps(body) if body is not None else None
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            try:
                self.conn.request(method, path, body=payload, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.close()
                return response.status, data
            except (http.client.HTTPException, ConnectionError):
                self.close()
                if attempt == 2 or method != "GET":
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def get(self, path):
        status, data = self.request("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {data[:200]!r}")
        return json.loads(data)


class Submissions:
    """What a client's POSTs came to: accepted ids, refusals, and 5xx answers."""

    def __init__(self, client, tool):
        self.client, self.tool = client, tool
        self.ids, self.errors, self.server_errors = [], 0, 0

    def post(self):
        status, data = self.client.request("POST", "/api/jobs", {"tool_id": self.tool, "params": {}})
        if status == 201:
            self.ids.append(json.loads(data)["id"])
        else:
            self.errors += 1
            self.server_errors += status >= 500

    def result(self):
        return self.ids, self.errors, self.server_errors


def _post_worker(args):
    url, count, tool, key = args
    posts = Submissions(Client(url, key), tool)
    for _ in range(count):
        posts.post()
    return posts.result()


def submit_burst(url, n, tool, clients, key=None):
    shares = [n // clients + (1 if i < n % clients else 0) for i in range(clients)]
    started = time.monotonic()
    with multiprocessing.Pool(clients) as pool:
        results = pool.map(_post_worker, [(url, share, tool, key) for share in shares])
    elapsed = time.monotonic() - started
    ids = [i for r in results for i in r[0]]
    return ids, elapsed, sum(r[1] for r in results), sum(r[2] for r in results)


def submit_paced(url, n, tool, rate, key=None):
    posts = Submissions(Client(url, key), tool)
    started = time.monotonic()
    for k in range(n):
        delay = started + k / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        posts.post()
    return posts.result()


def active_count(client):
    return sum(client.get(f"/api/jobs?state={s}&limit=1&all=1")["total"]
               for s in ("new", "queued", "running", "deleting"))


def wait_quiet(client, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if active_count(client) == 0:
            return True
        time.sleep(0.25)
    return False


def fetch_jobs(client, ids):
    wanted, found = set(ids), {}
    offset = 0
    while len(found) < len(wanted):
        page = client.get(f"/api/jobs?limit=1000&offset={offset}&all=1")
        if not page["jobs"]:
            break
        for job in page["jobs"]:
            if job["id"] in wanted:
                found[job["id"]] = job
        if page["jobs"][-1]["id"] < min(wanted):
            break
        offset += 1000
    return found


def ts(value):
    return datetime.fromisoformat(value.rstrip("Z")).timestamp() if value else None


def percentile(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def latencies(jobs):
    to_running = [ts(j["start_time"]) - ts(j["create_time"]) for j in jobs if j["start_time"]]
    to_finish = [ts(j["end_time"]) - ts(j["create_time"]) for j in jobs if j["end_time"]]
    return to_running, to_finish


def report_latency(label, jobs, target_p99_ms: float | None = None):
    to_running, to_finish = latencies(jobs)
    p99 = percentile(to_running, 99) * 1000
    target = ""
    if target_p99_ms is not None:
        target = (f" (target: submit->running p99 < {target_p99_ms:.0f} ms: "
                  f"{'met' if p99 < target_p99_ms else 'NOT met'})")
    print(f"  {label}: submit->running p50 {percentile(to_running, 50) * 1000:7.1f} ms  "
          f"p99 {p99:7.1f} ms | submit->finished "
          f"p50 {percentile(to_finish, 50) * 1000:7.1f} ms  p99 {percentile(to_finish, 99) * 1000:7.1f} ms"
          f"{target}")


def check_outcome(label, ids, jobs):
    states = {}
    for job_id in ids:
        state = jobs[job_id]["state"] if job_id in jobs else "missing"
        states[state] = states.get(state, 0) + 1
    lost = len(ids) - states.get("ok", 0)
    print(f"  {label}: states {states}; not ok (lost, stuck or failed): {lost}")
    return lost


TARGET_OF_TRUE = 0.3  # issue 15: end to end at least 0.3 of the fork+exec floor per core
TARGET_PACED_P99_MS = 10.0  # issue 15, at 100 jobs/s
TARGET_MEMORY_MB = 60  # issue 15: each mule and web worker after the full-load run


def _floor_loop(scripts):
    for script in scripts:
        pid = os.posix_spawn("/bin/bash", ["/bin/bash", script], os.environ, setsid=True)
        os.waitpid(pid, 0)
    return len(scripts)


def _true_loop(n):
    for _ in range(n):
        pid = os.posix_spawn("/bin/true", ["/bin/true"], os.environ, setsid=True)
        os.waitpid(pid, 0)
    return n


def true_floor(n, loops):
    """fork+exec of /bin/true in its own session, the job's own cost left out: the most any
    job server could do on this machine."""
    started = time.monotonic()
    if loops == 1:
        _true_loop(n)
    else:
        with multiprocessing.Pool(loops) as pool:
            pool.map(_true_loop, [n // loops + (i < n % loops) for i in range(loops)])
    return n / (time.monotonic() - started)


def floor(n, loops):
    """The same job scripts, launched with no server: the most the machine can do."""
    with tempfile.TemporaryDirectory() as tmp:
        config = SimpleNamespace(new_file_path=os.path.join(tmp, "tmp"), environment_setup_file="",
                                 umask=0o077)
        scripts = []
        for i in range(n):
            files = JobFiles(os.path.join(tmp, "jobs", f"{i // 1000:03d}", str(i)))
            files.create()
            job = SimpleNamespace(id=i, tool_id="noop", tool_version="1.0.0", command_line="true")
            scripts.append(files.write_script(job, None, config))
        started = time.monotonic()
        if loops == 1:
            _floor_loop(scripts)
        else:
            with multiprocessing.Pool(loops) as pool:
                pool.map(_floor_loop, [scripts[i::loops] for i in range(loops)])
        return n / (time.monotonic() - started)


def handler_stats(client):
    handlers = client.get("/api/handlers")["handlers"]
    failed = sum(h.get("messages_failed") or 0 for h in handlers)
    memory = {}
    for h in handlers:
        try:
            memory[h["name"]] = _memory_mb(h["pid"])
        except (OSError, KeyError, ValueError):
            pass
    return failed, memory


def _memory_mb(pid) -> tuple[int, int]:
    """(RSS, PSS) in MB. uWSGI forks its workers and mules from a master that imported the
    libraries (preload.py): RSS counts the pages they still share once in every process,
    PSS splits each shared page among its sharers (the processes' PSS add up to what they
    all use)."""
    values = {}
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            name, _, rest = line.partition(":")
            if name in ("Rss", "Pss"):
                values[name] = int(rest.split()[0]) // 1024
    return values["Rss"], values["Pss"]


def cpu_ticks(client) -> dict:
    """{handler name: (own CPU ticks, its waited-for children's)} of the handlers on this
    machine (/proc/PID/stat); a mule's children are its job scripts."""
    ticks = {}
    for h in client.get("/api/handlers")["handlers"]:
        try:
            with open(f"/proc/{h['pid']}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, KeyError, TypeError):
            continue
        ticks[h["name"]] = (int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14]))
    return ticks


def report_cpu(before: dict, after: dict, jobs: int) -> None:
    """CPU per job by role over a run: steadier than a rate on a noisy machine."""
    per_tick = 1000.0 / os.sysconf("SC_CLK_TCK") / max(jobs, 1)
    mules = web = scripts = 0
    for name, (own, children) in after.items():
        if name not in before:
            continue
        own -= before[name][0]
        if ".job-handlers." in name:
            mules += own
            scripts += children - before[name][1]
        else:
            web += own
    print(f"  CPU per job: handlers (mules) {mules * per_tick:.1f} ms, their job scripts "
          f"{scripts * per_tick:.1f} ms, web workers {web * per_tick:.1f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("-n", type=int, default=2000, help="jobs in the full-load run")
    parser.add_argument("--post-n", type=int, default=1000, help="requests in the POST rate run")
    parser.add_argument("--paced-n", type=int, default=1000, help="jobs in the paced run")
    parser.add_argument("--rate", type=float, default=100.0, help="paced submissions per second")
    parser.add_argument("--clients", type=int, default=4, help="client processes at full load")
    parser.add_argument("--tool", default="noop")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--key", default=os.environ.get("MULETEER_API_KEY", ""),
                        help="an admin's API key (default: $MULETEER_API_KEY)")
    args = parser.parse_args()
    if urllib.parse.urlparse(args.url).hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("bench: loopback addresses only")
    client = Client(args.url, args.key)
    if not wait_quiet(client, 60):
        sys.exit("bench: the server still has active jobs after 60 s; run on a quiet server")
    failed_before, _ = handler_stats(client)
    print(f"Muleteer benchmark against {args.url} ({os.cpu_count()} cores), tool {args.tool}")
    total_lost = total_5xx = 0

    ids, elapsed, errors, server_errors = submit_burst(args.url, args.post_n, args.tool, args.clients,
                                                       args.key)
    print(f"1. POST /api/jobs: {len(ids)} accepted in {elapsed:.2f} s = {len(ids) / elapsed:.0f} req/s "
          f"({args.clients} client processes; {errors} refused, {server_errors} 5xx)")
    wait_quiet(client, args.timeout)
    total_lost += check_outcome("those jobs", ids, fetch_jobs(client, ids))
    total_5xx += server_errors

    ticks_before = cpu_ticks(client)
    ids, elapsed, errors, server_errors = submit_burst(args.url, args.n, args.tool, args.clients,
                                                       args.key)
    if not wait_quiet(client, args.timeout):
        print(f"  jobs still active after {args.timeout} s")
    ticks_after = cpu_ticks(client)
    jobs = fetch_jobs(client, ids)
    ends = [ts(j["end_time"]) for j in jobs.values() if j["end_time"]]
    starts = [ts(j["create_time"]) for j in jobs.values()]
    e2e = len(ends) / (max(ends) - min(starts)) if ends else 0.0
    print(f"2. Full load, {args.n} jobs: end to end {e2e:.0f} jobs/s "
          f"(submitting alone took {elapsed:.2f} s; {server_errors} 5xx)")
    report_latency("full load", list(jobs.values()))
    report_cpu(ticks_before, ticks_after, len(ids))
    total_lost += check_outcome("full load", ids, jobs)
    total_5xx += server_errors

    ids, errors, server_errors = submit_paced(args.url, args.paced_n, args.tool, args.rate, args.key)
    wait_quiet(client, args.timeout)
    jobs = fetch_jobs(client, ids)
    print(f"3. Paced at {args.rate:.0f} jobs/s, {args.paced_n} jobs:")
    report_latency("paced", list(jobs.values()), TARGET_PACED_P99_MS)
    total_lost += check_outcome("paced", ids, jobs)
    total_5xx += server_errors

    cores = os.cpu_count() or 1
    true_one, true_per_core = true_floor(args.n, 1), true_floor(args.n, cores)
    one, per_core = floor(args.n, 1), floor(args.n, cores)
    print("4. Floors (plain Python loops, no server; one loop / one loop per core):")
    print(f"   fork+exec /bin/true: {true_one:.0f} / {true_per_core:.0f} per s; "
          f"the job scripts: {one:.0f} / {per_core:.0f} jobs/s")
    ratio = e2e / true_per_core
    print(f"   end to end / /bin/true floor per core: {ratio:.2f} (target: at least "
          f"{TARGET_OF_TRUE}: {'met' if ratio >= TARGET_OF_TRUE else 'NOT met'}); "
          f"end to end / job scripts' floor per core: {e2e / per_core:.2f}")

    failed_after, memory = handler_stats(client)
    print(f"5. Not ok: {total_lost} (must be 0); 5xx: {total_5xx} (must be 0); "
          f"mule messages that could not be sent (swept instead): {failed_after - failed_before}")
    print("   RSS (PSS) MB: " + ", ".join(f"{name} {rss} ({pss})"
                                        for name, (rss, pss) in sorted(memory.items())))
    if memory:
        def verdict(values):
            return "met" if max(values) < TARGET_MEMORY_MB else "NOT met"
        print(f"   (target: each under {TARGET_MEMORY_MB} MB: RSS "
              f"{verdict([m[0] for m in memory.values()])}, PSS "
              f"{verdict([m[1] for m in memory.values()])})")
    return 1 if total_lost or total_5xx else 0


if __name__ == "__main__":
    sys.exit(main())
