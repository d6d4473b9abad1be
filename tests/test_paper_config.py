"""AAVS at the `paper` configuration, checked without a GPU and without downloads: refusal without pretrained weights,
VGGish, the official initialisations, the official recipe values, and a paper-shaped model (Swin-B, window 12, 384 px,
official freeze policy, VGGish) trained a few steps on the CPU from weight files this test writes itself, with the
trainable parameters compared against the official list (`reference/official-checkpoints`)."""
import os, re
from dataclasses import replace
from pathlib import Path
import pytest, torch, torch.nn as nn

from avss_nb.config import get_preset
from avss_nb.aavs import AAVSConfig, build_aavs, hf_state_to_aavs, hf_mask2former_config
from avss_nb.audio import build_audio_encoder, EMBEDDING_SIZE
from avss_nb.backbone import VisualEncoder, freeze, reset_adapters
from avss_nb.robust_keys import RobustKeys
from avss_nb.train import TrainConfig, Trainer, SCHEDULES

REFERENCE = Path(os.environ.get('AVSS_REFERENCE', '/work/shared/reference'))/'official-checkpoints'
needs_reference = pytest.mark.skipif(not (REFERENCE/'aavs_stage1_keys.txt').is_file(), reason=f'no official key lists under {REFERENCE}')

# --------------------------------------------------------------------------------------------------------------------
# Weight files in the formats the loaders read, written by the tests.

def official_vggish() -> nn.Module:
    "torchvggish's VGGish layout (`features.*`, `embeddings.*`), random weights."
    layers, c_in = [], 1
    for v in [64, 'M', 128, 'M', 256, 256, 'M', 512, 512, 'M']:
        if v == 'M': layers.append(nn.MaxPool2d(2, 2))
        else: layers += [nn.Conv2d(c_in, v, 3, padding=1), nn.ReLU(True)]; c_in = v
    m = nn.Module()
    m.features = nn.Sequential(*layers)
    m.embeddings = nn.Sequential(nn.Linear(12288, 4096), nn.ReLU(True), nn.Linear(4096, 4096), nn.ReLU(True),
                                 nn.Linear(4096, EMBEDDING_SIZE), nn.ReLU(True))
    return m

@pytest.fixture(scope='module')
def vggish_file(tmp_path_factory):
    path = tmp_path_factory.mktemp('vggish')/'vggish-10086976.pth'
    torch.manual_seed(0)
    state = {k: v.normal_(0, 0.02) for k, v in official_vggish().state_dict().items()}
    torch.save({**state, 'pproc._pca_matrix': torch.zeros(128, 128), 'pproc._pca_means': torch.zeros(128, 1)}, path)
    return path

@pytest.fixture(scope='module')
def ade_checkpoint(tmp_path_factory):
    "A random Mask2Former Swin-B checkpoint shaped like facebook/mask2former-swin-base-ade-semantic (both tasks start from it)."
    return write_hf_checkpoint(AAVSConfig.from_preset('paper', 'binary'), tmp_path_factory.mktemp('hf')/'mask2former-swin-base-ade-semantic')

def write_hf_checkpoint(cfg:AAVSConfig, folder:Path) -> Path:
    "A random Hugging Face Mask2Former of `cfg`'s architecture shaped like the ADE20k one (100 queries, 150 labels), saved."
    transformers = pytest.importorskip('transformers')
    hf_cfg = hf_mask2former_config(replace(cfg, num_queries=100), VisualEncoder(cfg.backbone, cfg.backbone_kwargs, adapters=False))
    hf_cfg.num_labels = 150
    torch.manual_seed(0)
    transformers.Mask2FormerForUniversalSegmentation(hf_cfg).save_pretrained(folder)
    return folder

# --------------------------------------------------------------------------------------------------------------------
# The official trainable list (train.py `set_params`) from the reference key lists, in our names.

OFFICIAL_TRAINABLE = {'binary': ('queries_embedder', 'queries_features', 'avs_adapt', 'class_predictor', 'audio_proj'),
                      'semantic': ('queries_embedder', 'avs_adapt', 'class_predictor', 'audio_proj',
                                   'audio_embed', 'silence_embed', 'uncertain_embed')}

