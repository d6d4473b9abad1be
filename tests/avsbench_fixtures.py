"""Tiny AVSBench datasets in each official layout, written to a folder, with what was written.

`write_object(root, subset, videos)` writes AVSBench-object S4 (`Single-source/`) or MS3 (`Multi-sources/`);
`write_semantic(root, videos)` writes the AVSBench-semantic release (`metadata.csv`, `v1s|v1m|v2/<uid>/...`).
Both return `{(split, id): Expected}` holding the decoded pixels, targets, has_gt flags and log-mel examples
a correct reader must return at the stored size, and the paths of every file (for the bad-input tests).
Log-mel examples of wav files are computed by `numpy_vggish_log_mel`, written from the VGGish formula with
NumPy only. Run `python tests/avsbench_fixtures.py OUT [videos] [w h]` to write a benchmark v2 set (360x240 frames).
"""
from __future__ import annotations
import pickle, sys
from dataclasses import dataclass, field
from pathlib import Path
import numpy as np
import soundfile as sf
import torch
from PIL import Image
from avss_nb.labels import labels_to_rgb

FRAMES = {'s4': 5, 'ms3': 5, 'v1s': 5, 'v1m': 5, 'v2': 10}


def numpy_vggish_log_mel(wav: np.ndarray, sr: int = 16000) -> np.ndarray:
    "VGGish log-mel examples written from the formula (no torch): [N,96,64] float64."
    assert sr == 16000
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


@dataclass
class Expected:
    "What a reader must return for one video at the stored size, and where its files are."
    frames: np.ndarray            # [T,H,W,3] uint8 as decoded from the written files
    target: np.ndarray            # [T,H,W] int64; 255 on frames without ground truth
    has_gt: list                  # [T] bool
    audio: np.ndarray             # [T,96,64] float32 log-mel examples
    subset: str
    category: str = ''
    frame_files: list = field(default_factory=list)
    mask_files: list = field(default_factory=list)
    audio_file: Path | None = None
    csv_file: Path | None = None


def _random_frame(rng, size):
    "A smooth-ish random RGB frame [H,W,3] uint8 (size = (w,h))."
    w, h = size
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save_decoded(img: Image.Image, path: Path, **kw) -> np.ndarray:
    "Save an image and return the pixels decoded back from the file (what a reader sees)."
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    with Image.open(path) as im: return np.asarray(im.convert('RGB')).copy()


def write_object(root, subset: str, videos: dict, size=(16, 12), seed: int = 0, pkl_format: str = 'pickle') -> dict:
    """Write AVSBench-object S4 or MS3 under `root`: `videos` maps split -> list of names (S4: (name, category)).
    pkl_format 'pickle' (official: pickle.dump of a requires_grad tensor [5,1,96,64]) or 'torch' (torch.save)."""
    rng = np.random.default_rng(seed)
    root, T, w_h = Path(root), FRAMES[subset], size
    base = root / ('Single-source' if subset == 's4' else 'Multi-sources')
    data = base / f'{subset}_data'
    csv_path = base / f'{subset}_meta_data.csv'
    base.mkdir(parents=True, exist_ok=True)
    rows, expected = [], {}
    for split, names in videos.items():
        for entry in names:
            name, category = (entry if subset == 's4' else (entry, ''))
            if subset == 's4':
                rows.append(f'{name},{rng.integers(0, 9)},{category},{split}')
                fdir, mdir = data / 'visual_frames' / split / category / name, data / 'gt_masks' / split / category / name
                frame_files = [fdir / f'{name}_{t + 1}.png' for t in range(T)]
                audio_file = data / 'audio_log_mel' / split / category / f'{name}.pkl'
                n_gt = 1 if split == 'train' else T
            else:
                rows.append(f'{name},{split}')
                fdir, mdir = data / 'visual_frames' / name, data / 'gt_masks' / split / name
                frame_files = [fdir / f'{name}.mp4_{t + 1}.png' for t in range(T)]
                audio_file = data / 'audio_log_mel' / split / f'{name}.pkl'
                n_gt = T
            frames = np.stack([_save_decoded(Image.fromarray(_random_frame(rng, w_h)), p) for p in frame_files])
            target = np.full((T, w_h[1], w_h[0]), 255, np.int64)
            mask_files = []
            for t in range(n_gt):
                fg = rng.random((w_h[1], w_h[0])) < 0.3
                path = mdir / f'{name}_{t + 1}.png'; path.parent.mkdir(parents=True, exist_ok=True)
                if subset == 's4':
                    Image.fromarray((fg * 255).astype(np.uint8), 'L').save(path)            # 0/255 gray
                else:
                    img = Image.fromarray(fg.astype(np.uint8), 'P')                           # palette index 0/1
                    img.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762); img.save(path)
                target[t] = fg.astype(np.int64); mask_files.append(path)
            log_mel = torch.tensor(rng.normal(-2, 1.5, (T, 96, 64)).astype(np.float32), requires_grad=True)[:, None].float()
            audio_file.parent.mkdir(parents=True, exist_ok=True)
            if pkl_format == 'pickle':
                with open(audio_file, 'wb') as f: pickle.dump(log_mel, f)
            else: torch.save(log_mel.detach(), audio_file)
            expected[(split, name)] = Expected(frames, target, [t < n_gt for t in range(T)],
                                               log_mel.detach()[:, 0].numpy(), subset, category,
                                               frame_files, mask_files, audio_file, csv_path)
    header = 'name,start_time,category,split' if subset == 's4' else 'video_id,split'   # read by position
    csv_path.write_text('\n'.join([header, *rows]) + '\n')
    return expected


