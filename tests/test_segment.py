"`avss-nb segment` end to end on mp4 files made here with PyAV from toy FreeAVS media, and every bad input it must refuse."
import contextlib, io, json
from pathlib import Path
import numpy as np
import torch
import pytest
import soundfile
from PIL import Image
from avss_nb.cli import main
from avss_nb.config import get_settings
from avss_nb.models import build
from avss_nb.runs import RunSpec, build_model, run_dir, write_record
from avss_nb.train import save_weights
from avss_nb.segment import (scene_clip, write_clip, read_video, read_soundtrack, read_audio_file, segment_video,
                             load_model, SegmentError, ModelInfo, SAMPLE_RATE)

SIZE, FPS = 64, 5   # toy frames 64 px, video at 5 frames per second


@pytest.fixture(scope='module')
def clip(tmp_path_factory):
    "A 5 s toy scene as an mp4 with an AAC soundtrack, and the scene rendered."
    path, rendered = scene_clip(tmp_path_factory.mktemp('clip')/'scene.mp4', subset='v1s', size=SIZE, fps=FPS)
    return path, rendered


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    "A smoke AAVS (binary) saved as safetensors."
    path = tmp_path_factory.mktemp('weights')/'aavs.safetensors'
    save_weights(build('aavs', 'smoke', 'binary'), path)
    return path


def run_cli(*argv) -> tuple[int, str]:
    "(exit status, stderr) of `avss-nb segment ...`."
    err = io.StringIO()
    with contextlib.redirect_stderr(err): status = main(['segment', *map(str, argv), '--no-progress'])
    return status, err.getvalue()


def rms_per_second(samples:np.ndarray, rate:int) -> np.ndarray:
    "RMS of each whole second of a [C,S] or [S] track."
    x = np.atleast_2d(samples).mean(0)
    n = x.size // rate
    return np.sqrt((x[:n * rate].reshape(n, rate) ** 2).mean(1))


def test_segment_outputs(clip, weights, tmp_path):
    "Counts, sizes, timing and sound of everything `avss-nb segment` writes."
    path, rendered = clip
    out = tmp_path/'out'
    status, err = run_cli(path, '--checkpoint', weights, '--model', 'aavs', '--preset', 'smoke', '--out', out)
    assert status == 0, err
    assert sorted(p.name for p in out.iterdir()) == ['audio.wav', 'frames', 'masks', 'overlay.mp4', 'summary.json']
    assert [p.name for p in tmp_path.iterdir()] == ['out']                          # no temporary folder left behind
    assert sorted(int(p.stem) for p in (out/'masks').glob('*.png')) == list(range(5))   # one mask per second
    assert sorted(int(p.stem) for p in (out/'frames').glob('*.jpg')) == list(range(5))
    mask = np.asarray(Image.open(out/'masks'/'3.png'))
    assert mask.shape == (SIZE, SIZE) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    frame = np.asarray(Image.open(out/'frames'/'3.jpg'))
    assert np.abs(frame.astype(int) - rendered['frames'][3].astype(int)).mean() < 10   # frame 3 is second 3 of the scene
    summary = json.loads((out/'summary.json').read_text())
    assert (summary['model'], summary['preset'], summary['task'], summary['run']) == ('aavs', 'smoke', 'binary', None)
    assert summary['revision'] and summary['audio'] == 'original' and summary['frames'] == 5
    assert summary['frame_times'] == [0.5, 1.5, 2.5, 3.5, 4.5]
    assert [s['second'] for s in summary['seconds']] == [0, 1, 2, 3, 4] and all('classes' in s for s in summary['seconds'])
    overlay = read_video(out/'overlay.mp4')
    assert overlay.size == (SIZE, SIZE) and overlay.n_decoded == 5 * FPS and abs(overlay.duration - 5.0) < 1e-3
    heard = read_soundtrack(out/'overlay.mp4', overlay)
    original = read_soundtrack(path, read_video(path))
    assert abs(heard.seconds - 5.0) < 0.05
    assert np.allclose(rms_per_second(heard.samples, heard.rate), rms_per_second(original.samples, original.rate), rtol=0.1)
    wav, rate = soundfile.read(out/'audio.wav')
    assert rate == SAMPLE_RATE and abs(wav.size / rate - 5.0) < 1e-3


