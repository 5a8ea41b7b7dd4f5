"""Slow clients must not take the web workers: 50 connections that send their headers
(`Content-Length: 100000`) and then their body a byte at a time, without logging in, while
other requests must still be answered within a second or two.

Against uWSGI's own http router (galaxy.yml's settings: the router hands requests to the
fastrouter, which reads each body whole before it connects to a web worker) and against
nginx in front of it (contrib/nginx/muleteer.conf: nginx buffers the body). Without them,
2 processes x 4 threads are 8 workers, and 50 such connections held them all: probes
waited 10 s and more. Everything is bounded: 50 connections, a few probes, about 10 s
of attack per test.
"""
from __future__ import annotations

import socket
import statistics
import threading
import time

import pytest
import requests

from tests.support.nginx_server import NGINX, serve_stack

SLOW_CONNECTIONS = 50
DRIP_INTERVAL = 2.0      # seconds between two bytes of a slow body
PROBE_DEADLINE = 2.0     # seconds a probe takes (median) while the attack runs
PROBES = 5


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A uWSGI server (its own http: port) and, if nginx is installed, nginx in front."""
    yield from serve_stack(str(tmp_path_factory.mktemp("slow")))


class SlowBodies:
    """SLOW_CONNECTIONS connections to 127.0.0.1:port, each sending a POST's headers and
    then one byte of its 100,000-byte body every DRIP_INTERVAL seconds, until closed."""

    def __init__(self, port: int):
        self.port = port
        self.sockets: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._drip, daemon=True)

    def __enter__(self) -> "SlowBodies":
        try:
            for _ in range(SLOW_CONNECTIONS):
                s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                self.sockets.append(s)
                s.sendall(b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
        except BaseException:
            self.close()
            raise
        self.thread.start()
        return self

    def _drip(self):
        while not self.stop.wait(DRIP_INTERVAL):
            for s in self.sockets:
                try:
                    s.sendall(b" ")
                except OSError:
                    pass

    def still_open(self) -> int:
        """How many of the connections the server has not closed."""
        count = 0
        for s in self.sockets:
            s.setblocking(False)
            try:
                count += s.recv(1, socket.MSG_PEEK) != b""  # data: an answer, still open
            except BlockingIOError:
                count += 1  # nothing to read: open, waiting for the rest of the body
            except OSError:
                pass
            finally:
                s.setblocking(True)
        return count

    def close(self):
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=DRIP_INTERVAL + 5)
        for s in self.sockets:
            s.close()

    def __exit__(self, *exc):
        self.close()


def probe_while_attacked(url: str, port: int, api_key: str) -> None:
    with SlowBodies(port) as attack:
        time.sleep(1.5)  # every slow connection has reached whatever will read its body
        latencies = []
        for i in range(PROBES):
            started = time.monotonic()
            try:
                response = requests.get(f"{url}/api/version", timeout=PROBE_DEADLINE + 8)
            except requests.RequestException as exc:
                pytest.fail(f"probe {i} failed after {time.monotonic() - started:.1f} s: {exc!r}")
            latencies.append(time.monotonic() - started)
            assert response.status_code == 200, response.text
            time.sleep(0.5)
        # Real work too: a submission (a body, and a write) is answered as fast.
        started = time.monotonic()
        response = requests.post(f"{url}/api/jobs", json={"tool_id": "noop"},
                                 headers={"x-api-key": api_key}, timeout=PROBE_DEADLINE + 8)
        latencies.append(time.monotonic() - started)
        assert response.status_code == 201, response.text
        # Held workers make every probe wait 10 s and more; one slow answer on a busy
        # machine is not that: the median is held to the deadline, each probe to 3 times it.
        shown = [f"{t:.2f}" for t in latencies]
        assert statistics.median(latencies) < PROBE_DEADLINE, shown
        assert max(latencies) < 3 * PROBE_DEADLINE, shown
        # The attack was real: its connections were still open, their bodies unfinished.
        assert attack.still_open() >= SLOW_CONNECTIONS - 5


def test_slow_bodies_do_not_take_the_workers_direct(stack):
    server, _ = stack
    probe_while_attacked(server.url, server.port, server.api_key)


def test_slow_bodies_do_not_take_the_workers_behind_nginx(stack):
    server, nginx = stack
    if nginx is None:
        pytest.skip(f"{NGINX} is missing (scripts/nginx-install installs it)")
    probe_while_attacked(nginx.url, nginx.port, server.api_key)
