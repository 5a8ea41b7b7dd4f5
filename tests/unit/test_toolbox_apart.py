"""The toolbox parsed by a child process and cached for the server's other processes
(muleteer/tools/toolbox_apart.py): a real child python, a cache that is used only while
every file it came from is unchanged."""
import os
import stat
import subprocess
import sys
import threading

import pytest

from muleteer.tools import toolbox_apart
from muleteer.tools.errors import ToolError

TOOL = """<tool id="{id}" name="{name}" version="1.0">
    <macros><import>../macros.xml</import></macros>
    <expand macro="requirements"/>
    <command>echo {id}</command>
    <inputs/>
    <outputs/>
</tool>
"""
MACROS = """<macros><xml name="requirements"><requirements/></xml></macros>
"""


@pytest.fixture
def tool_path(tmp_path):
    tools = tmp_path / "tools"
    (tools / "one").mkdir(parents=True)
    (tools / "macros.xml").write_text(MACROS)
    (tools / "one" / "one.xml").write_text(TOOL.format(id="one", name="One"))
    return tools


def no_child(*_):
    raise AssertionError("parsed again: the cache was not used")


def test_the_child_parses_the_cache_serves_the_next_process(tool_path, tmp_path, monkeypatch):
    cache_dir = str(tmp_path / "database")
    toolbox = toolbox_apart.load_toolbox_apart(str(tool_path), None, cache_dir)
    assert toolbox.get("one").name == "One" and toolbox.errors == []
    cache = os.path.join(cache_dir, toolbox_apart.CACHE_NAME)
    assert os.stat(cache).st_mode & 0o077 == 0
    assert os.stat(cache + ".lock").st_mode & 0o077 == 0
    monkeypatch.setattr(toolbox_apart, "_parse_in_child", no_child)
    assert toolbox_apart.load_toolbox_apart(str(tool_path), None, cache_dir).get("one").name == "One"


@pytest.mark.parametrize("change", ["wrapper", "macros beside it", "new wrapper"])
def test_a_changed_file_is_parsed_again(tool_path, tmp_path, change):
    cache_dir = str(tmp_path / "database")
    toolbox_apart.load_toolbox_apart(str(tool_path), None, cache_dir)
    if change == "wrapper":
        (tool_path / "one" / "one.xml").write_text(TOOL.format(id="one", name="One, renamed"))
    elif change == "macros beside it":
        (tool_path / "macros.xml").write_text(MACROS.replace("<requirements/>", "<requirements></requirements>") + " ")
    else:
        (tool_path / "one" / "two.xml").write_text(TOOL.format(id="two", name="Two"))
    toolbox = toolbox_apart.load_toolbox_apart(str(tool_path), None, cache_dir)
    assert toolbox.get("one").name == ("One, renamed" if change == "wrapper" else "One")
    assert ("two" in toolbox) == (change == "new wrapper")


def test_a_broken_wrapper_is_skipped_and_a_broken_tool_conf_stops_start_up(tool_path, tmp_path):
    (tool_path / "one" / "bad.xml").write_text('<tool id="bad" name="Bad" version="1"><command>')
    toolbox = toolbox_apart.load_toolbox_apart(str(tool_path), None, str(tmp_path / "db1"))
    assert "one" in toolbox and "bad" not in toolbox
    assert any("bad.xml" in error for error in toolbox.errors)
    conf = tmp_path / "tool_conf.xml"
    conf.write_text("<toolbox><section name='x'><tool/></section></toolbox>")
    with pytest.raises(ToolError, match=r"tool_conf.xml, line 1: <tool> needs a file attribute"):
        toolbox_apart.load_toolbox_apart(str(tool_path), str(conf), str(tmp_path / "db2"))


def test_a_cache_cut_short_or_foreign_is_not_trusted(tool_path, tmp_path):
    cache_dir = tmp_path / "database"
    cache_dir.mkdir()
    (cache_dir / toolbox_apart.CACHE_NAME).write_bytes(b"\x80\x05not a pickle")
    toolbox = toolbox_apart.load_toolbox_apart(str(tool_path), None, str(cache_dir))
    assert toolbox.get("one").name == "One"