def test_fps_and_clip_frames(clip, weights, tmp_path):
    "--fps 2 doubles the frames (each paired with its own audio), --clip-frames 10 still covers every frame once."
    path, _ = clip
    model, info = load_model(checkpoint=weights, model='aavs', preset='smoke', task='binary')
    result = segment_video(path, model, info, fps=2, clip_frames=10, progress=False)
    assert result.labels.shape == (10, SIZE, SIZE)
    assert np.allclose(result.times, (np.arange(10) + 0.5) / 2)
    seconds = list(result)
    assert [len(s.frames) for s in seconds] == [2] * 5 and [s.second for s in seconds] == list(range(5))
    assert not list(tmp_path.iterdir())                                             # segment_video writes nothing


@pytest.mark.parametrize('fmt', ['wav', 'flac', 'ogg', 'mp3'])
def test_audio_replacement(clip, weights, tmp_path, fmt):
    "--audio FILE puts that file's sound (here: a tone in the first two seconds only) in the overlay and the summary."
    path, _ = clip
    t = np.arange(5 * 22050) / 22050
    tone = (0.5 * np.sin(2 * np.pi * 440 * t) * (t < 2)).astype(np.float32)
    audio = tmp_path/f'tone.{fmt}'
    soundfile.write(audio, tone, 22050)
    out = tmp_path/'out'
    status, err = run_cli(path, '--checkpoint', weights, '--model', 'aavs', '--preset', 'smoke', '--out', out, '--audio', audio)
    assert status == 0, err
    assert json.loads((out/'summary.json').read_text())['audio'] == str(audio)
    heard = read_soundtrack(out/'overlay.mp4', read_video(out/'overlay.mp4'))
    loud = rms_per_second(heard.samples, heard.rate)
    assert loud[:2].min() > 0.2 and loud[2:].max() < 0.02, loud


def test_audio_silence(clip, weights, tmp_path):
    "--audio silence: the overlay is silent and the summary says so."
    path, _ = clip
    out = tmp_path/'out'
    status, err = run_cli(path, '--checkpoint', weights, '--model', 'aavs', '--preset', 'smoke', '--out', out, '--audio', 'silence')
    assert status == 0, err
    assert json.loads((out/'summary.json').read_text())['audio'] == 'silence'
    heard = read_soundtrack(out/'overlay.mp4', read_video(out/'overlay.mp4'))
    assert np.abs(heard.samples).max() < 1e-3


def fake_run(with_checkpoint:bool) -> str:
    "A run record in the registry (and its weights when asked), as `avss-nb train` leaves them; returns its hash."
    spec = RunSpec(model='aavs', task='binary', dataset='toy:v1s', preset='smoke', seed=int(with_checkpoint) + 100)
    h, settings = spec.key(), get_settings()
    if with_checkpoint: save_weights(build_model(spec), run_dir(h, settings)/'ckpt'/'best.safetensors')
    write_record(dict(hash=h, spec=spec.to_dict(), status='done', checkpoint=f'{h}/ckpt/best.safetensors'), settings)
    return h


def test_run(clip, tmp_path):
    "--run HASH takes model, task and preset from the run record."
    path, _ = clip
    h = fake_run(True)
    out = tmp_path/'out'
    status, err = run_cli(path, '--run', h, '--out', out)
    assert status == 0, err
    summary = json.loads((out/'summary.json').read_text())
    assert (summary['run'], summary['model'], summary['preset']) == (h, 'aavs', 'smoke')


