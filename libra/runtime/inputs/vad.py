"""Voice activity: is there speech in the decoded audio, or only silence, hum or noise?

The model answers whatever it is given: before this check, silence and a microphone's hiss came
back as a confident emotion (issue 17). `audio_features` runs `voice_activity` on the samples the
model sees (the first `max_duration_s`), and the API leaves audio without voice out of the model
input and says so (`no_voice`). numpy only.

A 25 ms frame (every 10 ms, as the log-mel) counts as voiced when, in the speech band
(`BAND_HZ`, 300-4000 Hz, or up to half the sample rate: above mains hum, where speech carries
most of its energy), all three hold:
- its power is above `MIN_BAND_POWER_DB` (-70 dB full scale: digital silence and dither are not
  voice; RAVDESS's quietest clips peak at -52 dB, so nothing louder is asked for);
- it is at least `FLOOR_MARGIN_DB` (6 dB) above the clip's own floor (the 10th percentile of
  frame powers): speech comes and goes with syllables, a steady tone, hum or noise does not;
- its spectrum is peaky, not flat: spectral flatness (geometric over arithmetic mean of the
  band's power spectrum) below `MAX_FLATNESS` (0.15). White noise measures 0.57, pink 0.45,
  brown 0.21 at any level; the loudest 30 % of frames of RAVDESS and nEMO clips a median 0.02
  (95th percentile 0.06, worst clip 0.11).
The clip has voice when at least `MIN_VOICED_S` (0.15 s) of frames are voiced. Measured over every
clip of RAVDESS (1,440) and nEMO (1,265) and on synthetic silence, white/pink/brown noise and
tones (docs/model.md, "Missing signals and calibration"). What it cannot tell: a tone that
swells and fades (a tremolo, some music) is "voice" to it, and speech under loud babble may not be.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import fft

SAMPLE_RATE_HZ = 16_000
WIN_S = 0.025
HOP_S = 0.010
BAND_HZ = (300.0, 4000.0)
MIN_BAND_POWER_DB = -70.0
FLOOR_PERCENTILE = 10.0
FLOOR_MARGIN_DB = 6.0
MAX_FLATNESS = 0.15
MIN_VOICED_S = 0.15
_TINY = 1e-20
_TINY_POWER = 1e-30
"""Added to each bin's power (float32) so digital silence has a finite log."""


@dataclass(frozen=True)
class VoiceActivity:
    """What `voice_activity` found: seconds of voiced frames, out of `analysed_s`."""

    voiced_s: float
    analysed_s: float

    @property
    def has_voice(self) -> bool:
        return self.voiced_s >= MIN_VOICED_S


@dataclass(frozen=True)
class _Framing:
    win: int
    hop: int
    n_fft: int
    window: np.ndarray
    band: np.ndarray


@lru_cache(maxsize=8)
def _framing(sample_rate_hz: int) -> _Framing:
    """Window, hop, FFT size and the speech band's bins at one sample rate (16 kHz: 400, 160,
    512, as the log-mel)."""
    if sample_rate_hz < 4 * BAND_HZ[0]:
        raise ValueError(f"voice activity needs a sample rate of at least {4 * BAND_HZ[0]:g} Hz, "
                         f"not {sample_rate_hz}")
    win = round(WIN_S * sample_rate_hz)
    n_fft = 1 << (win - 1).bit_length()
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win) / win)).astype(np.float32)
    freq_hz = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate_hz)
    band = (freq_hz >= BAND_HZ[0]) & (freq_hz <= min(BAND_HZ[1], sample_rate_hz / 2))
    return _Framing(win, round(HOP_S * sample_rate_hz), n_fft, window, band)


def frame_measures(wave: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: power in the speech band in dB full scale (a full-scale sine there reads
    -3 dB) and its spectral flatness in [0, 1], for mono samples."""
    x = np.nan_to_num(np.asarray(wave, dtype=np.float32), nan=0.0, posinf=1.0, neginf=-1.0)
    if x.ndim != 1:
        raise ValueError(f"voice_activity takes 1-D mono samples, got shape {x.shape}")
    f = _framing(sample_rate_hz)
    if x.size < f.win:
        x = np.pad(x, (0, f.win - x.size))
    frames = np.lib.stride_tricks.sliding_window_view(x, f.win)[::f.hop]
    spectrum = fft.rfft(frames * f.window, n=f.n_fft, axis=1)[:, f.band]  # float32 in, complex64
    power = spectrum.real ** 2 + spectrum.imag ** 2 + np.float32(_TINY_POWER)
    # Parseval: the windowed frame's mean square in the band, normalised by the window's energy
    window_energy = float(np.sum(f.window.astype(np.float64) ** 2))
    mean_power = power.mean(axis=1, dtype=np.float64)
    mean_square = 2.0 * mean_power * power.shape[1] / (f.n_fft * window_energy)
    power_db = 10.0 * np.log10(mean_square + _TINY)
    flatness = np.exp(np.log(power).mean(axis=1, dtype=np.float64)) / mean_power
    return power_db, flatness


def voiced_frames(wave: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """A bool per frame: voiced by the three tests above."""
    power_db, flatness = frame_measures(wave, sample_rate_hz)
    floor_db = float(np.percentile(power_db, FLOOR_PERCENTILE))
    return ((power_db > MIN_BAND_POWER_DB) & (power_db > floor_db + FLOOR_MARGIN_DB)
            & (flatness < MAX_FLATNESS))


def voice_activity(wave: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ,
                   max_samples: int | None = None) -> VoiceActivity:
    """Voice activity in the first `max_samples` of mono samples (all of them if None)."""
    x = np.asarray(wave)
    if max_samples is not None:
        x = x[:max_samples]
    if x.size == 0:
        return VoiceActivity(0.0, 0.0)
    voiced = voiced_frames(x, sample_rate_hz)
    hop = _framing(sample_rate_hz).hop
    return VoiceActivity(voiced_s=float(voiced.sum()) * hop / sample_rate_hz,
                         analysed_s=x.size / sample_rate_hz)
