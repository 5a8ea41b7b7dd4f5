"""Datasets: the store (both databases), the files (atomic writes, a full disk), formats."""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
import subprocess

import pytest

from muleteer import formats
from muleteer.dataset import DatasetState
from muleteer.dataset_files import (INCOMING, DatasetFiles, DiskFull, TooLarge, create_dataset,
                                    peek, relative_path)
from muleteer.job import JobState
from muleteer.store.datasets import QuotaExceeded


def _user(store, email="a@x.org") -> int:
    from muleteer.models import galaxy_user
    from muleteer.store import utcnow
    with store.engine.begin() as conn:
        return conn.execute(galaxy_user.insert().values(
            email=email, password_hash="x", is_admin=False, create_time=utcnow())
        ).inserted_primary_key[0]


def _new(store, user_id, size=3, name="d.txt", fmt="txt", **kw):
    return store.create_dataset(user_id=user_id, name=name, format=fmt, size=size,
                                sha256="0" * 64, **kw)


# -- store ----------------------------------------------------------------------------------
def test_create_get_list_filters_and_paging(store):
    alice, bob = _user(store), _user(store, "b@x.org")
    a1 = _new(store, alice, name="reads.fastq", fmt="fastqsanger", peek="@r1")
    a2 = _new(store, alice, name="Table.tsv", fmt="tabular")
    _new(store, bob, name="bob.txt")
    got = store.get_dataset(a1.id)
    assert got == a1 and got.state is DatasetState.OK and got.peek == "@r1"
    assert str(got.source) == "upload" and got.job_id is None
    rows, total = store.list_datasets(user_id=alice)
    assert [d.id for d in rows] == [a2.id, a1.id] and total == 2  # newest first, own only
    assert [d.id for d in store.list_datasets(user_id=alice, format="tabular")[0]] == [a2.id]
    assert [d.id for d in store.list_datasets(user_id=alice, name="TABLE")[0]] == [a2.id]
    assert store.list_datasets(user_id=alice, name="%")[1] == 0  # LIKE wildcards are literal
    rows, total = store.list_datasets(user_id=alice, limit=1, offset=1)
    assert [d.id for d in rows] == [a1.id] and total == 2
    assert store.get_dataset(10**9) is None


def test_uploads_at_once_cannot_both_pass_one_remaining_quota(store):
    """8 threads each store 60 bytes against a quota of 100: exactly one gets in (the quota
    check and the insert hold the owner's row: no two pass the same remaining quota)."""
    import threading
    alice = _user(store)
    results, lock = [], threading.Lock()

    def upload():
        try:
            _new(store, alice, size=60, quota=100)
            outcome = "stored"
        except QuotaExceeded:
            outcome = "refused"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=upload) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results) == ["refused"] * 7 + ["stored"]
    assert store.disk_usage(alice) == 60


def test_usage_quota_and_delete(store):
    alice = _user(store)
    d1 = _new(store, alice, size=60)
    assert store.disk_usage(alice) == 60
    with pytest.raises(QuotaExceeded, match="60 of 100 bytes used"):
        _new(store, alice, size=41, quota=100)
    assert store.list_datasets(user_id=alice)[1] == 1  # nothing written
    _new(store, alice, size=40, quota=100)
    assert store.delete_dataset(d1.id) == (True, [])
    assert store.delete_dataset(d1.id) == (False, [])  # already deleted
    assert store.get_dataset(d1.id).state is DatasetState.DELETED
    assert store.disk_usage(alice) == 40
    assert store.list_datasets(user_id=alice, state="deleted")[1] == 1


def test_delete_refused_while_an_active_job_reads_it(store, make_job):
    alice = _user(store)
    ds = _new(store, alice)
    job = make_job()
    store.link_job_dataset(job.id, ds.id, "input", "input")
    assert store.active_jobs_using(ds.id) == [job.id]
    assert store.delete_dataset(ds.id) == (False, [job.id])
    store.transition(job.id, JobState.DELETED, from_states=(JobState.NEW,))
    assert store.active_jobs_using(ds.id) == []
    assert store.delete_dataset(ds.id) == (True, [])


def test_job_output_provenance_both_ways(store, make_job):
    alice = _user(store)
    job = make_job()
    out = _new(store, alice, source="job", job_id=job.id, output_name="sorted")
    assert (out.job_id, out.output_name, str(out.source)) == (job.id, "sorted", "job")
    rows = store.job_datasets(job_id=job.id)
    assert rows == [{"job_id": job.id, "dataset_id": out.id, "role": "output",
                     "name": "sorted", "position": 0}]
    assert store.job_datasets(dataset_id=out.id) == rows
    with pytest.raises(ValueError):
        store.link_job_dataset(job.id, out.id, "sideways", "x")


