"""Dataset metadata (Galaxy's data_lines, comment_lines, columns, column_types,
column_names): the streaming scanner, what each format keeps, and the stored rows."""
from __future__ import annotations

import io
import os

import pytest

from muleteer import dataset_metadata as dm
from muleteer.dataset_files import DatasetFiles, create_dataset
from muleteer.dataset_metadata import LineScanner, Scan, metadata_for, scan_bytes

CHUNK_SIZES = (1, 2, 3, 5, 7, 13, 64, 4096, 1 << 20)


def scan_in(data: bytes, size: int) -> Scan:
    scanner = LineScanner()
    for i in range(0, len(data), size):
        scanner.feed(data[i:i + size])
    return scanner.finish()


def scans(data: bytes) -> Scan:
    """The scan, which must not depend on how the bytes were cut into chunks."""
    results = {size: scan_in(data, size) for size in CHUNK_SIZES}
    first = results[CHUNK_SIZES[0]]
    for size, result in results.items():
        assert result == first, f"chunks of {size} bytes: {result} != {first}"
    return first


def galaxy_data_lines(data: bytes) -> int:
    """Galaxy's Tabular.set_meta rule, line by line: not empty and not '#' once '\\r\\n'
    is stripped."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return sum(1 for line in lines if line.rstrip(b"\r") and not line.startswith(b"#"))


def types(scan: Scan) -> list[str]:
    return [str(t) for t in scan.column_types]


# -- the scanner --------------------------------------------------------------------------
def test_header_comments_numbers_and_text():
    data = (b"##source=test\n#chrom\tstart\tend\tscore\tname\n"
            b"chr1\t10\t20\t0.5\t1,2\n"
            b"chr2\t30\t40\tNA\tgeneB,geneC\n"
            b"chr10\t50\t60\t7\t\n")
    scan = scans(data)
    assert (scan.text, scan.data_lines, scan.comment_lines, scan.columns) == (True, 3, 2, 5)
    assert types(scan) == ["str", "int", "int", "float", "list"]
    assert scan.column_names == ("chrom", "start", "end", "score", "name")


def test_line_split_across_chunks_crlf_and_no_final_newline():
    data = b"#a\tb\r\n1\t2.5\r\n\r\n3\t4\r\n5\t6"  # a CRLF blank line; the last line unended
    scan = scans(data)
    assert (scan.data_lines, scan.comment_lines, scan.columns) == (3, 1, 2)
    assert types(scan) == ["int", "float"]  # the '\r' is not part of the last field
    assert scan.column_names == ("a", "b")


def test_ragged_rows_give_the_widest_and_header_of_another_width_no_names():
    data = b"#x\ty\n1\t2\n3\t4\t5\t6\n7\n"
    scan = scans(data)
    assert (scan.data_lines, scan.columns) == (3, 4)
    assert types(scan) == ["int", "int", "int", "int"]
    assert scan.column_names is None  # 2 names for 4 columns


def test_first_line_without_hash_only_fills_gaps_as_galaxy():
    """Galaxy takes an uncommented first line for a probable header: its types count only
    where no other line says anything (here column 3, empty below, is str)."""
    scan = scans(b"chrom\tstart\tlabel\nchr1\t100\t\nchr2\t200\t\n")
    assert scan.data_lines == 3
    assert types(scan) == ["str", "int", "str"]
    assert scans(b"5\t6\n").column_types == (dm.ColumnType.INT, dm.ColumnType.INT)


def test_blank_and_comment_lines_in_the_middle_are_not_data_and_not_leading():
    data = b"#h\n\nA\n#late comment\n\n\n\r\nB\n"
    scan = scans(data)
    assert (scan.data_lines, scan.comment_lines) == (2, 1)


def test_empty_and_plain_text():
    empty = scans(b"")
    assert (empty.text, empty.data_lines, empty.columns, types(empty)) == (True, 0, 1, ["str"])
    only_newline = scans(b"\n")
    assert only_newline.data_lines == 0
    assert scans(b"hello world\nsecond line").data_lines == 2


def test_binary_content_has_none():
    assert scans(b"abc\x00def\n") == dm.BINARY
    assert scans(b"\xff\xfe\xfd not utf-8\n").text is False
    # Decided on the head: a NUL byte after it does not make text binary.
    late = b"a\tb\n" * (dm.HEAD_BYTES // 4 + 10) + b"\x00"
    assert scan_in(late, 4096).text is True
    assert scan_in(os.urandom(3 * dm.HEAD_BYTES), 4096) == dm.BINARY


def test_the_counting_past_the_first_lines_matches_galaxy(monkeypatch):
    """Past the lines looked at one by one, lines are counted in bulk: the same count."""
    monkeypatch.setattr(dm, "TYPE_LINES", 2)
    monkeypatch.setattr(dm, "LOOK_LINES", 3)
    monkeypatch.setattr(dm, "COLUMN_LINES", 6)
    data = (b"#c1\n1\t2\n3\t4\n\n#mid\n5\t6\t7\r\n\r\n\r\r\n8\n\n\n#x\n9\t1\t2\t3\t4\n"
            b"x\n#\n\n" * 3 + b"last")
    scan = scans(data)
    assert scan.data_lines == galaxy_data_lines(data)
    # The widest line among the first 6 lines: 3 fields (its '\r' is no field of its own).
    assert scan.columns == 3
    assert scan.comment_lines == 1


def test_counts_match_a_line_by_line_count_on_many_shapes(monkeypatch):
    monkeypatch.setattr(dm, "TYPE_LINES", 3)  # most lines counted in bulk
    monkeypatch.setattr(dm, "LOOK_LINES", 5)
    shapes = [b"a\n", b"\n", b"\r\n", b"#\n", b"#x\ty\n", b"1\t2\n", b"\r\r\n", b" \n",
              b"x\ty\tz\r\n", b"##\n"]
    import random
    rng = random.Random(7)
    for _ in range(30):
        data = b"".join(rng.choice(shapes) for _ in range(rng.randrange(0, 40)))
        if rng.random() < 0.5:
            data += b"tail"
        assert scan_in(data, rng.choice(CHUNK_SIZES)).data_lines == galaxy_data_lines(data), data


def test_long_lines_are_not_kept_whole(monkeypatch):
    monkeypatch.setattr(dm, "LINE_KEEP", 12)  # the header fits, the data line not
    data = b"#n1\tn2\tn3\n" + b"x\t" + b"a" * 50 + b"\t7\n" + b"1\t2\t3\n"
    scanner = LineScanner()
    for i in range(0, len(data), 5):
        scanner.feed(data[i:i + 5])
        assert len(scanner._line) <= 12
    scan = scanner.finish()
    assert (scan.data_lines, scan.columns) == (2, 3)  # the tabs beyond what is kept count
    assert types(scan) == ["str", "int", "int"]  # the cut line's cut field says nothing
    assert scan.column_names == ("n1", "n2", "n3")


def test_guess_type():
    guess = dm.guess_type
    assert [guess(v) for v in (b"12", b"-3", b"1.5e3", b"na", b"NA", b"1,2", b"abc", b"")] == [
        dm.ColumnType.INT, dm.ColumnType.INT, dm.ColumnType.FLOAT, dm.ColumnType.FLOAT,
        dm.ColumnType.FLOAT, dm.ColumnType.LIST, dm.ColumnType.STR, None]


# -- what a format keeps ----------------------------------------------------------------
def test_metadata_for_each_kind_of_format():
    scan = scan_bytes(b"#a\tb\n1\tx\n")
    assert metadata_for("txt", scan) == {"data_lines": 1, "comment_lines": 1}
    assert metadata_for("fasta", scan_bytes(b">s\nACGT\n")) == {"data_lines": 2,
                                                                "comment_lines": 0}
    tabular = {"data_lines": 1, "comment_lines": 1, "columns": 2,
               "column_types": ["int", "str"], "column_names": ["a", "b"]}
    assert metadata_for("tabular", scan) == tabular
    assert metadata_for("bed", scan) == tabular  # bed -> interval -> tabular
    assert metadata_for("data", scan) == {} and metadata_for("bam", scan) == {}
    assert metadata_for("tabular", dm.BINARY) == {}
    assert metadata_for("tabular", None) == {}
    assert metadata_for("tabular", scan_bytes(b"1\t2\n"))["column_names"] is None


# -- stored with the dataset ------------------------------------------------------------
def _user(store) -> int:
    from muleteer.models import galaxy_user
    from muleteer.store import utcnow
    with store.engine.begin() as conn:
        return conn.execute(galaxy_user.insert().values(
            email="m@x.org", password_hash="x", is_admin=False, create_time=utcnow())
        ).inserted_primary_key[0]


def test_a_stored_dataset_keeps_its_metadata(store, tmp_path):
    from sqlalchemy import select
    from muleteer.models import dataset
    alice = _user(store)
    files = DatasetFiles(str(tmp_path / "files"))
    content = b"#chrom\tpos\nchr1\t5\nchr2\t6\n"
    with files.stage(io.BytesIO(content)) as staged:
        assert staged.scan.data_lines == 2
        ds = create_dataset(store, files, staged, user_id=alice, name="t", format="tabular")
    expected = {"data_lines": 2, "comment_lines": 1, "columns": 2,
                "column_types": ["str", "int"], "column_names": ["chrom", "pos"]}
    assert ds.metadata == expected
    assert store.get_dataset(ds.id).metadata == expected
    with store.engine.connect() as conn:
        raw = conn.execute(select(dataset.c.metadata).where(dataset.c.id == ds.id)).scalar_one()
    assert raw.startswith("{") and '"columns":2' in raw
    (tmp_path / "upload").write_bytes(content)
    with files.adopt_file(str(tmp_path / "upload")) as adopted:  # a finished tus upload
        as_text = create_dataset(store, files, adopted, user_id=alice, name="u", format="txt")
    assert store.get_dataset(as_text.id).metadata == {"data_lines": 2, "comment_lines": 1}
    with files.stage(io.BytesIO(b"\x00\x01")) as staged:
        binary = create_dataset(store, files, staged, user_id=alice, name="b", format="data")
    assert store.get_dataset(binary.id).metadata == {}
    # Rows written without any (as before migration 0009) read as {}.
    assert store.create_dataset(user_id=alice, name="n", format="txt", size=0,
                                sha256="0" * 64).metadata == {}


def test_job_outputs_keep_the_metadata_of_their_format(store, make_job, tmp_path):
    from muleteer.job import JobState
    from muleteer.store.outputs import NewOutput
    alice = _user(store)
    job = make_job()
    store.transition(job.id, JobState.QUEUED, from_states=(JobState.NEW,))
    job = store.get_job(job.id)
    files = DatasetFiles(str(tmp_path / "files"))
    table = files.stage(io.BytesIO(b"1\t2\t3\n4\t5\t6\n"))
    text = files.stage(io.BytesIO(b"one\ntwo\n"))
    outputs = [NewOutput("out", "out.tabular", "tabular", table),
               NewOutput("log", "log.txt", "txt", text)]
    try:
        row = store.end_with_outputs(job.id, job.lease, "h", alice, outputs, place=files.commit)
    finally:
        for output in outputs:
            output.staged.discard()
    assert row is not None
    made = {store.get_dataset(r["dataset_id"]).output_name: store.get_dataset(r["dataset_id"])
            for r in store.job_datasets(job_id=job.id)}
    assert made["out"].metadata == {"data_lines": 2, "comment_lines": 0, "columns": 3,
                                    "column_types": ["int", "int", "int"],
                                    "column_names": None}
    assert made["log"].metadata == {"data_lines": 2, "comment_lines": 0}


@pytest.mark.parametrize("size", [1, 4096])
def test_staging_in_small_reads_gives_the_same_scan(tmp_path, size):
    class Trickle(io.RawIOBase):
        """A stream that answers each read with at most `size` bytes."""

        def __init__(self, data):
            self.data = io.BytesIO(data)

        def read(self, n=-1):
            return self.data.read(min(size, n if n >= 0 else size))

    data = b"#a\tb\n" + b"1\t2\n" * 3000 + b"x\ty"
    with DatasetFiles(str(tmp_path)).stage(Trickle(data)) as staged:
        assert staged.scan == scan_bytes(data)
        assert staged.scan.data_lines == 3001


# -- in the API ----------------------------------------------------------------------------
def test_the_dataset_json_has_its_metadata(tmp_path, repo):
    from app import create_app
    from mules.runners import RUNNER_SPECS
    from muleteer.context import build_context
    config_file = tmp_path / "galaxy.yml"
    config_file.write_text(
        "galaxy:\n  database_connection: sqlite:///database/universe.sqlite\n"
        f"  job_config_file: {repo}/job_conf.xml\n  tool_path: {repo}/tools\n"
        "  bootstrap_admin_api_key: the-admin-key-of-this-test\n")
    client = create_app(ctx=build_context(str(config_file), runner_specs=RUNNER_SPECS)).test_client()
    client.environ_base["HTTP_X_API_KEY"] = "the-admin-key-of-this-test"
    created = client.post("/api/datasets", json={"content": "#id\tvalue\na\t1\nb\t2\n"})
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["format"] == "tabular"  # guessed
    expected = {"data_lines": 2, "comment_lines": 1, "columns": 2,
                "column_types": ["str", "int"], "column_names": ["id", "value"]}
    assert body["metadata"] == expected
    assert client.get(body["url"]).get_json()["metadata"] == expected
    listed = client.get("/api/datasets").get_json()["datasets"]
    assert [d["metadata"] for d in listed] == [expected]
    as_text = client.post("/api/datasets", json={"content": "x\n", "format": "txt"}).get_json()
    assert as_text["metadata"] == {"data_lines": 1, "comment_lines": 0}
