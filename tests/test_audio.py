"Audio frontend against an independent NumPy computation of the VGGish log-mel formula."
import math
import numpy as np
import pytest
import torch
from avss_nb.audio import vggish_log_mel, clip_examples, build_audio_encoder


def numpy_vggish_log_mel(wav: np.ndarray, sr: int = 16000) -> np.ndarray:
    "VGGish log-mel examples written from the formula (no torch): [N,96,64]."
    win, hop, nfft = 400, 160, 512
    n_frames = 1 + (len(wav) - win) // hop
    frames = np.stack([wav[i * hop:i * hop + win] for i in range(n_frames)])            # [F,400]
    window = 0.5 - 0.5 * np.cos(2 * np.pi / win * np.arange(win))                         # periodic Hann
    spectrum = np.abs(np.fft.rfft(frames * window, nfft))                                 # [F,257], zero-pad right
    mel = lambda f: 1127.0 * np.log(1.0 + f / 700.0)
    bins_mel = mel(np.linspace(0, sr / 2, nfft // 2 + 1))
    edges = np.linspace(mel(125.0), mel(7500.0), 66)
    weights = np.zeros((nfft // 2 + 1, 64))
    for i in range(64):
        lo, c, hi = edges[i:i + 3]
        weights[:, i] = np.maximum(0, np.minimum((bins_mel - lo) / (c - lo), (hi - bins_mel) / (hi - c)))
    weights[0] = 0
    log_mel = np.log(spectrum @ weights + 0.01)                                           # [F,64]
    n = n_frames // 96
    return log_mel[:n * 96].reshape(n, 96, 64)


def test_log_mel_matches_numpy_reference():
    rng = np.random.default_rng(0)
    t = np.arange(int(3.3 * 16000)) / 16000
    wav = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3100 * t * (1 + t / 10))
           + 0.05 * rng.standard_normal(t.size))
    ref = numpy_vggish_log_mel(wav)
    ours = vggish_log_mel(torch.tensor(wav, dtype=torch.float32), 16000).numpy()
    assert ours.shape == ref.shape == (3, 96, 64)
    assert np.abs(ours - ref).max() <= 1e-3


def test_log_mel_int16_and_stereo_mix():
    rng = np.random.default_rng(1)
    left, right = rng.integers(-20000, 20000, (2, 16000 * 2)).astype(np.int16)
    stereo = np.stack([left, right])
    mono = (left.astype(np.float64) + right.astype(np.float64)) / 2 / 32768.0
    ref = numpy_vggish_log_mel(mono)
    ours = vggish_log_mel(torch.from_numpy(stereo), 16000).numpy()
    assert np.abs(ours - ref).max() <= 1e-3


def test_clip_examples_pads_with_last_example():
    rng = np.random.default_rng(2)
    wav = 0.1 * rng.standard_normal(int(2.5 * 16000))
    ref = numpy_vggish_log_mel(wav)                       # 2 examples
    out = clip_examples(torch.tensor(wav, dtype=torch.float32), 16000, 5).numpy()
    assert out.shape == (5, 96, 64)
    assert np.abs(out[:2] - ref).max() <= 1e-3
    for t in (2, 3, 4): assert np.array_equal(out[t], out[1])


@pytest.mark.parametrize('kind', ['small', 'vggish'])
def test_build_audio_encoder_shapes(kind):
    enc = build_audio_encoder(kind)
    with torch.no_grad(): assert enc(torch.randn(3, 96, 64)).shape == (3, 128)
