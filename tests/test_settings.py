import pytest

from bot.cli import main
from bot.settings import ConfigError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in (
        "XENBOT_CONFIG", "XENBOT_DATABASE_URL", "XENBOT_SLACK_BOT_TOKEN", "XENBOT_SLACK_APP_TOKEN",
        "XENBOT_SLACK_SIGNING_SECRET", "XENBOT_SLACK_API_URL", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN",
        "SLACK_SIGNING_SECRET",
    ):
        monkeypatch.delenv(name, raising=False)


def write(tmp_path, text, name="xenbot.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = """
database_url = "sqlite:///x.db"
[[pools]]
name = "prod"
url = "https://xcp-master.example.com/"
password = "hunter2"
[slack]
bot_token = "xoxb-secret-token"
signing_secret = "shhh"
operators = ["U012ABC", "S0OPS"]
approvers = ["S0LEADS"]
alert_channels = ["C0ALERTS"]
"""


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.database_url.startswith("sqlite:///")
    assert settings.pools == []
    assert settings.slack.command == "/xen"
    assert settings.slack.allow_self_approval is False
    assert settings.slack.approval_ttl_minutes == 60
    assert settings.slack.required_approvals == 1


def test_file_is_found_by_flag_env_and_default(tmp_path, monkeypatch):
    path = write(tmp_path, GOOD)
    assert load_settings(path).pools[0].name == "prod"
    monkeypatch.setenv("XENBOT_CONFIG", str(path))
    assert load_settings().pools[0].name == "prod"
    monkeypatch.delenv("XENBOT_CONFIG")
    monkeypatch.chdir(tmp_path)
    assert load_settings().pools[0].verify_tls is True
    assert load_settings().pools[0].max_concurrency == 8


def test_environment_overrides_file(tmp_path, monkeypatch):
    path = write(tmp_path, GOOD)
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-conventional")
    assert load_settings(path).slack.bot_token.get_secret_value() == "xoxb-conventional"
    monkeypatch.setenv("XENBOT_SLACK_BOT_TOKEN", "xoxb-ours")
    assert load_settings(path).slack.bot_token.get_secret_value() == "xoxb-ours"
    monkeypatch.setenv("XENBOT_DATABASE_URL", "postgresql://bot@db/xenbot")
    monkeypatch.setenv("XENBOT_SLACK_API_URL", "http://127.0.0.1:9/api")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-1")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "s2")
    settings = load_settings(path)
    assert settings.database_url == "postgresql+psycopg://bot@db/xenbot"
    assert settings.slack.api_url == "http://127.0.0.1:9/api/"
    assert settings.slack.app_token.get_secret_value() == "xapp-1"
    assert settings.slack.signing_secret.get_secret_value() == "s2"


def test_password_file_is_read_at_use(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    path = write(tmp_path, f'[[pools]]\nname="a"\nurl="https://a/"\npassword_file="{secret}"\n')
    pool = load_settings(path).pools[0]
    assert pool.secret().get_secret_value() == "from-file"
    secret.write_text("rotated")
    assert pool.secret().get_secret_value() == "rotated"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[slack]\nbot_tokn = "x"', "slack.bot_tokn: unknown key; did you mean 'bot_token'?"),
        ('databse_url = "x"', "databse_url: unknown key; did you mean 'database_url'?"),
        ('[[pools]]\nname="a"\nurl="ftp://a"\npassword="x"', "pools[0] ('a').url: must look like https://"),
        ('[[pools]]\nname="a"\nurl="https://a"\npassword_file="/nope"', "pools[0] ('a').password_file: file"),
        ('[[pools]]\nname="a"\nurl="https://a"', "set exactly one of 'password' or 'password_file'"),
        (
            '[[pools]]\nname="a"\nurl="https://a"\npassword="x"\n[[pools]]\nname="A"\nurl="https://b"\npassword="y"',
            "pool name 'A' is used twice",
        ),
        ('[slack]\noperators = ["bob"]', "are not Slack user ids"),
        ('[slack]\nalert_channels = ["#alerts"]', "use the id, not the #name"),
        ('[slack]\ncommand = "xen"', "slash command"),
        ("database_url = 'mysql://x'", "database_url: use sqlite:///"),
        ("not toml = = =", "not valid TOML"),
    ],
)
def test_bad_config_names_field_and_fix(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert any(expected in p for p in info.value.problems), info.value.problems


def test_config_check_prints_redacted_summary(tmp_path, capsys):
    path = write(tmp_path, GOOD.replace("sqlite:///x.db", "postgresql://bot:dbpass@db/xenbot"))
    assert main(["--config", str(path), "config", "check"]) == 0
    out = capsys.readouterr().out
    assert "prod: https://xcp-master.example.com/" in out
    for secret in ("hunter2", "xoxb-secret-token", "shhh", "dbpass"):
        assert secret not in out
    assert "set (hidden)" in out


def test_config_check_fails_with_fixes(tmp_path, capsys):
    path = write(tmp_path, '[slack]\nbot_tokn = "xoxb-leak"')
    assert main(["--config", str(path), "config", "check"]) == 1
    err = capsys.readouterr().err
    assert "did you mean 'bot_token'" in err
    assert main(["--config", str(tmp_path / "missing.toml"), "config", "check"]) == 1
    assert "not found" in capsys.readouterr().err


def test_secrets_never_in_repr(tmp_path):
    settings = load_settings(write(tmp_path, GOOD))
    dumped = repr(settings) + str(settings.model_dump())
    assert "hunter2" not in dumped and "xoxb-secret-token" not in dumped


def test_example_config_in_deploy_is_valid(tmp_path):
    from pathlib import Path

    example = Path(__file__).parent.parent / "deploy" / "xenbot.example.toml"
    secret = tmp_path / "prod.password"
    secret.write_text("x")
    text = example.read_text().replace("/etc/xenbot/prod.password", str(secret))
    text = text.replace("/var/lib/xenbot/", f"{tmp_path}/")  # the folder must exist (systemd makes it)
    settings = load_settings(write(tmp_path, text))
    assert settings.pools[0].name == "prod" and settings.pools[0].verify_tls
    assert settings.policies.watch is True


@pytest.mark.parametrize("command", [["config", "check"], ["status"]])
def test_credentials_in_a_pool_url_are_refused_without_being_echoed(tmp_path, capsys, command):
    path = write(tmp_path, GOOD.replace("https://xcp-master", "http://root:PASSWORD@xcp-master"))
    assert main(["--config", str(path), *command]) in (1, 2)
    captured = capsys.readouterr()
    assert "PASSWORD" not in captured.out + captured.err
    assert "must not carry credentials (http://root:***@xcp-master.example.com/)" in captured.err
    assert "password_file" in captured.err


def test_url_passwords_are_masked_in_logs_and_summaries(tmp_path, capsys):
    import io
    import logging

    from bot import logs

    for formatter in (logs.JsonFormatter(), logs.TextFormatter()):
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter)
        logger = logging.getLogger("xenbot.test.urls")
        logger.addHandler(handler)
        try:
            logger.error("cannot reach %s", "https://root:s3cret@pool/ (via postgresql://bot:dbpw@db/x)")
        finally:
            logger.removeHandler(handler)
        line = stream.getvalue()
        assert "s3cret" not in line and "dbpw" not in line
        assert "https://root:***@pool/" in line and "postgresql://bot:***@db/x" in line
    path = write(tmp_path, GOOD.replace('signing_secret = "shhh"', 'api_url = "https://u:apipw@slack.internal/api/"'))
    assert main(["--config", str(path), "config", "check", "--for", "console"]) == 0
    out = capsys.readouterr().out
    assert "apipw" not in out and "https://u:***@slack.internal/api/" in out


def test_config_check_says_what_each_mode_is_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["config", "check"]) == 1  # nothing configured: not ready to serve
    captured = capsys.readouterr()
    out = captured.out
    assert "xenbot demo:" in out and out.split("xenbot demo:")[1].split("\n")[0].strip() == "yes"
    console, socket_mode, http = (out.split(label)[1].split("xenbot ")[0] for label in
                                  ("xenbot console:", "xenbot serve (Socket Mode):", "xenbot serve --http:"))
    assert "no [[pools]]" in console and "slack" not in console
    assert all(x in socket_mode for x in ("no [[pools]]", "slack.bot_token", "slack.app_token"))
    assert all(x in http for x in ("no [[pools]]", "slack.bot_token", "slack.signing_secret"))
    assert "not ready for xenbot serve" in captured.err
    assert main(["config", "check", "--for", "demo"]) == 0
    path = write(tmp_path, GOOD)  # pools, bot token and signing secret: HTTP mode only
    assert main(["--config", str(path), "config", "check"]) == 0
    assert main(["--config", str(path), "config", "check", "--for", "socket"]) == 1


def test_an_empty_password_file_and_a_missing_database_folder_are_refused(tmp_path):
    empty = tmp_path / "empty.password"
    empty.write_text("\n")
    path = write(tmp_path, f'[[pools]]\nname="a"\nurl="https://a/"\npassword_file="{empty}"\n')
    with pytest.raises(ConfigError, match="is empty; write the pool password into it"):
        load_settings(path)
    path = write(tmp_path, f'database_url = "sqlite:///{tmp_path}/nowhere/xenbot.db"\n')
    with pytest.raises(ConfigError, match=r"database_url: folder '.*nowhere' does not exist"):
        load_settings(path)


def test_relative_files_are_relative_to_the_config_file(tmp_path, monkeypatch):
    etc = tmp_path / "etc" / "xenbot"
    etc.mkdir(parents=True)
    (etc / "prod.password").write_text("from-etc\n")
    (etc / "audit.key").write_text("k" * 44)
    path = write(etc, '[[pools]]\nname="a"\nurl="https://a/"\npassword_file="prod.password"\n'
                      '[audit]\nkey_file="audit.key"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # systemd starts xenbot in /
    settings = load_settings(path)
    assert settings.pools[0].password_file == etc / "prod.password"
    assert settings.pools[0].secret().get_secret_value() == "from-etc"
    assert settings.audit.key_file == etc / "audit.key"


def test_config_is_accepted_after_the_subcommand_and_version_is_printed(tmp_path, capsys):
    path = write(tmp_path, '[slack]\nbot_tokn = "x"')
    assert main(["config", "check", "--config", str(path)]) == 1
    assert "did you mean 'bot_token'" in capsys.readouterr().err
    assert main(["db", "current", "--config", str(path)]) == 2  # nested subcommands too
    assert "did you mean 'bot_token'" in capsys.readouterr().err
    # Before the subcommand still works, and one after it wins.
    assert main(["--config", str(path), "config", "check"]) == 1
    assert main(["--config", str(path), "config", "check", "--config", str(write(tmp_path, GOOD, "good.toml"))]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == "xenbot 0.1.0"
