"""Spot interruptions for a replay: when each spot VM gets AWS's two-minute notice.

Two sources, both deterministic for a seed:

- **A rate** (`SpotConfig.interruptions_per_instance_hour`): each spot instance is interrupted as
  a Poisson process at that rate, so its first (and only: an interrupted instance is gone)
  interruption comes an exponential time after its launch. The time is drawn once, at launch,
  from the VM's own generator `default_rng([seed, 0x5B07, vm_id])`: it depends on the seed and
  on which VM this is, never on how many requests or ticks came before, so a replay that skips
  quiet ticks draws the very same times as one that runs every tick.
- **A file** (`SpotConfig.interruptions_file`): one time in seconds per line (blank lines and
  `#` comments ignored; a time may repeat, once per instance interrupted then, as in a storm
  where AWS reclaims several instances of a pool together). Each time interrupts one running
  spot VM, the oldest ready one first (then the oldest booting); a time with no spot VM running
  interrupts nothing and is counted as missed.

What a notice does to a VM (the engine, `simulator/engine.py`): it stops taking new requests,
finishes what it has, and is reclaimed `notice_s` after the notice (billed until then); the
provisioner launches a replacement of the same kind at the notice (capacity rebalancing), which
boots for `vm.boot_s`; the router spills to serverless what the remaining VMs cannot take.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from pathlib import Path

import numpy as np

from libra.core.platform import SpotConfig
from simulator.errors import TraceFormatError

_SPOT_STREAM = 0x5B07


class SpotFileError(TraceFormatError):
    """A bad interruptions file: ``str(e)`` is ``"{path}:{line}: {why}"`` (see TraceFormatError)."""


def read_interruptions(path: str | Path) -> list[float]:
    """Interruption times (s, sorted) from a file of one number per line (see module docs)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SpotFileError(str(path), None, f"cannot read interruptions file: {exc}") from None
    except UnicodeDecodeError:
        raise SpotFileError(str(path), None, "not a text file of times") from None
    times: list[float] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            t = float(line)
        except ValueError:
            raise SpotFileError(str(path), number, f"{line!r} is not a time in seconds "
                                "(one number per line)") from None
        if not math.isfinite(t) or t < 0:
            raise SpotFileError(str(path), number,
                                f"{line!r}: a time must be a finite number >= 0")
        times.append(t)
    times.sort()
    return times


class Interruptions:
    """When spot VMs are interrupted in one replay (see module docs)."""

    def __init__(self, spot: SpotConfig, seed: int) -> None:
        self.spot, self.seed = spot, seed
        self.rate_per_s = spot.interruptions_per_instance_hour / 3600.0
        self.file_times: list[float] | None = \
            read_interruptions(spot.interruptions_file) if spot.interruptions_file else None
        self._file_pos = 0

    @property
    def from_file(self) -> bool:
        return self.file_times is not None

    def draw_for(self, vm_id: int, launched_at_s: float) -> float:
        """The notice time of spot VM `vm_id` launched at `launched_at_s` (rate mode; inf
        when the rate is 0 or a file gives the times)."""
        if self.from_file or self.rate_per_s <= 0:
            return math.inf
        rng = np.random.default_rng([self.seed, _SPOT_STREAM, vm_id])
        return launched_at_s + float(rng.exponential(1.0 / self.rate_per_s))

    def next_file_time_s(self) -> float:
        """The next time the file interrupts a VM (inf when none is left or no file)."""
        if self.file_times is None or self._file_pos >= len(self.file_times):
            return math.inf
        return self.file_times[self._file_pos]

    def take_file_times(self, until_s: float) -> list[float]:
        """The file's times at or before `until_s` not yet taken (and take them)."""
        if self.file_times is None:
            return []
        end = bisect_right(self.file_times, until_s)
        taken = self.file_times[self._file_pos:end]
        self._file_pos = max(self._file_pos, end)
        return taken
