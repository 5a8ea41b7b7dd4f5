#!/usr/bin/env python3
"""Smoke test of Grid Engine through DRMAA, printing what a DRMAA runner sees.

Run after scripts/cluster/up, with the drmaa package (0.7.9) importable:

    . scripts/cluster/env.sh
    python scripts/cluster/drmaa-smoke.py            # human-readable report
    python scripts/cluster/drmaa-smoke.py --quick    # one job only (seconds)

Each scenario prints the job states seen while polling (with the time since
submission), the JobInfo returned by wait(), and the exact exception class and
text for the calls that fail. tests/data/cluster/sge-drmaa-smoke.txt is one
saved run. Exits non-zero if the basic job does not finish with status 0.
"""

import os
import shutil
import sys
import tempfile
import time

TLS = "glibc.rtld.optional_static_tls=16384"

# libdrmaa -> libjemalloc needs static TLS that glibc only reserves when told at
# process start; a running process cannot fix it. Re-exec ourselves once with it
# so that the smoke test also works from a shell that did not source env.sh.
if TLS not in os.environ.get("GLIBC_TUNABLES", ""):
    if os.environ.get("_MULETEER_DRMAA_REEXEC"):
        sys.exit("GLIBC_TUNABLES still lacks %s after re-exec" % TLS)
    env = dict(os.environ, _MULETEER_DRMAA_REEXEC="1")
    env["GLIBC_TUNABLES"] = ":".join(filter(None, [env.get("GLIBC_TUNABLES"), TLS]))
    env.setdefault("SGE_ROOT", "/var/lib/gridengine")
    env.setdefault("SGE_CELL", "default")
    env.setdefault("DRMAA_LIBRARY_PATH", "/usr/lib/gridengine-drmaa/lib/libdrmaa.so.1.0")
    print("# re-exec with GLIBC_TUNABLES=%s" % env["GLIBC_TUNABLES"], file=sys.stderr)
    os.execve(sys.executable, [sys.executable] + sys.argv, env)

import drmaa  # noqa: E402  (needs the environment fixed above)

POLL = 0.1  # seconds between jobStatus calls
WORK = tempfile.mkdtemp(prefix="drmaa-smoke-")
os.chmod(WORK, 0o755)


def exc_text(exc):
    """'module.Class: text', the way a runner would log it."""
    return "%s.%s: %s" % (type(exc).__module__, type(exc).__name__, str(exc).strip())


def template(session, command, args=(), native=None, hold=False, name="smoke"):
    jt = session.createJobTemplate()
    jt.remoteCommand = command
    jt.args = list(args)
    jt.jobName = name
    # Without these the job runs in $HOME and writes name.oNNN there.
    jt.workingDirectory = WORK
    jt.outputPath = ":" + os.path.join(WORK, name + ".out")  # must start with ':'
    jt.joinFiles = True
    if native:
        jt.nativeSpecification = native
    if hold:
        jt.jobSubmissionState = drmaa.JobSubmissionState.HOLD_STATE
    return jt


def status(session, jobid):
    try:
        return session.jobStatus(jobid)
    except drmaa.errors.DrmaaException as exc:
        return "EXCEPTION " + exc_text(exc)


def watch(session, jobid, t0, until=("done", "failed"), limit=30.0):
    """Poll jobStatus; print each change of state with seconds since t0."""
    last = None
    deadline = time.monotonic() + limit
    polls = 0
    while time.monotonic() < deadline and polls < limit / POLL + 10:
        polls += 1
        st = status(session, jobid)
        if st != last:
            print("  t=%5.2fs jobStatus=%s" % (time.monotonic() - t0, st))
            last = st
        if st in until or st.startswith("EXCEPTION"):
            return st
        time.sleep(POLL)
    print("  (still %s after %.0fs of polling)" % (last, limit))
    return last


def show_wait(session, jobid, timeout=30):
    try:
        info = session.wait(jobid, timeout)
    except drmaa.errors.DrmaaException as exc:
        print("  wait() raised " + exc_text(exc))
        return None
    print("  wait(): hasExited=%s exitStatus=%s hasSignal=%s terminatedSignal=%r "
          "hasCoreDump=%s wasAborted=%s" % (info.hasExited, info.exitStatus, info.hasSignal,
                                            info.terminatedSignal, info.hasCoreDump, info.wasAborted))
    usage = info.resourceUsage or {}
    print("  wait(): resourceUsage keys=%s" % ",".join(sorted(usage)))
    print("  jobStatus after wait(): %s" % status(session, jobid))
    return info


def scenario(title):
    print()
    print("== " + title)


def run(session, title, jt, **watch_args):
    scenario(title)
    t0 = time.monotonic()
    try:
        jobid = session.runJob(jt)
    except drmaa.errors.DrmaaException as exc:
        print("  runJob() raised " + exc_text(exc))
        return None, None
    print("  runJob() -> %r (%.2fs)" % (jobid, time.monotonic() - t0))
    return jobid, t0