def test_a_server_process_never_imports_galaxys_parser(tool_path, tmp_path):
    """What the child spares the server: after loading its toolbox this way (and reading the
    cache), a process has no galaxy.tool_util.parser module."""
    code = ("import sys; from muleteer.tools import toolbox_apart; "
            f"t = toolbox_apart.load_toolbox_apart({str(tool_path)!r}, None, "
            f"{str(tmp_path / 'database')!r}); "
            "assert t.get('one') is not None; "
            "print(sorted(m for m in sys.modules if m.startswith('galaxy.tool_util.parser')))")
    for _ in range(2):  # parsed by the child, then read from the cache
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "[]"


def test_without_a_child_python_the_tools_are_parsed_here(tool_path, tmp_path, monkeypatch,
                                                          caplog):
    """A server account that may not run the environment's python (a real-user install
    with the interpreter under /root): the toolbox is still loaded, with a warning."""
    monkeypatch.setattr(toolbox_apart, "_python", lambda: str(tmp_path / "no-such-python"))
    toolbox = toolbox_apart.load_toolbox_apart(str(tool_path), None, str(tmp_path / "database"))
    assert toolbox.get("one").name == "One"
    assert "the tools are parsed in this process" in caplog.text


def test_a_log_beside_the_tools_does_not_invalidate_the_cache(tool_path, tmp_path, monkeypatch):
    """Only XML beside a wrapper's folder is watched: a server's log there (the test
    servers write theirs beside their tools) changes all the time."""
    cache_dir = str(tmp_path / "database")
    log_file = tool_path.parent / "uwsgi.log"
    log_file.write_text("started\n")
    toolbox_apart.load_toolbox_apart(str(tool_path), None, cache_dir)
    log_file.write_text("started\na request\n")
    monkeypatch.setattr(toolbox_apart, "_parse_in_child", no_child)
    assert toolbox_apart.load_toolbox_apart(str(tool_path), None, cache_dir).get("one").name == "One"


def test_a_cache_others_may_write_or_a_link_is_not_unpickled(tool_path, tmp_path, monkeypatch):
    """Unpickling runs code: a cache file another account could have changed, or a link in
    its place, is parsed again instead of read."""
    cache_dir = str(tmp_path / "database")
    toolbox_apart.load_toolbox_apart(str(tool_path), None, cache_dir)
    cache = os.path.join(cache_dir, toolbox_apart.CACHE_NAME)
    parsed = []
    real = toolbox_apart._parse_in_child
    monkeypatch.setattr(toolbox_apart, "_parse_in_child",
                        lambda *args: parsed.append(1) or real(*args))
    os.chmod(cache, 0o666)
    assert toolbox_apart.load_toolbox_apart(str(tool_path), None, cache_dir).get("one")
    assert parsed == [1] and os.stat(cache).st_mode & 0o077 == 0  # written again, private
    os.rename(cache, cache + ".elsewhere")
    os.symlink(cache + ".elsewhere", cache)
    assert toolbox_apart.load_toolbox_apart(str(tool_path), None, cache_dir).get("one")
    assert parsed == [1, 1]



def load_unless_it_hangs(tool_path, cache_dir, fifo):
    """load_toolbox_apart's toolbox or the error it raised; the test fails (and the FIFO is
    opened from the other end, to free the thread) if it waits on `fifo`."""
    outcome = []

    def load():
        try:
            outcome.append(toolbox_apart.load_toolbox_apart(str(tool_path), None, cache_dir))
        except OSError as exc:
            outcome.append(exc)
    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(60)
    if worker.is_alive():
        fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # the other end: its open returns
        worker.join(10)
        os.close(fd)
        pytest.fail(f"loading the toolbox waited on the FIFO {fifo}")
    return outcome[0]


def test_a_fifo_in_place_of_the_cache_is_parsed_past_not_waited_on(tool_path, tmp_path):
    cache_dir = str(tmp_path / "database")
    os.makedirs(cache_dir, mode=0o700)
    cache = os.path.join(cache_dir, toolbox_apart.CACHE_NAME)
    os.mkfifo(cache, 0o600)
    toolbox = load_unless_it_hangs(tool_path, cache_dir, cache)
    assert toolbox.get("one").name == "One"
    assert stat.S_ISREG(os.lstat(cache).st_mode)  # written again, a file of its own


def test_a_fifo_in_place_of_the_lock_is_an_error_not_a_hang(tool_path, tmp_path):
    cache_dir = str(tmp_path / "database")
    os.makedirs(cache_dir, mode=0o700)
    lock = os.path.join(cache_dir, toolbox_apart.CACHE_NAME + ".lock")
    os.mkfifo(lock, 0o600)
    assert isinstance(load_unless_it_hangs(tool_path, cache_dir, lock), OSError)
