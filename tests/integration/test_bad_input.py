"""Bodies the API cannot use get a 400 that says what and where, never a 500, against a
real uWSGI server: JSON nested 100,000 levels deep, NaN and the infinities (which Python's
json accepts and JSON does not), numbers too large for a float, bytes that are not UTF-8.
A refused request writes nothing."""
from __future__ import annotations

import pytest


def post(server, data: bytes, path: str = "/api/jobs"):
    return server.http.post(server.url + path, data=data, timeout=30,
                            headers={"Content-Type": "application/json"})


def job_total(server) -> int:
    return server.http.get(server.url + "/api/jobs", timeout=10).json()["total"]


def assert_400(response, field: str, *words: str):
    assert response.status_code == 400, (response.status_code, response.text[:300])
    body = response.json()
    assert body["field"] == field, body
    for word in words:
        assert word in body["error"], body
    return body


@pytest.mark.parametrize("data", [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    b'{"tool_id": "cat_lines", "params": {"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}",
    b"[" * 40 + b"]" * 40,  # deeper than the API's limit, shallower than Python's recursion
], ids=["arrays", "objects", "inside-params", "40-levels"])
def test_deeply_nested_json_is_a_400(server, data):
    before = job_total(server)
    assert_400(post(server, data), "body", "nested too deeply")
    assert job_total(server) == before
    assert server.http.get(server.url + "/api/version", timeout=10).status_code == 200


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999"])
@pytest.mark.parametrize("tool_id, param", [("sleep", "seconds"), ("cat_lines", "times")])
def test_non_finite_numbers_are_a_400_naming_the_field(server, literal, tool_id, param):
    before = job_total(server)
    data = b'{"tool_id": "%s", "params": {"%s": %s}}' % (tool_id.encode(), param.encode(), literal)
    body = assert_400(post(server, data), f"params.{param}", "must be a finite number")
    assert body["error"].startswith(f"params.{param}: ")
    assert "got a number" not in body["error"]
    assert job_total(server) == before


def test_non_finite_anywhere_is_named_where_it_is(server):
    assert_400(post(server, b'{"tool_id": NaN}'), "tool_id", "must be a finite number", "NaN")
    assert_400(post(server, b"Infinity"), "body", "must be a finite number")
    assert_400(post(server, b'{"tool_id": "cat_lines", "params": {"text": [1, -Infinity]}}'),
               "params.text[1]", "must be a finite number", "-Infinity")
    # The same parser reads every JSON body of the API, e.g. an admin's new user.
    assert_400(post(server, b'{"email": "a@example.org", "password": NaN}', "/api/users"),
               "password", "must be a finite number")


def test_float_parameter_too_large_for_a_float(server):
    data = b'{"tool_id": "sleep", "params": {"seconds": 1%s}}' % (b"0" * 400)
    assert_400(post(server, data), "params.seconds", "must be a finite number")


@pytest.mark.parametrize("data, words", [
    (b'{"tool_id": "cat_lines",}', ("not valid JSON", "line 1, column")),
    (b"", ("not valid JSON",)),
    (b'{"tool_id": "caf\xe9"}', ("not valid JSON",)),               # Latin-1, not UTF-8
    (b'{"tool_id": "cat_lines", "params": {"times": 1%s}}' % (b"0" * 5000,),
     ("not valid JSON",)),                                         # 5,001 digits
    (b"null", ("must be a JSON object",)),
])
def test_malformed_bodies_are_a_400(server, data, words):
    before = job_total(server)
    assert_400(post(server, data), "body", *words)
    assert job_total(server) == before


def test_good_bodies_still_work(server):
    response = post(server, b'{"tool_id": "cat_lines", "params": {"text": [1], "times": 2}}')
    assert_400(response, "params.text", "expected text")
    response = post(server, b'{"tool_id": "sleep", "params": {"seconds": 0.01}}')
    assert response.status_code == 201, response.text
    nested_ok = b'{"tool_id": "noop", "params": {}}'
    assert post(server, nested_ok).status_code == 201
