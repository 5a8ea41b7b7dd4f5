"""Keys made on first use by whichever process or thread asks first (the session key, the
staging token key): everyone gets the same key, none sees another's half-made file."""
import os
import stat
import threading
from concurrent.futures import ProcessPoolExecutor

from muleteer.secret_files import read_or_create_key


def test_threads_and_processes_asking_at_once_get_one_key(tmp_path):
    path = str(tmp_path / "database" / "key")
    keys, errors = [], []

    def ask():
        try:
            keys.append(read_or_create_key(path))
        except Exception as exc:  # the bug this guards against: a vanished temporary file
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(16)]
    with ProcessPoolExecutor(4) as pool:
        futures = [pool.submit(read_or_create_key, path) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        keys += [f.result(timeout=30) for f in futures]
    assert not errors and len(set(keys)) == 1 and len(keys[0]) == 64
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.listdir(os.path.dirname(path)) == ["key"]  # no candidate left behind
    assert read_or_create_key(path) == keys[0]
