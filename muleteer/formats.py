"""Dataset formats: Galaxy's extension names, a small hierarchy, and cheap sniffers.

A format is the user's word for what a dataset is (Galaxy's `ext`). The hierarchy says
what a tool parameter accepts: a `tabular` parameter takes `bed` (bed ⊂ interval ⊂
tabular ⊂ txt ⊂ data) and `data` takes everything. The sniffers look only at the first
bytes of the content (HEAD_BYTES), to refuse a clear mismatch (`fasta` for binary data,
`bam` for text), never to prove a file right.
"""
from __future__ import annotations

import codecs
import zlib

# format -> its parent (None for the root, `data`).
PARENTS: dict[str, str | None] = {
    "data": None,
    "txt": "data",
    "tabular": "txt",
    "interval": "tabular",
    "bed": "interval",
    "csv": "txt",
    "fasta": "txt",
    "fastq": "txt",
    "fastqsanger": "fastq",
    "vcf": "txt",
    "sam": "txt",
    "json": "txt",
    "binary": "data",
    "bam": "binary",
    "fastqsanger.gz": "binary",
    "fastq.gz": "binary",
    "fastqsanger.bz2": "binary",
    "fastq.bz2": "binary",
}
KNOWN = tuple(sorted(PARENTS))
AUTO = "auto"  # no format given: guessed from the content (guess())
HEAD_BYTES = 64 * 1024  # what the sniffers look at

GZIP_MAGIC = b"\x1f\x8b"
BZIP2_MAGIC = b"BZh"
BAM_MAGIC = b"BAM\x01"


class FormatError(Exception):
    """An unknown format name, or content that is clearly not of the format."""


def known(name: str) -> bool:
    return name in PARENTS


def check_name(name) -> str:
    if not isinstance(name, str) or name not in PARENTS:
        raise FormatError(f"unknown format {name!r}: expected one of {', '.join(KNOWN)} "
                          f"(or {AUTO} to guess it from the content)")
    return name


def ancestors(name: str) -> list[str]:
    """The format and every format it is a kind of, nearest first: bed -> ... -> data."""
    chain = []
    while name is not None:
        chain.append(name)
        # A format this list does not know (a tool's own) is still a kind of data.
        name = PARENTS[name] if name in PARENTS else "data"
    return chain


def is_subtype(child: str, parent: str) -> bool:
    return parent in ancestors(child)


def accepts(param_formats, dataset_format: str) -> bool:
    """Whether a parameter of `param_formats` (a list, or Galaxy's comma-separated string;
    empty: any) takes a dataset of `dataset_format`."""
    if isinstance(param_formats, str):
        param_formats = [f.strip() for f in param_formats.split(",") if f.strip()]
    if not param_formats:
        return True
    return any(is_subtype(dataset_format, f) for f in param_formats)


# -- sniffers -----------------------------------------------------------------------------
def is_gzip(head: bytes) -> bool:
    return head.startswith(GZIP_MAGIC)


def is_bzip2(head: bytes) -> bool:
    return head.startswith(BZIP2_MAGIC) and len(head) >= 4 and head[3:4] in b"123456789"


def is_bam(head: bytes) -> bool:
    """BAM is BGZF (gzip blocks) whose content starts with BAM\\1."""
    if not is_gzip(head):
        return False
    try:
        inflated = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 16)
    except zlib.error:
        return False
    return inflated.startswith(BAM_MAGIC)


def is_text(head: bytes) -> bool:
    """UTF-8 (so ASCII) without NUL bytes; a multi-byte character cut at the end of the
    head does not count against it."""
    if b"\0" in head:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _lines(head: bytes, count: int = 20) -> list[str]:
    text = head.decode("utf-8", errors="replace")
    lines = text.splitlines()
    if len(head) >= HEAD_BYTES and lines and not text.endswith("\n"):
        lines = lines[:-1]  # the last line is cut
    return lines[:count]


def tab_columns(head: bytes) -> int | None:
    """The number of tab-separated columns if the first data lines (not `#` comments) all
    have the same number, at least 2; else None."""
    counts = {line.count("\t") + 1 for line in _lines(head) if line and not line.startswith("#")}
    if len(counts) == 1:
        (n,) = counts
        return n if n >= 2 else None
    return None


def describe(head: bytes) -> str:
    """What the content looks like, in words for an error message."""
    if not head:
        return "empty"
    if is_bam(head):
        return "BAM (binary alignment) data"
    if is_gzip(head):
        return "gzip-compressed data"
    if is_bzip2(head):
        return "bzip2-compressed data"
    if not is_text(head):
        return "binary data"
    first = next((line for line in _lines(head) if line.strip()), "")
    if first.startswith(">"):
        return "FASTA text (the first record starts with '>')"
    if first.startswith("@") and _fastq_like(head):
        return "FASTQ text (the first record starts with '@')"
    columns = tab_columns(head)
    if columns:
        return f"tab-separated text with {columns} columns"
    return "text"


def _fastq_like(head: bytes) -> bool:
    lines = _lines(head, 4)
    return len(lines) < 3 or lines[2].startswith("+")


def guess(head: bytes) -> str:
    """A format for content given none: the most specific of a few cheap guesses."""
    if is_bam(head):
        return "bam"
    if is_gzip(head) or is_bzip2(head) or not is_text(head):
        return "data"
    if not head:
        return "txt"
    first = next((line for line in _lines(head) if line.strip()), "")
    if first.startswith(">"):
        return "fasta"
    if first.startswith("@") and _fastq_like(head):
        return "fastqsanger"
    if tab_columns(head):
        return "tabular"
    return "txt"


def mismatch(name: str, head: bytes) -> str | None:
    """Why content starting with `head` clearly is not of format `name`, or None if it
    may be. Only clear mismatches: a format's finer rules are the tools' business."""
    if name in ("data", "binary") or not head:
        return None
    looks = describe(head)
    kinds = ancestors(name)
    if name == "bam":
        return None if is_bam(head) else f"format bam needs BAM data, but the content is {looks}"
    if name.endswith(".gz"):
        return None if is_gzip(head) and not is_bam(head) else \
            f"format {name} needs gzip-compressed data, but the content is {looks}"
    if name.endswith(".bz2"):
        return None if is_bzip2(head) else \
            f"format {name} needs bzip2-compressed data, but the content is {looks}"
    if not is_text(head):  # every other format is a kind of txt
        return f"format {name} is text, but the content is {looks}"
    first = next((line for line in _lines(head) if line.strip()), "")
    if name == "fasta" and not first.startswith(">"):
        return f"format fasta needs a first record starting with '>', but the content is {looks}"
    if "fastq" in kinds and not (first.startswith("@") and _fastq_like(head)):
        return (f"format {name} needs a first record starting with '@' (and a '+' line), "
                f"but the content is {looks}")
    if name == "bed":
        data = [line for line in _lines(head) if line.strip() and not line.startswith(
            ("#", "track", "browser"))]
        if data and any(line.count("\t") < 2 for line in data):
            return f"format bed needs at least 3 tab-separated columns, but the content is {looks}"
    return None
