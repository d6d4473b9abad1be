"Audio frontend against an independent NumPy computation of the VGGish log-mel formula."
import math
import numpy as np
import pytest
import torch
from avss_nb.audio import vggish_log_mel, clip_examples, build_audio_encoder
from avsbench_fixtures import numpy_vggish_log_mel   # the VGGish formula in NumPy only


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
