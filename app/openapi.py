"""The API's OpenAPI 3 description, served at /api/openapi.json (and fuzzed by the tests)."""
from muleteer.job import JobState
from muleteer.store.jobs import JobRecords

_ERROR = {"$ref": "#/components/schemas/Error"}
_JOB = {"$ref": "#/components/schemas/Job"}


def _json(schema, description="OK"):
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes):
    text = {400: "Bad request (the error names the field)", 401: "No valid API key",
            403: "Admins only", 404: "No such thing (or not yours)", 409: "Already ended",
            413: "Body too large"}
    return {str(c): _json(_ERROR, text[c]) for c in codes}


_IDEMPOTENCY = (
    "Retries: send an `Idempotency-Key` header (or `client_request_id` in the body), 1 to 255 "
    "printable characters. The same key from the same user within 24 hours answers 200 with "
    "the first job, in the same shape as the 201, and writes nothing, even when the retry "
    "arrives while the first request is still being handled; whatever the retry's body says, "
    "the key names the first submission. Another user's key is theirs. An empty or longer key "
    "is a 400.")


def _job_id():
    return {"name": "job_id", "in": "path", "required": True,
            "schema": {"type": "integer", "minimum": 1}}


def _dataset_paths() -> dict:
    """Datasets (app/datasets_api.py)."""
    dataset_id = {"name": "dataset_id", "in": "path", "required": True,
                  "schema": {"type": "integer", "minimum": 1}}
    dataset = {"type": "object"}
    more = {410: "The dataset was deleted", 411: "No Content-Length",
            413: "Over max_upload_size: use the resumable upload",
            501: "Resumable uploads not available yet", 507: "No space left under file_path"}
    extra = lambda *codes: {str(c): _json(_ERROR, more[c]) for c in codes}  # noqa: E731
    fields = {"name": {"type": "string"}, "format": {"type": "string"}}
    return {
        "/api/datasets": {
            "post": {
                "summary": "Upload a dataset: multipart `file` (up to max_upload_size), JSON "
                           "`content` (pasted text), or JSON `upload_id` (a finished resumable "
                           "upload)", "operationId": "createDataset",
                "description": "`format` is a Galaxy extension (txt, tabular, bed, fasta, "
                               "fastqsanger, bam, ...; `auto` or none: guessed). Content that "
                               "clearly is not of the format is a 400 saying what it looks "
                               "like. Over user_quota: 403.",
                "requestBody": {"required": True, "content": {
                    "multipart/form-data": {"schema": {
                        "type": "object", "required": ["file"],
                        "properties": {"file": {"type": "string", "format": "binary"}, **fields}}},
                    "application/json": {"schema": {
                        "type": "object", "properties": {"content": {"type": "string"},
                                                         "upload_id": {"type": "string"},
                                                         **fields}}}}},
                "responses": {"201": _json(dataset), **_errors(400, 401, 403, 413),
                              **extra(411, 501, 507)}},
            "get": {
                "summary": "My datasets, newest first", "operationId": "listDatasets",
                "parameters": [
                    {"name": "state", "in": "query", "schema": {"type": "string",
                                                                "enum": ["ok", "deleted"]}},
                    {"name": "format", "in": "query", "schema": {"type": "string"}},
                    {"name": "name", "in": "query", "schema": {"type": "string"},
                     "description": "a part of the name, any case"},
                    {"name": "limit", "in": "query",
                     "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}}],
                "responses": {"200": _json({"type": "object", "properties": {
                    "datasets": {"type": "array", "items": dataset}, "total": {"type": "integer"},
                    "limit": {"type": "integer"}, "offset": {"type": "integer"}}}),
                    **_errors(400, 401)}}},
        "/api/datasets/{dataset_id}": {
            "parameters": [dataset_id],
            "get": {"summary": "A dataset: metadata, peek, provenance", "operationId": "showDataset",
                    "responses": {"200": _json(dataset), **_errors(401, 404)}},
            "delete": {"summary": "Delete a dataset (its file is removed)",
                       "operationId": "deleteDataset",
                       "responses": {"200": _json(dataset), **_errors(401, 404),
                                     "409": _json(_ERROR, "A new, queued or running job uses it")}}},
        "/api/datasets/{dataset_id}/display": {
            "parameters": [dataset_id],
            "get": {"summary": "The dataset's bytes (Range requests; ?preview=1: the first KiB)",
                    "operationId": "displayDataset",
                    "parameters": [{"name": "preview", "in": "query",
                                    "schema": {"type": "string", "enum": ["1", "true"]}}],
                    "responses": {"200": {"description": "The bytes",
                                          "content": {"application/octet-stream": {}}},
                                  "206": {"description": "A range of the bytes"},
                                  **_errors(401, 404), **extra(410)}}},
    }


def _tus_paths() -> dict:
    """Resumable uploads (tus 1.0, app/tus.py): each answer carries Tus-Resumable: 1.0.0."""
    def header(name, description, required=True, **schema):
        return {"name": name, "in": "header", "required": required, "description": description,
                "schema": {"type": "string", **schema}}
    tus = header("Tus-Resumable", "the protocol version", enum=["1.0.0"])
    empty = {"description": "No body; the Upload-* headers say it"}
    upload = {"name": "upload_id", "in": "path", "required": True,
              "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}
    return {
        "/api/upload/resumable_upload/": {"post": {
            "summary": "Start a resumable upload (tus creation)", "operationId": "tusCreate",
            "description": "Answers 201 with `Location`, the upload's URL (its last segment is "
                           "the upload_id), and `Upload-Expires`.",
            "parameters": [tus, header("Upload-Length", "the file's size, bytes", pattern="^[0-9]+$"),
                           header("Upload-Metadata", "`key base64,...`: filename and filetype are "
                                  "kept", required=False)],
            "responses": {"201": {"description": "Created"}, **_errors(400, 401, 413)}}},
        "/api/upload/resumable_upload/{upload_id}": {
            "parameters": [upload, tus],
            "head": {"summary": "An upload's offset", "operationId": "tusOffset",
                     "responses": {"200": empty, "404": {"description": "No such upload (or not yours)"}}},
            "patch": {"summary": "Send a chunk (at most tus_max_chunk bytes) at Upload-Offset",
                      "operationId": "tusChunk",
                      "parameters": [header("Upload-Offset", "the upload's current offset",
                                            pattern="^[0-9]+$"),
                                     header("Upload-Checksum", "`sha1 <base64>` of this chunk "
                                            "(sha1, md5, sha256): 460 on a mismatch", required=False)],
                      # The body (Content-Type: application/offset+octet-stream, the chunk's
                      # bytes) is not described: OpenAPI tools cannot send that media type.
                      "description": "The body is the chunk's bytes, with Content-Type: "
                                     "application/offset+octet-stream.",
                      "responses": {"204": empty, **_errors(400, 401, 404, 409, 413),
                                    "460": _json(_ERROR, "Checksum mismatch: the chunk was discarded")}},
            "delete": {"summary": "Remove an upload (tus termination)", "operationId": "tusDelete",
                       "responses": {"204": empty, **_errors(401, 404)}},
        },
    }


def spec() -> dict:
    text_file = {"description": "Text", "content": {"text/plain": {"schema": {"type": "string"}}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Muleteer", "version": "1.0.0",
                 "description": "Submit jobs of admin-defined tools; watch, read and cancel them."},
        "servers": [{"url": "/"}],
        "security": [{"ApiKey": []}, {"ApiKeyQuery": []}],
        "components": {
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "ApiKeyQuery": {"type": "apiKey", "in": "query", "name": "key"},
            },
            "schemas": {
                "Error": {"type": "object", "required": ["error"],
                          "properties": {"error": {"type": "string"}, "field": {"type": "string"}}},
                "Submission": {"type": "object", "required": ["tool_id"], "additionalProperties": False,
                               "properties": {"tool_id": {"type": "string"},
                                              "tool_version": {
                                                  "type": "string", "minLength": 1,
                                                  "description": "one of the tool's versions "
                                                                 "(default: the newest)"},
                                              "params": {
                                                  "type": "object",
                                                  "description": "nested, or Galaxy's flat form "
                                                                 "(\"cond|sel\", \"rep_0|x\")"},
                                              "inputs": {
                                                  "type": "object",
                                                  "description": "Galaxy's name for params "
                                                                 "(send one of the two)"},
                                              "client_request_id": {
                                                  "type": "string", "minLength": 1, "maxLength": 255,
                                                  "description": "the same as the Idempotency-Key "
                                                                 "header (send either, or both alike)"}}},
                "Job": {"type": "object", "required": ["id", "tool_id", "state"], "properties": {
                    "id": {"type": "integer"}, "tool_id": {"type": "string"},
                    "state": {"type": "string", "enum": list(tuple(JobState))},
                    "handler": {"type": "string", "nullable": True},
                    "destination": {"type": "string"}, "runner": {"type": "string"},
                    "external_id": {"type": "string", "nullable": True},
                    "exit_code": {"type": "integer", "nullable": True},
                    "info": {"type": "string", "nullable": True},
                    "create_time": {"type": "string", "nullable": True},
                    "start_time": {"type": "string", "nullable": True},
                    "end_time": {"type": "string", "nullable": True}}},
            },
        },
        "paths": {
            "/api/jobs": {
                "post": {"summary": "Submit a job", "operationId": "submitJob",
                         "description": _IDEMPOTENCY,
                         "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                                         "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                                         "description": "a key the client picks for this submission "
                                                        "(e.g. a UUID), sent again with a retry"}],
                         "requestBody": {"required": True, "content": {"application/json": {
                             "schema": {"$ref": "#/components/schemas/Submission"}}}},
                         "responses": {"201": _json(_JOB, "Written; its handler was told"),
                                       "200": _json(_JOB, "A retry: this user's first job with this "
                                                          "key (header Idempotent-Replayed: true); "
                                                          "nothing was written"),
                                       **_errors(400, 401, 413)}},
                "get": {"summary": "My jobs, newest first", "operationId": "listJobs",
                        "description": "Pages: follow `next` (it carries `before`, the last job "
                                       "shown), which costs the same on every page however many "
                                       "jobs there are; `offset` works too but skips rows one by "
                                       f"one. `total` counts at most {JobRecords.LIST_COUNT_CAP:,} "
                                       "jobs (`total_exact` false beyond).",
                        "parameters": [
                            {"name": "state", "in": "query",
                             "schema": {"type": "string", "enum": list(tuple(JobState))}},
                            {"name": "tool_id", "in": "query", "schema": {"type": "string"}},
                            {"name": "limit", "in": "query",
                             "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                            {"name": "before", "in": "query",
                             "schema": {"type": "integer", "minimum": 1},
                             "description": "only jobs with a smaller id (the cursor of `next`)"},
                            {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                            {"name": "all", "in": "query", "schema": {"type": "string", "enum": ["0", "1"]},
                             "description": "admins: everyone's jobs"}],
                        "responses": {"200": _json({"type": "object", "properties": {
                            "jobs": {"type": "array", "items": _JOB}, "total": {"type": "integer"},
                            "total_exact": {"type": "boolean"},
                            "limit": {"type": "integer"}, "offset": {"type": "integer"},
                            "next": {"type": "string", "nullable": True,
                                     "description": "the URL of the next page; null on the last"}}}),
                            **_errors(400, 401)}},
            },
            "/api/jobs/{job_id}": {
                "parameters": [_job_id()],
                "get": {"summary": "One job, with its history", "operationId": "showJob",
                        "responses": {"200": _json(_JOB), **_errors(401, 404)}},
                "delete": {"summary": "Cancel a job", "operationId": "cancelJob",
                           "responses": {"200": _json(_JOB), **_errors(401, 404, 409)}},
            },
            "/api/jobs/{job_id}/stdout": {"parameters": [_job_id()], "get": {
                "summary": "The tool's standard output", "operationId": "jobStdout",
                "responses": {"200": text_file, **_errors(401, 404)}}},
            "/api/jobs/{job_id}/stderr": {"parameters": [_job_id()], "get": {
                "summary": "The tool's standard error", "operationId": "jobStderr",
                "responses": {"200": text_file, **_errors(401, 404)}}},
            "/api/jobs/{job_id}/metrics": {"parameters": [_job_id()], "get": {
                "summary": "The job's metrics, as Galaxy's job metrics plugins collect them",
                "operationId": "jobMetrics",
                "description": "Recorded when the job ends (none before). Admins see every "
                               "plugin's; the job's owner those of core and cgroup (runtime, "
                               "peak memory, CPU time). raw_value is a string, as in Galaxy.",
                "responses": {"200": _json({"type": "array", "items": {
                    "type": "object", "required": ["plugin", "name", "raw_value", "value", "title"],
                    "properties": {"plugin": {"type": "string"}, "name": {"type": "string"},
                                   "raw_value": {"type": "string"}, "value": {"type": "string"},
                                   "title": {"type": "string"}}}}),
                              **_errors(401, 404)}}},
            "/api/jobs/{job_id}/outputs/{name}": {
                "parameters": [_job_id(), {"name": "name", "in": "path", "required": True,
                                           "schema": {"type": "string"}}],
                "get": {"summary": "An output file", "operationId": "jobOutput",
                        "responses": {"200": {"description": "The file"}, **_errors(401, 404)}}},
            "/api/tools": {"get": {"summary": "The tools", "operationId": "listTools",
                                   "responses": {"200": _json({"type": "array", "items": {"type": "object"}}),
                                                 **_errors(401)}}},
            "/api/tools/{tool_id}": {
                "parameters": [{"name": "tool_id", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "get": {"summary": "One tool and its parameters", "operationId": "showTool",
                        "responses": {"200": _json({"type": "object"}), **_errors(401, 404)}}},
            "/api/handlers": {"get": {"summary": "Handlers, heartbeats and load (admins)",
                                      "operationId": "listHandlers",
                                      "responses": {"200": _json({"type": "object"}), **_errors(401, 403)}}},
            "/api/version": {"get": {"summary": "Server version (no key needed)", "security": [],
                                     "operationId": "version",
                                     "responses": {"200": _json({"type": "object"})}}},
            "/api/users/current": {"get": {"summary": "Who I am", "operationId": "currentUser",
                                           "responses": {"200": _json({"type": "object"}), **_errors(401)}}},
            "/api/users": {
                "get": {"summary": "The users (admins)", "operationId": "listUsers",
                        "responses": {"200": _json({"type": "array", "items": {"type": "object"}}),
                                      **_errors(401, 403)}},
                "post": {"summary": "Create a user (admins)", "operationId": "createUser",
                         "requestBody": {"required": True, "content": {"application/json": {"schema": {
                             "type": "object", "required": ["email", "password"],
                             "properties": {"email": {"type": "string"}, "password": {"type": "string"},
                                            "is_admin": {"type": "boolean"}}}}}},
                         "responses": {"201": _json({"type": "object"}), **_errors(400, 401, 403)}}},
            "/api/users/{user_id}/api_keys": {
                "parameters": [{"name": "user_id", "in": "path", "required": True,
                                "schema": {"type": "integer", "minimum": 1}}],
                "get": {"summary": "A user's keys (prefixes only)", "operationId": "listApiKeys",
                        "responses": {"200": _json({"type": "array", "items": {"type": "object"}}),
                                      **_errors(401, 404)}},
                "post": {"summary": "A new key, shown once", "operationId": "createApiKey",
                         "responses": {"201": _json({"type": "object"}), **_errors(401, 403, 404)}}},
            "/api/users/{user_id}/api_keys/{key_id}": {
                "parameters": [{"name": "user_id", "in": "path", "required": True,
                                "schema": {"type": "integer", "minimum": 1}},
                               {"name": "key_id", "in": "path", "required": True,
                                "schema": {"type": "integer", "minimum": 1}}],
                "delete": {"summary": "Remove a key", "operationId": "deleteApiKey",
                           "responses": {"200": _json({"type": "object"}), **_errors(401, 404)}}},
            **_tus_paths(),
            **_dataset_paths(),
        },
    }
