"""A catalogue of bad input and faults (issue 14): each case writes a small fixture, breaks it, and must end in a
clear error (the right class, naming the file, video or key), a warning that names what it did, a problem report
that names the file (validators, the CLI), or, for layouts that are legitimate, a correct read. Never silence.

`CASES` is a plain list, so it can be counted: `python tests/test_bad_input.py` prints the counts per outcome.
"""
from __future__ import annotations
import contextlib, csv, io, json, os, pickle, shutil, socket, subprocess, sys, warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
import numpy as np
import pytest
import soundfile as sf
import torch, torch.nn as nn
from PIL import Image

from avss_nb.config import (UserError, SettingsError, CheckpointError, RunLockedError, MissingFileError, get_settings)
from avss_nb.data import AVSBenchObject, AVSBenchSemantic, AVSBenchError, check_avsbench
from avss_nb.freeavs import ToyMedia, BuildPlan, build_dataset, make_toy_dataset, validate_dataset, BUILD_MARKER
from avss_nb.labels import label2idx_json
from avss_nb.train import (Trainer, TrainConfig, save_weights, load_weights, read_train_state, sweep_temp_files)
from avss_nb.two_stage import PriorDir, PriorFilesError, VideoKey, prior_path, write_prior_png
from avss_nb.runs import RunSpec, load_record, load_run_model, list_runs, evaluate_run, train_run, record_path, run_dir
from avsbench_fixtures import write_object, write_semantic

ERROR, WARNING, REPORTED, CORRECT, SILENT = 'clear error', 'warning', 'reported by name', 'read correctly', 'silent'


@dataclass
class Outcome:
    "What a thunk's run showed; `text` holds the message(s) a user sees."
    kind: str
    text: str = ''
    exc: BaseException | None = None


class Report(str):
    "A thunk's return value that a validator or the CLI showed to the user (a problem list, stderr)."


@dataclass
class Case:
    name: str            # what was broken
    expect: str          # ERROR, WARNING, REPORTED or CORRECT
    setup: Callable      # setup(tmp) -> (thunk, needles, absent): thunk() runs it; needles must be in the message
    error: type = UserError   # class the error must have (ERROR cases)


CASES: list[Case] = []


def case(name, expect, error=UserError):
    def wrap(setup):
        CASES.append(Case(name, expect, setup, error)); return setup
    return wrap


def run_case(c: Case, tmp: Path) -> tuple[Outcome, list, list]:
    thunk, needles, absent = c.setup(tmp)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        try: result = thunk()
        except Exception as e: return Outcome(ERROR, str(e), e), needles, absent
    messages = [str(w.message) for w in caught]
    if isinstance(result, Report) and result.strip(): return Outcome(REPORTED, str(result)), needles, absent
    if messages: return Outcome(WARNING, '\n'.join(messages)), needles, absent
    if result is True: return Outcome(CORRECT), needles, absent
    return Outcome(SILENT, repr(result)[:300]), needles, absent


# --------------------------------------------------------------------------------------------- fixtures
def semantic(tmp, **kw):
    "One v2 val video with labels_semantic and one v1m test video with labels_rgb."
    exp = write_semantic(tmp/'sem', [dict(uid='va', label='v2', split='val', labels='semantic'),
                                     dict(uid='mb', label='v1m', split='test')], **kw)
    return tmp/'sem', exp[('val', 'va')], exp[('test', 'mb')]


def s4(tmp):
    exp = write_object(tmp/'obj', 's4', {'test': [('s1', 'dog'), ('s2', 'cat')]})
    return tmp/'obj', exp[('test', 's1')]


def ms3(tmp):
    exp = write_object(tmp/'obj', 'ms3', {'val': ['m1', 'm2']})
    return tmp/'obj', exp[('val', 'm1')]


def sem_item(root, subset='v2', split='val'): return lambda: AVSBenchSemantic(root, subset, split, size=None)[0]
def s4_item(root, split='test'): return lambda: AVSBenchObject(root, 's4', split, size=None)[0]


def append_row(csv_path: Path, row: str):
    with open(csv_path, 'a') as f: f.write(row + '\n')


def toy(tmp, n=1):
    root = tmp/'toy'; make_toy_dataset(root, n, size=32); return root


class PixelModel(nn.Module):
    "A per-pixel binary model small enough to train in well under a second."
    def __init__(self, width=4):
        super().__init__(); self.conv = nn.Conv2d(3, width, 3, padding=1); self.head = nn.Conv2d(width, 1, 1)
    def forward(self, batch): return dict(logits=self.head(torch.relu(self.conv(batch['frames'].flatten(0, 1)))))
    def predict(self, batch, size=None):
        prob = self(batch)['logits'][:, 0].sigmoid(); return dict(labels=(prob > 0.5).long(), prob=prob)


