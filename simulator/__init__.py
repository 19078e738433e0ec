"""The trace-driven simulator: the other driver of the core.

What other packages may use (the load generator replays traces with the same readers and prints
the same table): `load_trace`, `TraceFormatError`, `PolicyResult`, `table`. Everything else is
internal to the simulator.
"""

from simulator.report import table
from simulator.results import PolicyResult
from simulator.traces import TraceFormatError, load_trace

__all__ = ["PolicyResult", "TraceFormatError", "load_trace", "table"]
