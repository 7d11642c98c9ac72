"""The conformance suite's fixtures: `rig` runs every case once per registered back-end (each
`backend_<name>.py` of this folder registers itself in rig.BACKENDS), `daemon` is the daemon's trading core over
the rig's broker. A back-end module that cannot be imported fails its own cases, not the others'."""
from __future__ import annotations

import importlib
import traceback
from contextlib import contextmanager
from pathlib import Path

import pytest

from books import Daemon
from rig import BACKENDS, register
from test_easy_qmt_trader import loopback_only  # noqa: F401 (autouse: nothing but loopback, as every broker test)


def _load_backends() -> None:
    for path in sorted(Path(__file__).parent.glob("backend_*.py")):
        name = path.stem[len("backend_"):]
        try:
            importlib.import_module(path.stem)
        except Exception:
            failure = traceback.format_exc()

            @contextmanager
            def broken(tmp_path, failure=failure, name=name):
                pytest.fail(f"conformance back-end {name} could not be imported:\n{failure}")
                yield

            register(name)(broken)


_load_backends()


@pytest.fixture(params=sorted(BACKENDS))
def rig(request, tmp_path):
    with BACKENDS[request.param](tmp_path) as built:
        yield built


@pytest.fixture
def daemon(rig):
    side = Daemon(rig)
    yield side
    side.close()