def _bce(out, batch):
    from avss_nb.criterion import bce_loss
    return dict(loss=bce_loss(out['logits'], batch['target'], batch['has_gt']))


def trainer(out, width=4, epochs=1):
    from avss_nb.freeavs import ToyAVS
    torch.manual_seed(0)
    return Trainer(PixelModel(width), _bce, ToyAVS('v1m', 'train', 2, size=16, binary=True), None,
                   TrainConfig(epochs=epochs, batch_size=1, progress=False, tensorboard=False, device='cpu'), out)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    "A finished tiny training (ckpt/last.pt, weights-*.safetensors), copied per case."
    out = tmp_path_factory.mktemp('trained')/'run'
    trainer(out).fit(); return out


TRAINED: dict = {}


def fresh_run(tmp) -> Path:
    out = tmp/'run'; shutil.copytree(TRAINED['dir'], out); return out


def fake_run(tmp, dataset='toy:v1s', best=True, last=True):
    "A run record with checkpoints written by hand (no training): returns (settings, spec, ckpt dir)."
    settings = get_settings(runs_dir=tmp/'runs', device='cpu', workers=0, freeavs_root=tmp/'freeavs', avsbench_root=tmp/'bench')
    spec = RunSpec('aavs', 'binary', dataset, 'smoke', train={'epochs': 1})
    from avss_nb.runs import build_model, write_record, train_config
    ckpt = run_dir(spec.key(), settings)/'ckpt'; ckpt.mkdir(parents=True)
    model = build_model(spec)
    if best: save_weights(model, ckpt/'best.safetensors')
    if last:
        save_weights(model, ckpt/'weights-00000004.safetensors')
        torch.save(dict(format=1, weights='weights-00000004.safetensors', epoch=1, batch_in_epoch=0, global_step=4, loss_sum=0.,
                        loss_steps=0, phase='main', optimizer={}, scheduler={}, rng=[], history=[], best=None, world_size=1), ckpt/'last.pt')
    write_record(dict(hash=spec.key(), spec=spec.to_dict(), status='done', metrics={}, train_config=train_config(spec, settings).to_dict()), settings)
    return settings, spec, ckpt


def ini(tmp, text):
    p = tmp/'settings.ini'; p.write_text(text); return p


def cli(*argv, env=None):
    "Run avss-nb in this process; a Report of stderr when it exits 2 with one line."
    from avss_nb.cli import main
    err, out = io.StringIO(), io.StringIO()
    old = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out): code = main(list(argv))
    finally:
        for k, v in old.items():
            if v is None: os.environ.pop(k, None)
            else: os.environ[k] = v
    text = err.getvalue()
    lines = [l for l in text.splitlines() if l.strip() and 'warn' not in l.lower()]
    return Report(text) if code == 2 and len(lines) == 1 and 'Traceback' not in text else f'exit {code}: {text}'


# --------------------------------------------------------------------------------------------- data loss
@case('freeavs build --out into an AVSBench copy', ERROR)
def _(tmp):
    root, va, _ = semantic(tmp)
    before = (root/'metadata.csv').read_bytes()
    def run():
        try: build_dataset(ToyMedia(), root, 'smoke', verbose=False)
        finally: assert (root/'metadata.csv').read_bytes() == before and not (root/BUILD_MARKER).exists()
    return run, [str(root), 'not a FreeAVS build'], [root/'label2idx.json', root/'v1s']


@case('freeavs build --out into an AVSBench copy, CLI (one line, exit 2)', REPORTED)
def _(tmp):
    root, _, _ = semantic(tmp)
    return lambda: cli('freeavs', 'build', '--toy', '--out', str(root), '--workers', '1', '--overwrite'), [str(root), 'not a FreeAVS build'], [root/'v1s']


@case('freeavs build over another FreeAVS build without --overwrite', ERROR)
def _(tmp):
    root = toy(tmp)
    return lambda: make_toy_dataset(root, 2, size=32), [str(root), "plan 'toy'", '--overwrite'], [root/'v1s'/'v1s_train_00001']


@case('freeavs build --overwrite: a user file inside a video folder survives, the old videos go', CORRECT)
def _(tmp):
    root = toy(tmp, 2); mine = root/'v1s'/'v1s_train_00001'/'notes.txt'; mine.write_text('mine')
    def run():
        make_toy_dataset(root, 1, size=32, overwrite=True)
        return mine.read_text() == 'mine' and not (root/'v1s'/'v1s_train_00001'/'audio.wav').exists() and validate_dataset(root) == []
    return run, [], [root/'v1s'/'v1s_train_00001'/'frames']