def test_failing_place_writes_no_row(store):
    alice = _user(store)

    def place(_id):
        raise OSError("disk gone")

    with pytest.raises(OSError):
        _new(store, alice, place=place)
    assert store.list_datasets(user_id=alice)[1] == 0


# -- files ----------------------------------------------------------------------------------
def test_layout_and_atomic_write(store, tmp_path):
    assert relative_path(123) == "000/dataset_123.dat"
    assert relative_path(4567) == "004/dataset_4567.dat"
    alice = _user(store)
    files = DatasetFiles(str(tmp_path / "files"))
    data = os.urandom(3 * 1024 * 1024 + 7)
    with files.stage(io.BytesIO(data)) as staged:
        assert staged.size == len(data) and staged.sha256 == hashlib.sha256(data).hexdigest()
        assert os.path.dirname(staged.path) == str(tmp_path / "files" / INCOMING)
        assert os.stat(staged.path).st_mode & 0o777 == 0o600
        ds = create_dataset(store, files, staged, user_id=alice, name="r", format="data")
    assert os.listdir(tmp_path / "files" / INCOMING) == []
    path = tmp_path / "files" / relative_path(ds.id)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(path.parent).st_mode & 0o777 == 0o700
    assert files.path(ds.id) == str(path)
    with files.open(ds.id) as fh:
        assert fh.read() == data
    assert ds.peek is None  # binary
    assert files.remove(ds.id) and not path.exists() and files.open(ds.id) is None


def test_quota_refusal_leaves_no_file(store, tmp_path):
    alice = _user(store)
    files = DatasetFiles(str(tmp_path / "files"))
    with files.stage(io.BytesIO(b"x" * 10)) as staged:
        with pytest.raises(QuotaExceeded):
            create_dataset(store, files, staged, user_id=alice, name="r", format="txt", quota=5)
    assert os.listdir(tmp_path / "files" / INCOMING) == []
    assert not (tmp_path / "files" / "000").exists() or os.listdir(tmp_path / "files" / "000") == []


def test_limit_stops_the_write_and_keeps_nothing(tmp_path):
    files = DatasetFiles(str(tmp_path))
    with pytest.raises(TooLarge):
        files.stage(io.BytesIO(b"y" * 5000), limit=4096)
    assert os.listdir(tmp_path / INCOMING) == []


def test_open_refuses_links_and_non_files(tmp_path):
    files = DatasetFiles(str(tmp_path))
    os.makedirs(tmp_path / "000", mode=0o700)
    (tmp_path / "secret").write_text("no")
    os.symlink(tmp_path / "secret", tmp_path / "000" / "dataset_1.dat")
    os.mkfifo(tmp_path / "000" / "dataset_2.dat")
    assert files.open(1) is None and files.open(2) is None and files.open(3) is None


def test_adopting_a_finished_upload_moves_it_and_puts_it_back_if_refused(tmp_path):
    import hashlib
    from muleteer.dataset_files import DatasetFileError
    files = DatasetFiles(str(tmp_path / "files"))
    (tmp_path / "real").write_bytes(b"abc")
    os.symlink(tmp_path / "real", tmp_path / "link")
    with pytest.raises(DatasetFileError):
        files.adopt_file(str(tmp_path / "link"))
    with files.adopt_file(str(tmp_path / "real")) as staged:  # refused: discarded
        assert (staged.size, staged.sha256) == (3, hashlib.sha256(b"abc").hexdigest())
        assert not (tmp_path / "real").exists()  # moved, not copied
    assert (tmp_path / "real").read_bytes() == b"abc"  # back where it was
    staged = files.adopt_file(str(tmp_path / "real"))
    files.commit(staged, 5)
    staged.discard()  # after a commit there is nothing to put back
    assert files.open(5).read() == b"abc" and not (tmp_path / "real").exists()


