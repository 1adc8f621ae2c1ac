"""``config check`` refuses a policy long-poll that the pool's socket timeout would cut off (issue 14)."""

from bot.cli import main
from tests.test_settings import GOOD, clean_environment, write  # noqa: F401 - autouse fixture


def test_config_check_refuses_poll_seconds_not_below_the_pool_timeout(tmp_path, capsys):
    text = GOOD.replace('password = "hunter2"', 'password = "hunter2"\ntimeout_seconds = 20')
    path = write(tmp_path, text + "[policies]\npoll_seconds = 25\n")
    assert main(["--config", str(path), "config", "check"]) == 1
    err = capsys.readouterr().err
    assert "policies.poll_seconds (25) must be below the timeout_seconds (20) of pool 'prod'" in err
    # Below it, or with the watcher off, the same file is fine.
    write(tmp_path, text + "[policies]\npoll_seconds = 15\n")
    assert main(["--config", str(path), "config", "check"]) == 0
    write(tmp_path, text + "[policies]\nwatch = false\npoll_seconds = 25\n")
    assert main(["--config", str(path), "config", "check"]) == 0
