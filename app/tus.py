"""Resumable uploads: the tus 1.0 protocol (https://tus.io/protocols/resumable-upload) at
/api/upload/resumable_upload/, Galaxy's path. Extensions: creation, termination, checksum
(sha1, md5, sha256 per chunk: 460 on a mismatch, the chunk discarded) and expiration.

Each upload is two files in `tus_upload_store` (0700): `<id>`, the bytes received so far,
and `<id>.json`, its sidecar (owner, Upload-Length, metadata, creation time). The id is 32
random hex digits, checked before any path is built. The offset is the data file's size on
disk, so an upload resumes where it stopped, after a restart too. Each PATCH is one
request: it is streamed to the file (O_APPEND, O_NOFOLLOW, under an exclusive lock so two
requests never interleave) and fsync'ed before the 204. A chunk is at most `tus_max_chunk`
bytes (the app's max_request_body does not apply to PATCH here); uploads idle for
`tus_upload_expiry` seconds are removed on the next creation.

An upload is its creator's: another user's id is a 404, like a missing one. Authentication
is the API's (API key, or a session, which must send its CSRF token with writes).

The uploads on disk are app/tus_store.py's; the datasets API takes a finished one with
finished_upload(ctx, user_id, upload_id) -> (path, metadata), then remove_upload().
"""
from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import os
from email.utils import formatdate

from flask import Blueprint, Response, current_app, g, jsonify, request
from werkzeug.exceptions import ClientDisconnected, HTTPException

from app.auth import current_owner, unauthorized_json
from app.tus_store import (UploadError, UploadNotFound, UploadStore, parse_metadata, store_for, valid_id)

TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,termination,checksum,expiration"
CHECKSUMS = {"sha1": hashlib.sha1, "md5": hashlib.md5, "sha256": hashlib.sha256}
_READ = 1024 * 1024  # bytes read from the request at a time

tus = Blueprint("tus", __name__, url_prefix="/api/upload/resumable_upload")


# -- the protocol ---------------------------------------------------------------------

class TusError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


@tus.errorhandler(TusError)
def _tus_error(exc: TusError):
    response = jsonify({"error": exc.message})
    response.status_code = exc.status
    response.headers.update(exc.headers)
    return response


@tus.errorhandler(UploadError)
def _upload_error(exc: UploadError):
    return jsonify({"error": str(exc)}), exc.status


@tus.errorhandler(413)
def _too_large(exc: HTTPException):
    limit = request.max_content_length
    return jsonify({"error": f"request body too large (at most {limit} bytes per request; "
                             "a chunk at most galaxy.tus_max_chunk)"}), 413


def _ctx():
    return current_app.extensions["muleteer"]


def _store() -> UploadStore:
    return store_for(_ctx())


@tus.url_value_preprocessor
def _chunk_limit(endpoint, values):
    # Before any before_request (auth.load_user's CSRF check may parse the body): a PATCH
    # carries a chunk of up to tus_max_chunk bytes, not the app's max_request_body.
    if request.method == "PATCH":
        request.max_content_length = _ctx().config.tus_max_chunk


@tus.before_request
def _authenticate():
    if request.method == "OPTIONS":
        return None  # discovery needs no key (CORS preflights carry none)
    if g.bad_key or (g.user is None and _ctx().config.require_login):
        return unauthorized_json()
    if request.headers.get("Tus-Resumable") != TUS_VERSION:
        raise TusError(412, f"send Tus-Resumable: {TUS_VERSION}", {"Tus-Version": TUS_VERSION})
    return None


@tus.after_request
def _tus_headers(response: Response):
    response.headers["Tus-Resumable"] = TUS_VERSION
    response.headers["Cache-Control"] = "no-store"
    return response


def _http_date(when: float) -> str:
    return formatdate(when, usegmt=True)


def _options():
    config = _ctx().config
    response = Response(status=204)
    response.headers.update({"Tus-Version": TUS_VERSION, "Tus-Extension": EXTENSIONS,
                             "Tus-Max-Size": str(config.tus_max_size),
                             "Tus-Checksum-Algorithm": ",".join(CHECKSUMS)})
    return response


def _owner_id() -> int | None:
    user = g.get("user")
    return user["id"] if user else None


def _own(upload_id: str) -> dict:
    owner = _owner_id()
    if owner is None or not valid_id(upload_id):
        raise UploadNotFound(f"no upload {upload_id}")
    return _store().info(upload_id, owner_id=owner)


def _number(name: str) -> int:
    value = request.headers.get(name, "")
    if not (value.isascii() and value.isdigit()) or len(value) > 19:
        raise TusError(400, f"{name}: expected a non-negative whole number of bytes")
    return int(value)