@case('freeavs build after a killed build (.tmp folder left)', CORRECT)
def _(tmp):
    root = toy(tmp); (root/'v2'/'v2_val_00000.tmp'/'frames').mkdir(parents=True)
    return lambda: make_toy_dataset(root, 1, size=32) is not None and validate_dataset(root) == [], [], [root/'v2'/'v2_val_00000.tmp']


# --------------------------------------------------------------------------------------------- metadata
@case("semantic metadata row with split 'tset'", ERROR, AVSBenchError)
def _(tmp):
    root, _, _ = semantic(tmp); append_row(root/'metadata.csv', '9,vz,0,0,dog,tset,v2')
    return sem_item(root), [str(root/'metadata.csv'), 'vz', "'tset'"], []


@case("semantic metadata row with subset 'v1S'", ERROR, AVSBenchError)
def _(tmp):
    root, _, _ = semantic(tmp); append_row(root/'metadata.csv', '9,vz,0,0,dog,val,v1S')
    return sem_item(root), [str(root/'metadata.csv'), "'v1S'"], []


@case("semantic metadata row with split 'Test'", ERROR, AVSBenchError)
def _(tmp):
    root, _, _ = semantic(tmp); append_row(root/'metadata.csv', '9,vz,0,0,dog,Test,v2')
    return sem_item(root), [str(root/'metadata.csv'), "'Test'"], []


@case('semantic metadata with a duplicate uid', ERROR, AVSBenchError)
def _(tmp):
    root, _, _ = semantic(tmp); append_row(root/'metadata.csv', '9,va,0,0,dog,val,v2')
    return sem_item(root), [str(root/'metadata.csv'), 'va', 'appears again'], []


@case('label2idx.json with another class order', ERROR, AVSBenchError)
def _(tmp):
    root, _, _ = semantic(tmp); m = label2idx_json(); k = list(m)
    m[k[1]], m[k[2]] = m[k[2]], m[k[1]]; (root/'label2idx.json').write_text(json.dumps(m))
    return sem_item(root), [str(root/'label2idx.json'), 'another order'], []


@case('label2idx.json with 70 entries', ERROR, AVSBenchError)
def _(tmp):
    root, _, _ = semantic(tmp); m = label2idx_json(); m.pop('woman'); (root/'label2idx.json').write_text(json.dumps(m))
    return sem_item(root), [str(root/'label2idx.json'), '70 classes'], []


@case('semantic metadata.csv with a UTF-8 BOM before its first column, uid', CORRECT)
def _(tmp):
    root, va, _ = semantic(tmp); p = root/'metadata.csv'
    rows = list(csv.reader(open(p))); text = '\n'.join(','.join([r[1], r[0], *r[2:]]) for r in rows) + '\n'
    p.write_bytes(b'\xef\xbb\xbf' + text.encode())
    return lambda: np.array_equal(AVSBenchSemantic(root, 'v2', 'val', size=None)[0]['target'].numpy(), va.target), [], []


@case('S4 csv with reordered, named columns', CORRECT)
def _(tmp):
    root, e = s4(tmp); p = e.csv_file
    rows = list(csv.reader(open(p))); p.write_text('\n'.join(','.join([r[3], r[2], r[0], r[1]]) for r in rows) + '\n')
    return lambda: np.array_equal(AVSBenchObject(root, 's4', 'test', size=None)[0]['target'].numpy(), e.target), [], []


@case('S4 csv with a UTF-8 BOM', CORRECT)
def _(tmp):
    root, e = s4(tmp); e.csv_file.write_bytes(b'\xef\xbb\xbf' + e.csv_file.read_bytes())
    return lambda: AVSBenchObject(root, 's4', 'test', size=None).video_ids == ['s1', 's2'], [], []


@case('S4 csv row with an unknown split', ERROR, AVSBenchError)
def _(tmp):
    root, e = s4(tmp); append_row(e.csv_file, 's9,0,dog,tset')
    return s4_item(root), [str(e.csv_file), 's9', "'tset'"], []


@case('MS3 csv with a duplicate video', ERROR, AVSBenchError)
def _(tmp):
    root, e = ms3(tmp); append_row(e.csv_file, 'm1,val')
    return lambda: AVSBenchObject(root, 'ms3', 'val', size=None)[0], [str(e.csv_file), 'm1', 'appears again'], []


# --------------------------------------------------------------------------------------------- content
def _resave(path, size, mode=None):
    with Image.open(path) as im: im = im.convert(mode) if mode else im.copy()
    im.resize(size, Image.NEAREST).save(path)


