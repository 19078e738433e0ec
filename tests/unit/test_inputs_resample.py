"""Streaming resampling gives, bit for bit, what one `resample_poly` call gives: the model hears
exactly what it heard before decoding streamed."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.signal import resample_poly

from libra.runtime.inputs.audio import _resampling_filter
from libra.runtime.inputs.resample import CHUNK_SAMPLES, StreamingResampler

pytestmark = pytest.mark.unit

RATES_HZ = [8000, 11025, 22050, 32000, 44100, 44101, 48000, 96000, 192000, 384000]


def streamed(x: np.ndarray, up: int, down: int, pieces: list[int]) -> np.ndarray:
    window = _resampling_filter(up, down) if up != down else np.ones(1, dtype=np.float32)
    resampler = StreamingResampler(up, down, window)
    start = 0
    for size in pieces:
        resampler.push(x[start:start + size])
        start += size
    resampler.push(x[start:])
    return resampler.finish()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rate_hz=st.sampled_from(RATES_HZ), n=st.integers(1, 3 * CHUNK_SAMPLES),
       pieces=st.lists(st.integers(1, 2 * CHUNK_SAMPLES), max_size=6), seed=st.integers(0, 99))
def test_streamed_equals_one_call_bit_for_bit(rate_hz: int, n: int, pieces: list[int],
                                              seed: int) -> None:
    ratio = Fraction(16000, rate_hz).limit_denominator(1000)
    up, down = ratio.numerator, ratio.denominator
    x = np.random.default_rng(seed).uniform(-1, 1, n).astype(np.float32)

    expected = resample_poly(x, up, down, window=_resampling_filter(up, down))
    got = streamed(x, up, down, pieces)

    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)


def test_equal_rates_pass_the_samples_through() -> None:
    x = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(streamed(x, 1, 1, [3, 3]), x)


def test_memory_holds_a_chunk_not_the_signal() -> None:
    """Two minutes at 384 kHz pushed in decoder-sized pieces: the buffer never holds more than a
    chunk and the filter's overlap."""
    up, down = 1, 24
    resampler = StreamingResampler(up, down, _resampling_filter(up, down))
    piece = np.zeros(4608, dtype=np.float32)  # a FLAC block
    held = 0
    for _ in range(120 * 384_000 // piece.size):
        resampler.push(piece)
        held = max(held, resampler._buffer.size + resampler._n_pending)
    assert held <= 2 * CHUNK_SAMPLES
    assert resampler.finish().size == 120 * 16_000


def test_bad_factors_are_refused() -> None:
    with pytest.raises(ValueError, match="up \\(0\\)"):
        StreamingResampler(0, 3, np.ones(3, dtype=np.float32))
