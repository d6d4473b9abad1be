"""The GPU training path without a GPU: every model x task x prior setting under bf16 autocast (the trainer's AMP), and no
loss that CUDA autocast refuses.

The trainer wraps forward and loss in `torch.autocast('cuda', dtype=torch.bfloat16)` on a GPU. Two things can go wrong
there that a CPU run in fp32 never shows: an op CUDA autocast bans outright (`binary_cross_entropy`, "unsafe to
autocast"), and bf16 outputs that break a loss or a prediction. The first is checked against PyTorch's own dispatcher:
every aten op a model calls under CPU autocast is replayed once on fake CUDA tensors with CUDA autocast switched on
(`FakeTensorMode` needs no GPU), and an op whose AutocastCUDA kernel is a banned one raises there. The second runs one
training step and one evaluation under CPU bf16 autocast."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map
from avss_nb.models import MODELS, build, criterion_for
from avss_nb.freeavs import ToyAVS
from avss_nb.data import collate_items

SIZE = 64   # px: the smoke preset's image size (its Swin is built for it)

class OpRecorder(TorchDispatchMode):
    "Records each aten op overload called, with a shape/dtype description of its first call's arguments."
    def __init__(self):
        super().__init__(); self.ops = {}
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in self.ops:
            self.ops[func] = tree_map(lambda x: ('tensor', tuple(x.shape), x.dtype) if torch.is_tensor(x) else x, (args, kwargs))
        return func(*args, **kwargs)

def cuda_autocast_banned(ops:dict) -> list:
    "The ops of `ops` (func -> recorded arguments) whose CUDA-autocast kernel refuses to run (PyTorch's banned list)."
    from torch._subclasses.fake_tensor import FakeTensorMode
    banned = []
    with FakeTensorMode(allow_non_fake_inputs=True):
        def fake(x):
            if isinstance(x, tuple) and len(x) == 3 and x[0] == 'tensor': return torch.empty(x[1], dtype=x[2], device='cuda')
            return x
        was, dtype = torch.is_autocast_enabled('cuda'), torch.get_autocast_dtype('cuda')
        torch.set_autocast_enabled('cuda', True); torch.set_autocast_dtype('cuda', torch.bfloat16)
        try:
            for func, spec in ops.items():
                args, kwargs = tree_map(fake, spec, is_leaf=lambda x: isinstance(x, tuple) and len(x) == 3 and x[0] == 'tensor')
                try: func(*args, **kwargs)
                except Exception as e:
                    if 'autocast' in str(e).lower() and 'unsafe' in str(e).lower(): banned.append(str(func))
        finally:
            torch.set_autocast_enabled('cuda', was); torch.set_autocast_dtype('cuda', dtype); torch.clear_autocast_cache()
    return banned

def test_probe_finds_the_banned_op():
    "The probe itself: PyTorch's CUDA autocast bans binary_cross_entropy and lets its logits form through."
    x, y = torch.rand(4), torch.rand(4)
    rec = OpRecorder()
    with rec:
        torch.nn.functional.binary_cross_entropy(x, y); torch.nn.functional.binary_cross_entropy_with_logits(x, y)
    assert [str(f) for f in rec.ops] == ['aten.binary_cross_entropy.default', 'aten.binary_cross_entropy_with_logits.default']
    assert cuda_autocast_banned(rec.ops) == ['aten.binary_cross_entropy.default']

_BATCHES, _RUNS = {}, {}

def toy_batch(task:str, priors) -> dict:
    "Two toy v1m videos of 5 frames at SIZE px (binary or semantic targets), with a GT-like prior when `priors` is on."
    key = (task, priors)
    if key not in _BATCHES:
        ds = ToyAVS('v1m', 'train', n_videos=2, size=SIZE, binary=task == 'binary')
        batch = collate_items([ds[0], ds[1]], pad=True)
        if priors: batch['prior'] = ((batch['target'] > 0) & (batch['target'] != 255)).float() * 0.8 + 0.1
        _BATCHES[key] = batch
    return _BATCHES[key]

CASES = [(name, task, priors) for name in MODELS for task in ('binary', 'semantic') for priors in (None, 'all')
         if not (name == 'avsc' and priors)]   # AVSC takes no Stepping Stones prior (build refuses it)

def bf16_run(name:str, task:str, priors) -> dict:
    "One training step and one evaluation under CPU bf16 autocast, recording the ops of forward, loss and predict."
    key = (name, task, priors)
    if key in _RUNS: return _RUNS[key]
    torch.manual_seed(0)
    model = build(name, 'smoke', task, priors)
    batch = toy_batch(task, priors)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 1e-3)
    rec = OpRecorder()
    model.train()
    with torch.autocast('cpu', dtype=torch.bfloat16), rec:
        outputs = model(batch)
        losses = criterion_for(model)(outputs, batch)
    opt.zero_grad(); losses['loss'].backward(); opt.step()
    with torch.autocast('cpu', dtype=torch.bfloat16), rec:
        pred = model.predict(batch, size=SIZE)
    _RUNS[key] = dict(model=model, batch=batch, outputs=outputs, losses=losses, pred=pred, ops=rec.ops)
    return _RUNS[key]

@pytest.mark.parametrize('name,task,priors', CASES)
def test_no_cuda_autocast_banned_op(name, task, priors):
    "No model's forward, loss or prediction calls an op that CUDA bf16 autocast refuses (it would crash on the GPU)."
    run = bf16_run(name, task, priors)
    assert run['ops'], 'nothing recorded'
    assert cuda_autocast_banned(run['ops']) == [], f"{name}/{task}/priors={priors}: ops CUDA autocast refuses"

@pytest.mark.parametrize('name,task,priors', CASES)
def test_bf16_step_and_eval(name, task, priors):
    "Finite losses, fp32 master weights with finite gradients, bf16 activations, predictions of the contract's dtype and shape."
    run = bf16_run(name, task, priors)
    model, batch, losses, pred = run['model'], run['batch'], run['losses'], run['pred']
    for k, v in losses.items():
        assert torch.is_tensor(v) and torch.isfinite(v).all(), (k, v)
    assert losses['loss'].dtype == torch.float32, losses['loss'].dtype
    params = [p for p in model.parameters()]
    assert all(p.dtype == torch.float32 for p in params), {p.dtype for p in params}
    grads = [p.grad for p in params if p.requires_grad and p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    main = run['outputs'].get('logits', run['outputs'].get('pred_masks'))
    assert main is not None and main.dtype == torch.bfloat16, (name, None if main is None else main.dtype)
    n = batch['frames'].shape[0] * batch['frames'].shape[1]
    assert pred['labels'].shape == (n, SIZE, SIZE) and pred['labels'].dtype == torch.int64, (pred['labels'].shape, pred['labels'].dtype)
    assert pred['prob'].shape == (n, SIZE, SIZE) and pred['prob'].dtype == torch.float32, (pred['prob'].shape, pred['prob'].dtype)
    assert torch.isfinite(pred['prob']).all() and pred['prob'].min() >= 0 and pred['prob'].max() <= 1
    top = 1 if task == 'binary' else 70
    assert pred['labels'].min() >= 0 and pred['labels'].max() <= top

@pytest.mark.parametrize('name', MODELS)
@pytest.mark.parametrize('task', ['binary', 'semantic'])
def test_trainer_amp_path(name, task, monkeypatch):
    "The trainer's own AMP path (`Trainer.fit` -> `train_step`, then `evaluate`), with its CUDA-only bf16 autocast pointed at the CPU."
    import contextlib
    import avss_nb.train as train_mod
    from avss_nb.train import Trainer, TrainConfig
    used = []
    def cpu_autocast(device, enabled=True):
        used.append(enabled)
        return torch.autocast('cpu', dtype=torch.bfloat16) if enabled else contextlib.nullcontext()
    monkeypatch.setattr(train_mod, 'autocast', cpu_autocast)
    torch.manual_seed(0)
    model = build(name, 'smoke', task)
    train = ToyAVS('v1m', 'train', n_videos=2, size=SIZE, binary=task == 'binary')
    val = ToyAVS('v1m', 'val', n_videos=1, size=SIZE, binary=task == 'binary')
    cfg = TrainConfig(epochs=1, batch_size=2, device='cpu', amp=True, progress=False, tensorboard=False)
    result = Trainer(model, criterion_for(model), train, val, cfg, task=task).fit()
    assert used and all(used), used                                    # forward/loss and evaluation ran under autocast
    row = result['last']
    assert row['train_loss'] == row['train_loss'] and abs(row['train_loss']) < float('inf'), row
    assert 0 <= row['val_miou'] <= 1 and row['val_frames'] > 0, row
    assert all(p.dtype == torch.float32 for p in model.parameters())