@case('labels_semantic of another size than its frame', ERROR, AVSBenchError)
def _(tmp):
    root, va, _ = semantic(tmp); _resave(va.mask_files[2], (8, 6))
    return sem_item(root), [str(va.mask_files[2]), 'va', '8x6'], []


@case('labels_rgb of another size than its frame', ERROR, AVSBenchError)
def _(tmp):
    root, _, mb = semantic(tmp); _resave(mb.mask_files[0], (32, 24))
    return sem_item(root, 'v1m', 'test'), [str(mb.mask_files[0]), 'mb', '32x24'], []


@case('S4 mask of another size than its frame', ERROR, AVSBenchError)
def _(tmp):
    root, e = s4(tmp); _resave(e.mask_files[1], (10, 10))
    return s4_item(root), [str(e.mask_files[1]), 's1'], []


@case('MS3 mask of another size than its frame', ERROR, AVSBenchError)
def _(tmp):
    root, e = ms3(tmp); _resave(e.mask_files[0], (10, 10))
    return lambda: AVSBenchObject(root, 'ms3', 'val', size=None)[0], [str(e.mask_files[0]), 'm1'], []


@case('one frame of another size', ERROR, AVSBenchError)
def _(tmp):
    root, va, _ = semantic(tmp)
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(va.frame_files[4], quality=95)
    return sem_item(root), [str(va.frame_files[4]), 'va', '40x30'], []


@case('labels_semantic disagrees with labels_rgb (avss-nb data check)', REPORTED)
def _(tmp):
    root, _, mb = semantic(tmp)
    from avss_nb.labels import rgb_to_labels
    with Image.open(mb.mask_files[0]) as im: lab = rgb_to_labels(np.asarray(im.convert('RGB')))
    sem = mb.mask_files[0].parent.parent/'labels_semantic'; sem.mkdir()
    for t, m in enumerate(mb.mask_files):
        with Image.open(m) as im: lab = rgb_to_labels(np.asarray(im.convert('RGB')))
        if t == 1: lab[0, 0] = (lab[0, 0] + 1) % 71
        Image.fromarray(lab.astype(np.uint8), 'L').save(sem/f'{t}.png')
    return lambda: Report('\n'.join(f"{p['file']}: {p['problem']}" for p in check_avsbench(root))), [str(sem/'1.png'), 'disagrees with 1.png'], []


@case('S4 mask saved in colour', ERROR, AVSBenchError)
def _(tmp):
    root, e = s4(tmp)
    with Image.open(e.mask_files[0]) as im: g = np.asarray(im)
    Image.fromarray(np.stack([g, g * 0, g * 0], -1)).save(e.mask_files[0])    # red foreground
    return s4_item(root), [str(e.mask_files[0]), 's1', 'colour'], []


@case('S4 mask saved as 0/1 values', WARNING)
def _(tmp):
    root, e = s4(tmp)
    with Image.open(e.mask_files[0]) as im: g = np.asarray(im)
    Image.fromarray((g > 0).astype(np.uint8), 'L').save(e.mask_files[0])
    def run():
        item = AVSBenchObject(root, 's4', 'test', size=None)[0]
        assert np.array_equal(item['target'].numpy(), e.target)                  # read as the mask it means
    return run, [str(e.mask_files[0]), '0/1', 's1'], []


@case('NaN in a wav (float samples)', ERROR, AVSBenchError)
def _(tmp):
    root, va, _ = semantic(tmp)
    x = np.zeros(10 * 16000, np.float32); x[5] = np.nan; sf.write(va.audio_file, x, 16000, subtype='FLOAT')
    return sem_item(root), [str(va.audio_file), 'va', 'NaN'], []


@case('NaN in a .pkl log-mel', ERROR, AVSBenchError)
def _(tmp):
    root, e = s4(tmp)
    x = torch.zeros(5, 1, 96, 64); x[2, 0, 3, 3] = float('nan')
    with open(e.audio_file, 'wb') as f: pickle.dump(x, f)
    return s4_item(root), [str(e.audio_file), 's1', 'NaN'], []


@case('prior PNG saved as RGB', ERROR, PriorFilesError)
def _(tmp):
    d = tmp/'priors'
    for i in range(2): write_prior_png(prior_path(d, 'v2', 'a', i), torch.rand(8, 8))
    Image.new('RGB', (8, 8), (0, 200, 0)).save(prior_path(d, 'v2', 'a', 1))
    return lambda: PriorDir(d).load('v2', 'a', 2, 8), [str(prior_path(d, 'v2', 'a', 1)), 'colour'], []


