import pytest

from bot.domain.commands import UsageError, parse


@pytest.mark.parametrize(
    ("text", "name", "args", "options"),
    [
        ("", "help", (), {}),
        ("help", "help", (), {}),
        ("vms", "vms", (), {}),
        ("vms pool=lab sql", "vms", ("sql",), {"pool": "lab"}),
        ("VIFS web01", "vifs", ("web01",), {}),
        ('vifs "my vm"', "vifs", ("my vm",), {}),
        ("vifs \u201cmy vm\u201d", "vifs", ("my vm",), {}),
        ("vifs <http://web01.corp.lan|web01.corp.lan>", "vifs", ("web01.corp.lan",), {}),
        ("vif web01:0", "vif", ("web01:0",), {}),
        ("pifs host=xcp-host1", "pifs", (), {"host": "xcp-host1"}),
        ("offload status vm=web01", "offload status", (), {"vm": "web01"}),
        ("offload STATUS pool=demo", "offload status", (), {"pool": "demo"}),
    ],
)
def test_parses(text, name, args, options):
    parsed = parse(text)
    assert parsed.name == name
    assert parsed.args == args
    assert dict(parsed.options) == options


@pytest.mark.parametrize(
    ("text", "fragment", "usage"),
    [
        ("vifs", "needs 1 argument", "vifs VM"),
        ("vifs a b", "at most 1 argument", "vifs VM"),
        ("frobnicate", "unknown command", None),
        ("offload", "needs a subcommand", "offload status"),
        ("offload wibble", "unknown subcommand", "offload status"),
        ("offload status", "needs one of", "offload status vm=VM"),
        ("offload status vm=a host=b", "only one of", "offload status"),
        ("vms colour=red", "not an option", "vms [pool=NAME]"),
        ("vms pool=", "needs a value", "vms"),
        ('vifs "unterminated', "check the quotes", None),
        ("pifs host=a host=b", "given twice", "pifs"),
    ],
)
def test_malformed_commands_name_the_usage(text, fragment, usage):
    with pytest.raises(UsageError) as info:
        parse(text)
    assert fragment in info.value.message
    if usage is None:
        assert info.value.spec is None
    else:
        assert info.value.spec is not None and usage in info.value.spec.usage