def short_clip(path:Path, seconds:float) -> Path:
    "An mp4 of `seconds` (10 frames a second) with a soundtrack."
    import av
    with av.open(str(path), 'w') as out:
        vs = out.add_stream('libx264', rate=10); vs.width = vs.height = 32; vs.pix_fmt = 'yuv420p'
        aus = out.add_stream('aac', rate=SAMPLE_RATE); aus.layout = 'mono'
        for i in range(int(round(seconds * 10))):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 20 * i, np.uint8), format='rgb24'); frame.pts = i
            for p in vs.encode(frame): out.mux(p)
        for p in vs.encode(): out.mux(p)
        samples = np.zeros((1, int(seconds * SAMPLE_RATE)), np.float32)
        for a in range(0, samples.shape[1], 1024):
            f = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, a:a + 1024]), format='fltp', layout='mono')
            f.sample_rate, f.pts = SAMPLE_RATE, a
            for p in aus.encode(f): out.mux(p)
        for p in aus.encode(None): out.mux(p)
    return path


def bad_inputs(tmp_path:Path, clip_path:Path) -> dict:
    "name -> (video file, extra CLI arguments, words the error must contain)."
    silent = tmp_path/'no_audio.mp4'
    write_clip(silent, np.zeros((2, 32, 32, 3), np.uint8), None, fps=5)
    garbage = tmp_path/'garbage.mp4'; garbage.write_bytes(b'this is not a video file at all' * 40)
    empty = tmp_path/'empty.mp4'; empty.write_bytes(b'')
    short = short_clip(tmp_path/'short.mp4', 0.6)
    return {'no audio track': (silent, [], ['has no audio track', '--audio']),
            'unreadable': (garbage, [], ['cannot read it as a video']),
            'zero-length': (empty, [], ['empty file']),
            'missing': (tmp_path/'nowhere.mp4', [], ['file not found']),
            'shorter than one second': (short, [], ['0.60 s long', 'at least 1 s']),
            'run without checkpoint': (clip_path, ['--run', fake_run(False)], ['not its checkpoint', 'avss-nb train']),
            'unknown run': (clip_path, ['--run', '000000000000'], ['no such run record']),
            'missing --audio file': (clip_path, ['--audio', tmp_path/'nothing.wav'], ['audio file not found'])}


@pytest.mark.parametrize('case', ['no audio track', 'unreadable', 'zero-length', 'missing', 'shorter than one second',
                                  'run without checkpoint', 'unknown run', 'missing --audio file'])
def test_bad_input(clip, weights, tmp_path, case):
    "Each bad input: exit status 2, one message naming the problem and the way out, nothing written."
    inputs = tmp_path/'inputs'; inputs.mkdir()
    video, extra, words = bad_inputs(inputs, clip[0])[case]
    model = [] if '--run' in extra else ['--checkpoint', weights, '--model', 'aavs', '--preset', 'smoke']
    out = tmp_path/'out'
    before = sorted(p.name for p in inputs.iterdir())
    status, err = run_cli(video, *model, *extra, '--out', out)
    assert status == 2, err
    for w in words: assert w in err, (w, err)
    assert not out.exists() and sorted(p.name for p in inputs.iterdir()) == before and sorted(p.name for p in tmp_path.iterdir()) == ['inputs']


def test_out_not_empty(clip, weights, tmp_path):
    "An --out folder that holds files is refused before any work and left exactly as it was."
    out = tmp_path/'mine'; out.mkdir(); (out/'notes.txt').write_text('my notes')
    status, err = run_cli(clip[0], '--checkpoint', weights, '--model', 'aavs', '--preset', 'smoke', '--out', out)
    assert status == 2 and 'not empty' in err and 'never overwritten' in err
    assert [p.name for p in out.iterdir()] == ['notes.txt'] and (out/'notes.txt').read_text() == 'my notes'
    status, err = run_cli(clip[0], '--checkpoint', weights, '--model', 'aavs', '--preset', 'smoke', '--out', out/'notes.txt')
    assert status == 2 and 'not a folder' in err


def test_wrong_checkpoint(clip, weights, tmp_path):
    "Weights that do not fit the model named are refused with the options to check."
    status, err = run_cli(clip[0], '--checkpoint', weights, '--model', 'tpavi', '--preset', 'smoke', '--out', tmp_path/'out')
    assert status == 2 and 'does not fit tpavi' in err and not (tmp_path/'out').exists()


