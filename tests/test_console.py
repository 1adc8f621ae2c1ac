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


# -- issue 18 §5: the demo says who you are; approve/reject by id; terminal text; exit status --------


def _console_settings(sim, tmp_path):
    from bot.settings import SlackSettings

    return Settings(pools=[pool_settings(sim)], slack=SlackSettings(approvers=["U0OPS", "U0LEAD"])).model_copy(
        update={"database_url": f"sqlite:///{tmp_path / 'shared.db'}"}
    )


def _session(settings, user: str, script: str, *, applies: bool = False) -> tuple[int, str]:
    """One console session of its own (own services, own messenger) on the shared database."""
    from bot.console import ConsoleMessenger

    out = io.StringIO()
    messenger = ConsoleMessenger(out)
    services = build(settings, messenger=messenger)
    try:
        status = Console(services.router, user, out, messenger=messenger).loop(io.StringIO(script))
        if applies:  # the apply runs on after the approval: wait for it before closing
            _wait_for(lambda: "applied" in _answer(services, user, "change 1"))
    finally:
        services.close()
    return status, out.getvalue()


def _answer(services, user: str, command: str) -> str:
    out = io.StringIO()
    Console(services.router, user, out).run_line(command)
    return out.getvalue()


def _wait_for(condition, timeout: float = 20.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_help_lists_the_console_commands(sim, tmp_path):
    status, text = _session(_console_settings(sim, tmp_path), "U0OPS", "help\n")
    assert status == 0
    for command in ("approve ID", "reject ID", "as USER", "quit"):
        assert command in text, command


def test_change_requested_in_one_console_is_approved_in_another(sim, tmp_path):
    settings = _console_settings(sim, tmp_path)
    status, first = _session(settings, "U0OPS", "offload off vm=win7-kiosk modes=tso\n")
    assert status == 0 and "Change #1" in first and "pending" in first
    status, second = _session(settings, "U0LEAD", "approve 1\n", applies=True)
    assert status == 0, second
    assert "You approved change #1" in second
    assert "applied" in second  # the card, updated in this session's terminal as the apply went on


def test_reject_by_id_from_another_console(sim, tmp_path):
    settings = _console_settings(sim, tmp_path)
    _session(settings, "U0OPS", "offload off vm=win7-kiosk modes=tso\n")
    status, text = _session(settings, "U0LEAD", "reject #1\nchange 1\n")
    assert status == 0, text
    assert "rejected" in text.lower()


def test_scripted_console_exits_non_zero_when_a_command_was_refused(sim, tmp_path):
    settings = _console_settings(sim, tmp_path)
    status, text = _session(settings, "U0OPS", "offload off vm=win7-kiosk modes=tso\napprove 1\nvms\n")
    assert status == 1, text
    assert "cannot approve your own request" in text
    assert _session(settings, "U0OPS", "vifs nosuchvm\n")[0] == 1
    assert _session(settings, "U0OPS", "approve\n")[0] == 1  # usage
    assert _session(settings, "U0OPS", "vms\nchanges\n")[0] == 0


def test_console_text_has_no_slack_markup(sim, tmp_path):
    """Channels, mentions and emoji read as words; MAC addresses keep their colons."""
    settings = _console_settings(sim, tmp_path)
    _, first = _session(settings, "U0OPS", "offload off vm=win7-kiosk modes=tso\nexplain win7-kiosk rx=100 tx=100\n")
    _, second = _session(settings, "U0LEAD", "approve 1\nvifs win7-kiosk\n", applies=True)
    text = first + second
    assert "<#" not in text and "<@" not in text
    assert ":large_green_circle:" not in text and ":large_yellow_circle:" not in text and ":mag:" not in text
    assert "message 1.000000" not in text and "[#console" not in text
    assert "waiting for approval in #console" in text
    assert "── message 1 in #console, updated ──" in text
    assert "b2:5e:1c:10:51:00" in text


def test_for_terminal_renders_slack_markup():
    from bot.console import for_terminal

    assert for_terminal("in <#C0123|ops> by <@U0LEAD> and <#console>") == "in #ops by @U0LEAD and #console"
    assert for_terminal("see <https://x.example/a|the docs>") == "see the docs (https://x.example/a)"
    assert for_terminal(":large_green_circle: ok :unknown_thing: 10:51:00") == "(high) ok :unknown_thing: 10:51:00"


def test_demo_says_who_you_are_and_how_to_approve_and_fails_a_refused_script():
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "demo"],
        input="offload off vm=win7-kiosk modes=tso\napprove 1\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert "You are U0DEMO" in result.stderr
    assert "as U0LEAD" in result.stderr and "approve 1" in result.stderr
    assert "cannot approve your own request" in result.stdout


