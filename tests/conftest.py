"""Test setup: the layer's own copy of the library is the one imported."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIB = os.path.join(ROOT, "meta-xenguest", "lib")
if sys.path[0] != LIB:
    sys.path.insert(0, LIB)


import pytest  # noqa: E402  (after the path set-up above)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A test PKI made with the real openssl (signing_util.make_pki), shared by the session."""
    from signing_util import make_pki

    return make_pki(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture(autouse=True)
def fresh_manager_logger():
    """Each test starts with the manager's logger as a new process has it.

    xenguest-manager's main, run in this process by a test, logs to that test's
    sys.stderr (captured, then closed); the library code of a later test that
    logs there too (disk building, shared by render-disk) would hit the closed stream.
    """
    import logging

    yield
    logger = logging.getLogger("xenguest.manager")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(logging.NOTSET)
    logger.propagate = True
