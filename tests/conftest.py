"""pytest fixtures for the Rampart integration tests.

* ``server`` (module scope): a running Rampart server with its own config and
  data directory.  A test module can set ``RAMPART_LIMITS = {...}`` (the
  ``[limits]`` table) to get a server configured for it, and
  ``RAMPART_GUARD = {...}`` for the ``[guard]`` table (nested dicts become
  sub-tables, e.g. ``{"blast": {"threshold": 5}}`` -> ``[guard.blast]``).
* ``clients``: a factory for logged-in slixmpp clients that are all shut
  down after the test.
* On failure, the part of the server log written during the test is added to
  the pytest report; a server that died during a test fails that test and is
  restarted for the next one.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rampart_harness import (  # noqa: E402
    Client, RampartServer, User, make_client, raise_nofile_limit,
)

WORK_ROOT = Path(__file__).resolve().parent / ".work"

raise_nofile_limit()


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    server = getattr(item, "_rampart_server", None)
    if server is None or not report.failed:
        return
    start = getattr(item, "_rampart_log_start", 0)
    if getattr(item, "_rampart_log_file", None) != server.log_path:
        start = 0  # the server was restarted during the test
    report.sections.append(
        (f"rampart server log during this test ({server.log_path})",
         server.log_text(since=start)))


def _module_workdir(request) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.module.__name__)
    return WORK_ROOT / name


@pytest.fixture(scope="module")
def server(request):
    """A Rampart server for this test module."""
    limits = getattr(request.module, "RAMPART_LIMITS", {})
    guard = getattr(request.module, "RAMPART_GUARD", None)
    srv = RampartServer(_module_workdir(request), limits=limits, guard=guard)
    try:
        srv.start()
    except FileNotFoundError as e:
        pytest.fail(str(e), pytrace=False)
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _server_watch(request):
    """Restart a server that died, attach its log to failures, and fail a
    test during which the server process died."""
    if "server" not in request.fixturenames:
        yield
        return
    srv: RampartServer = request.getfixturevalue("server")
    if not srv.alive():
        srv.start()
    request.node._rampart_server = srv
    request.node._rampart_log_start = srv.log_size()
    request.node._rampart_log_file = srv.log_path
    yield
    if not srv.alive():
        code = srv.proc.returncode if srv.proc else None
        pytest.fail(f"the rampart server process died during this test (exit code {code})",
                    pytrace=False)


@pytest.fixture
async def clients(server):
    """Factory: ``await clients(user, resource=None, **kw)`` -> logged-in Client.

    ``clients.new(user, ...)`` returns a not-yet-connected Client that is still
    cleaned up after the test.
    """
    made: list[Client] = []

    class Factory:
        def new(self, user: User, resource: str | None = None, **kw) -> Client:
            c = make_client(server, user, resource, **kw)
            made.append(c)
            return c

        async def __call__(self, user: User, resource: str | None = None, **kw) -> Client:
            c = self.new(user, resource, **kw)
            await c.login()
            return c

    yield Factory()
    for c in made:
        try:
            c.kill()
        except Exception:
            pass


@pytest.fixture
def new_user(server):
    """Factory: ``new_user("alice")`` creates a fresh account via the CLI."""
    return server.add_user
