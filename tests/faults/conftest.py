"""A station a failed test left running is killed, so it cannot reconnect to the next test's PLC."""

import pytest
from station_run import STARTED


@pytest.fixture(autouse=True)
def no_station_left_running():
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