@tus.route("/", methods=["POST", "OPTIONS"], strict_slashes=False)
def create():
    if request.method == "OPTIONS":
        return _options()
    config = _ctx().config
    if "Upload-Defer-Length" in request.headers or "Upload-Length" not in request.headers:
        raise TusError(400, "send Upload-Length (Upload-Defer-Length is not supported)")
    length = _number("Upload-Length")
    if length > config.tus_max_size:
        raise TusError(413, f"Upload-Length over the largest upload, {config.tus_max_size} bytes "
                            "(galaxy.tus_max_size)")
    try:
        metadata = parse_metadata(request.headers.get("Upload-Metadata", ""))
    except ValueError as exc:
        raise TusError(400, f"Upload-Metadata: {exc}") from None
    store = _store()
    store.expire()
    owner = current_owner()  # an anonymous visitor (require_login: false) gets a user
    info = store.create(owner["id"], length, metadata)
    response = Response(status=201)
    response.headers["Location"] = f"{tus.url_prefix}/{info['id']}"
    response.headers["Upload-Offset"] = "0"
    response.headers["Upload-Expires"] = _http_date(store.expires(info))
    return response


@tus.route("/<upload_id>", methods=["HEAD", "PATCH", "DELETE", "OPTIONS"])
def upload(upload_id: str):
    if request.method == "OPTIONS":
        return _options()
    info = _own(upload_id)
    store = _store()
    if request.method == "DELETE":
        store.remove(upload_id)
        return Response(status=204)
    if request.method == "HEAD":
        return _offset_response(store, info, 200)
    return _patch(store, info)


def _offset_response(store: UploadStore, info: dict, status: int) -> Response:
    response = Response(status=status)
    response.headers["Upload-Offset"] = str(info["offset"])
    response.headers["Upload-Length"] = str(info["length"])
    if info["offset"] < info["length"]:
        response.headers["Upload-Expires"] = _http_date(store.expires(info))
    return response


def _patch(store: UploadStore, info: dict) -> Response:
    if request.mimetype != "application/offset+octet-stream":
        raise TusError(415, "send Content-Type: application/offset+octet-stream")
    offset = _number("Upload-Offset")
    declared = request.environ.get("CONTENT_LENGTH") or ""
    if not (declared.isascii() and declared.isdigit()):
        raise TusError(411, "send each chunk with a Content-Length header")
    size = int(declared)
    if size > request.max_content_length:
        raise TusError(413, f"chunk over galaxy.tus_max_chunk ({request.max_content_length} "
                            "bytes): send smaller chunks")
    checksum = _checksum()
    try:
        fd = store.open_for_append(info["id"])
    except BlockingIOError:
        raise TusError(423, "another request is writing to this upload") from None
    try:
        current = os.fstat(fd).st_size
        if offset != current:
            raise TusError(409, f"Upload-Offset {offset} is not the upload's offset, {current}",
                           {"Upload-Offset": str(current)})
        if current + size > info["length"]:
            raise TusError(413, f"the chunk would take the upload past its Upload-Length "
                                f"({info['length']} bytes)")
        try:
            received = _append(fd, size, checksum)
        except TusError:
            if checksum is not None:
                os.ftruncate(fd, current)  # a chunk with a checksum is whole or nothing
            os.fsync(fd)
            raise
        if checksum is not None and received == size:
            name, digest, expected = checksum
            if digest.digest() != expected:
                os.ftruncate(fd, current)
                os.fsync(fd)
                raise TusError(460, f"Upload-Checksum: the chunk's {name} does not match; "
                                    "the chunk was discarded, send it again")
        elif checksum is not None:
            os.ftruncate(fd, current)  # an incomplete chunk cannot be checked: dropped
        os.fsync(fd)
        info["offset"] = os.fstat(fd).st_size
    finally:
        os.close(fd)
    if received != size:
        raise TusError(400, f"the body ended after {received} of {size} bytes",
                       {"Upload-Offset": str(info["offset"])})
    return _offset_response(store, info, 204)


def _checksum():
    header = request.headers.get("Upload-Checksum")
    if header is None:
        return None
    name, _, value = header.strip().partition(" ")
    if name not in CHECKSUMS:
        raise TusError(400, f"Upload-Checksum: unsupported algorithm {name[:20]!r} (supported: "
                            f"{', '.join(CHECKSUMS)})")
    try:
        expected = base64.b64decode(value.strip(), validate=True)
    except binascii.Error:
        raise TusError(400, "Upload-Checksum: the checksum is not base64") from None
    return name, CHECKSUMS[name](), expected


def _append(fd: int, size: int, checksum) -> int:
    """Stream the body to the file, a piece at a time; the number of bytes received."""
    stream = request.stream
    received = 0
    while received < size:
        try:
            piece = stream.read(min(_READ, size - received))
        except ClientDisconnected:
            break
        if not piece:
            break
        if checksum is not None:
            checksum[1].update(piece)
        view = memoryview(piece)
        while view:
            try:
                written = os.write(fd, view)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise TusError(507, "the server's disk is full") from None
                raise
            view = view[written:]
        received += len(piece)
    return received
