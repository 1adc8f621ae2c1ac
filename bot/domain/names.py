"""Finding the object an operator meant, or saying clearly why not.

Operators type what they see in XenCenter or Xen Orchestra: a name-label in
whatever case, a uuid copied from ``xe``, or the first block of one. An exact
answer is returned when there is one; otherwise the error carries either the
candidates (ambiguous) or the nearest names (unknown), so the reply can help
instead of just refusing.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

MIN_UUID_PREFIX = 8


class LookupProblem(Exception):
    """Base for a name that did not resolve to exactly one object."""

    kind: str
    query: str


@dataclass
class NotFound(LookupProblem):
    kind: str
    query: str
    suggestions: Sequence[str] = ()

    def __str__(self) -> str:
        hint = f" Did you mean: {', '.join(self.suggestions)}?" if self.suggestions else ""
        return f"No {self.kind} matches '{self.query}'.{hint}"


@dataclass
class Ambiguous(LookupProblem):
    kind: str
    query: str
    candidates: Sequence[str]

    def __str__(self) -> str:
        return (
            f"'{self.query}' matches {len(self.candidates)} {self.kind}s: {', '.join(self.candidates)}. "
            "Use the uuid (or pool=NAME) to pick one."
        )


@dataclass(frozen=True, slots=True)
class Candidate(Generic[T]):
    """An object with the names it answers to, and how it is shown in a list of candidates."""

    item: T
    uuid: str
    names: tuple[str, ...]
    display: str


def resolve(kind: str, query: str, candidates: Iterable[Candidate[T]]) -> T:
    """Exact uuid, then uuid prefix (8+ chars), then case-insensitive name (with short/FQDN variants)."""
    query = query.strip()
    pool = list(candidates)
    needle = query.lower()
    by_uuid = [c for c in pool if c.uuid.lower() == needle]
    if by_uuid:
        return by_uuid[0].item
    if len(needle) >= MIN_UUID_PREFIX and all(ch in "0123456789abcdef-" for ch in needle):
        by_prefix = [c for c in pool if c.uuid.lower().startswith(needle)]
        if len(by_prefix) == 1:
            return by_prefix[0].item
        if by_prefix:
            raise Ambiguous(kind, query, [c.display for c in by_prefix])
    exact = [c for c in pool if any(n.lower() == needle for n in c.names)]
    if len(exact) == 1:
        return exact[0].item
    if exact:
        raise Ambiguous(kind, query, [c.display for c in exact])
    variants = [c for c in pool if needle in {v for n in c.names for v in hostname_variants(n)}]
    if len(variants) == 1:
        return variants[0].item
    if variants:
        raise Ambiguous(kind, query, [c.display for c in variants])
    raise NotFound(kind, query, nearest(query, [n for c in pool for n in c.names[:1]]))


def hostname_variants(name: str) -> set[str]:
    """``web01.corp.example`` ↔ ``web01``: monitoring often uses one, XenCenter the other."""
    lowered = name.strip().lower()
    variants = {lowered}
    if "." in lowered and not _looks_like_ip(lowered):
        variants.add(lowered.split(".", 1)[0])
    return variants


def _looks_like_ip(text: str) -> bool:
    parts = text.split(".")
    return len(parts) == 4 and all(p.isdigit() for p in parts)


def nearest(query: str, names: Iterable[str], limit: int = 5) -> list[str]:
    """Closest names by spelling, falling back to substring matches (``sql`` → ``win2008r2-sql01``)."""
    unique = sorted(set(names), key=str.lower)
    lowered = {n.lower(): n for n in unique}
    needle = query.lower()
    close = difflib.get_close_matches(needle, list(lowered), n=limit, cutoff=0.5)
    for name in lowered:
        if len(close) >= limit:
            break
        if needle and needle in name and name not in close:
            close.append(name)
    return [lowered[c] for c in close]


def filter_by_text(items: Iterable[T], text: str | None, names: Callable[[T], Iterable[str]]) -> list[T]:
    """Case-insensitive substring filter used by list commands (``/xen vms sql``)."""
    if not text:
        return list(items)
    needle = text.lower()
    return [i for i in items if any(needle in n.lower() for n in names(i))]
