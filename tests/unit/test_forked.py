"""`fork_map`: items in forked children, results in item order, `in_child` only in children;
never a fork after PyAV is loaded."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from libra.forked import fork_map

pytestmark = pytest.mark.unit

# Run in a fresh interpreter: this test process may have loaded PyAV (other tests decode media),
# and then fork_map rightly refuses to fork.
_FORKING = textwrap.dedent("""
    import os
    from libra.forked import fork_map

    parent = os.getpid()
    big = list(range(100_000))  # inherited by the children, never pickled

    def here(i):
        return i, False, big[i]

    def child(i):
        return i, os.getpid() != parent, big[i] * 2

    assert fork_map(here, [3, 1, 2], workers=1, in_child=child) == [
        (3, False, 3), (1, False, 1), (2, False, 2)]
    assert fork_map(here, [3, 1, 2], workers=2, in_child=child) == [
        (3, True, 6), (1, True, 2), (2, True, 4)]
    assert fork_map(here, [5], workers=4) == [(5, False, 5)]  # one item: no fork
    assert fork_map(here, [], workers=2) == []
    print("ok")
""")


def test_children_run_in_child_in_other_processes_and_results_keep_item_order() -> None:
    done = subprocess.run([sys.executable, "-c", _FORKING], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_no_fork_once_pyav_is_loaded(caplog: pytest.LogCaptureFixture) -> None:
    """A child forked from a process that decoded media can die or hang on FFmpeg's threads
    (the freeze libra-serve had): the items then run here, with a warning."""
    pytest.importorskip("av")
    import os

    parent = os.getpid()
    with caplog.at_level("WARNING", logger="libra.forked"):
        got = fork_map(lambda i: (i, os.getpid() == parent), [1, 2, 3], workers=2)
    assert got == [(1, True), (2, True), (3, True)]
    assert "PyAV is loaded" in caplog.text