def official_keys(task:str, pixel_layers:int|None=None, decoder_layers:int|None=None, depths=None) -> dict:
    "Official key -> shape from the reference list; layer counts optionally expanded to another configuration."
    rows = [line.split('\t') for line in (REFERENCE/f"aavs_stage{1 if task == 'binary' else 2}_keys.txt").read_text().splitlines() if line]
    keys = {k: tuple(int(x) for x in re.findall(r'\d+', s)) for k, s, _ in rows}
    def expand(pattern, count):
        out = {}
        for k, s in keys.items():
            m = re.search(pattern, k)
            if m is None or count is None: out[k] = s; continue
            if m[1] != '0': continue
            for i in range(count): out[k[:m.start(1)] + str(i) + k[m.end(1):]] = s
        return out
    keys = expand(r'pixel_level_module\.decoder\.encoder\.layers\.(\d+)\.', pixel_layers)
    keys = expand(r'transformer_module\.decoder\.layers\.(\d+)\.', decoder_layers)
    if depths is not None:   # swin_adapt keys for every block of every stage
        adapt = {k: s for k, s in keys.items() if 'swin_adapt' in k}
        keys = {k: s for k, s in keys.items() if 'swin_adapt' not in k}
        for k, s in adapt.items():
            m = re.search(r'encoder\.layers\.(\d+)\.blocks\.(\d+)\.', k)
            if m[2] != '0': continue
            for b in range(depths[int(m[1])]): keys[k[:m.start(2)] + str(b) + k[m.end(2):]] = None
    return keys

def to_ours(key:str) -> str:
    "Our parameter name for an official AdaptiveAVS key (the parts the official code trains, and the Swin adapters)."
    if key.startswith('audio_proj.'): return 'audio_queries.' + key
    if m := re.fullmatch(r'model\.model\.transformer_module\.(audio|silence|uncertain)_embed\.weight', key): return f'robust_keys.{m[1]}_embed.weight'
    if m := re.fullmatch(r'model\.model\.pixel_level_module\.encoder\.encoder\.layers\.(\d+)\.blocks\.(\d+)\.'
                         r'(attention\.output\.swin_adapt_1|output\.swin_adapt_3)\.(0|2)\.(weight|bias)', key):
        where = 'attn.proj' if m[3].endswith('_1') else 'mlp.fc2'
        return f"backbone.body.layers_{m[1]}.blocks.{m[2]}.{where}.adapter.{'down' if m[4] == '0' else 'up'}.{m[5]}"
    renamed = list(hf_state_to_aavs({key[len('model.'):]: torch.zeros(1)}))
    assert len(renamed) == 1, key
    return renamed[0]

def official_trainable(task:str, **expand) -> tuple[set, set]:
    "(names the official code trains from the start, names of its Swin adapters), in our names."
    keys = official_keys(task, **expand)
    start = {to_ours(k) for k in keys if any(s in k for s in OFFICIAL_TRAINABLE[task])}
    adapters = {to_ours(k) for k in keys if 'swin_adapt' in k}
    return start, adapters

def trainable(model) -> set: return {n for n, p in model.named_parameters() if p.requires_grad}

# The reference lists' small configuration: Swin embed 32, depths 2-2-2-2, window 12; 2 deformable layers (FFN 256),
# 4 masked-attention layers (FFN 256); 8 (stage 1) / 12 (stage 2) queries.
SMALL = dict(backbone_kwargs=dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=12, img_size=384,
                                  drop_path_rate=0.3),
             pixel_decoder_layers=2, pixel_decoder_ffn=256, decoder_layers=4, dim_feedforward=256)

# --------------------------------------------------------------------------------------------------------------------
# 1, 2: a preset that expects pretrained weights refuses to build without them.

def test_paper_refuses_to_build_without_weights():
    from avss_nb.models import build
    for task in ('binary', 'semantic'):
        with pytest.raises(ValueError, match=r'hf_checkpoint=.*from_scratch=True'): build_aavs('paper', task)
        with pytest.raises(ValueError, match='hf_checkpoint='): build('aavs', 'paper', task)
    with pytest.raises(ValueError, match=r'audio_weights=.*from_scratch=True'): build_aavs('paper', hf_checkpoint='ade')
    # any preset: freezing parameters no file supplied is refused, and names what supplies them
    with pytest.raises(ValueError, match='hf_checkpoint='): build_aavs('smoke', 'binary', freeze='official')
    with pytest.raises(ValueError, match='audio_weights='):
        build_aavs('smoke', 'binary', freeze='frozen_backbone', audio_encoder='vggish', backbone_weights=None, adapters=False)

def test_paper_uses_vggish_and_from_scratch_is_explicit():
    cfg = AAVSConfig.from_preset('paper')
    assert cfg.audio_encoder == 'vggish' and cfg.pretrained and not cfg.from_scratch
    small = build_aavs('smoke', 'binary', audio_encoder='vggish', from_scratch=True, freeze='official')   # opted in: builds
    assert type(small.audio_encoder).__name__ == 'VGGish'

# 3: a loaded VGGish stays frozen.

