"""Benchmark datasets: a large resumable upload and its download, each next to a floor.

    .venv/bin/python bench/bench_datasets.py [--size-mib 1024] [--repeat 3]   # --size-mib 64: a quick run

Starts its own servers (generated configs, free ports of 127.0.0.1, one temporary
directory; scripts/nginx-install first), like bench/bench_nginx.py:
  A: uWSGI behind a private nginx from contrib/nginx/muleteer.conf (start_stack, with
     nginx_x_accel_redirect_base), plus a location of the bench's own, /_bench_static/,
     serving A's file_path as static files;
  B: uWSGI alone (its http: port), without X-Accel-Redirect, so its worker sends files.
Both: 2 web workers x 4 threads, no mules. One file of random bytes (--size-mib) is
written next to the servers' database/ (same filesystem). Each upload is timed right
after its own floor, a cp, and each of the two starts from the same point (quiesce():
dirty pages written back, then QUIET seconds in which the VM reclaims freed memory), so
neither pays for the other's writes nor writes into pages the other just freed. It
prints, median of --repeat:

- Upload: tus with tuspy (4 MiB chunks: creation + PATCHes), then the finishing
  POST /api/datasets {"upload_id", "format": "data"} (it renames the upload into
  file_path, then hashes and fsyncs it),
  straight to B's uWSGI http and through A's nginx: seconds of each part (of the round
  with the median total), MB/s of the total, the median of each round's ratio to its
  own floor, CPU seconds of
  the web workers, of the front (uWSGI's http router + fastrouter, or nginx) and of this
  client during it. The floor: a plain `cp` of the same file into database/ (also
  shown: cp followed by fsync, as the server fsyncs what it stores). Target >= 0.5.
- The web workers' RSS during each upload (VmRSS of every worker, from GET /api/handlers
  rows with strategy "web", sampled every 0.2 s): the largest growth over the RSS just
  before that upload. Streamed uploads keep it at a few MB, whatever the file size.
- Download of GET /api/datasets/N/display: from B's worker (uWSGI http), and through A's
  nginx with X-Accel-Redirect; floor: A's nginx serving the same file as a static file.
  Ratio X-Accel / static: target >= 0.8. Each path's bytes are checked (sha256) once,
  in an untimed first download.

If the contrib config refuses a 4 MiB chunk (its client_max_body_size), this says so and
adds, in the bench's copy only, a location for the tus path with a larger limit.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import requests
from tusclient import client as tus_client

from muleteer.dataset_files import relative_path  # noqa: E402
from tests.support.nginx_server import NGINX, start_stack
from tests.support.uwsgi_server import UwsgiServer

TUS_PATH = "/api/upload/resumable_upload/"
CHUNK = 4 * 2**20
STATIC = "/_bench_static/"
QUIET = 3.0  # seconds of quiet before each timed step (see quiesce)
# No job runs here: the only handler tag is never started (as bench_nginx.py).
JOB_CONF = """<?xml version="1.0"?>
<job_conf>
    <plugins workers="1">
        <plugin id="local" type="runner" load="galaxy.jobs.runners.local:LocalJobRunner"/>
    </plugins>
    <handlers default="bench">
        <handler id="bench_handler_never_started" tags="bench"/>
    </handlers>
    <destinations default="local">
        <destination id="local" runner="local"/>
    </destinations>
