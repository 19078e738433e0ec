"""What one decode may cost, enforced while it runs: a count of work units and wall time.

Why both: the media modules judge a file's cost from its headers before decoding (channels x
rate x duration for audio, frames x pixels for video) and refuse it there, which is cheap. A
header can lie or say nothing, so the same count is charged again as samples or pixels come out
of the decoder, and a wall-time limit catches whatever no count foresees (a codec that is slow
per pixel, a pathological bitstream). Both refusals are `MediaDecodeError`s the API answers 413:
the input asks for more work than one request may have, and sending it again would fail again.

The clock is injected (`time.monotonic` by default) so tests decide when time runs out.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from libra.runtime.errors import MediaDecodeError

Clock = Callable[[], float]


class DecodeBudget:
    """Counts `unit`s (samples, pixels) against `limit` and time against `max_decode_s`.

    `refuse(used)` builds the error for a count over the limit (the caller words it: it knows
    what the unit means to a user).
    """

    def __init__(self, modality: str, limit: int, max_decode_s: float,
                 refuse: Callable[[int], MediaDecodeError], clock: Clock = time.monotonic
                 ) -> None:
        self.modality = modality
        self.limit = limit
        self.max_decode_s = max_decode_s
        self.used = 0
        self._refuse = refuse
        self._clock = clock
        self._started_s = clock()

    def charge(self, amount: int) -> None:
        """Add `amount` units decoded; raise once over the count or the time limit."""
        self.used += amount
        if self.used > self.limit:
            raise self._refuse(self.used)
        self.check_time()

    def check_time(self) -> None:
        elapsed_s = self._clock() - self._started_s
        if elapsed_s > self.max_decode_s:
            raise MediaDecodeError(
                self.modality, "decode_too_slow",
                f"decoding the {self.modality} took more than {self.max_decode_s:g} s "
                f"({elapsed_s:.1f} s so far), the limit per request: the file costs more to "
                f"decode than its size and headers suggest; send a shorter, smaller or more "
                f"common encoding")
