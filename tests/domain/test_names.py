import pytest

from bot.domain.names import Ambiguous, Candidate, NotFound, hostname_variants, nearest, resolve

VMS = [
    Candidate("sql", "6f1c2a3b-0000-4000-8000-000000000001", ("win2008r2-sql01",), "win2008r2-sql01"),
    Candidate("web", "6f1c2a3b-0000-4000-8000-000000000002", ("ubuntu-web01",), "ubuntu-web01"),
    Candidate("web-b", "7a000000-0000-4000-8000-000000000003", ("Ubuntu-Web01",), "Ubuntu-Web01 (lab)"),
    Candidate("fw", "8b000000-0000-4000-8000-000000000004", ("pfsense-fw01.corp.example",), "pfsense-fw01"),
]


def test_exact_uuid_and_prefix():
    assert resolve("VM", "6f1c2a3b-0000-4000-8000-000000000001", VMS) == "sql"
    assert resolve("VM", "7a000000", VMS) == "web-b"


def test_short_prefix_is_not_a_uuid_lookup():
    with pytest.raises(NotFound):
        resolve("VM", "7a00", VMS)


def test_ambiguous_prefix_lists_candidates():
    with pytest.raises(Ambiguous) as info:
        resolve("VM", "6f1c2a3b", VMS)
    assert set(info.value.candidates) == {"win2008r2-sql01", "ubuntu-web01"}


def test_name_is_case_insensitive_and_ambiguity_is_reported():
    assert resolve("VM", "WIN2008R2-SQL01", VMS) == "sql"
    with pytest.raises(Ambiguous) as info:
        resolve("VM", "ubuntu-web01", VMS)
    assert "Ubuntu-Web01 (lab)" in info.value.candidates
    assert "uuid" in str(info.value)


def test_fqdn_and_short_name_variants():
    assert resolve("VM", "pfsense-fw01", VMS) == "fw"
    assert "web01" in hostname_variants("web01.corp.lan")
    assert hostname_variants("10.0.0.1") == {"10.0.0.1"}


def test_unknown_name_suggests_nearest():
    with pytest.raises(NotFound) as info:
        resolve("VM", "win2008-sql01", VMS)
    assert "win2008r2-sql01" in info.value.suggestions
    assert "Did you mean" in str(info.value)


def test_nearest_falls_back_to_substrings():
    assert nearest("sql", ["win2008r2-sql01", "ubuntu-web01"]) == ["win2008r2-sql01"]