def test_loaded_vggish_stays_frozen(vggish_file):
    enc = build_audio_encoder('vggish', vggish_file)
    freeze(enc, None)
    assert not any(p.requires_grad for p in enc.parameters())
    model = build_aavs('smoke', 'binary', audio_encoder='vggish', audio_weights=str(vggish_file), freeze='none')
    assert not any(p.requires_grad for p in model.audio_encoder.parameters())
    assert all(p.requires_grad for n, p in model.named_parameters() if not n.startswith('audio_encoder.'))
    tuned = build_aavs('smoke', 'binary', audio_encoder='vggish', audio_weights=str(vggish_file), audio_trainable=True)
    assert all(p.requires_grad for p in tuned.audio_encoder.parameters())

# 4: adapters restart with the official init; measured as the relative change of a frozen block's output.

def block_perturbation(reinit) -> float:
    "||block(x) with re-initialised adapters - block(x) with identity adapters|| / ||block(x) - x|| for Swin-B's first block."
    torch.manual_seed(0)
    enc = VisualEncoder('swin_base_patch4_window12_384', dict(depths=(2, 2, 2, 2), img_size=384))   # Swin-B widths, fewer blocks
    enc.eval()
    block = enc.body.layers_0.blocks[0]
    x = torch.randn(1, 96, 96, 128)
    with torch.no_grad():
        before = block(x)
        reinit(enc)
        after = block(x)
    return ((after - before).norm() / (before - x).norm()).item()

class _Holder(nn.Module):
    def __init__(self, enc): super().__init__(); self.backbone = enc
    def forward(self, batch): raise NotImplementedError

def _trainer_switch(enc):
    "The trainer's own phase-B switch (official schedule) applied to `enc`."
    t = Trainer(_Holder(enc), lambda o, b: None, [0], None,
                TrainConfig(epochs=2, batch_size=1, schedule='official', device='cpu', progress=False, tensorboard=False))
    t._setup_phase('adapters_frozen', fresh=True)
    t._switch_to_adapters()
    assert t.phase == 'adapters' and all(p.requires_grad for n, p in enc.named_parameters() if '.adapter.' in n)

def test_adapter_reinit_perturbs_blocks_as_the_official():
    torch_default = block_perturbation(lambda enc: reset_adapters(enc, 'default'))
    official = block_perturbation(lambda enc: reset_adapters(enc, 'official'))
    phase_b = block_perturbation(_trainer_switch)
    print(f"relative block perturbation: PyTorch default {torch_default:.3f}, official {official:.3f}, trainer phase B {phase_b:.3f}")
    assert torch_default > 0.1                      # the defect: PyTorch's init moves each frozen block by ~25%
    assert official < 0.05 and phase_b < 0.05       # HF's N(0, 0.02): a couple of percent

def test_attention_adapters_have_the_official_init():
    model = build_aavs('smoke', 'binary', attn_adapters='replace', hidden_dim=256, num_heads=8, from_scratch=True)
    pixel = model.pixel_decoder.layers[0].self_attn.avs_adapt
    dec = model.decoder.layers[0].self_attn.avs_adapt
    assert abs(pixel[0].weight.std().item() - 0.02) < 2e-3 and pixel[0].bias.abs().max() == 0   # HF pixel-level init
    bound = (6 / (256 + 64)) ** 0.5                                                               # Xavier-uniform 256 -> 64
    assert abs(dec[0].weight.abs().max().item() - bound) < 0.01 * bound and dec[0].bias.abs().max() == 0

# 5: robust-key embeddings.

def test_robust_key_embeddings_start_small():
    rk = RobustKeys(256)
    w = torch.cat([rk.silence_embed.weight, rk.uncertain_embed.weight, rk.audio_embed.weight])
    assert abs(w.std().item() - 0.02) < 3e-3

# 6: the official recipe values at `paper`.

def test_paper_recipe_values():
    p = get_preset('paper')
    assert (p.drop_path_rate, p.grad_clip, p.grad_clip_semantic) == (0.3, 0.01, 0.0)
    for schedule in SCHEDULES:
        assert TrainConfig.from_preset('paper', 'binary', schedule=schedule).grad_clip == 0.01
        assert TrainConfig.from_preset('paper', 'semantic', schedule=schedule).grad_clip == 0.0
    cfg = AAVSConfig.from_preset('paper')
    enc = VisualEncoder(cfg.backbone, dict(cfg.backbone_kwargs, depths=(2, 2, 2, 2)))   # the rate reaches timm's blocks
    assert abs(enc.body.layers_3.blocks[-1].drop_path1.drop_prob - 0.3) < 1e-6

# 7 (fast): the trainable parameters against the official list, at the reference lists' configuration.

