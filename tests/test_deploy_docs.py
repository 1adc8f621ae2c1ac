"""The deployment files say what is true and do what they say (issue 15 item 18)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def test_compose_header_reads_the_pool_password_without_echo_or_history() -> None:
    header = [line for line in (DEPLOY / "compose.yaml").read_text().splitlines() if line.startswith("#")]
    writes = [line for line in header if "secrets/pool_" in line and ">" in line]
    assert writes, "the header should say how to write the pool password file"
    for line in writes:
        assert "read -rs" in line, line
        assert not re.search(r"printf '%s' '", line), f"a literal password lands in the shell history: {line}"


def test_systemd_http_override_listens_on_loopback_only() -> None:
    unit = (DEPLOY / "systemd" / "xenbot.service").read_text()
    overrides = [line for line in unit.splitlines() if "ExecStart=" in line and "--http" in line]
    assert overrides and all("--host 127.0.0.1" in line for line in overrides), overrides


def test_example_pool_account_is_an_ad_subject_not_a_local_user() -> None:
    """XAPI has no local users besides root: least privilege means an AD subject with an RBAC role."""
    pool = tomllib.loads((DEPLOY / "xenbot.example.toml").read_text())["pools"][0]
    assert pool["username"] == "CORP\\svc-xenbot"


def test_apply_processes_may_lower_their_priority_under_the_unit() -> None:
    """The operator guide: apply processes run at lower CPU priority; the unit's seccomp filter must allow it."""
    assert "at lower CPU priority" in (ROOT / "docs" / "operator-guide.md").read_text()
    filters = [line.split("=", 1)[1].split() for line in (DEPLOY / "systemd" / "xenbot.service").read_text()
               .splitlines() if line.startswith("SystemCallFilter=")]
    assert not filters[0][0].startswith("~")  # an allow-list first: later lines add and remove from it
    allowed = False
    for names in filters:
        deny = names[0].startswith("~")
        names = [n.lstrip("~") for n in names]
        if "setpriority" in names or "@resources" in names:  # os.nice() is setpriority(2) on x86-64
            allowed = not deny
    assert allowed, "SystemCallFilter denies setpriority: os.nice() in apply processes fails"
