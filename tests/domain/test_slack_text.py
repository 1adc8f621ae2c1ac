from bot.domain.slack_text import code, escape, unescape


def test_unescape_links_entities_and_quotes():
    assert unescape("<http://web01.corp.lan|web01.corp.lan>") == "web01.corp.lan"
    assert unescape("<mailto:a@b.c|a@b.c>") == "a@b.c"
    assert unescape("<https://x.example/a>") == "https://x.example/a"
    assert unescape("a &amp; b &lt;c&gt;") == "a & b <c>"
    assert unescape("<@U123> and <#C1|ops>") == "<@U123> and ops"
    assert unescape("\u201cquoted\u201d") == '"quoted"'


def test_escape_makes_outside_text_inert():
    assert escape("<!channel> & <@U1>") == "&lt;!channel&gt; &amp; &lt;@U1&gt;"
    assert code("a`b") == "`a\u02cbb`"
