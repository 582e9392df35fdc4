import pytest

from tests.rig.components import free_port


@pytest.fixture
def port() -> int:
    return free_port()
