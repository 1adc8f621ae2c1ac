"""The console and the demo: the same router in a terminal, scriptable through stdin."""

from __future__ import annotations

import io
import subprocess
import sys

from bot.console import Console
from bot.settings import Settings
from bot.wiring import build
from tests.conftest_xen import pool_settings


def test_console_runs_commands_and_numbered_buttons(sim, tmp_path):
    settings = Settings(pools=[pool_settings(sim)]).model_copy(
        update={"database_url": f"sqlite:///{tmp_path / 'c.db'}"}
    )
    services = build(settings)
    out = io.StringIO()
    try:
        console = Console(services.router, "U0OPS", out)
        console.loop(io.StringIO("vifs win2003-legacy\n1\nvifs nosuchvm\nquit\nvms\n"))
    finally:
        services.close()
    text = out.getvalue()
    assert "VIFs of win2003-legacy" in text
    assert "[1] Share in channel" in text
    assert "(posted in channel)" in text and "Shared by @U0OPS" in text
    assert "No VM matches 'nosuchvm'" in text
    assert "12 VMs" not in text  # nothing after quit


def test_demo_command_works_from_a_pipe():
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "demo"],
        input="vms\nvifs win7-kiosk\noffload status pool=demo\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "win2008r2-sql01" in result.stdout
    assert "VIFs of win7-kiosk" in result.stdout
    assert "Offload status of pool demo" in result.stdout


def test_out_of_range_numbers_are_usage_errors_not_failures(sim, tmp_path):
    settings = Settings(pools=[pool_settings(sim)]).model_copy(
        update={"database_url": f"sqlite:///{tmp_path / 'c.db'}"}
    )
    services = build(settings)
    try:
        def answer(text: str) -> str:
            out = io.StringIO()
            Console(services.router, "U0OPS", out).loop(io.StringIO(text + "\nquit\n"))
            return out.getvalue()

        for command, said in (
            ("changes -5", "`-5` is not a count"),
            ("changes 0", "`0` is not a count"),
            ("alerts 99999999999999999999", "is not a count"),
            ("change 99999999999999999999", "`99999999999999999999` is not an id"),
            ("revert -1", "`-1` is not an id"),
            ("explain win7-kiosk rx=nan tx=5", "`rx=` needs a number of 0 or more, not `nan`"),
            ("explain win7-kiosk rx=1 tx=inf", "`tx=` needs a number of 0 or more, not `inf`"),
            ("explain win7-kiosk rx=-3", "not `-3`"),
        ):
            text = answer(command)
            assert said in text and "Usage" in text, (command, text)
            assert "went wrong" not in text
        assert "went wrong" not in answer("change #1") and "went wrong" not in answer("changes 3")
    finally:
        services.close()
