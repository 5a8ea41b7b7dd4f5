"""The per-process API key cache (app/auth.py KeyCache): unit tests with a fake clock, and a
real uWSGI server with two web workers refusing a deleted key everywhere within a second."""
import time

import pytest
import requests

from app.auth import KEY_CACHE_SECONDS, KeyCache


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Lookup:
    def __init__(self, users):
        self.users, self.calls = users, 0

    def __call__(self, key):
        self.calls += 1
        user = self.users.get(key)
        return dict(user) if user else None


def test_a_found_user_is_kept_for_the_ttl_only():
    clock, lookup = Clock(), Lookup({"k1": {"id": 1}})
    cache = KeyCache(ttl=0.5, clock=clock)
    assert cache.user("k1", lookup) == {"id": 1}
    clock.now += 0.49
    assert cache.user("k1", lookup) == {"id": 1}
    assert lookup.calls == 1
    del lookup.users["k1"]  # revoked
    clock.now += 0.01
    assert cache.user("k1", lookup) is None
    assert lookup.calls == 2


def test_unknown_keys_are_never_cached():
    clock, lookup = Clock(), Lookup({})
    cache = KeyCache(ttl=0.5, clock=clock)
    assert cache.user("new", lookup) is None
    lookup.users["new"] = {"id": 2}  # the key is made just after a refused try
    assert cache.user("new", lookup) == {"id": 2}


def test_each_request_gets_its_own_copy_and_the_size_is_bounded():
    clock = Clock()
    lookup = Lookup({f"k{i}": {"id": i} for i in range(10)})
    cache = KeyCache(ttl=0.5, size=4, clock=clock)
    cache.user("k1", lookup)["id"] = 99
    assert cache.user("k1", lookup) == {"id": 1}
    for i in range(10):
        cache.user(f"k{i}", lookup)
    assert len(cache._entries) <= 4


def test_the_default_ttl_is_under_a_second():
    assert 0 < KEY_CACHE_SECONDS < 1.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.support.uwsgi_server import UwsgiServer
    srv = UwsgiServer(str(tmp_path_factory.mktemp("key_cache")), processes=2).start()
    yield srv
    srv.stop()


def test_a_deleted_key_is_refused_by_every_worker_within_a_second(server):
    user = server.http.post(f"{server.url}/api/users",
                            json={"email": "cache@example.org", "password": "a good password"},
                            timeout=10).json()
    made = server.http.post(f"{server.url}/api/users/{user['id']}/api_keys", timeout=10)
    key = made.json()["key"]
    url = f"{server.url}/api/jobs"

    def status():
        # A new connection each time: the requests spread over both workers.
        return requests.get(url, headers={"x-api-key": key, "Connection": "close"},
                            timeout=10).status_code

    # Used right after it is made (nothing cached refuses it), and cached in the workers.
    assert [status() for _ in range(20)] == [200] * 20
    key_id = server.http.get(f"{server.url}/api/users/{user['id']}/api_keys",
                             timeout=10).json()[0]["id"]
    deleted = time.monotonic()
    assert server.http.delete(f"{server.url}/api/users/{user['id']}/api_keys/{key_id}",
                              timeout=10).status_code == 200
    # Poll until a second after the deletion; from then on every worker must refuse it.
    while time.monotonic() < deleted + 1.0:
        status()
    assert [status() for _ in range(20)] == [401] * 20
