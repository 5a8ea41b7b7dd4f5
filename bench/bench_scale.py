"""A million jobs: seed a configuration's database with finished jobs, then measure what a
big store costs the server.

    .venv/bin/python bench/bench_scale.py --config galaxy.yml --seed 1000000 --seed-only
    MULETEER_API_KEY=<an admin's key> .venv/bin/python bench/bench_scale.py --config galaxy.yml \\
        [--seed N] [--url http://127.0.0.1:8080]

Seeding writes N finished jobs (ok, error, deleted) with their three history rows, spread
over 100 users (one, bench-heavy@example.org, owns 30% of them), 20 tools and the last
year, straight into the database of `--config` through the project's schema (migrated
first). The job table's indexes are dropped for the bulk insert and built again after it,
the way a migration builds one: the time migration 0013's indexes take is printed.
Without --seed-only it then measures against the server at --url (running on that
configuration): the job list of the heavy user (first page, by state, by tool, a deep page
through `next`, and `offset`), /metrics, /api/handlers, the handlers' sweep times and paced
submit->running (the first --warmup jobs apart), each beside its target and as a ratio to the floor (GET
/api/users/current: one authenticated request that reads nothing else). The heavy user and
an admin (bench-admin@example.org) get a new API key for the run.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sqlalchemy import func, insert, select, text  # noqa: E402

from app.accounts import Accounts  # noqa: E402
from bench_jobs import Client, percentile, submit_paced, ts, wait_quiet  # noqa: E402
from muleteer.config import load_config  # noqa: E402
from muleteer.models import galaxy_user, job, job_state_history  # noqa: E402
from muleteer.store import JobStore, utcnow  # noqa: E402

HEAVY_EMAIL = "bench-heavy@example.org"
ADMIN_EMAIL = "bench-admin@example.org"
USERS = 100
HEAVY_SHARE = 0.3
TOOLS = [f"bench_tool_{i:02d}" for i in range(20)]
CHUNK = 250_000
# Migration 0013's indexes, timed apart: what that migration costs a store this size.
MIGRATION_0013 = ("ix_job_user_id_id", "ix_job_user_state_id", "ix_job_user_tool_id",
                  "ix_job_state_id", "ix_job_state_exit_code_destination")


def bench_users(store) -> tuple[int, list[int]]:
    """The admin's id and the job owners' ids (the heavy one first), made if missing."""
    with store.engine.begin() as conn:
        existing = dict(conn.execute(select(galaxy_user.c.email, galaxy_user.c.id)
                                     .where(galaxy_user.c.email.like("bench-%@example.org"))).all())
        emails = [ADMIN_EMAIL, HEAVY_EMAIL] + [f"bench-user-{i:03d}@example.org" for i in range(1, USERS)]
        now = utcnow()
        for email in emails:
            if email not in existing:
                # Not a real password hash: these accounts are used through API keys only.
                existing[email] = conn.execute(insert(galaxy_user).values(
                    email=email, password_hash="!", is_admin=email == ADMIN_EMAIL,
                    create_time=now)).inserted_primary_key[0]
    return existing[ADMIN_EMAIL], [existing[e] for e in emails[1:]]


# The rows are made by the database itself (INSERT ... SELECT over a series): a Python loop
# over a million rows takes longer than the minute seeding is allowed. Each row's state,
# owner, tool and times come from a multiplicative hash of its number, so a seed is the
# same every time.
SERIES = {
    "sqlite": "WITH RECURSIVE seq(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM seq WHERE k < :n - 1)",
    "postgresql": "WITH seq(k) AS (SELECT generate_series(0, :n - 1)::bigint)",
}
TIME = {  # seconds since the epoch -> the column's value, as SQLAlchemy would store it
    "sqlite": "(strftime('%Y-%m-%d %H:%M:%f', {}, 'unixepoch') || '000')",
    "postgresql": "(to_timestamp({}) AT TIME ZONE 'UTC')",
}
TOOL = {
    "sqlite": "('bench_tool_' || printf('%02d', {}))",
    "postgresql": "('bench_tool_' || lpad(({})::text, 2, '0'))",
}


def hashed(salt: int) -> str:
    return f"(((k + {salt}) * 2654435761) % 4294967296)"


def job_insert(dialect: str) -> str:
    """INSERT the jobs :first .. :first + :n - 1 (see SERIES)."""
    at = TIME[dialect]
    created = f"(:now - {365 * 86400}.0 * (1 - (k + 1.0) / :n) - 900)"
    started = f"({created} + {hashed(4)} % 10)"
    ended = f"({started} + {hashed(5)} % 600)"
    roll = f"({hashed(1)} % 1000)"
    tool = TOOL[dialect].format(f"({hashed(3)} % 20) * (({hashed(3)} / 20) % 20) / 20")
    return f"""{SERIES[dialect]}
