"""Retried submissions against a real uWSGI server: a client whose connection dropped after
the server committed sends the same submission again with the same Idempotency-Key (or
client_request_id) and gets the first job (200, the same JSON shape as the 201), not a
second one; concurrent retries through both web workers still make one job."""
from __future__ import annotations

import secrets
import threading

import pytest
import requests

SUBMISSION = {"tool_id": "cat_lines", "params": {"text": "once", "times": 1}}


def jobs_total(server, session=None) -> int:
    return (session or server.http).get(server.url + "/api/jobs", timeout=10).json()["total"]


def other_user(server) -> requests.Session:
    email = f"retry-{secrets.token_hex(4)}@example.org"
    user = server.http.post(f"{server.url}/api/users", timeout=30,
                            json={"email": email, "password": secrets.token_urlsafe(16)}).json()
    key = server.http.post(f"{server.url}/api/users/{user['id']}/api_keys", timeout=30).json()["key"]
    session = requests.Session()
    session.headers["x-api-key"] = key
    return session


def test_a_retry_with_the_same_key_gets_the_first_job(server):
    url = server.url + "/api/jobs"
    key = secrets.token_hex(8)
    before = jobs_total(server)
    first = server.http.post(url, json=SUBMISSION, headers={"Idempotency-Key": key}, timeout=30)
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    server.wait(first.json()["id"])
    again = server.http.post(url, json=SUBMISSION, headers={"Idempotency-Key": key}, timeout=30)
    assert again.status_code == 200, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    assert again.json().keys() == first.json().keys()
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["state"] == "ok"  # the first job, as it is now
    # The same key in the body is the same submission; so are header and body together.
    body_key = server.http.post(url, json={**SUBMISSION, "client_request_id": key}, timeout=30)
    both = server.http.post(url, json={**SUBMISSION, "client_request_id": key},
                            headers={"Idempotency-Key": key}, timeout=30)
    assert (body_key.status_code, both.status_code) == (200, 200)
    assert body_key.json()["id"] == both.json()["id"] == first.json()["id"]
    assert jobs_total(server) == before + 1


def test_the_key_is_the_users_own(server):
    url = server.url + "/api/jobs"
    key = secrets.token_hex(8)
    mine = server.http.post(url, json=SUBMISSION, headers={"Idempotency-Key": key}, timeout=30)
    theirs_session = other_user(server)
    theirs = theirs_session.post(url, json=SUBMISSION, headers={"Idempotency-Key": key}, timeout=30)
    assert (mine.status_code, theirs.status_code) == (201, 201), theirs.text
    assert mine.json()["id"] != theirs.json()["id"]
    replay = theirs_session.post(url, json=SUBMISSION, headers={"Idempotency-Key": key}, timeout=30)
    assert replay.status_code == 200 and replay.json()["id"] == theirs.json()["id"]
    assert jobs_total(server, theirs_session) == 1


@pytest.mark.parametrize("headers, body, field", [
    ({"Idempotency-Key": ""}, {}, "Idempotency-Key"),
    ({}, {"client_request_id": "   "}, "client_request_id"),
    ({"Idempotency-Key": "k" * 256}, {}, "Idempotency-Key"),
    ({}, {"client_request_id": ""}, "client_request_id"),
    ({}, {"client_request_id": "k" * 256}, "client_request_id"),
    ({}, {"client_request_id": 42}, "client_request_id"),
    ({}, {"client_request_id": "tab\there"}, "client_request_id"),
    ({"Idempotency-Key": "one"}, {"client_request_id": "two"}, "client_request_id"),
], ids=["empty", "blank", "256", "body-empty", "body-256", "body-number", "body-control",
        "differ"])
def test_bad_keys_are_a_400_and_write_nothing(server, headers, body, field):
    before = jobs_total(server)
    response = server.http.post(server.url + "/api/jobs", json={**SUBMISSION, **body},
                                headers=headers, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
    assert jobs_total(server) == before


def test_a_key_of_255_characters_is_fine(server):
    key = "k" * 254 + "!"
    url = server.url + "/api/jobs"
    first = server.http.post(url, json=SUBMISSION, headers={"Idempotency-Key": key}, timeout=30)
    again = server.http.post(url, json=SUBMISSION, headers={"Idempotency-Key": key}, timeout=30)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]


def test_concurrent_retries_make_one_job(server):
    """16 submissions of one key at once, on fresh connections, through both web workers."""
    key = secrets.token_hex(8)
    before = jobs_total(server)
    barrier = threading.Barrier(16)
    answers = []

    def send():
        barrier.wait(timeout=30)
        response = requests.post(server.url + "/api/jobs", json=SUBMISSION, timeout=60,
                                 headers={"Idempotency-Key": key, "x-api-key": server.api_key})
        answers.append((response.status_code, response.json().get("id")))

    threads = [threading.Thread(target=send) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    assert len(answers) == 16, answers
    assert sorted(status for status, _ in answers) == [200] * 15 + [201], answers
    assert len({job_id for _, job_id in answers}) == 1
    assert jobs_total(server) == before + 1
