"""bot/heap.py: what is alive at start-up is left out of later garbage collections."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from bot import heap


@pytest.fixture
def unfreeze_after() -> Iterator[None]:
    yield
    gc.unfreeze()  # the rest of the test run collects as usual


def _tracked(obj: object) -> bool:
    return any(o is obj for o in gc.get_objects())


@pytest.mark.usefixtures("unfreeze_after")
def test_settled_objects_are_no_longer_walked_by_collections_and_later_ones_are() -> None:
    wired_at_start = {"services": ["a", "b"]}
    assert _tracked(wired_at_start)

    frozen = heap.settle()

    # Not equal to get_freeze_count(): other threads of the test process (servers left by earlier
    # tests) free frozen objects, and may freeze more, between the two calls.
    assert frozen > 0 and gc.get_freeze_count() > 0
    assert not _tracked(wired_at_start)  # gc.get_objects lists what a collection would walk
    made_later = {"answer": ["c"]}
    assert _tracked(made_later)


@pytest.mark.usefixtures("unfreeze_after")
def test_settled_garbage_is_still_freed_by_reference_counting() -> None:
    import weakref

    class Record:
        pass

    record = Record()
    alive = weakref.ref(record)
    heap.settle()

    del record
    assert alive() is None
