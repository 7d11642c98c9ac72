import pytest

from bigqmt_support import OPEN_BROKERS, start_host


@pytest.fixture(autouse=True)
def close_brokers():
    yield
    while OPEN_BROKERS:
        OPEN_BROKERS.pop().close()


@pytest.fixture
def host():
    started = start_host()
    yield started
    started.stop()
