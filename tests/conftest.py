"""How run_tests.sh spreads the tests over two processes (pytest-xdist, --dist loadgroup).

Unit tests go wherever a process is free. Each integration module, and the browser tests,
stay in one process (their module or session fixtures start a uWSGI server once). Modules
that use what the machine has only one of (Grid Engine's single slot; the test accounts
mtu*/mtsrv* and the sudoers file of the real-user tests) declare
`pytestmark = pytest.mark.xdist_group(MACHINE)` and so run one after another.
"""
import pytest

MACHINE = "machine"  # tests of Grid Engine (one slot) or of the real-user accounts


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        parts = item.path.parts
        if "browser" in parts:
            item.add_marker(pytest.mark.xdist_group("browser"))
        elif "integration" in parts:
            item.add_marker(pytest.mark.xdist_group(item.path.stem))
