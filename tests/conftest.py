pytest_plugins = ["tests.slack.fixtures"]

from tests.conftest_db import *  # noqa: E402, F403
