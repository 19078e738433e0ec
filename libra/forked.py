"""Map a function over a few items in forked worker processes.

Why fork: the jobs mapped here (policies over one trace, seeds over one paired dataset) each read
one large object the parent already holds. Forked children inherit it; only the items go out and
only the results come back as pickles. Each child runs one item (`maxtasksperchild=1`), so its
peak memory is that item's own. Where fork is unavailable, or with one worker, it is a plain loop.

Not after PyAV: a process that has decoded media holds FFmpeg's threads and PyAV's per-thread
state, and a forked child of it can die or hang on them (the same hazard that froze libra-serve,
see `libra.serving.children`). `fork_map` then runs the plain loop and says so in the log: the
results are the same, only slower. `libra-sim` never imports PyAV, so it always forks.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

_CHILD: dict[str, Callable[[Any], Any]] = {}
"""The function children call: set before forking, inherited, never pickled."""


def _call(item: Any) -> Any:
    return _CHILD["fn"](item)


def fork_map(fn: Callable[[T], R], items: Sequence[T], workers: int, *,
             in_child: Callable[[T], R] | None = None) -> list[R]:
    """`[fn(item) for item in items]`, in up to `workers` forked processes, in item order.

    `in_child` replaces `fn` in a child (to drop what does not pickle, or to set per-process
    state such as a thread count); `fn` and `in_child` may be closures."""
    workers = max(1, min(workers, len(items)))
    if workers > 1 and "av" in sys.modules:
        log.warning("fork_map: PyAV is loaded in this process, so forking is unsafe; running "
                    "%d items in this process", len(items))
        workers = 1
    if workers == 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [fn(item) for item in items]
    _CHILD["fn"] = in_child or fn
    try:
        context = multiprocessing.get_context("fork")
        with context.Pool(processes=workers, maxtasksperchild=1) as pool:
            return pool.map(_call, items, chunksize=1)
    finally:
        _CHILD.clear()
