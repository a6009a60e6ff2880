"""The startup heap is frozen out of full collections; its garbage is collected first."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from dashboard.heap import freeze_startup_heap


class _Node:
    """An object that can sit in a reference cycle and be watched through a weak reference."""

    def __init__(self) -> None:
        self.partner: _Node | None = None


@pytest.fixture
def thawed_heap() -> Iterator[None]:
    """A heap with nothing frozen, thawed again afterwards for the rest of the suite."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_live_objects_are_frozen_and_garbage_is_collected_first(thawed_heap: None) -> None:
    kept = _Node()
    garbage, other = _Node(), _Node()
    garbage.partner, other.partner = other, garbage  # a cycle only a collection frees
    gone = weakref.ref(garbage)
    del garbage, other

    frozen = freeze_startup_heap()

    assert gone() is None, "startup garbage must not be frozen forever"
    assert frozen == gc.get_freeze_count() > 0
    assert not any(obj is kept for obj in gc.get_objects()), "live objects leave the generations"


def test_objects_made_after_the_freeze_are_still_collected(thawed_heap: None) -> None:
    freeze_startup_heap()
    later, other = _Node(), _Node()
    later.partner, other.partner = other, later
    gone = weakref.ref(later)
    del later, other

    gc.collect()

    assert gone() is None
