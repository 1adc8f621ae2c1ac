pytest_plugins = ["tests.slack.fixtures"]

from tests.conftest_db import *  # noqa: E402, F403
from tests.conftest_xen import *  # noqa: E402, F403
