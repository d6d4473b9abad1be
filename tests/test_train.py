"Trainer mechanics in separate processes: DDP (gloo, torchrun) vs one process, and SIGKILL + resume."
import json, os, subprocess, sys
from pathlib import Path
import pytest, torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT/'tests'/'train_worker.py'
ENV = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', PYTHONHASHSEED='0')


def start(args, torchrun=0) -> subprocess.Popen:
    "Launch the worker (under torchrun with `torchrun` processes when > 0)."
    cmd = [sys.executable] + (['-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={torchrun}'] if torchrun else []) \
          + [str(WORKER)] + [str(a) for a in args]
    return subprocess.Popen(cmd, env=ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc:subprocess.Popen, check=True) -> subprocess.Popen:
    "Wait for `proc`; raise with its output if it failed and `check`."
    proc.out, proc.err = proc.communicate(timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(proc.args)} failed ({proc.returncode}):\n{proc.out[-3000:]}\n{proc.err[-5000:]}")
    return proc


def final_weights(out:Path) -> dict:
    state = torch.load(out/'ckpt'/'last.pt', weights_only=True)
    return load_file(str(out/'ckpt'/state['weights']))


def test_ddp_two_gloo_processes_match_one_process(tmp_path):
    "2 ranks x batch 2 see the same videos per step as 1 rank x batch 4: same losses, weights and val metrics."
    one, two = tmp_path/'one', tmp_path/'two'
    procs = [start(['tiny', '--out', one, '--batch-size', 4, '--record', tmp_path/'one.json']),
             start(['tiny', '--out', two, '--batch-size', 2, '--record', tmp_path/'two.json'], torchrun=2)]
    for p in procs: finish(p)
    r1, r2 = json.loads((tmp_path/'one.json').read_text()), json.loads((tmp_path/'two.json').read_text())
    assert (r1['world_size'], r2['world_size']) == (1, 2)
    assert len(r1['losses']) == len(r2['losses']) == 4                    # 8 videos / global batch 4, 2 epochs
    assert torch.allclose(torch.tensor(r1['losses']), torch.tensor(r2['losses']), rtol=1e-5, atol=1e-6), (r1['losses'], r2['losses'])
    assert len(set(r1['losses'])) > 1                                     # the weights moved between steps
    w1, w2 = final_weights(one), final_weights(two)
    assert w1.keys() == w2.keys()
    for k in w1: assert torch.allclose(w1[k], w2[k], rtol=1e-4, atol=1e-6), k
    for h1, h2 in zip(r1['history'], r2['history']):                      # val metrics all-reduced over the 2 ranks
        assert h1['val_frames'] == h2['val_frames'] > 0
        assert abs(h1['val_miou'] - h2['val_miou']) < 1e-4 and abs(h1['val_fscore'] - h2['val_fscore']) < 1e-4


def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path):
    "Smoke AAVS, 2 epochs x 4 steps, checkpoint every 2 steps; SIGKILL after step 7 (mid-epoch 2), resume from step 6."
    ref, cut = tmp_path/'ref', tmp_path/'cut'
    common = ['aavs', '--epochs', 2, '--batch-size', 2, '--videos', 8, '--ckpt-every', 2]
    uninterrupted = start(common + ['--out', ref, '--record', tmp_path/'ref.json'])
    killed = finish(start(common + ['--out', cut, '--kill-after', 7]), check=False)
    assert killed.returncode == -9, (killed.returncode, killed.err[-2000:])
    state = torch.load(cut/'ckpt'/'last.pt', weights_only=True)
    assert (state['global_step'], state['epoch'], state['batch_in_epoch']) == (6, 1, 2)
    finish(start(common + ['--out', cut, '--resume', '--record', tmp_path/'cut.json']))
    finish(uninterrupted)
    a, b = final_weights(ref), final_weights(cut)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]
    r, c = json.loads((tmp_path/'ref.json').read_text()), json.loads((tmp_path/'cut.json').read_text())
    assert c['losses'] == r['losses'][6:]                                 # steps 7 and 8 redone identically
    strip = lambda h: [{k: v for k, v in row.items() if k != 'epoch_s'} for row in h]
    assert strip(c['history']) == strip(r['history'])
    assert (ref/'log.csv').read_text().splitlines()[0] == (cut/'log.csv').read_text().splitlines()[0]