# --------------------------------------------------------------------------------------------- runs
@case('load_run_model without best.safetensors falls back to last', WARNING)
def _(tmp):
    settings, spec, ckpt = fake_run(tmp, best=False)
    return lambda: load_run_model(spec, settings), [spec.key(), str(ckpt/'best.safetensors'), 'weights-00000004'], []


@case('runs list with a corrupt record', WARNING)
def _(tmp):
    settings, spec, _ = fake_run(tmp)
    bad = record_path('0badc0ffee00', settings); bad.write_text('{"hash": "0badc0ffee00", "spec": {')
    return lambda: [r['hash'] for r in list_runs(settings)] == [spec.key()], [str(bad)], []


@case('runs list CLI with a corrupt record', WARNING)
def _(tmp):
    settings, spec, _ = fake_run(tmp)
    bad = record_path('0badc0ffee00', settings); bad.write_text('{"hash": "0b')
    return lambda: cli('--runs-dir', str(settings.runs_dir), 'runs', 'list'), [str(bad)], []


@case('evaluate with a cached result after the data root moved', WARNING)
def _(tmp):
    settings, spec, _ = fake_run(tmp, dataset='avsbench:v2')
    rec = load_record(spec, settings)
    rec['evaluations'] = {'avsbench:v2|test|none': dict(miou=0.5, data=dict(source='avsbench', root='/old/copy', metadata='x'))}
    from avss_nb.runs import write_record
    write_record(rec, settings)
    root, _, _ = semantic(tmp); settings = get_settings(runs_dir=settings.runs_dir, avsbench_root=root, device='cpu', workers=0)
    def run():
        with pytest.raises(Exception): evaluate_run(spec, 'test', settings=settings)   # scores again (the fake run has no test split)
    return run, [spec.key(), '/old/copy', str(root)], []


# --------------------------------------------------------------------------------------------- settings
@case('evaluate with a cached result that predates data identities (returned, with a warning)', WARNING)
def _(tmp):
    settings, spec, _ = fake_run(tmp, dataset='avsbench:v2')
    rec = load_record(spec, settings); rec['evaluations'] = {'avsbench:v2|test|none': dict(miou=0.25)}
    from avss_nb.runs import write_record
    write_record(rec, settings)
    def run(): assert evaluate_run(spec, 'test', settings=settings)['miou'] == 0.25
    return run, [spec.key(), "'avsbench:v2|test|none'", '--force'], []


@case('evaluate with a cached result of a FreeAVS build whose content changed', WARNING)
def _(tmp):
    settings, spec, _ = fake_run(tmp, dataset='freeavs:v1s')
    from avss_nb.runs import write_record, data_identity
    build = Path(settings.freeavs_root)/'smoke'; make_toy_dataset(build, 1, size=32)
    old = data_identity('freeavs:v1s', 'smoke', settings)
    rec = load_record(spec, settings); rec['evaluations'] = {'freeavs:v1s|test|none': dict(miou=0.25, data=old)}
    write_record(rec, settings)
    make_toy_dataset(build, 2, size=32, overwrite=True)                         # another build at the same place
    def run():                                                                   # scored again, on the new build
        out = evaluate_run(spec, 'test', settings=settings)
        assert out['data'] == data_identity('freeavs:v1s', 'smoke', settings) != old and out['miou'] != 0.25
    return run, [spec.key(), 'scoring again'], []


@case('settings.ini with a misnamed section', ERROR, SettingsError)
def _(tmp):
    p = ini(tmp, '[avss-nb]\nworkers = 2\n'); return lambda: get_settings(p, env={}), [str(p), '[avss-nb]', 'avss_nb'], []


@case('settings.ini with a mistyped key', ERROR, SettingsError)
def _(tmp):
    p = ini(tmp, '[avss_nb]\nwokers = 2\n'); return lambda: get_settings(p, env={}), [str(p), "'wokers'", "did you mean 'workers'"], []


@case('settings.ini workers = two', ERROR, SettingsError)
def _(tmp):
    p = ini(tmp, '[avss_nb]\nworkers = two\n'); return lambda: get_settings(p, env={}), [str(p), 'workers', 'whole number'], []


@case('settings.ini seed = 0.5', ERROR, SettingsError)
def _(tmp):
    p = ini(tmp, '[avss_nb]\nseed = 0.5\n'); return lambda: get_settings(p, env={}), [str(p), 'seed', 'whole number'], []


@case('AVSS_SEED=abc', ERROR, SettingsError)
def _(tmp):
    p = ini(tmp, '[avss_nb]\n'); return lambda: get_settings(p, env={'AVSS_SEED': 'abc'}), ['AVSS_SEED', "'abc'"], []