def test_interactive_console_has_line_editing_and_history(tmp_path):
    """On a terminal (a pty here) readline is on: tab completes, the up arrow brings the last
    command back, and the history is kept in ~/.xenbot_history for the next session."""
    import os
    import pty
    import select
    import time

    pid, fd = pty.fork()
    if pid == 0:  # the child: xenbot demo on the pty, with a home of its own
        os.environ["HOME"] = str(tmp_path)
        os.execv(sys.executable, [sys.executable, "-m", "bot.cli", "demo"])
    seen = b""

    def read_until(marker: bytes, count: int = 1, timeout: float = 60.0) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while seen.count(marker) < count:
            assert time.monotonic() < deadline, seen.decode(errors="replace")[-2000:]
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    seen += os.read(fd, 65536)
                except OSError:
                    break

    try:
        read_until(b"xen> ")
        os.write(fd, b"poo\t\r")  # tab completes the command name
        read_until(b"POOL", 1)
        read_until(b"xen> ", 2)
        os.write(fd, b"\x1b[A\r")  # up arrow: "pools" again
        read_until(b"POOL", 2)
        read_until(b"xen> ", 3)
        os.write(fd, b"quit\r")
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    assert (tmp_path / ".xenbot_history").read_text().split()[-2:] == ["pools", "quit"]


def test_console_traffic_button_saves_the_chart_as_a_png(sim, tmp_path):
    from pathlib import Path

    settings = _console_settings(sim, tmp_path)
    status, text = _session(settings, "U0OPS", "vif win7-kiosk:0\n2\n")
    assert status == 0, text
    assert "[2] Traffic, last hour" in text
    path = Path(text.split("saved as ", 1)[1].split(".png", 1)[0] + ".png")
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_in_the_demo_a_vm_cloned_with_the_stock_client_is_reported_against_a_policy():
    """xenbot demo watches its pool like serve: a policy is set and approved in the console, a VM is
    cloned from outside with the stock XenAPI client, and the drift appears in the console."""
    import re
    import threading

    import XenAPI

    demo = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "demo"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    try:
        assert demo.stdin is not None and demo.stdout is not None and demo.stderr is not None
        intro = demo.stderr.readline()
        url = re.search(r"at (http://\S+?),", intro)
        assert url, intro
        seen: list[str] = []
        reader = threading.Thread(target=lambda: seen.extend(iter(demo.stdout.readline, "")), daemon=True)
        reader.start()
        demo.stdin.write("policy set pool=demo vifs modes=tx,sg\nas U0LEAD\napprove 1\n")
        demo.stdin.flush()
        _wait(lambda: any("applied" in line.lower() for line in seen), "the policy was not applied")
        other = XenAPI.Session(url.group(1))
        other.xenapi.login_with_password("root", "xenroot", "2.0", "test")
        source = other.xenapi.VM.get_by_name_label("ubuntu-build02")[0]
        other.xenapi.VM.clone(source, "demo-clone01")
        other.xenapi.session.logout()
        _wait(lambda: any("demo-clone01" in line for line in seen), "the clone's drift was not reported")
        demo.stdin.write("quit\n")
        demo.stdin.flush()
        demo.wait(30)
    finally:
        demo.kill()


def _wait(predicate, why: str, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, why
        time.sleep(0.05)