@pytest.fixture
def tiny_disk(tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir(mode=0o700)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs",
                             str(mount)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {result.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_full_disk_is_a_clear_error_and_leaves_nothing(store, tiny_disk):
    files = DatasetFiles(str(tiny_disk / "files"))
    with pytest.raises(DiskFull, match="no space left"):
        files.stage(io.BytesIO(b"z" * (2 * 1024 * 1024)))
    assert os.listdir(tiny_disk / "files" / INCOMING) == []
    # The disk is usable again afterwards: a small dataset fits.
    alice = _user(store)
    with files.stage(io.BytesIO(b"small\n")) as staged:
        ds = create_dataset(store, files, staged, user_id=alice, name="s", format="txt")
    assert ds.peek == "small\n"


def test_peek():
    assert peek(b"1\n2\n3\n4\n5\n6\n7\n") == "1\n2\n3\n4\n5"
    assert len(peek(b"a" * 5000)) == 1024
    assert peek(b"\x00\x01binary") is None
    assert peek("é".encode() * 600) is not None  # a character cut at the end is dropped


# -- formats --------------------------------------------------------------------------------
def _bam() -> bytes:
    return gzip.compress(b"BAM\x01" + struct.pack("<i", 0), mtime=0)


def test_hierarchy_and_accepts():
    assert formats.ancestors("bed") == ["bed", "interval", "tabular", "txt", "data"]
    assert formats.accepts("tabular", "bed") and formats.accepts(["data"], "bam")
    assert formats.accepts("tabular,fasta", "fasta") and formats.accepts("", "bam")
    assert not formats.accepts("bed", "tabular") and not formats.accepts("txt", "bam")
    assert formats.accepts("fastq", "fastqsanger") and not formats.accepts("fasta", "csv")
    with pytest.raises(formats.FormatError, match="unknown format 'fastx'.*bam.*txt"):
        formats.check_name("fastx")


@pytest.mark.parametrize("head, kind", [
    (b">seq1\nACGT\n", "fasta"),
    (b"@r1\nACGT\n+\nIIII\n", "fastqsanger"),
    (b"chr1\t1\t5\nchr2\t3\t9\n", "tabular"),
    (b"hello\nworld\n", "txt"),
    (b"", "txt"),
    (b"\x00\x01\x02", "data"),
    (gzip.compress(b"@r1\n", mtime=0), "data"),  # mtime=0: the same test id in every test process
    (_bam(), "bam"),
])
def test_guess(head, kind):
    assert formats.guess(head) == kind


def test_clear_mismatches_are_refused_saying_what_the_content_is():
    assert "binary data" in formats.mismatch("fasta", os.urandom(64) + b"\x00")
    assert "text" in formats.mismatch("bam", b"hello\n")
    assert "gzip-compressed" in formats.mismatch("txt", gzip.compress(b"hello"))
    assert "bzip2" in formats.mismatch("tabular", b"BZh91AY&SY" + b"\x00" * 10)
    assert "'>'" in formats.mismatch("fasta", b"@r1\nACGT\n+\nIIII\n")
    assert "'@'" in formats.mismatch("fastqsanger", b">s\nACGT\n")
    assert "3 tab-separated" in formats.mismatch("bed", b"chr1\t5\n")
    assert formats.mismatch("fastqsanger.gz", gzip.compress(b"@r\n")) is None
    assert "gzip" in formats.mismatch("fastqsanger.gz", b"@r\nAC\n+\nII\n")
    assert formats.mismatch("bam", _bam()) is None
    assert formats.mismatch("data", b"\x00anything") is None
    assert formats.mismatch("bed", b"track x\nchr1\t1\t5\n") is None
    assert formats.mismatch("txt", "naïve text".encode()) is None
    assert formats.mismatch("json", b'{"a": 1}') is None
    assert formats.is_bam(_bam()) and not formats.is_bam(gzip.compress(b"nope"))
    assert formats.tab_columns(b"#c\na\tb\tc\n1\t2\t3\n") == 3
    assert formats.tab_columns(b"a\tb\n1\t2\t3\n") is None


def test_stale_incoming_files_are_removed_and_fresh_ones_kept(tmp_path):
    import os
    import time
    files = DatasetFiles(str(tmp_path / "files"))
    stale = files.stage(io.BytesIO(b"left by a dead upload"))
    fresh = files.stage(io.BytesIO(b"an upload in progress"))
    day_ago = time.time() - 2 * 24 * 3600
    os.utime(stale.path, (day_ago, day_ago))
    os.symlink("/etc/passwd", os.path.join(os.path.dirname(stale.path), "link"))
    os.utime(os.path.join(os.path.dirname(stale.path), "link"), (day_ago, day_ago),
             follow_symlinks=False)
    assert files.remove_stale_incoming() == 2  # the stale file and the old link itself
    assert not os.path.exists(stale.path) and os.path.exists(fresh.path)
    assert os.path.exists("/etc/passwd")


def test_a_file_left_by_an_uncommitted_dataset_does_not_block_its_id(store, tmp_path):
    """A process that died after renaming a dataset's bytes into place but before its
    commit leaves a file under an id SQLite then gives out again: the next dataset of that
    id replaces it (found by stopping a server with jobs in flight)."""
    alice = _user(store)
    files = DatasetFiles(str(tmp_path / "files"))
    first = create_dataset(store, files, files.stage(io.BytesIO(b"one")), user_id=alice,
                           name="one", format="txt")
    leftover = files.path(first.id + 1)
    with open(leftover, "wb") as fh:
        fh.write(b"left by a transaction that died")
    second = create_dataset(store, files, files.stage(io.BytesIO(b"two")), user_id=alice,
                            name="two", format="txt")
    assert second.id == first.id + 1
    assert files.open(second.id).read() == b"two"
