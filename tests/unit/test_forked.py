"""`fork_map`: items in forked children, results in item order, `in_child` only in children."""

from __future__ import annotations

import os

import pytest

from libra.forked import fork_map

pytestmark = pytest.mark.unit


def test_children_run_in_child_in_other_processes_and_results_keep_item_order() -> None:
    parent = os.getpid()
    big = list(range(100_000))  # inherited by the children, never pickled

    def here(i: int) -> tuple[int, bool, int]:
        return i, False, big[i]

    def child(i: int) -> tuple[int, bool, int]:
        return i, os.getpid() != parent, big[i] * 2

    assert fork_map(here, [3, 1, 2], workers=1, in_child=child) == [
        (3, False, 3), (1, False, 1), (2, False, 2)]
    assert fork_map(here, [3, 1, 2], workers=2, in_child=child) == [
        (3, True, 6), (1, True, 2), (2, True, 4)]
    assert fork_map(here, [5], workers=4) == [(5, False, 5)]  # one item: no fork
    assert fork_map(here, [], workers=2) == []