def main():
    quick = "--quick" in sys.argv[1:]
    s = drmaa.Session()
    s.initialize()
    ok = False
    try:
        print("contact=%s" % s.contact)
        print("drmsInfo=%s drmaaImplementation=%s version=%s" % (s.drmsInfo, s.drmaaImplementation, s.version))
        print("SGE_ROOT=%s SGE_CELL=%s DRMAA_LIBRARY_PATH=%s" % (
            os.environ.get("SGE_ROOT"), os.environ.get("SGE_CELL"), os.environ.get("DRMAA_LIBRARY_PATH")))

        # 1. A job that runs ~2 s and exits 0.
        jt = template(s, "/bin/sh", ["-c", "sleep 2; echo hello from $JOB_ID"], name="ok")
        jobid, t0 = run(s, "ok job: /bin/sh -c 'sleep 2; echo ...'", jt)
        if jobid:
            watch(s, jobid, t0)
            info = show_wait(s, jobid)
            ok = bool(info and info.hasExited and info.exitStatus == 0)
            with open(os.path.join(WORK, "ok.out")) as fh:
                print("  output file: %r" % fh.read())
        s.deleteJobTemplate(jt)
        if quick:
            return 0 if ok else 1

        # 2. Non-zero exit: the state is still "done"; the code comes from wait().
        jt = template(s, "/bin/sh", ["-c", "exit 3"], name="exit3")
        jobid, t0 = run(s, "exit 3 job", jt)
        if jobid:
            watch(s, jobid, t0)
            show_wait(s, jobid)
        s.deleteJobTemplate(jt)

        # 3. A native specification the DRM refuses: raised at runJob().
        jt = template(s, "/bin/true", native="-q nosuchqueue", name="badq")
        run(s, "bad nativeSpecification '-q nosuchqueue'", jt)
        s.deleteJobTemplate(jt)

        jt = template(s, "/bin/true", native="-l h_rt=notatime", name="badres")
        run(s, "bad nativeSpecification '-l h_rt=notatime'", jt)
        s.deleteJobTemplate(jt)

        # 4. Held at submission, released, then left to finish.
        jt = template(s, "/bin/true", hold=True, name="held")
        jobid, t0 = run(s, "submitted on hold, then control(RELEASE)", jt)
        if jobid:
            watch(s, jobid, t0, until=("user_on_hold",), limit=5)
            s.control(jobid, drmaa.JobControlAction.RELEASE)
            print("  control(RELEASE) at t=%.2fs" % (time.monotonic() - t0))
            watch(s, jobid, t0)
            show_wait(s, jobid)
        s.deleteJobTemplate(jt)

        # 5. wait() with a timeout on a running job, then terminate it.
        jt = template(s, "/bin/sleep", ["60"], name="killed")
        jobid, t0 = run(s, "running job: wait(timeout=1), then control(TERMINATE)", jt)
        if jobid:
            watch(s, jobid, t0, until=("running",), limit=15)
            try:
                s.wait(jobid, 1)
            except drmaa.errors.DrmaaException as exc:
                print("  wait(jobid, 1) raised " + exc_text(exc))
            s.control(jobid, drmaa.JobControlAction.TERMINATE)
            print("  control(TERMINATE) at t=%.2fs" % (time.monotonic() - t0))
            watch(s, jobid, t0)
            show_wait(s, jobid)
        s.deleteJobTemplate(jt)

        # 6. A command that does not exist.
        jt = template(s, "/nonexistent/command", name="nocmd")
        jobid, t0 = run(s, "remoteCommand that does not exist", jt)
        if jobid:
            st = watch(s, jobid, t0, limit=15)
            if st not in ("done", "failed"):
                s.control(jobid, drmaa.JobControlAction.TERMINATE)
                print("  control(TERMINATE) (stuck)")
            show_wait(s, jobid)
        s.deleteJobTemplate(jt)

        # 7. A working directory that does not exist.
        jt = template(s, "/bin/true", name="nowd")
        jt.workingDirectory = "/nonexistent/dir"
        jobid, t0 = run(s, "workingDirectory that does not exist", jt)
        if jobid:
            st = watch(s, jobid, t0, limit=15)
            if st not in ("done", "failed"):
                s.control(jobid, drmaa.JobControlAction.TERMINATE)
                print("  control(TERMINATE) (stuck)")
            show_wait(s, jobid)
        s.deleteJobTemplate(jt)

        # 8. Ids the session does not know.
        scenario("jobStatus / control / wait on an unknown job id")
        print("  jobStatus('999999'): %s" % status(s, "999999"))
        for label, call in (("control('999999', TERMINATE)", lambda: s.control("999999", drmaa.JobControlAction.TERMINATE)),
                            ("wait('999999', 1)", lambda: s.wait("999999", 1))):
            try:
                call()
                print("  %s: no exception" % label)
            except drmaa.errors.DrmaaException as exc:
                print("  %s raised %s" % (label, exc_text(exc)))
    finally:
        s.exit()
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        rc = main()
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    sys.exit(rc)
