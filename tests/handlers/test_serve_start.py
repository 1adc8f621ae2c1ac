"""``xenbot serve`` with its port already taken: one line, exit 2, before anything else starts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.handlers.test_slack_at_start import _config, _serve
from tests.slack.fixtures import APP_TOKEN, SIGNING_SECRET


@pytest.mark.parametrize("mode", ["http", "socket"])
def test_a_port_in_use_is_one_line_and_exit_2_before_slack_pools_or_apply_processes(sim, fake_slack, tmp_path, mode):
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    try:
        config = _config(tmp_path, sim, fake_slack.base_url, signing_secret=SIGNING_SECRET, app_token=APP_TOKEN)
        # The apply processes are on (the default, 2): their start-up must not begin either.
        path = Path(config)
        path.write_text(path.read_text().replace("apply_processes = 0\n", "apply_processes = 2\n"))
        args = ["--http", "--port", str(port)] if mode == "http" else ["--metrics-port", str(port)]
        done = _serve(config, "--host", "127.0.0.1", *args)
    finally:
        taken.close()
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    what = "HTTP" if mode == "http" else "metrics"
    assert lines == [f"xenbot: cannot listen for {what} on 127.0.0.1:{port}: Address already in use"], lines
    assert fake_slack.calls("auth.test") == []  # bound before asking Slack (and before the pools)


def test_serve_refuses_a_key_that_is_not_the_audit_chains(sim, fake_slack, tmp_path):
    from pydantic import SecretStr

    from bot.db import make_engine, record, session_factory, upgrade

    config = Path(_config(tmp_path, sim, fake_slack.base_url, signing_secret=SIGNING_SECRET))
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        upgrade(engine)
        with session_factory(engine, audit_key=SecretStr("a" * 44)).begin() as session:
            record(session, actor="U1", action="command.run", target="t")
    finally:
        engine.dispose()
    key = tmp_path / "audit.key"
    key.write_text("b" * 44)
    config.write_text(config.read_text() + f'[audit]\nkey_file = "{key}"\n')
    done = _serve(str(config), "--http", "--host", "127.0.0.1", "--port", "0")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("xenbot: wrong key: the chain keyed since row 1")
    assert "Traceback" not in done.stderr


def test_the_port_is_bound_first_but_refuses_connections_until_serving():
    """Bound at once (a port another process listens on shows before start-up), listening only
    once serving: Slack's requests meanwhile are refused, which Slack retries, not queued."""
    from handlers.http_server import bind

    sock = bind("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        sock.listen(8)  # what HttpServer does when it starts serving
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        sock.close()


def test_a_port_taken_while_starting_is_one_line_too(sim, fake_slack, tmp_path):
    """Another process starts listening on the port between our bind and our listen."""
    import subprocess
    import sys
    import time

    other = socket.socket()
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    other.bind(("127.0.0.1", 0))
    port = other.getsockname()[1]
    config = _config(tmp_path, sim, fake_slack.base_url, signing_secret=SIGNING_SECRET)
    serve = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "--config", config, "serve", "--http", "--host", "127.0.0.1",
         "--port", str(port)], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not fake_slack.calls("auth.test"):  # serve binds before it asks Slack
            assert time.monotonic() < deadline and serve.poll() is None, "serve did not get to Slack"
            time.sleep(0.02)
        other.listen(8)
        _out, err = serve.communicate(timeout=60)
    finally:
        if serve.poll() is None:
            serve.kill()
        other.close()
    assert serve.returncode == 2, err
    assert err.strip().splitlines()[-1] == f"xenbot: cannot listen for HTTP on 127.0.0.1:{port}: Address already in use"
    assert "Traceback" not in err