def write_wav(path: Path, seconds: float, rng, sr: int = 16000) -> np.ndarray:
    "Write a PCM-16 wav of noise plus a tone; return the samples as the reader sees them (int16/32768)."
    n = int(round(seconds * sr)); t = np.arange(n) / sr
    signal = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 3000) * t) + 0.05 * rng.standard_normal(n)
    pcm = np.clip(np.round(signal * 32767), -32768, 32767).astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, pcm, sr, subtype='PCM_16')
    return pcm.astype(np.float64) / 32768.0


def write_semantic(root, videos: list, size=(16, 12), seed: int = 0) -> dict:
    """Write the AVSBench-semantic release under `root`. `videos`: list of dicts with uid, label (v1s/v1m/v2),
    split, and optionally labels ('rgb' or 'semantic'), audio_seconds, frame_size (w,h), label_size (w,h)."""
    rng = np.random.default_rng(seed)
    root = Path(root); root.mkdir(parents=True, exist_ok=True)
    csv_path = root / 'metadata.csv'
    rows, expected = [], {}
    for i, v in enumerate(videos):
        uid, label, split = v['uid'], v['label'], v['split']
        T = FRAMES[label]
        rows.append(f"{i},{uid},0,0,thing,{split},{label}")
        vdir = root / label / uid
        fsize = v.get('frame_size', size); lsize = v.get('label_size', fsize)
        frame_files = [vdir / 'frames' / f'{t}.jpg' for t in range(T)]
        frames = np.stack([_save_decoded(Image.fromarray(_random_frame(rng, fsize)), p, quality=95) for p in frame_files])
        n_gt = 1 if (label == 'v1s' and split == 'train') else T
        kind = v.get('labels', 'rgb')
        target = np.full((T, lsize[1], lsize[0]), 255, np.int64)
        mask_files = []
        for t in range(n_gt):
            labels = np.where(rng.random((lsize[1], lsize[0])) < 0.5, 0, rng.integers(1, 71, (lsize[1], lsize[0])))
            folder = vdir / ('labels_rgb' if kind == 'rgb' else 'labels_semantic'); folder.mkdir(parents=True, exist_ok=True)
            path = folder / f'{t}.png'
            if kind == 'rgb': Image.fromarray(labels_to_rgb(labels)).save(path)
            else: Image.fromarray(labels.astype(np.uint8), 'L').save(path)
            target[t] = labels; mask_files.append(path)
        wav = write_wav(vdir / 'audio.wav', v.get('audio_seconds', float(T)), rng)
        log_mel = numpy_vggish_log_mel(wav)
        log_mel = np.concatenate([log_mel, np.repeat(log_mel[-1:], max(0, T - len(log_mel)), 0)])[:T] if len(log_mel) else log_mel
        expected[(split, uid)] = Expected(frames, target, [t < n_gt for t in range(T)], log_mel.astype(np.float32),
                                          label, 'thing', frame_files, mask_files, vdir / 'audio.wav', csv_path)   # category = a_obj
    csv_path.write_text('\n'.join(['vid,uid,s_min,s_sec,a_obj,split,label', *rows]) + '\n')
    return expected


if __name__ == '__main__':
    out = Path(sys.argv[1]); n = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    w, h = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else (360, 240)
    write_semantic(out, [dict(uid=f'clip{i:03d}', label='v2', split='train') for i in range(n)], size=(w, h))
    print(f"wrote {n} v2 train videos ({w}x{h} frames, 10 s wav) to {out}")