@needs_reference
@pytest.mark.parametrize('task', ['binary', 'semantic'])
def test_trainable_parameters_match_the_official_list(task):
    cfg = AAVSConfig.from_preset('paper', task, priors='all' if task == 'semantic' else None, from_scratch=True,
                                 num_queries=8 if task == 'binary' else 12, **SMALL)
    model = build_aavs(config=cfg)
    start, adapters = official_trainable(task)
    ours = trainable(model)
    assert ours - adapters == start, (sorted(ours - adapters - start), sorted(start - ours))
    assert ours & adapters == adapters
    shapes = {to_ours(k): s for k, s in official_keys(task).items() if any(r in k for r in OFFICIAL_TRAINABLE[task])}
    params = dict(model.named_parameters())
    assert all(tuple(params[n].shape) == s for n, s in shapes.items())
    t = Trainer(model, lambda o, b: None, [0], None,
                TrainConfig.from_preset('paper', task, schedule='official', device='cpu', progress=False, tensorboard=False))
    t._setup_phase('adapters_frozen', fresh=True)
    assert trainable(model) == start                       # phase A: exactly the official set
    t._switch_to_adapters()
    assert trainable(model) == start | adapters            # phase B: plus the Swin adapters

# 7: Swin-B / window 12 / 384 px, official freeze policy and schedule, VGGish, from files this test writes.
# Not marked slow: about 25 s (binary) and 40 s (semantic) of CPU time on one core, peak RSS about 6.5 GiB
# (measured on the 2-core development machine, torch threads 1).

def paper_items(n:int, frames:int, size:int, binary:bool):
    g = torch.Generator().manual_seed(0)
    items = []
    for i in range(n):
        target = torch.zeros(frames, size, size, dtype=torch.int64)
        target[:, size // 4: size // 2, size // 4: 3 * size // 4] = 1 if binary else 5
        items.append(dict(frames=torch.randn(frames, 3, size, size, generator=g), target=target,
                          has_gt=torch.ones(frames, dtype=torch.bool), audio=torch.randn(frames, 96, 64, generator=g).abs(),
                          prior=(target > 0).float(), id=f'paper{i}'))
    return items

@needs_reference
@pytest.mark.parametrize('task', ['binary', 'semantic'])
def test_paper_shaped_model_trains_on_cpu(task, ade_checkpoint, vggish_file):
    "Scaled down only in data: 1 video of 2 frames (official: 5 or 10 frames), 2-3 steps; the model is the paper's."
    from avss_nb.models import build, criterion_for
    priors = 'all' if task == 'semantic' else None
    cfg = AAVSConfig.from_preset('paper', task, priors)
    assert (cfg.backbone, cfg.image_size, cfg.backbone_kwargs['drop_path_rate']) == ('swin_base_patch4_window12_384', 384, 0.3)
    model = build('aavs', 'paper', task, priors, hf_checkpoint=str(ade_checkpoint), audio_weights=str(vggish_file))
    assert type(model.audio_encoder).__name__ == 'VGGish'
    assert model.backbone.body.layers_2.blocks.__len__() == 18 and model.cfg.freeze.startswith('official')
    start, adapters = official_trainable(task, pixel_layers=cfg.pixel_decoder_layers, decoder_layers=cfg.decoder_layers,
                                         depths=(2, 2, 18, 2))
    assert trainable(model) - adapters == start and adapters <= trainable(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if n not in adapters}
    seen = {}
    def watch(tr, event):
        if event == 'step': seen.setdefault(tr.phase, []).append((tr.last_loss, trainable(tr.model)))
    epochs = 2 if task == 'binary' else 3   # phase B from epoch epochs//2 (AVS) or epochs//3 (AVSS): one phase-A step
    config = TrainConfig.from_preset('paper', task, schedule='official', epochs=epochs, device='cpu', progress=False,
                                     tensorboard=False, seed=3407)
    trainer = Trainer(model, criterion_for(model), paper_items(1, 2, 384, task == 'binary'), None, config, task=task,
                      callbacks=[watch])
    trainer.fit()
    assert [len(seen.get(p, [])) for p in ('adapters_frozen', 'adapters')] == [1, epochs - 1]
    assert all(torch.isfinite(torch.tensor(loss)) for rows in seen.values() for loss, _ in rows)
    assert seen['adapters_frozen'][0][1] == start and seen['adapters'][0][1] == start | adapters
    for n, p in model.named_parameters():
        assert p.dtype == torch.float32
        if n in before and n not in start: assert torch.equal(p.detach(), before[n]), f'{n} is frozen in the official code but changed'
    params = dict(model.named_parameters())
    assert all(not torch.equal(params[n].detach(), before[n]) for n in ('audio_queries.audio_proj.0.weight', 'decoder.class_predictor.weight'))