@case('settings.ini device = gpu', ERROR, SettingsError)
def _(tmp):
    p = ini(tmp, '[avss_nb]\ndevice = gpu\n'); return lambda: get_settings(p, env={}), [str(p), 'device', 'cuda:N'], []


@case('settings.ini workers = -3', ERROR, SettingsError)
def _(tmp):
    p = ini(tmp, '[avss_nb]\nworkers = -3\n'); return lambda: get_settings(p, env={}), [str(p), 'workers', 'negative'], []


@case('--train-set lr=fast', ERROR, SettingsError)
def _(tmp):
    return lambda: RunSpec(train={'lr': 'fast'}), ['lr', "'fast'", 'float'], []


@case('--train-set epoch_videos=many', ERROR, SettingsError)
def _(tmp):
    return lambda: RunSpec(train={'epoch_videos': 'many'}), ['epoch_videos', "'many'", 'integer or null'], []


@case('--train-set lr=fast on the CLI (one line, before anything is built)', REPORTED)
def _(tmp):
    return lambda: cli('--runs-dir', str(tmp/'runs'), 'train', '--train-set', 'lr=fast'), ['lr', 'fast'], [tmp/'runs']


@case('avss-nb reproduce --jobs two (one line, exit 2, before any run)', REPORTED)
def _(tmp):
    return lambda: cli('--runs-dir', str(tmp/'runs'), 'reproduce', '--dataset', 'toy', '--preset', 'smoke', '--jobs', 'two'), ['--jobs', "'two'"], [tmp/'runs']


@case('AVSS_WORKERS=two on the CLI (one line, exit 2)', REPORTED)
def _(tmp):
    return lambda: cli('settings', env={'AVSS_WORKERS': 'two'}), ['AVSS_WORKERS', "'two'"], []


@case('avss-nb train --dataset freeavs:v3 (one line, exit 2)', REPORTED)
def _(tmp):
    return lambda: cli('--runs-dir', str(tmp/'runs'), 'train', '--dataset', 'freeavs:v3'), ["'v3'", 'freeavs'], [tmp/'runs']


@case('avss-nb train --eval-prior degraded:2 (one line, exit 2)', REPORTED)
def _(tmp):
    return lambda: cli('--runs-dir', str(tmp/'runs'), 'train', '--eval-prior', 'degraded:2'), ["'2'", 'degraded level'], [tmp/'runs']


@case('avss-nb train --preset tiny (one line, exit 2)', REPORTED)
def _(tmp):
    return lambda: cli('--runs-dir', str(tmp/'runs'), 'train', '--preset', 'tiny'), ["unknown preset 'tiny'"], [tmp/'runs']


# --------------------------------------------------------------------------------------------- checkpoints
@case('truncated best.safetensors', ERROR, CheckpointError)
def _(tmp):
    settings, spec, ckpt = fake_run(tmp); b = ckpt/'best.safetensors'; b.write_bytes(b.read_bytes()[:200])
    return lambda: load_run_model(spec, settings), [str(b), 'safetensors'], []


@case('garbage weights-*.safetensors on resume', ERROR, CheckpointError)
def _(tmp):
    out = fresh_run(tmp); w = next((out/'ckpt').glob('weights-*.safetensors')); w.write_bytes(os.urandom(300))
    return lambda: trainer(out).fit(resume=True), [str(w)], []


@case('truncated last.pt on resume', ERROR, CheckpointError)
def _(tmp):
    out = fresh_run(tmp); p = out/'ckpt'/'last.pt'; p.write_bytes(p.read_bytes()[:500])
    return lambda: trainer(out).fit(resume=True), [str(p), '--force'], []


@case('last.pt without its optimizer state', ERROR, CheckpointError)
def _(tmp):
    out = fresh_run(tmp); p = out/'ckpt'/'last.pt'
    s = torch.load(p, weights_only=True); s.pop('optimizer'); torch.save(s, p)
    return lambda: trainer(out).fit(resume=True), [str(p), "'optimizer'"], []


@case('checkpoint of another model (wrong shapes) on resume', ERROR, CheckpointError)
def _(tmp):
    out = fresh_run(tmp)
    return lambda: trainer(out, width=6).fit(resume=True), [str(out/'ckpt'), 'shape mismatch', 'conv.weight'], []


@case('weights with wrong keys', ERROR, CheckpointError)
def _(tmp):
    p = tmp/'w.safetensors'; save_weights(nn.Linear(3, 2), p)
    return lambda: load_weights(PixelModel(), p), [str(p), 'missing key', 'unexpected key'], []


@case('weights file missing (still a FileNotFoundError)', ERROR, MissingFileError)
def _(tmp):
    return lambda: load_weights(PixelModel(), tmp/'nope.safetensors'), [str(tmp/'nope.safetensors')], []


