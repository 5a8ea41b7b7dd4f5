"""The one place that touches the `uwsgi` module.

`import uwsgi` only works inside a uWSGI process, so everything else asks this
module, which answers sensibly outside uWSGI too (unit tests, webless handlers).
The uWSGI facts behind the choices here are in docs/uwsgi.md.
"""
from __future__ import annotations

try:
    import uwsgi  # type: ignore[import-not-found]
except ImportError:  # not running under uWSGI
    uwsgi = None


def running() -> bool:
    return uwsgi is not None


def option(name: str) -> list[str]:
    """All values of a uWSGI option (repeated options come back as a list)."""
    if uwsgi is None:
        return []
    value = uwsgi.opt.get(name)
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def config_file() -> str | None:
    values = option("yaml")
    return values[0] if values else None


def worker_id() -> int:
    return uwsgi.worker_id() if uwsgi else 0


def mule_id() -> int:
    return uwsgi.mule_id() if uwsgi else 0


def farms() -> dict[str, list[int]]:
    """`farm: name:1,2,3` options as {name: [1, 2, 3]}."""
    result = {}
    for spec in option("farm"):
        name, _, ids = spec.partition(":")
        result[name] = [int(i) for i in ids.split(",") if i.strip().isdigit()]
    return result


def mule_ids() -> set[int]:
    """Mules that exist: members of a farm, or 1..N from `mules: N` / repeated `mule:`.

    uwsgi.opt keeps only one value of a repeated `mule:`, so farms are the reliable
    record of mule ids (uWSGI refuses to start with a farm naming a missing mule).
    """
    ids = {mule for members in farms().values() for mule in members}
    count = sum(int(v) for v in option("mules") if v.isdigit()) + len(option("mule"))
    return ids | set(range(1, count + 1))


def send_to_mule(data: bytes, mule: int) -> bool:
    """Queue `data` for mule N; False when it could not be queued."""
    if uwsgi is None:
        return False
    try:
        return bool(uwsgi.mule_msg(data, mule))
    except Exception:  # uWSGI raises for a full queue on some paths
        return False


def get_message(timeout: float, buffer_size: int = 65536) -> bytes | None:
    """Next message for this mule (its own queue, shared queue, its farms), or None.

    uWSGI takes whole seconds; a signal or the timeout gives None. Farm queues are not
    read: a farm's queue is one socket that all its mules poll, and the mules that lose
    the race for a message block in read() past their timeout (uWSGI 2.0.31,
    core/mule.c), which would stall their sweeps. Messages go to one mule instead.
    """
    return uwsgi.mule_get_msg(farms=False, timeout=max(1, int(round(timeout))),
                              buffer_size=buffer_size)


def on_post_fork(fn) -> None:
    """Run fn() in every process uWSGI forks (web workers and mules)."""
    if uwsgi is None:
        return
    previous = getattr(uwsgi, "post_fork_hook", None)

    def hook():
        if previous:
            previous()
        fn()

    uwsgi.post_fork_hook = hook
