"""Galaxy's dataset metadata (data_lines, comment_lines, columns, column_types,
column_names), computed from a dataset's bytes while they stream in to be stored.

Tool wrappers read it in their Cheetah templates (`$input.metadata.columns`) and the tool
form uses it for data_column parameters. Galaxy computes it in a later pass over the file
(Text.count_data_lines, Tabular.set_meta); here a LineScanner is fed the chunks the
SHA-256 is fed, so the bytes are read once. Memory is bounded whatever the line length:
of a line only its first LINE_KEEP bytes are kept (its tabs are still all counted).

Which lines count follows Galaxy's Tabular.set_meta: a line without its end of line
(`\\r` and `\\n` stripped) that is empty or starts with `#` is not a data line. Every line
of the file is counted (in C, with bytes.count: a Python loop per line would be the
slowest part of an upload). The columns are the largest field count of the data lines
among the first COLUMN_LINES lines (Galaxy looks at 100,000 data lines); their types are
guessed from the first TYPE_LINES data lines, looked at one by one (Galaxy: all it looks
at), as are the leading '#' lines, where a header with the column names may be.

The scan does not know the dataset's format (it is chosen after the bytes are staged):
metadata_for(format, scan) picks what a dataset of that format keeps.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from muleteer import formats

HEAD_BYTES = formats.HEAD_BYTES  # what decides text or binary, as for the sniffers
LINE_KEEP = 64 * 1024            # of one line, what is kept for its fields
COLUMN_LINES = 100_000           # lines whose fields are counted (Galaxy's max_data_lines)
TYPE_LINES = 1_000               # data lines whose fields' types are guessed
LOOK_LINES = 100_000             # lines looked at one by one at most (a flood of comments)
MAX_TYPED_COLUMNS = LINE_KEEP + 1  # no more fields fit in a kept line

# A line starting with `\r*\n` right after a newline is blank (Galaxy strips "\r\n").
_BLANK = re.compile(rb"\n(?=\r*\n)")
# Whether a chunk may have one: a regex finds two bytes faster than bytes.find does.
_BLANK_ANY = re.compile(rb"\n[\r\n]")


class ColumnType(str, Enum):
    """Galaxy's column types, weakest first: a column is the strongest type of its fields."""
    INT = "int"
    FLOAT = "float"
    LIST = "list"
    STR = "str"

    def __str__(self) -> str:
        return self.value


_STRENGTH = {t: i for i, t in enumerate(ColumnType)}


def guess_type(field: bytes) -> ColumnType | None:
    """A field's type as Galaxy's Tabular guesses it; None for an empty field (it says
    nothing about its column)."""
    if not field:
        return None
    try:
        int(field)
        return ColumnType.INT
    except ValueError:
        pass
    try:
        float(field)
        return ColumnType.FLOAT
    except ValueError:
        if field.strip().lower() == b"na":  # Galaxy counts NA as a float
            return ColumnType.FLOAT
    return ColumnType.LIST if b"," in field else ColumnType.STR


def _merge(types: list, fields: list[bytes]) -> None:
    """Widen `types` (one per column, None: not seen yet) by one line's fields."""
    for i, value in enumerate(fields[:MAX_TYPED_COLUMNS]):
        if i >= len(types):
            types.append(None)
        kind = guess_type(value)
        if kind is not None and (types[i] is None or _STRENGTH[kind] > _STRENGTH[types[i]]):
            types[i] = kind


@dataclass(frozen=True)
class Scan:
    """What a LineScanner found. For binary content (a NUL byte in the head, or a head
    that is not UTF-8) only `text` False means anything."""
    text: bool
    data_lines: int = 0
    comment_lines: int = 0  # the leading run of '#' lines
    columns: int = 1        # Galaxy: a tabular file without data has one str column
    column_types: tuple[ColumnType, ...] = (ColumnType.STR,)
    column_names: tuple[str, ...] | None = None


BINARY = Scan(text=False)