</job_conf>
"""


def headers(server: UwsgiServer) -> dict:
    return {"x-api-key": server.api_key}


def file_path(server: UwsgiServer) -> str:
    return os.path.realpath(os.path.join(server.directory, "database", "files"))


def web_worker_pids(server: UwsgiServer) -> list[int]:
    rows = requests.get(f"{server.url}/api/handlers", headers=headers(server), timeout=30).json()["handlers"]
    return sorted({h["pid"] for h in rows if h["strategy"] == "web"})


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes (fields 14 and 15 of /proc/PID/stat)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as fh:
        return [int(p) for p in fh.read().split()]


def rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class RssSampler:
    """VmRSS of some pids every `interval` s, in a thread, from start to stop."""

    def __init__(self, pids: list[int], interval: float = 0.2):
        self.pids, self.interval = pids, interval
        self.baseline = {pid: rss_kib(pid) for pid in pids}
        self.peak = dict(self.baseline)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for pid in self.pids:
                value = rss_kib(pid)
                if value is not None and self.peak.get(pid) is not None:
                    self.peak[pid] = max(self.peak[pid], value)
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def growth_mib(self) -> float:
        """The largest growth of one worker over its own baseline."""
        return max((self.peak[p] - self.baseline[p]) / 1024 for p in self.pids
                   if self.baseline.get(p) is not None)

    def peak_mib(self) -> float:
        return max(v for v in self.peak.values() if v is not None) / 1024


# -- the file and the floors ----------------------------------------------------------
def make_file(path: str, size: int) -> str:
    """`size` random bytes (nothing sparse or compressible); returns their sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        left = size
        while left:
            block = os.urandom(min(CHUNK, left))
            digest.update(block)
            fh.write(block)
            left -= len(block)
    return digest.hexdigest()


def settle(directory: str) -> None:
    """Write back the filesystem's dirty pages (`sync -f`), so that a measurement does not
    pay for the previous one's writes (the kernel throttles writers past dirty_ratio)."""
    subprocess.run(["sync", "-f", directory], check=True)


def quiesce(directory: str) -> None:
    """The same starting point for a floor and the measurement it is set against: dirty
    pages written back, and a pause in which the VM takes back the memory freed by the
    previous step (virtio_balloon's free page reporting, on these machines: page-cache
    pages the guest has not touched lately are faulted in from the host at ~250-900 MB/s,
    ones just freed are reused at ~3 GB/s, so a floor on recycled pages set against an
    upload on fresh ones would measure the host, not Muleteer)."""
    settle(directory)
    time.sleep(QUIET)