class LeftHalf(torch.nn.Module):
    "A stand-in model: class `label` on the left half of every frame, background on the right."
    def __init__(self, label:int): super().__init__(); self.label, self.p = label, torch.nn.Parameter(torch.zeros(1))
    def predict(self, batch, size):
        n = batch['frames'].shape[0] * batch['frames'].shape[1]
        assert batch['audio'].shape[:2] == batch['frames'].shape[:2]      # one example per frame
        labels = torch.zeros(n, size, size, dtype=torch.long); labels[..., : size // 2] = self.label
        return dict(labels=labels)


@pytest.mark.parametrize('task,label,folder', [('binary', 1, 'masks'), ('semantic', 17, 'labels_rgb')])
def test_masks_and_areas(clip, tmp_path, task, label, folder):
    "Mask files in the official layout and per-second areas in the summary, from a model whose answer is known."
    from avss_nb.labels import PALETTE, CLASSES
    path, _ = clip
    result = segment_video(path, LeftHalf(label), ModelInfo('left-half', 'smoke', task), progress=False)
    out = result.save(tmp_path/'out', progress=False)
    name = 'sounding' if task == 'binary' else CLASSES[label]
    summary = json.loads((out/'summary.json').read_text())
    assert all(s['classes'] == {name: 0.5} for s in summary['seconds']) and summary['classes'] == {name: 0.5}
    mask = np.asarray(Image.open(out/folder/'2.png'))
    if task == 'binary':
        assert mask.ndim == 2 and (mask[:, :SIZE // 2] == 255).all() and (mask[:, SIZE // 2:] == 0).all()
    else:
        assert mask.shape == (SIZE, SIZE, 3) and (mask[:, :SIZE // 2] == PALETTE[label]).all() and (mask[:, SIZE // 2:] == 0).all()
    picture = read_video(out/'overlay.mp4').frames[2].astype(int)
    original = read_video(path).frames[2].astype(int)
    right = np.abs(picture[SIZE // 2:, SIZE // 2 + 4:] - original[SIZE // 2:, SIZE // 2 + 4:]).mean()
    left = np.abs(picture[SIZE // 2:, :SIZE // 2 - 4] - original[SIZE // 2:, :SIZE // 2 - 4]).mean()
    assert left > 20 > 3 > right, (left, right)          # masks blended on the left only (the legend sits at the top)


def test_audio_from_a_video_file(clip):
    "--audio takes any file with an audio stream PyAV decodes when soundfile cannot read it (here: an mp4)."
    track = read_audio_file(clip[0])
    assert track.samples.shape[0] == 1 and abs(track.seconds - 5.0) < 0.1 and np.abs(track.samples).max() > 0.05


@pytest.mark.parametrize('ext,codec,audio_codec', [('mkv', 'libx264', 'aac'), ('mov', 'libx264', 'aac'), ('webm', 'libvpx-vp9', 'libopus')])
def test_containers(clip, weights, tmp_path, ext, codec, audio_codec):
    "mkv, mov and webm files are read and segmented like mp4."
    _, rendered = clip
    path = write_clip(tmp_path/f'scene.{ext}', rendered['frames'], rendered['audio'], SAMPLE_RATE, fps=FPS, codec=codec, audio_codec=audio_codec)
    out = tmp_path/'out'
    status, err = run_cli(path, '--checkpoint', weights, '--model', 'aavs', '--preset', 'smoke', '--out', out)
    assert status == 0, err
    assert len(list((out/'masks').glob('*.png'))) == 5 and abs(read_video(out/'overlay.mp4').duration - 5.0) < 1e-3


def test_out_not_writable(clip, weights, tmp_path):
    "An --out that cannot be created is one clear line, not a traceback."
    blocker = tmp_path/'file'; blocker.write_text('x')
    status, err = run_cli(clip[0], '--checkpoint', weights, '--model', 'aavs', '--preset', 'smoke', '--out', blocker/'out')
    assert status == 2 and 'choose another --out' in err and blocker.read_text() == 'x'