class LineScanner:
    """Feed it every chunk of a dataset's bytes in order, then finish() once."""

    def __init__(self):
        self._head = bytearray()
        self._binary = False
        self._done: Scan | None = None
        # The line in progress: its first LINE_KEEP bytes, and the tabs of the rest.
        self._line = bytearray()
        self._line_tabs = 0
        self._line_cut = False
        self._lines = 0          # complete lines so far
        self._data_lines = 0
        self._comment_lines = 0
        self._leading = True     # no line but '#' lines yet
        self._header: bytes | None = None  # the last leading '#' line (None: cut short)
        self._columns = 0
        self._types: list[ColumnType | None] = []
        self._first_types: list[ColumnType | None] = []

    def feed(self, chunk: bytes) -> None:
        if self._binary or not chunk:
            return
        if self._done is not None:
            raise RuntimeError("LineScanner.feed after finish()")
        if len(self._head) < HEAD_BYTES:
            self._head += chunk[:HEAD_BYTES - len(self._head)]
            if len(self._head) >= HEAD_BYTES and not formats.is_text(bytes(self._head)):
                self._stop_binary()
                return
        end = len(chunk)
        newline = chunk.find(b"\n")
        if newline < 0:
            self._extend(chunk, 0, end)
            return
        self._extend(chunk, 0, newline)
        self._end_line()
        start = newline + 1
        while self._detailing() and start < end:
            newline = chunk.find(b"\n", start)
            if newline < 0:
                break
            self._extend(chunk, start, newline)
            self._end_line()
            start = newline + 1
        last = chunk.rfind(b"\n", start)
        if last >= 0:  # complete lines no longer looked at one by one
            if self._lines < COLUMN_LINES:
                self._count_columns(chunk, start, last)
            self._count(chunk, start, last)
            start = last + 1
        self._extend(chunk, start, end)

    def finish(self) -> Scan:
        if self._done is not None:
            return self._done
        if self._binary or not formats.is_text(bytes(self._head)):
            self._stop_binary()
            self._done = BINARY
            return self._done
        if self._line or self._line_cut:  # no newline at the end: the last line counts
            self._end_line()
        columns = max(self._columns, 1)
        types = []
        for i in range(min(columns, MAX_TYPED_COLUMNS)):
            kind = self._types[i] if i < len(self._types) else None
            if kind is None and i < len(self._first_types):
                kind = self._first_types[i]  # the first line, maybe a header, only fills gaps
            types.append(kind or ColumnType.STR)
        names = None
        if self._header is not None:
            fields = self._header.lstrip(b"#").split(b"\t")
            if len(fields) == columns:
                names = tuple(f.decode("utf-8", errors="replace").strip() for f in fields)
        self._done = Scan(text=True, data_lines=self._data_lines,
                          comment_lines=self._comment_lines, columns=columns,
                          column_types=tuple(types), column_names=names)
        self._head = bytearray()
        return self._done

    # -- internals ------------------------------------------------------------------------
    def _stop_binary(self) -> None:
        self._binary = True
        self._line, self._types, self._first_types = bytearray(), [], []

    def _detailing(self) -> bool:
        """Whether lines are still looked at one by one: the leading comments (the header
        is among them) and the data lines whose types are guessed."""
        return self._lines < LOOK_LINES and (self._leading or self._data_lines < TYPE_LINES)

    def _extend(self, chunk: bytes, start: int, end: int) -> None:
        """Add chunk[start:end] to the line in progress, keeping LINE_KEEP bytes of it."""
        if start >= end:
            return
        room = LINE_KEEP - len(self._line)
        if end - start <= room:
            self._line += chunk[start:end]
            return
        if room > 0:
            self._line += chunk[start:start + room]
        self._line_tabs += chunk.count(b"\t", start + max(room, 0), end)
        self._line_cut = True

    def _end_line(self) -> None:
        kept, tabs, cut = bytes(self._line), self._line_tabs, self._line_cut
        self._line, self._line_tabs, self._line_cut = bytearray(), 0, False
        index = self._lines
        self._lines += 1
        text = kept if cut else kept.rstrip(b"\r")
        if text[:1] == b"#":
            if self._leading:
                self._comment_lines += 1
                self._header = None if cut else text
            return
        self._leading = False
        if not text:
            return
        self._data_lines += 1
        if index < COLUMN_LINES:
            self._columns = max(self._columns, text.count(b"\t") + tabs + 1)
        if self._data_lines <= TYPE_LINES:
            fields = text.split(b"\t")
            if cut:
                fields.pop()  # cut short: its type is unknown
            # Galaxy: a first line that is not a comment is often a header without '#'; its
            # types only fill columns no other line says anything about.
            _merge(self._first_types if index == 0 else self._types, fields)

    def _count_columns(self, chunk: bytes, start: int, last: int) -> None:
        """The largest field count of the data lines of chunk[start:last + 1] among the
        file's first COLUMN_LINES lines."""
        lines = chunk[start:last].split(b"\n")[:COLUMN_LINES - self._lines]
        tabs = max((line.count(b"\t") for line in lines if line[:1] != b"#"), default=-1)
        self._columns = max(self._columns, tabs + 1)

    def _count(self, chunk: bytes, start: int, last: int) -> None:
        """Count the lines of chunk[start:last + 1] (each ends with its newline; the byte
        before `start` is a newline) without looking at them one by one."""
        self._leading = False
        lines = chunk.count(b"\n", start, last + 1)
        other = 0
        if chunk.find(b"#", start, last + 1) >= 0:  # memchr: most chunks have none
            other += chunk.count(b"\n#", start - 1, last + 1)
        if _BLANK_ANY.search(chunk, start - 1, last + 1):
            other += len(_BLANK.findall(chunk, start - 1, last + 1))
        self._lines += lines
        self._data_lines += lines - other


def scan_bytes(data: bytes) -> Scan:
    """The scan of content held whole (small content, tests)."""
    scanner = LineScanner()
    scanner.feed(data)
    return scanner.finish()


def metadata_for(format: str, scan: Scan | None) -> dict:
    """The metadata a dataset of `format` keeps: text formats (txt and its subtypes)
    data_lines and comment_lines; tabular and its subtypes also columns, column_types and
    column_names (None without a '#' header of as many names as columns); others, and
    binary content, nothing."""
    if scan is None or not scan.text or not formats.is_subtype(format, "txt"):
        return {}
    metadata = {"data_lines": scan.data_lines, "comment_lines": scan.comment_lines}
    if formats.is_subtype(format, "tabular"):
        metadata["columns"] = scan.columns
        metadata["column_types"] = [str(t) for t in scan.column_types]
        metadata["column_names"] = (list(scan.column_names) if scan.column_names is not None
                                    else None)
    return metadata
