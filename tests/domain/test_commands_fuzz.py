"""Fuzz: whatever is typed after /xen, the parser answers with a command or a usage error, never a crash."""

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain.commands import COMMANDS, Parsed, UsageError, parse

WORDS = st.sampled_from(
    sorted({w for name in COMMANDS for w in name.split()} | {"vm=", "pool=x", "modes=rx,tx", '"', "'", "=", "<@U1>",
                                                             "<http://a|b>", "&amp;", "\u201c", "reason=\"a b\""})
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=200), st.lists(WORDS, max_size=8).map(" ".join)))
def test_parser_never_crashes(text):
    try:
        parsed = parse(text)
    except UsageError as exc:
        assert exc.message
        return
    assert isinstance(parsed, Parsed) and parsed.name in COMMANDS