@case('truncated run record JSON', ERROR, CheckpointError)
def _(tmp):
    settings, spec, _ = fake_run(tmp); p = record_path(spec.key(), settings); p.write_text(p.read_text()[:50])
    return lambda: load_run_model(spec, settings), [str(p), 'not valid JSON'], []


@case('invalid priors.json', ERROR, PriorFilesError)
def _(tmp):
    d = tmp/'priors'; write_prior_png(prior_path(d, 'v2', 'a', 0), torch.rand(8, 8)); (d/'priors.json').write_text('{"size": [8, 8')
    return lambda: PriorDir(d), [str(d/'priors.json'), 'not valid JSON'], []


@case('truncated prior PNG when loading', ERROR, PriorFilesError)
def _(tmp):
    d = tmp/'priors'; p = prior_path(d, 'v2', 'a', 0); write_prior_png(p, torch.rand(8, 8)); p.write_bytes(p.read_bytes()[:-30])
    return lambda: PriorDir(d).load('v2', 'a', 1, 8), [str(p)], []


@case('two trainings of the same run at once', ERROR, RunLockedError)
def _(tmp):
    settings = get_settings(runs_dir=tmp/'runs', device='cpu', workers=0)
    spec = RunSpec('aavs', 'binary', 'toy:v1s', 'smoke', train={'epochs': 1})
    holder = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])
    lock = Path(settings.runs_dir)/f'{spec.key()}.lock'; lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps(dict(pid=holder.pid, host=socket.gethostname(), started='now')))
    def run():
        try: train_run(spec, settings, progress=False)
        finally: holder.kill(); holder.wait()
    return run, [f'run {spec.key()} is being trained by PID {holder.pid}'], [run_dir(spec.key(), settings)]


# --------------------------------------------------------------------------------------------- validators
@case('freeavs validate: truncated JPEG body', REPORTED)
def _(tmp):
    root = toy(tmp); f = root/'v1m'/'v1m_val_00000'/'frames'/'3.jpg'; f.write_bytes(f.read_bytes()[:-200])
    return lambda: Report('\n'.join(validate_dataset(root))), [str(f), 'cannot decode'], []


@case('freeavs validate: corrupt JPEG body', REPORTED)
def _(tmp):
    root = toy(tmp); f = root/'v2'/'v2_test_00000'/'frames'/'1.jpg'
    b = bytearray(f.read_bytes()); sos = b.index(b'\xff\xda'); start = sos + 2 + int.from_bytes(b[sos + 2:sos + 4], 'big') + 10
    b[start:start + 64] = b'\xff' * 64; f.write_bytes(bytes(b))                   # garbage inside the entropy-coded body
    return lambda: Report('\n'.join(validate_dataset(root))), [str(f), 'cannot decode'], []


@case('freeavs validate: duplicate uid', REPORTED)
def _(tmp):
    root = toy(tmp); p = root/'metadata.csv'; lines = p.read_text().splitlines(); p.write_text('\n'.join(lines + [lines[1]]) + '\n')
    return lambda: Report('\n'.join(validate_dataset(root))), [str(p), lines[1].split(',')[1], 'appears 2 times'], []


@case('freeavs validate: 0-byte wav', REPORTED)
def _(tmp):
    root = toy(tmp); w = root/'v1s'/'v1s_test_00000'/'audio.wav'; w.write_bytes(b'')
    return lambda: Report('\n'.join(validate_dataset(root))), [str(w), '0 bytes'], []


@case('freeavs validate CLI: truncated label PNG (exit 1, named)', REPORTED)
def _(tmp):
    root = toy(tmp); f = root/'v1s'/'v1s_val_00000'/'labels_semantic'/'0.png'; f.write_bytes(f.read_bytes()[:-20])
    def run():
        out = io.StringIO()
        from avss_nb.cli import main
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()): code = main(['freeavs', 'validate', str(root)])
        return Report(out.getvalue()) if code == 1 else None
    return run, [str(f)], []


@case('PriorDir.check: truncated prior PNG', REPORTED)
def _(tmp):
    d = tmp/'priors'
    for i in range(3): write_prior_png(prior_path(d, 'v1s', 'a', i), torch.rand(8, 8))
    p = prior_path(d, 'v1s', 'a', 2); p.write_bytes(p.read_bytes()[:-25])
    return lambda: Report('\n'.join(PriorDir(d).check([VideoKey('v1s', 'a', 3, 8)]))), [str(p)], []