INSERT INTO job (id, tool_id, tool_version, params, command_line, state, handler_tag, handler,
                 destination_id, runner, exit_code, create_time, queued_time, start_time,
                 end_time, update_time, attempt, resubmit, user_id, lease)
SELECT :first + k, {tool}, '1.0', '{{}}', 'true',
       CASE WHEN {roll} < 850 THEN 'ok' WHEN {roll} < 950 THEN 'error' ELSE 'deleted' END,
       'job-handlers', 'main.job-handlers.' || (1 + k % 3), 'local', 'local',
       CASE WHEN {roll} < 850 THEN 0 WHEN {roll} < 940 THEN 1 END,
       {at.format(created)}, {at.format(created)}, {at.format(started)}, {at.format(ended)},
       {at.format(ended)}, 1, '[]',
       CASE WHEN {hashed(2)} % 100 < {int(HEAVY_SHARE * 100)} THEN :heavy
            ELSE :others + {hashed(6)} % {USERS - 1} END, 0
FROM seq"""


HISTORY_INSERT = """INSERT INTO job_state_history (id, job_id, state, handler, create_time)
SELECT 3 * id + {offset}, id, {state}, handler, {time} FROM job WHERE id BETWEEN :first AND :last"""


def seed(store, n) -> None:
    _, owners = bench_users(store)
    others = owners[1]
    if owners[1:] != list(range(others, others + USERS - 1)):
        raise SystemExit(f"the bench users' ids are not consecutive: {owners}")
    started = time.monotonic()
    indexes = [i for i in job.indexes] + [i for i in job_state_history.indexes]
    with store.engine.connect() as conn:
        first = (conn.execute(select(func.max(job.c.id))).scalar() or 0) + 1
        history_first = conn.execute(select(func.max(job_state_history.c.id))).scalar() or 0
    first = max(first, history_first // 3 + 1)  # history ids are 3 * job id + 0..2
    with store.engine.begin() as conn:
        # Indexes built once after the rows, not kept up row by row: the bulk path.
        for index in indexes:
            index.drop(conn, checkfirst=True)
        for done in range(0, n, CHUNK):
            part = dict(first=first + done, n=min(CHUNK, n - done), now=time.time(),
                        heavy=owners[0], others=others)
            conn.execute(text(job_insert(store.dialect)), part)
            last = part["first"] + part["n"] - 1
            for offset, (state, column) in enumerate((("'new'", "create_time"),
                                                      ("'running'", "start_time"),
                                                      ("state", "end_time"))):
                conn.execute(text(HISTORY_INSERT.format(offset=offset, state=state, time=column)),
                             dict(first=part["first"], last=last))
        if store.dialect == "postgresql":  # explicit ids leave the sequences behind
            for table in ("job", "job_state_history"):
                conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                     f"(SELECT max(id) FROM {table}))")
    inserted = time.monotonic()
    with store.engine.begin() as conn:
        for index in indexes:
            if index.name not in MIGRATION_0013:
                index.create(conn)
    rest = time.monotonic()
    with store.engine.begin() as conn:
        for index in indexes:
            if index.name in MIGRATION_0013:
                index.create(conn)
    migration = time.monotonic() - rest
    with store.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    total = time.monotonic() - started
    print(f"seeded {n:,} jobs ({3 * n:,} history rows) in {total:.1f} s "
          f"(insert {inserted - started:.1f} s, indexes {time.monotonic() - inserted:.1f} s)  "
          f"target < 60 s for 1,000,000 on SQLite")
    if store.dialect == "postgresql":
        # As a loaded database stands: otherwise autovacuum takes the fresh million rows
        # (and the first reads write their hint bits) while the figures are measured.
        vacuum = time.monotonic()
        with store.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
        print(f"VACUUM ANALYZE after seeding (PostgreSQL): {time.monotonic() - vacuum:.1f} s")
    print(f"migration 0013's indexes on {count_jobs(store):,} jobs: {migration:.1f} s  target: seconds")


def count_jobs(store) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(job)).scalar_one()


def fetch(client, path) -> bytes:
    """One GET on a connection of its own: on a kept-alive one, uWSGI's http router holds
    every answer larger than a few hundred bytes for about 40 ms (Nagle against the
    client's delayed ACK), which would hide the server's own time."""
    conn = http.client.HTTPConnection(client.host, client.port, timeout=60)
    try:
        conn.request("GET", path, headers={"x-api-key": client.key})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status}")
        return body
    finally:
        conn.close()


def timed(client, path, repeat) -> list[float]:
    fetch(client, path)  # warm caches: the steady cost is measured
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fetch(client, path)
        times.append(time.perf_counter() - t0)
    return times


def line(label, times, target_ms, floor_ms):
    p50 = percentile(times, 50) * 1000
    ok = "ok" if p50 < target_ms else "MISSED"
    print(f"  {label:<44} p50 {p50:8.1f} ms  p99 {percentile(times, 99) * 1000:8.1f} ms  "
          f"target < {target_ms:g} ms ({ok})  x{p50 / floor_ms:.1f} floor")


def measure(store, url, repeat, rate, paced, warmup):
    admin_id, owners = bench_users(store)
    accounts = Accounts(store.engine)
    heavy = Client(url, accounts.new_key(owners[0]))
    admin = Client(url, os.environ.get("MULETEER_API_KEY") or accounts.new_key(admin_id))
    with store.engine.connect() as conn:
        owned = conn.execute(select(func.count()).select_from(job)
                             .where(job.c.user_id == owners[0])).scalar_one()
        deep = conn.execute(select(job.c.id).where(job.c.user_id == owners[0])
                            .order_by(job.c.id).limit(1).offset(100)).scalar()
    print(f"against {url}: {count_jobs(store):,} jobs, the heavy user owns {owned:,}; "
          f"{repeat} requests each")
    floor = percentile(timed(heavy, "/api/users/current", repeat), 50) * 1000
    print(f"  floor: GET /api/users/current p50 {floor:.1f} ms")
    line("GET /api/jobs?limit=50", timed(heavy, "/api/jobs?limit=50", repeat), 30, floor)
    line("GET /api/jobs?limit=50&state=error", timed(heavy, "/api/jobs?limit=50&state=error", repeat), 30, floor)
    line(f"GET /api/jobs?limit=50&tool_id={TOOLS[7]}",
         timed(heavy, f"/api/jobs?limit=50&tool_id={TOOLS[7]}", repeat), 30, floor)
    line("GET /api/jobs?limit=50&all=1 (admin)", timed(admin, "/api/jobs?limit=50&all=1", repeat), 30, floor)
    # The last pages, through the cursor a `next` link carries.
    line("GET /api/jobs?limit=50&before=<a last page>",
         timed(heavy, f"/api/jobs?limit=50&before={deep}", repeat), 30, floor)
    walked, path, t0 = 0, "/api/jobs?limit=50", time.perf_counter()
    while path and walked < 200:
        path = json.loads(fetch(heavy, path))["next"]
        walked += 1
    per_page = (time.perf_counter() - t0) / walked * 1000
    print(f"  {'following next, 200 pages':<44} {per_page:8.1f} ms a page  target < 30 ms")
    far = max(owned - 10_000, 0)
    line(f"GET /api/jobs?limit=50&offset={far}",
         timed(heavy, f"/api/jobs?limit=50&offset={far}", max(repeat // 10, 3)), 1000, floor)
    kept = []
    for _ in range(min(repeat, 20)):
        t0 = time.perf_counter()
        heavy.get("/api/jobs?limit=50")
        kept.append(time.perf_counter() - t0)
    print(f"  (the same first page on a kept-alive connection: p50 {percentile(kept, 50) * 1000:.1f} ms)")
    line("GET /metrics", timed(admin, "/metrics", max(repeat // 4, 5)), 100, floor)
    line("GET /api/handlers", timed(admin, "/api/handlers", repeat), 50, floor)
    handlers = admin.get("/api/handlers")["handlers"]
    sweeps = [h.get("sweep_seconds") for h in handlers if h.get("sweep_seconds") is not None]
    if sweeps:
        print(f"  handler sweeps: max {max(sweeps) * 1000:.1f} ms over {len(sweeps)} handlers  "
              "target: flat (as on an empty store)")
    if paced:
        # The mules ran no job during the queries above: their first jobs pay for what a
        # server does once (a tool's command template compiled, a database connection per
        # worker thread opened: ~10 ms each on PostgreSQL, SCRAM). Those come first and are
        # printed apart; the target is on the jobs after them, as bench_jobs' paced part
        # (which follows its full-load run) measures it.
        for label, n, target in ((f"first {warmup} jobs (warm-up)", warmup, None),
                                 (f"{paced} jobs", paced, 10)):
            if n:
                paced_run(admin, url, n, rate, label, target)


def paced_run(admin, url, n, rate, label, target_ms):
    ids, errors, server_errors = submit_paced(url, n, "noop", rate, admin.key)
    wait_quiet(admin, 120)
    to_running = []
    for job_id in ids:
        d = admin.get(f"/api/jobs/{job_id}")
        if d.get("start_time"):
            to_running.append(ts(d["start_time"]) - ts(d["create_time"]))
    p99 = percentile(to_running, 99) * 1000
    verdict = (f"target p99 < {target_ms} ms ({'ok' if p99 < target_ms else 'MISSED'})"
               if target_ms else "no target")
    print(f"  paced {rate:g}/s, {label}: submit->running p50 "
          f"{percentile(to_running, 50) * 1000:.1f} ms  p99 {p99:.1f} ms  {verdict}; "
          f"refused {errors}, 5xx {server_errors}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="the server's galaxy.yml")
    parser.add_argument("--seed", type=int, default=0, help="write this many finished jobs first")
    parser.add_argument("--seed-only", action="store_true", help="seed, measure nothing")
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--repeat", type=int, default=200, help="requests per figure")
    parser.add_argument("--rate", type=float, default=100, help="paced submissions a second")
    parser.add_argument("--paced", type=int, default=500, help="paced submissions (0: none)")
    parser.add_argument("--warmup", type=int, default=50,
                        help="paced submissions before those, printed apart")
    args = parser.parse_args(argv)
    if args.seed < 0 or args.repeat < 1 or args.warmup < 0:
        parser.error("--seed and --warmup must be 0 or more, --repeat 1 or more")
    config = load_config(os.path.abspath(args.config))
    store = JobStore(config.database_connection)
    store.migrate()
    if args.seed:
        seed(store, args.seed)
    if not args.seed_only:
        measure(store, args.url, args.repeat, args.rate, args.paced, args.warmup)


if __name__ == "__main__":
    main()
