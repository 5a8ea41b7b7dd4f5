import pytest

from tests.support.uwsgi_server import UwsgiServer


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = UwsgiServer(str(tmp_path_factory.mktemp("server"))).start()
    yield srv
    srv.stop()
