"""Voice activity: silence, hum and noise at any level are not voice; real and synthetic speech is,
and `audio_features` says which it got."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from libra.runtime.inputs.audio import audio_features, decode_audio
from libra.runtime.inputs.vad import MIN_VOICED_S, frame_measures, voice_activity
from tests.helpers import espeak_wav, wav_bytes

pytestmark = pytest.mark.unit

RATE_HZ = 16000


def noise(colour: float, rms: float, seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    """Gaussian noise with a 1/f^colour power spectrum (0 white, 1 pink, 2 brown) at `rms`."""
    n = round(seconds * RATE_HZ)
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    freq = np.arange(spectrum.size, dtype=np.float64)
    freq[0] = 1.0
    x = np.fft.irfft(spectrum / freq ** (colour / 2), n)
    return (rms * x / np.std(x)).astype(np.float32)


def test_digital_silence_has_no_voice() -> None:
    activity = voice_activity(np.zeros(2 * RATE_HZ, np.float32))
    assert activity.voiced_s == 0.0
    assert not activity.has_voice
    assert activity.analysed_s == 2.0


@pytest.mark.parametrize("colour", [0.0, 1.0, 2.0], ids=["white", "pink", "brown"])
@pytest.mark.parametrize("rms", [0.0003, 0.003, 0.03, 0.3])
def test_noise_at_any_level_has_no_voice(colour: float, rms: float) -> None:
    activity = voice_activity(noise(colour, rms))
    assert not activity.has_voice, activity


def test_a_steady_tone_and_mains_hum_have_no_voice() -> None:
    t = np.arange(3 * RATE_HZ) / RATE_HZ
    sine = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    hum = (0.1 * sum(np.sin(2 * np.pi * 50 * k * t) / k for k in range(1, 8))).astype(np.float32)
    assert not voice_activity(sine).has_voice
    assert not voice_activity(hum).has_voice


def test_flatness_tells_noise_from_a_peaky_spectrum() -> None:
    t = np.arange(RATE_HZ) / RATE_HZ
    harmonics = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 20))
    _, flat_noise = frame_measures(noise(0.0, 0.1, seconds=1.0))
    _, flat_voice = frame_measures((0.1 * harmonics).astype(np.float32))
    assert np.median(flat_noise) > 0.5  # a white spectrum: geometric mean near the mean
    assert np.median(flat_voice) < 0.05


def test_a_full_scale_sine_in_the_band_reads_minus_3_db() -> None:
    t = np.arange(RATE_HZ) / RATE_HZ
    power_db, _ = frame_measures(np.sin(2 * np.pi * 1000 * t).astype(np.float32))
    np.testing.assert_allclose(np.median(power_db), -3.0, atol=0.1)


def test_espeak_speech_has_voice() -> None:
    wave = decode_audio(espeak_wav("I am so happy today, this is wonderful news!"))
    activity = voice_activity(wave)
    assert activity.has_voice
    assert activity.voiced_s > 1.0  # measured 1.94 s of 2.9 s


def test_short_speech_still_has_voice() -> None:
    activity = voice_activity(decode_audio(espeak_wav("Yes.")))
    assert activity.voiced_s >= MIN_VOICED_S  # measured 0.23 s


def test_speech_is_found_only_in_what_the_features_cover() -> None:
    """Speech that starts after the first 8 s is not heard by the model, nor by the VAD."""
    speech = decode_audio(espeak_wav("I am so happy today"))
    late = np.concatenate([np.zeros(9 * RATE_HZ, np.float32), speech])
    assert voice_activity(late).has_voice
    assert not audio_features(wav_bytes(late)).voice_found


def test_audio_features_report_voice_activity() -> None:
    quiet = audio_features(wav_bytes(noise(0.0, 0.003)))
    speech = audio_features(espeak_wav("What a lovely surprise, thank you so much!"))
    assert quiet.voice_found is False
    assert quiet.voiced_s == 0.0
    assert speech.voice_found is True
    assert speech.voiced_s is not None
    assert speech.voiced_s > 1.0


@pytest.mark.shared
@pytest.mark.parametrize(("corpus", "pattern"), [
    ("ravdess-speech-16k", "Actor_*/*.flac"), ("nemo-speech-16k", "*/*.flac")])
def test_real_speech_corpora_have_voice_in_every_clip(shared_dir: Path, corpus: str,
                                                      pattern: str) -> None:
    """Every 10th clip of each corpus (all 1,440 + 1,265 pass: docs/model.md); RAVDESS's quietest
    clips peak near -50 dB full scale, so no absolute loudness is asked for."""
    files = sorted((shared_dir / "data" / corpus).glob(pattern))[::10]
    if not files:
        pytest.skip(f"needs {corpus} in {shared_dir / 'data'}")
    voiced = [voice_activity(decode_audio(path.read_bytes())).voiced_s for path in files]
    assert min(voiced) >= MIN_VOICED_S, sorted(voiced)[:5]
