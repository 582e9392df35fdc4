import pytest

from tests.rig.components import free_port
from tests.rig.drill import drill_factory  # noqa: F401  (fixture)


@pytest.fixture
def port() -> int:
    return free_port()
