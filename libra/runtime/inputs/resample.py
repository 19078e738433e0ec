"""Resampling chunk by chunk with the same numbers `scipy.signal.resample_poly` gives in one call.

Why: decoding a long or high-rate file to one array before resampling makes peak memory follow
the input (a 59 s 384 kHz file is 90 MB of float32 even in mono) instead of what the model hears
(16 kHz). `StreamingResampler` takes the samples as they are decoded and keeps only one chunk
plus the filter's overlap, so memory follows the output.

Why identical: `resample_poly` is `upfirdn` of the (pre-padded, gain-`up`) filter over the whole
signal, then a slice. `upfirdn` computes every output sample as a sum over the input samples under
the filter, oldest first, starting from zero. Run on a chunk whose first sample is a multiple of
`down` (so the filter phases line up), it gives bit for bit the same value for every output whose
inputs all lie in the chunk; outputs near a chunk's edges are recomputed with the next chunk. Only
zero terms differ (the filter's zero padding, samples past the end), and adding +0.0 to a sum
that starts at +0.0 changes nothing. `tests/unit/test_inputs_resample.py` checks it against
`resample_poly` on random signals, rates and chunkings.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import upfirdn

CHUNK_SAMPLES = 1 << 16
"""Input samples gathered before a chunk is filtered: large enough that the per-call cost of
`upfirdn` is noise, small enough (256 KiB of float32) that memory does not notice."""


class StreamingResampler:
    """`resample_poly(x, up, down, window=window)` of a signal that arrives in pieces.

    `window` is the FIR filter itself (as `resample_poly` takes an array window); `push` the
    float32 pieces in order, then `finish()` returns the whole output. Holds at most about
    `CHUNK_SAMPLES` + the filter's length of input at a time.
    """

    def __init__(self, up: int, down: int, window: np.ndarray) -> None:
        if up < 1 or down < 1:
            raise ValueError(f"up ({up}) and down ({down}) must be >= 1")
        self.up, self.down = up, down
        self._identity = up == down == 1  # resample_poly returns a copy
        h = np.array(window, copy=True)
        half_len = (h.size - 1) // 2
        h *= up
        n_pre_pad = down - half_len % down
        self._n_pre_remove = (half_len + n_pre_pad) // down
        self._h = np.concatenate([np.zeros(n_pre_pad, dtype=h.dtype), h])
        self._pending: list[np.ndarray] = []
        self._n_pending = 0
        self._buffer = np.zeros(0, dtype=np.float32)
        self._start = 0  # global index of _buffer[0]: always a multiple of `down`
        self._next_out = 0  # next index of upfirdn's full output to emit
        self._n_in = 0
        self._out: list[np.ndarray] = []

    @property
    def n_in(self) -> int:
        """Input samples pushed so far."""
        return self._n_in

    def push(self, samples: np.ndarray) -> None:
        x = np.asarray(samples, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"push takes 1-D samples, got shape {x.shape}")
        if x.size == 0:
            return
        self._pending.append(x)
        self._n_pending += x.size
        self._n_in += x.size
        if self._n_pending >= CHUNK_SAMPLES:
            self._filter(final=False)

    def finish(self) -> np.ndarray:
        """The resampled signal: what `resample_poly` returns for everything pushed."""
        if self._identity:
            out = np.concatenate(self._pending) if self._pending else np.zeros(0, np.float32)
            self._pending = []
            return out
        self._filter(final=True)
        y = np.concatenate(self._out) if self._out else np.zeros(0, dtype=np.float32)
        n_out = -(-self._n_in * self.up // self.down)
        return y[self._n_pre_remove:self._n_pre_remove + n_out]

    def _filter(self, *, final: bool) -> None:
        if self._identity:
            return
        if self._pending:
            self._buffer = np.concatenate([self._buffer, *self._pending])
            self._pending, self._n_pending = [], 0
        up, down = self.up, self.down
        end = self._start + self._buffer.size  # global index one past the buffer
        if final:
            last = self._n_pre_remove + -(-self._n_in * up // down) - 1
        else:
            last = (end * up - 1) // down  # the last output whose inputs have all arrived
        if last < self._next_out or self._buffer.size == 0:
            return
        offset = self._start * up // down  # full-output index of this chunk's first output
        y = upfirdn(self._h, self._buffer, up, down)
        if final and last + 1 - offset > y.size:  # past the filter's reach: exact zeros
            y = np.concatenate([y, np.zeros(last + 1 - offset - y.size, dtype=y.dtype)])
        self._out.append(np.asarray(y[self._next_out - offset:last + 1 - offset],
                                    dtype=np.float32))
        self._next_out = last + 1
        # Keep the inputs the next outputs still need, from a multiple of `down`.
        oldest = max(0, -(-(self._next_out * down - self._h.size + 1) // up))
        keep_from = (oldest // down) * down
        self._buffer = self._buffer[keep_from - self._start:]
        self._start = keep_from