def cp_once(source: str, target: str, fsync: bool) -> float:
    """Seconds of `cp source target` (and an fsync of target). The target is kept: the
    caller removes it after the measurement set against it, so its pages are not reused."""
    start = time.monotonic()
    subprocess.run(["cp", source, target], check=True)
    if fsync:
        fd = os.open(target, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return time.monotonic() - start


def user_space_copy(source: str, target: str) -> float:
    """Seconds of copying source to target through this process's memory, 1 MiB at a time
    (read, then write), as any server receiving the bytes must do at least once; cp moves
    them inside the kernel (copy_file_range) and never pays that copy."""
    start = time.monotonic()
    buffer = bytearray(2**20)
    with open(source, "rb", buffering=0) as src, open(target, "wb", buffering=0) as dst:
        while n := src.readinto(buffer):
            dst.write(memoryview(buffer)[:n])
    return time.monotonic() - start


# -- upload ---------------------------------------------------------------------------
def upload(base_url: str, server: UwsgiServer, source: str, size: int, front_pids: list[int]) -> dict:
    """tus creation + PATCHes (tuspy, 4 MiB chunks), then the finishing POST, while the
    server's web workers' RSS is sampled. Returns seconds, the dataset, RSS growth and
    CPU seconds (web workers, front, this client)."""
    workers = web_worker_pids(server)
    cpu_before = cpu_seconds(workers), cpu_seconds(front_pids), sum(os.times()[:2])
    with RssSampler(workers) as rss:
        start = time.monotonic()
        uploader = tus_client.TusClient(base_url + TUS_PATH, headers=headers(server)).uploader(
            file_path=source, chunk_size=CHUNK, metadata={"filename": "bench.dat"})
        uploader.upload()
        patched = time.monotonic()
        upload_id = uploader.url.rstrip("/").rsplit("/", 1)[-1]
        response = requests.post(f"{base_url}/api/datasets", headers=headers(server), timeout=600,
                                 json={"upload_id": upload_id, "format": "data"})
        finished = time.monotonic()
    cpu = (cpu_seconds(workers) - cpu_before[0], cpu_seconds(front_pids) - cpu_before[1],
           sum(os.times()[:2]) - cpu_before[2])
    assert response.status_code == 201, (response.status_code, response.text[:500])
    dataset = response.json()
    assert dataset["size"] == size, dataset
    return {"tus": patched - start, "finish": finished - patched, "total": finished - start,
            "dataset": dataset, "rss_growth": rss.growth_mib(), "rss_peak": rss.peak_mib(),
            "samples": rss.samples, "cpu": cpu}


def delete_dataset(server: UwsgiServer, dataset_id: int) -> None:
    response = requests.delete(f"{server.url}/api/datasets/{dataset_id}", headers=headers(server), timeout=60)
    assert response.status_code in (200, 204), (response.status_code, response.text[:300])


def chunk_accepted(base_url: str, server: UwsgiServer, length: int) -> tuple[int, str]:
    """One tus upload of `length` bytes in one PATCH: the PATCH's status (204 = taken)."""
    tus_headers = {**headers(server), "Tus-Resumable": "1.0.0"}
    created = requests.post(base_url + TUS_PATH, timeout=30,
                            headers={**tus_headers, "Upload-Length": str(length)})
    assert created.status_code == 201, (created.status_code, created.text[:300])
    location = requests.compat.urljoin(base_url + TUS_PATH, created.headers["Location"])
    patched = requests.patch(location, data=b"\0" * length, timeout=60, headers={
        **tus_headers, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    requests.delete(location, headers=tus_headers, timeout=30)
    return patched.status_code, patched.text[:200]


# -- nginx config additions (the bench's copy only) -----------------------------------
def location_block(config: str, prefix: str) -> tuple[int, int]:
    """Start and end offsets of `location <prefix> { ... }` (braces balanced)."""
    match = re.search(r"^[ \t]*location " + re.escape(prefix) + r" \{", config, re.M)
    if not match:
        raise AssertionError(f"no `location {prefix}` in the generated nginx config")
    depth, i = 0, match.end() - 1
    while True:
        depth += {"{": 1, "}": -1}.get(config[i], 0)
        i += 1
        if depth == 0:
            return match.start(), i


def patch_nginx_config(path: str, static_root: str, tus_body_limit: int | None) -> None:
    with open(path) as fh:
        config = fh.read()
    start, end = location_block(config, "/")
    app_location = config[start:end]
    extra = (f"    # bench_datasets.py: the floor, the same files served as static files.\n"
             f"    location {STATIC} {{\n        alias {static_root}/;\n    }}\n")
    if tus_body_limit:
        tus = app_location.replace("location / {", f"location {TUS_PATH} {{\n"
                                   f"        client_max_body_size {tus_body_limit};", 1)
        extra += f"    # bench_datasets.py: tus chunks over the contrib client_max_body_size.\n{tus}\n"
    with open(path, "w") as fh:
        fh.write(config[:start] + extra + config[start:])


# -- download -------------------------------------------------------------------------
def download(port: int, path: str, request_headers: dict, size: int, digest: bool = False):
    """Seconds of one GET (and the sha256 of the body if `digest`)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    buffer = memoryview(bytearray(1 << 20))
    sha = hashlib.sha256() if digest else None
    start = time.monotonic()
    conn.request("GET", path, headers=request_headers)
    response = conn.getresponse()
    assert response.status == 200, (response.status, response.read(500))
    received = 0
    while n := response.readinto(buffer):
        received += n
        if sha:
            sha.update(buffer[:n])
    elapsed = time.monotonic() - start
    conn.close()
    assert received == size, f"received {received} of {size} bytes from {path}"
    return elapsed, sha.hexdigest() if sha else None


def median(values) -> float:
    return statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="file size in MiB (1024; 64 for a quick run)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are printed (3)")
    args = parser.parse_args()
    if not 1 <= args.size_mib <= 8192 or not 1 <= args.repeat <= 10:
        parser.error("keep --size-mib within 1..8192 and --repeat within 1..10")
    if not os.access(NGINX, os.X_OK):
        print(f"{NGINX} is missing: run scripts/nginx-install", file=sys.stderr)
        return 1
    size = args.size_mib * 2**20
    mb = size / 1e6

    started = []
    with tempfile.TemporaryDirectory(prefix="bench-datasets-") as tmp:
        need = size * 5 + 2**30  # the source, 2 datasets, an upload and a cp at a time; margin
        if shutil.disk_usage(tmp).free < need:
            print(f"not enough room in {tmp}: {need / 2**30:.1f} GiB needed", file=sys.stderr)
            return 1
        try:
            server_a, nginx_a = start_stack(os.path.join(tmp, "a"), accel=True, processes=2,
                                            job_conf=JOB_CONF, mules=0)
            started += [nginx_a, server_a]
            server_b = UwsgiServer(os.path.join(tmp, "b"), processes=2, job_conf=JOB_CONF, mules=0).start()
            started.append(server_b)

            # Does the shipped config take a tus chunk of CHUNK bytes?
            status, text = chunk_accepted(nginx_a.url, server_a, CHUNK)
            contrib_note = "contrib config takes 4 MiB chunks"
            tus_limit = None
            if status != 204:
                tus_limit = CHUNK * 2 + 2**20  # tus_max_chunk (8 MiB) plus headroom
                contrib_note = (f"contrib config REFUSES a 4 MiB chunk ({status}: {text.strip()}); "
                                f"bench copy adds `location {TUS_PATH}` client_max_body_size {tus_limit}")
            nginx_a.stop()
            os.makedirs(file_path(server_a), exist_ok=True)
            patch_nginx_config(nginx_a.config_file, file_path(server_a), tus_limit)
            nginx_a.start()
            if tus_limit:
                status, text = chunk_accepted(nginx_a.url, server_a, CHUNK)
                assert status == 204, (status, text)

            source = os.path.join(tmp, "source.dat")
            print(f"bench_datasets: {os.cpu_count()} cores; {args.size_mib} MiB of random bytes; "
                  f"median of {args.repeat}; uWSGI 2 web workers x 4 threads, no mules; nginx 1 worker")
            print(f"  nginx: {contrib_note}")
            sha = make_file(source, size)
            database = os.path.join(server_a.directory, "database")
            assert os.stat(database).st_dev == os.stat(source).st_dev

            # The front: uWSGI's http router and fastrouter (its children that are not web
            # workers), or nginx's workers.
            routers_b = sorted(set(children(server_b.process.pid)) - set(web_worker_pids(server_b)))
            fronts = [("straight (uWSGI http)", server_b.url, server_b, routers_b),
                      ("through nginx", nginx_a.url, server_a, nginx_a.worker_pids())]
            floors, rounds = [], {name: [] for name, *_ in fronts}
            kept = {}
            cp_target = os.path.join(database, "bench-cp-floor.dat")
            for _ in range(args.repeat):  # alternate, so drift hits all alike
                quiesce(database)
                cp_sync = cp_once(source, cp_target, fsync=True)
                os.unlink(cp_target)
                quiesce(database)
                user_copy = user_space_copy(source, cp_target)
                os.unlink(cp_target)
                for name, url, server, front_pids in fronts:
                    # Each upload right after its own floor, from the same starting point.
                    quiesce(database)
                    cp = cp_once(source, cp_target, fsync=False)
                    quiesce(database)
                    result = upload(url, server, source, size, front_pids)
                    os.unlink(cp_target)
                    assert result["dataset"]["sha256"] == sha, "the stored dataset's sha256 differs"
                    if name in kept:
                        delete_dataset(server, kept[name]["id"])
                    kept[name] = result["dataset"]
                    result["cp"] = cp
                    rounds[name].append(result)
                    floors.append((cp, cp_sync, user_copy))

            cp_s, cp_sync_s = median(f[0] for f in floors), median(f[1] for f in floors)
            user_s = median(f[2] for f in floors)
            print(f"\nupload of {args.size_mib} MiB: tus (tuspy, {CHUNK >> 20} MiB chunks) + finishing "
                  f"POST /api/datasets; seconds, MB/s of the total")
            print(f"  {'':<24}{'tus':>7}{'finish':>8}{'total':>8}{'MB/s':>7}{'/cp':>6}"
                  f"  CPU s: workers front client   worker RSS growth (peak)")
            print(f"  {'floor: cp':<24}{'':>7}{'':>8}{cp_s:8.2f}{mb / cp_s:7.0f}{1:6.2f}")
            print(f"  {'(cp + fsync)':<24}{'':>7}{'':>8}{cp_sync_s:8.2f}{mb / cp_sync_s:7.0f}"
                  f"{cp_s / cp_sync_s:6.2f}")
            print(f"  {'(read+write copy)':<24}{'':>7}{'':>8}{user_s:8.2f}{mb / user_s:7.0f}"
                  f"{cp_s / user_s:6.2f}   <- through user space, 1 MiB at a time")
            for name, *_ in fronts:
                rs = rounds[name]
                mid = sorted(rs, key=lambda r: r["total"])[(len(rs) - 1) // 2]  # the median round
                cpu = mid["cpu"]
                total = mid["total"]
                growth = max(r["rss_growth"] for r in rs)
                ratio = median(r["cp"] / r["total"] for r in rs)  # each upload against its own cp
                print(f"  {name:<24}{mid['tus']:7.2f}{mid['finish']:8.2f}"
                      f"{total:8.2f}{mb / total:7.0f}{ratio:6.2f}"
                      f"{cpu[0]:16.1f}{cpu[1]:6.1f}{cpu[2]:7.1f}   +{growth:.1f} MiB "
                      f"({max(r['rss_peak'] for r in rs):.0f} MiB; {sum(r['samples'] for r in rs)} samples)")
            finish = median(r["finish"] for name in rounds for r in rounds[name])
            print("  /cp: median over rounds of (the cp just before that upload) / (the upload)")
            print(f"  /read+write copy: {median(user_s / r['total'] for rs in rounds.values() for r in rs[:]):.2f} "
                  "(all uploads, each against the median user-space copy)")
            print(f"  target: total/cp >= 0.5. The finishing POST (rename, sha256, fsync) runs at {mb / finish:.0f} MB/s "
                  f"in one request (harakiri 60 s in galaxy.yml: ~{mb / finish * 60 / 1e3:.0f} GB)")

            # -- downloads
            id_a, id_b = kept["through nginx"]["id"], kept["straight (uWSGI http)"]["id"]
            paths = [("worker (uWSGI http)", server_b.port, f"/api/datasets/{id_b}/display", headers(server_b)),
                     ("nginx X-Accel-Redirect", nginx_a.port, f"/api/datasets/{id_a}/display", headers(server_a)),
                     ("floor: nginx static", nginx_a.port, STATIC + relative_path(id_a), {})]
            for label, port, path, hdrs in paths:  # untimed: check the bytes, warm up
                _, got = download(port, path, hdrs, size, digest=True)
                assert got == sha, f"{label}: sha256 {got} != {sha}"
            times = {label: [] for label, *_ in paths}
            for _ in range(args.repeat):
                for label, port, path, hdrs in paths:
                    times[label].append(download(port, path, hdrs, size)[0])
            static = median(times["floor: nginx static"])
            print(f"\ndownload of GET /api/datasets/N/display ({args.size_mib} MiB; sha256 checked once "
                  f"per path: ok)")
            print(f"  {'':<24}{'seconds':>8}{'MB/s':>7}{'/static':>8}")
            for label, *_ in paths:
                seconds = median(times[label])
                print(f"  {label:<24}{seconds:8.2f}{mb / seconds:7.0f}{static / seconds:8.2f}")
            print("  target: X-Accel/static >= 0.8")
        finally:
            for process in started:
                process.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