@case('PriorDir.check: two videos of one name in the dataset', REPORTED)
def _(tmp):
    d = tmp/'priors'; write_prior_png(prior_path(d, 'v1s', 'a', 0), torch.rand(8, 8))
    return lambda: Report('\n'.join(PriorDir(d).check([VideoKey('v1s', 'a', 1, 8)] * 2))), [str(d/'v1s'/'a'), 'appears twice'], []


@case('data check: every problem of an AVSBench copy in one pass', REPORTED)
def _(tmp):
    root, va, mb = semantic(tmp)
    f = va.frame_files[7]; f.write_bytes(f.read_bytes()[:80]); mb.audio_file.write_bytes(b'')
    append_row(root/'metadata.csv', '9,vz,0,0,dog,tset,v2')
    return lambda: Report('\n'.join(f"{p['file']}: {p['problem']}" for p in check_avsbench(root))), [str(f), str(mb.audio_file), "'tset'"], []


@case('data check CLI on an S4 copy: truncated pkl (exit 1)', REPORTED)
def _(tmp):
    root, e = s4(tmp); e.audio_file.write_bytes(e.audio_file.read_bytes()[:30])
    def run():
        out = io.StringIO()
        from avss_nb.cli import main
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()): code = main(['data', 'check', str(root)])
        return Report(out.getvalue()) if code == 1 else None
    return run, [str(e.audio_file), 's1'], []


@case('data check on a folder that is no AVSBench copy', ERROR, AVSBenchError)
def _(tmp):
    (tmp/'empty').mkdir(); return lambda: check_avsbench(tmp/'empty'), [str(tmp/'empty'), 'no AVSBench metadata'], []


# --------------------------------------------------------------------------------------------- faults
@case('hidden temp files of a killed write are swept when training resumes', CORRECT)
def _(tmp):
    out = fresh_run(tmp)
    left = [out/'ckpt'/'.last.pt.999999991.tmp', out/'ckpt'/'.weights-00000002.safetensors.999999992.tmp', out/'.log.csv.999999993.tmp']
    for p in left: p.write_bytes(b'half')
    return lambda: trainer(out, epochs=2).fit(resume=True) is not None, [], left


@case('safetensors metadata order: identical tensors give identical bytes', CORRECT)
def _(tmp):
    lin = nn.Linear(3, 2)
    return lambda: save_weights(lin, tmp/'a.st', dict(epoch=1, global_step=2, z=3)).read_bytes() == \
                   save_weights(lin, tmp/'b.st', dict(z=3, global_step=2, epoch=1)).read_bytes(), [], []


# --------------------------------------------------------------------------------------------- the test
@pytest.mark.parametrize('c', CASES, ids=[c.name for c in CASES])
def test_bad_input(c, tmp_path, trained):
    TRAINED['dir'] = trained
    got, needles, absent = run_case(c, tmp_path)
    assert got.kind == c.expect, f"{c.name}: expected {c.expect}, got {got.kind}: {got.text[:1500]}"
    if got.kind == ERROR:
        assert isinstance(got.exc, c.error), f"{c.name}: {type(got.exc).__name__} is not a {c.error.__name__}: {got.text}"
        assert isinstance(got.exc, UserError), f"{c.name}: {type(got.exc).__name__} is not a UserError"
    for needle in needles: assert needle in got.text, f"{c.name}: {needle!r} not in {got.text[:1500]!r}"
    for path in absent: assert not Path(path).exists(), f"{c.name}: {path} should not exist"


def test_failed_decodes_leave_no_file_open(tmp_path):
    "A reader or validator that fails to decode a file closes it (no `ResourceWarning: unclosed file`)."
    import gc
    root, va, _ = semantic(tmp_path); va.frame_files[2].write_bytes(va.frame_files[2].read_bytes()[:-100])
    toy_root = toy(tmp_path); f = toy_root/'v2'/'v2_val_00000'/'frames'/'0.jpg'; f.write_bytes(f.read_bytes()[:-100])
    ds = AVSBenchSemantic(root, 'v2', 'val', size=None, check='none')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        with pytest.raises(AVSBenchError): ds[0]
        assert validate_dataset(toy_root)
        gc.collect()
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not unclosed, unclosed


def test_catalogue_counts():
    "At least 40 cases, none of them expected to be silent."
    counts = {k: sum(c.expect == k for c in CASES) for k in (ERROR, WARNING, REPORTED, CORRECT, SILENT)}
    print(counts)
    assert len(CASES) >= 40 and counts[SILENT] == 0


if __name__ == '__main__':
    for k in (ERROR, WARNING, REPORTED, CORRECT, SILENT): print(f"{k:18s} {sum(c.expect == k for c in CASES)}")
    print(f"{'total':18s} {len(CASES)}")
