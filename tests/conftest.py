"""How run_tests.sh spreads the tests over two processes (pytest-xdist, --dist loadgroup).

Unit tests go wherever a process is free. Each integration module, and the browser tests,
stay in one process (their module or session fixtures start a uWSGI server once). Modules
that use what the machine has only one of (Grid Engine's single slot; the test accounts
and the sudoers file of the real-user tests) declare
`pytestmark = pytest.mark.xdist_group(MACHINE)` and so run one after another.
"""
import pytest
from _pytest.nodeid import NodeId

MACHINE = "machine"  # tests of Grid Engine (one slot) or of the real-user accounts


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    grouping = getattr(config.option, "loadgroup", False)  # set in xdist's test processes
    for item in items:
        mark = item.get_closest_marker("xdist_group")
        if mark is not None:
            group = mark.args[0] if mark.args else mark.kwargs.get("name", "default")
        elif "browser" in item.path.parts:
            group = "browser"
        elif "integration" in item.path.parts:
            group = item.path.stem
        else:
            continue
        if grouping:
            # xdist groups by a "@group" suffix of the test's id. pytest 9 keeps the id in
            # item._id, while xdist 3.8 still writes item._nodeid, so its own grouping does
            # nothing (measured: one module's tests ran in both processes at once).
            item._id = NodeId.parse(f"{item.nodeid}@{group}")
