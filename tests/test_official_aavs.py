"""Official Stepping Stones AAVS weights in, the official outputs out.

The reference is written here, independently of `avss_nb`: the installed transformers' Mask2Former (the upstream base
of the official fork, transformers 4.35.2 plus patches) with the patches the facts file describes
(`shared/reference/official-checkpoints/README.md`, section 2): residual Swin adapters, `avs_adapt` replacing
(stage 1) or following (stage 2) the attention output projections, audio queries, and in stage 2 mask fusion, robust
audio-aware keys and the attention-mask initialisation. The official-layout state dicts have exactly the keys and shapes
of the facts' key lists (`tests/data/official/`, copied from `aavs_stage{1,2}_keys.txt`), with random values.
"""
import math, os, re, time, types
from dataclasses import replace
from pathlib import Path
import pytest, torch
import torch.nn as nn
import torch.nn.functional as F

transformers = pytest.importorskip('transformers')   # test-only dependency
from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, SwinConfig
from avss_nb.official_aavs import load_official_aavs, OfficialAAVS

KEY_LISTS = Path(__file__).resolve().parent / 'data' / 'official'
TOL = 1e-4

# ----------------------------------------------------------------------------------------------- official layout
def read_key_list(stage):
    "[(key, shape, dtype)] of the facts' key list."
    rows = []
    for line in (KEY_LISTS / f'aavs_stage{stage}_keys.txt').read_text().splitlines():
        if line.strip():
            key, shape, dtype = line.split('\t')
            rows.append((key, tuple(int(s) for s in re.findall(r'\d+', shape)), dtype))
    return rows

def official_reference_config(stage, official=False):
    "Mask2FormerConfig of the key lists' small model, or (official=True) of the official config.json."
    labels = 2 if stage == 1 else 71
    if official:
        swin = SwinConfig(image_size=384, embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=12,
                          drop_path_rate=0.3, out_features=['stage1', 'stage2', 'stage3', 'stage4'])
        sizes = dict(encoder_layers=6, encoder_feedforward_dim=1024, decoder_layers=10, dim_feedforward=2048,
                     num_queries=30 if stage == 1 else 100)
    else:
        swin = SwinConfig(image_size=384, embed_dim=32, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8], window_size=12,
                          drop_path_rate=0.3, out_features=['stage1', 'stage2', 'stage3', 'stage4'])
        sizes = dict(encoder_layers=2, encoder_feedforward_dim=256, decoder_layers=5, dim_feedforward=256,
                     num_queries=8 if stage == 1 else 12)
    return Mask2FormerConfig(backbone_config=swin, hidden_dim=256, feature_size=256, mask_feature_size=256,
                             num_attention_heads=8, dropout=0.0, id2label={i: str(i) for i in range(labels)},
                             label2id={str(i): i for i in range(labels)}, **sizes)

_V4_TO_V5 = [('attention.self.query.', 'attention.q_proj.'), ('attention.self.key.', 'attention.k_proj.'),
             ('attention.self.value.', 'attention.v_proj.'), ('attention.output.dense.', 'attention.o_proj.'),
             ('attention.self.relative_position_bias_table', 'attention.relative_position_bias.relative_position_bias_table'),
             ('intermediate.dense.', 'mlp.fc1.'), ('output.dense.', 'mlp.fc2.')]
SWIN = 'model.model.pixel_level_module.encoder.'

def v4_to_v5(key):
    "An official (transformers 4.x) key in the installed transformers' names."
    if key.startswith(SWIN) and not key.startswith(SWIN + 'hidden_states_norms'):
        key = SWIN + 'swin.' + key[len(SWIN):]
        for old, new in _V4_TO_V5: key = key.replace(old, new)
    return key

def v5_to_v4(key):
    if key.startswith(SWIN + 'swin.'):
        key = SWIN + key[len(SWIN + 'swin.'):]
        for old, new in _V4_TO_V5: key = key.replace(new, old)
    return key

def official_layout_rows(config, stage):
    "Keys and shapes of an official state dict: Hugging Face's, in 4.x names, plus the official additions."
    hf = Mask2FormerForUniversalSegmentation(config)
    rows = [(v5_to_v4('model.' + k), tuple(v.shape), 'float32')
            for k, v in hf.state_dict().items() if 'swin.layernorm' not in k]
    w = config.backbone_config.window_size
    for i, layer in enumerate(hf.model.pixel_level_module.encoder.swin.encoder.layers):
        for j, block in enumerate(layer.blocks):
            d, b = block.attention.o_proj.in_features, f'{SWIN}encoder.layers.{i}.blocks.{j}.'
            rows.append((b + 'attention.self.relative_position_index', (w * w, w * w), 'int64'))
            for name in ('attention.output.swin_adapt_1', 'output.swin_adapt_3'):
                rows += [(f'{b}{name}.0.weight', (d // 4, d), 'float32'), (f'{b}{name}.0.bias', (d // 4,), 'float32'),
                         (f'{b}{name}.2.weight', (d, d // 4), 'float32'), (f'{b}{name}.2.bias', (d,), 'float32')]
    adapt = lambda p: [(p + '0.weight', (64, 256), 'float32'), (p + '0.bias', (64,), 'float32'),
                       (p + '2.weight', (256, 64), 'float32'), (p + '2.bias', (256,), 'float32')]
    for n in range(config.encoder_layers): rows += adapt(f'model.model.pixel_level_module.decoder.encoder.layers.{n}.self_attn.avs_adapt.')
    for n in range(config.decoder_layers - 1): rows += adapt(f'model.model.transformer_module.decoder.layers.{n}.self_attn.avs_adapt.')
    if stage == 2: rows += [(f'model.model.transformer_module.{e}_embed.weight', (1, 256), 'float32') for e in ('audio', 'silence', 'uncertain')]
    rows += [('audio_proj.0.weight', (512, 128), 'float32'), ('audio_proj.0.bias', (512,), 'float32'),
             ('audio_proj.2.weight', (256, 512), 'float32'), ('audio_proj.2.bias', (256,), 'float32')]
    return rows

def rel_index(w):
    "Swin's relative position index of a w x w window."
    ys, xs = torch.meshgrid(torch.arange(w), torch.arange(w), indexing='ij')
    c = torch.stack([ys.flatten(), xs.flatten()])
    d = (c[:, :, None] - c[:, None, :]).permute(1, 2, 0) + (w - 1)
    return d[..., 0] * (2 * w - 1) + d[..., 1]

def random_state(rows, seed=0):
    "Random values for every row, at scales where nothing saturates; index buffers get their true values."
    g, state = torch.Generator().manual_seed(seed), {}
    for key, shape, dtype in rows:
        last = key.rsplit('.', 1)[-1]
        if key.endswith('relative_position_index'): v = rel_index(math.isqrt(shape[0]))
        elif key.endswith('criterion.empty_weight'): v = torch.ones(shape); v[-1] = 0.1
        elif re.search(r'(norm[a-z_]*|stage\d|projections\.\d\.1|adapter_1\.1|layer_1\.1)\.weight$', key): v = 1 + 0.2 * torch.randn(shape, generator=g)
        elif last in ('bias', 'in_proj_bias'): v = 0.2 * torch.randn(shape, generator=g)
        elif len(shape) >= 2 and last in ('weight', 'in_proj_weight'): v = torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
        else: v = torch.randn(shape, generator=g)                     # embeddings, level embeddings, bias tables
        state[key] = v
    return state

def official_layout(config, stage, seed=0):
    "A random official-layout state dict for `config` (used for the Swin-B timing)."
    return random_state(official_layout_rows(config, stage), seed)

# ----------------------------------------------------------------------------------------------- the reference
class Residual(nn.Module):
    "h = inner(x); h + adapt(h): swin_adapt_1 / swin_adapt_3."
    def __init__(self, inner, adapt): super().__init__(); self.inner, self.adapt = inner, adapt
    def forward(self, x): h = self.inner(x); return h + self.adapt(h)

def bottleneck(d): return nn.Sequential(nn.Linear(d, d // 4), nn.ReLU(), nn.Linear(d // 4, d))

class OfficialReference(nn.Module):
    "AdaptiveAVS as the facts describe it, on the installed Mask2FormerForUniversalSegmentation."
    def __init__(self, stage, state, config):
        super().__init__()
        self.stage, self.model = stage, Mask2FormerForUniversalSegmentation(config)
        self.audio_proj = nn.Sequential(nn.Linear(128, 512), nn.ReLU(), nn.Linear(512, 256))
        extra = ('swin_adapt', 'avs_adapt', 'audio_proj.', 'audio_embed.', 'silence_embed.', 'uncertain_embed.', 'relative_position_index')
        hf = {v4_to_v5(k)[len('model.'):]: v for k, v in state.items() if not any(e in k for e in extra)}
        missing, unexpected = self.model.load_state_dict(hf, strict=False)
        assert unexpected == [] and all('swin.layernorm' in m for m in missing), (missing, unexpected)
        load = lambda module, prefix: module.load_state_dict({n: state[prefix + n] for n in module.state_dict()})
        for i, layer in enumerate(self.model.model.pixel_level_module.encoder.swin.encoder.layers):
            for j, block in enumerate(layer.blocks):
                d, b = block.attention.o_proj.in_features, f'{SWIN}encoder.layers.{i}.blocks.{j}.'
                a1, a3 = bottleneck(d), bottleneck(d)
                load(a1, b + 'attention.output.swin_adapt_1.'); load(a3, b + 'output.swin_adapt_3.')
                block.attention.o_proj = Residual(block.attention.o_proj, a1)     # after the attention output dense
                block.mlp.fc2 = Residual(block.mlp.fc2, a3)                       # after the MLP's fc2
        def avs_adapt(attn, name, prefix):
            a = bottleneck(256); load(a, prefix + 'avs_adapt.')
            setattr(attn, name, a if stage == 1 else nn.Sequential(getattr(attn, name), a))   # replace / follow
        for n, layer in enumerate(self.model.model.pixel_level_module.decoder.encoder.layers):
            avs_adapt(layer.self_attn, 'output_proj', f'model.model.pixel_level_module.decoder.encoder.layers.{n}.self_attn.')
        for n, layer in enumerate(self.model.model.transformer_module.decoder.layers):
            avs_adapt(layer.self_attn, 'out_proj', f'model.model.transformer_module.decoder.layers.{n}.self_attn.')
        load(self.audio_proj, 'audio_proj.')
        tm = self.model.model.transformer_module
        if stage == 2:
            for name in ('audio_embed', 'silence_embed', 'uncertain_embed'):
                setattr(tm, name, nn.Embedding(1, 256)); load(getattr(tm, name), f'model.model.transformer_module.{name}.')
        tm.forward, tm.aavs = types.MethodType(_transformer_forward, tm), {}
        self.eval()

    @torch.no_grad()
    def forward(self, pixel_values, feat_aud, audio_boost_mask=None):
        prompt = self.audio_proj(feat_aud.view(1, -1, 128))                               # [1, T, 256]
        self.model.model.transformer_module.aavs = dict(prompt=prompt, prior=audio_boost_mask)
        inner = {}
        hook = self.model.model.register_forward_hook(lambda m, a, o: inner.update(states=o.transformer_decoder_intermediate_states))
        try: out = self.model(pixel_values=pixel_values.view(-1, 3, 384, 384), output_auxiliary_logits=True, output_hidden_states=True)
        finally: hook.remove()
        cls, masks = out.class_queries_logits, out.masks_queries_logits
        if self.stage == 1:
            probs = F.interpolate(masks, size=(384, 384), mode='bilinear', align_corners=False).sigmoid()
            seg = torch.einsum('bqc,bqhw->bchw', cls.softmax(-1)[..., :2], probs)
            post = F.interpolate(seg, size=(224, 224), mode='bilinear', align_corners=False)
        else:
            post = torch.stack(transformers.Mask2FormerImageProcessor().post_process_semantic_segmentation(
                out, target_sizes=[(224, 224)] * cls.shape[0]))
        return dict(class_queries_logits=cls, masks_queries_logits=masks, auxiliary_logits=out.auxiliary_logits, postprocessed=post,
                    encoder_hidden_states=out.encoder_hidden_states, pixel_decoder_hidden_states=out.pixel_decoder_hidden_states,
                    pixel_decoder_last_hidden_state=out.pixel_decoder_last_hidden_state,
                    transformer_decoder_last_hidden_state=out.transformer_decoder_last_hidden_state, audio_emb=prompt,
                    transformer_decoder_intermediate_states=inner['states'])

def _transformer_forward(self, multi_scale_features, mask_features, output_hidden_states=False, output_attentions=False):
    "Mask2FormerTransformerModule.forward with the official patches."
    prompt, prior = self.aavs['prompt'], self.aavs['prior']
    resize = lambda size: F.interpolate(prior.float()[:, None], size=size, mode='bilinear', align_corners=False)
    if prior is not None: mask_features = mask_features + resize(mask_features.shape[-2:])   # mask fusion, every channel
    feats, poss, sizes = [], [], []
    for i in range(self.num_feature_levels):
        x = multi_scale_features[i]
        sizes.append(x.shape[-2:])
        pos = self.position_embedder(x.shape, x.device, x.dtype, None).flatten(2)            # [B, D, HW]
        if prior is not None:                                                             # robust audio-aware keys
            p = resize(x.shape[-2:]).flatten(2)                                           # [B, 1, HW]
            pos = (pos + self.silence_embed.weight[0][None, :, None] * (p <= 0.4) + self.audio_embed.weight[0][None, :, None] * (p >= 0.6)
                   + self.uncertain_embed.weight[0][None, :, None] * ((p > 0.4) & (p < 0.6)))
        poss.append(pos.permute(2, 0, 1))
        feats.append((self.input_projections[i](x).flatten(2) + self.level_embed.weight[i][None, :, None]).permute(2, 0, 1))
    batch = feats[0].shape[1]
    query_embeddings = self.queries_embedder.weight.unsqueeze(1).repeat(1, batch, 1)              # [Q, B, D]
    a = prompt[0]                                                                             # [T, D]; T is the batch
    sim = F.cosine_similarity(self.queries_embedder.weight[:, None, :], a[None], dim=-1)      # [Q, T], against the position embedding
    query_features = self.queries_features.weight.unsqueeze(1).repeat(1, batch, 1) + sim[..., None] * a[None]
    if prior is not None:                                                                     # attention-mask initialisation
        predictor = self.decoder.mask_predictor
        original = predictor.forward
        def first(outputs, pixel_embeddings, size=None):
            predictor.forward = original
            masks, _ = original(outputs, pixel_embeddings, size)
            blocked = resize(size).flatten(2) < 0.5                                           # [B, 1, HW], every query and head
            return masks, blocked[:, None].expand(-1, predictor.num_heads, outputs.shape[0], -1).flatten(0, 1)
        predictor.forward = first
    return self.decoder(inputs_embeds=query_features, multi_stage_positional_embeddings=poss, pixel_embeddings=mask_features,
                        encoder_hidden_states=feats, query_position_embeddings=query_embeddings, feature_size_list=sizes,
                        output_hidden_states=output_hidden_states, output_attentions=output_attentions, return_dict=True)

# ----------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope='module', params=[1, 2], ids=['stage1', 'stage2'])
def case(request):
    stage = request.param
    state = random_state(read_key_list(stage))
    torch.manual_seed(0)
    return stage, state, OfficialReference(stage, state, official_reference_config(stage)), load_official_aavs(f'aavs-stage{stage}', state)

def inputs(stage, prior='binary', t=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    out = dict(pixel_values=torch.randn(t, 3, 384, 384, generator=g), feat_aud=torch.randn(t, 128, generator=g).relu())
    if stage == 2:
        if prior == 'binary': p = (torch.rand(t, 224, 224, generator=g) > 0.5).float()        # {0,1}, like the stage-1 PNGs
        elif prior == 'gray': p = torch.randint(0, 256, (t, 224, 224), generator=g).float() / 255   # k/255 gray levels
        else:                                                                                 # a silent frame and a blob
            yy, xx = torch.meshgrid(torch.arange(224), torch.arange(224), indexing='ij')
            p = torch.stack([torch.zeros(224, 224), ((yy - 90) ** 2 + (xx - 130) ** 2 < 55 ** 2).float()])[:t]
        out['audio_boost_mask'] = p
    return out

def diff(a, b): return (a.float() - b.float()).abs().max().item()

def assert_same(theirs, mine):
    "Final, per-layer and post-processed predictions, and the intermediates, within TOL."
    for k in ('class_queries_logits', 'masks_queries_logits', 'postprocessed', 'pixel_decoder_last_hidden_state',
              'transformer_decoder_last_hidden_state', 'audio_emb'):
        assert mine[k].shape == theirs[k].shape, k
        assert diff(theirs[k], mine[k]) <= TOL, (k, diff(theirs[k], mine[k]))
    layers = theirs['auxiliary_logits'] + [dict(class_queries_logits=theirs['class_queries_logits'], masks_queries_logits=theirs['masks_queries_logits'])]
    assert len(mine['layer_logits']) == len(layers) and len(mine['auxiliary_logits']) == len(theirs['auxiliary_logits'])
    for i, (a, b) in enumerate(zip(layers, mine['layer_logits'])):
        for k in ('class_queries_logits', 'masks_queries_logits'): assert diff(a[k], b[k]) <= TOL, (i, k, diff(a[k], b[k]))
    for name in ('encoder_hidden_states', 'pixel_decoder_hidden_states', 'transformer_decoder_intermediate_states'):
        assert len(theirs[name]) == len(mine[name])
        for a, b in zip(theirs[name], mine[name]): assert a.shape == b.shape and diff(a, b) <= TOL, name

# ----------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize('stage', [1, 2])
def test_reference_has_the_official_layout(stage):
    "The reference (HF + the official additions) has exactly the listed keys, shapes and dtypes."
    assert sorted(official_layout_rows(official_reference_config(stage), stage)) == sorted(read_key_list(stage))

def test_every_key_consumed(case):
    "Every official weight lands in our model: as many values as our (non-VGGish) parameters, all of them used."
    stage, state, _, model = case
    assert isinstance(model, OfficialAAVS) and not model.training
    n_official = sum(v.numel() for k, v in state.items() if not k.endswith(('relative_position_index', 'criterion.empty_weight')))
    ours = {k: v for k, v in model.state_dict().items() if not k.startswith('audio_encoder.')}
    assert n_official == sum(v.numel() for v in ours.values())
    assert model.cfg.num_queries == state['model.model.transformer_module.queries_features.weight'].shape[0]
    assert model.cfg.decoder_layers == 4 and model.cfg.attn_adapters == ('replace' if stage == 1 else 'after')
    # the values themselves: the content queries and the class head come across unchanged
    assert torch.equal(model.audio_queries.queries_features.weight, state['model.model.transformer_module.queries_features.weight'])
    assert torch.equal(model.decoder.class_predictor.bias, state['model.class_predictor.bias'])

@pytest.mark.parametrize('prior', ['binary', 'gray', 'silent'])
def test_outputs_match_official(case, prior):
    "Our official_forward equals the reference: final, per-layer and post-processed outputs, for both stages and each prior."
    stage, _, reference, model = case
    if stage == 1 and prior != 'binary': pytest.skip('stage 1 takes no prior')
    x = inputs(stage, prior)
    with torch.no_grad(): assert_same(reference(**x), model.official_forward(**x))

def test_each_official_behaviour_matters(case):
    "The comparison can fail: undoing any one official behaviour in our model moves the outputs well past the tolerance."
    stage, state, reference, model = case
    x = inputs(stage, 'gray')                                   # gray levels: every key region and threshold in play
    with torch.no_grad(): theirs = reference(**x)['masks_queries_logits']
    def moved(change):
        m = load_official_aavs(f'aavs-stage{stage}', state)
        change(m)
        with torch.no_grad(): return diff(theirs, m.official_forward(**x)['masks_queries_logits'])
    def adapters(mode):
        def f(m):
            for mod in m.modules():
                if hasattr(mod, 'adapter_mode'): mod.adapter_mode = mode
        return f
    def no_swin_adapters(m):
        for name, p in m.backbone.named_parameters():
            if '.adapter.up.' in name: p.data.zero_()
    changes = {'attention adapters': adapters('after' if stage == 1 else 'replace'), 'swin adapters': no_swin_adapters,
               'audio queries': lambda m: setattr(m.audio_queries, 'mode', 'repeat')}
    if stage == 2:
        prior = lambda **kw: (lambda m: setattr(m, 'cfg', replace(m.cfg, priors=replace(m.cfg.priors, **kw))))
        changes.update({'mask fusion': prior(mask_fusion=False), 'attention init': prior(attn_init=False),
                        'robust keys': lambda m: setattr(m, 'robust_keys', None),
                        'key thresholds': lambda m: setattr(m.robust_keys, 'low', 0.1)})
    for name, change in changes.items(): assert moved(change) > 10 * TOL, name
    # the timm Swin partition rule too (Hugging Face's SwinBackbone keeps shifted windows at every stage)
    m = load_official_aavs(f'aavs-stage{stage}', state, backbone_kwargs={**model.cfg.backbone_kwargs, 'always_partition': False})
    with torch.no_grad(): assert diff(theirs, m.official_forward(**x)['masks_queries_logits']) > 10 * TOL

def test_transformers5_names(case):
    "A state dict in transformers 5.x names (Swin renamed, no index buffers, SwinModel's unused norm) loads the same weights."
    stage, state, _, model = case
    renamed = {v4_to_v5(k): v for k, v in state.items() if not k.endswith('relative_position_index')}
    renamed = {k.replace('attention.output.swin_adapt_1', 'attention.swin_adapt_1'): v for k, v in renamed.items()}
    renamed[SWIN + 'swin.layernorm.weight'], renamed[SWIN + 'swin.layernorm.bias'] = torch.ones(256), torch.zeros(256)
    assert any('.swin.encoder.layers.0.blocks.0.attention.q_proj.weight' in k for k in renamed)
    other = load_official_aavs(f'aavs-stage{stage}', {'module.' + k: v for k, v in renamed.items()})
    theirs = other.state_dict()
    for k, v in model.state_dict().items():
        if not k.startswith('audio_encoder.'): assert torch.equal(v, theirs[k]), k

def test_config_json(case):
    "The official config.json (as a dict) gives the same model; one that does not fit the weights is refused, naming keys."
    stage, state, _, model = case
    cfg = official_reference_config(stage).to_dict()
    assert load_official_aavs(f'aavs-stage{stage}', state, cfg).cfg == model.cfg
    # our own extras may ride along in the dict (how `avss-nb evaluate --official --config` passes the VGGish weights)
    assert load_official_aavs(f'aavs-stage{stage}', state, {**cfg, 'audio_encoder': 'small'}).cfg.audio_encoder == 'small'
    deeper = {**cfg, 'backbone_config': {**cfg['backbone_config'], 'depths': [2, 2, 4, 2]}}
    with pytest.raises(KeyError, match=r'missing keys.*layers\.2\.blocks\.2\.'): load_official_aavs(f'aavs-stage{stage}', state, deeper)

def test_clear_errors(case):
    "Unknown, missing and misshapen keys, a wrong kind, a bad index buffer and bad inputs are errors that name them."
    stage, state, _, model = case
    kind = f'aavs-stage{stage}'
    with pytest.raises(KeyError, match=r'unknown keys.*model\.model\.transformer_module\.bogus\.weight'):
        load_official_aavs(kind, {**state, 'model.model.transformer_module.bogus.weight': torch.zeros(1)})
    key = 'model.model.transformer_module.decoder.layers.1.self_attn.avs_adapt.2.bias'
    with pytest.raises(KeyError, match=r'missing keys.*' + re.escape(key)):
        load_official_aavs(kind, {k: v for k, v in state.items() if k != key})
    key = 'model.model.pixel_level_module.decoder.encoder.layers.0.fc2.weight'
    with pytest.raises(KeyError, match=r'wrong shapes.*' + re.escape(key)):
        load_official_aavs(kind, {**state, key: torch.zeros(256, 100)})
    key = SWIN + 'encoder.layers.1.blocks.1.attention.self.relative_position_index'
    with pytest.raises(ValueError, match=re.escape(key)): load_official_aavs(kind, {**state, key: state[key].flip(0)})
    wrong = 'aavs-stage2' if stage == 1 else 'aavs-stage1'
    with pytest.raises((KeyError, ValueError), match='missing keys' if stage == 1 else 'unknown keys'): load_official_aavs(wrong, state)
    with pytest.raises(ValueError, match='unknown official AAVS kind'): load_official_aavs('aavs', state)
    x = inputs(stage)
    with pytest.raises(ValueError, match='384'): model.official_forward(x['pixel_values'][:, :, :224, :224], x['feat_aud'])
    with pytest.raises(ValueError, match='feat_aud'): model.official_forward(x['pixel_values'], x['feat_aud'][:1])
    if stage == 2:
        with pytest.raises(ValueError, match='audio_boost_mask'): model.official_forward(x['pixel_values'], x['feat_aud'])

def test_ordinary_forward_stays_ours(case):
    "forward(batch)/predict keep the project's contract; with the embeddings given they equal official_forward."
    stage, _, _, model = case
    x = inputs(stage)
    batch = dict(frames=x['pixel_values'][None], audio=torch.randn(1, 2, 96, 64))
    if stage == 2: batch['prior'] = x['audio_boost_mask'][None]
    with torch.no_grad():
        out = model(batch)
        pred = model.predict(batch)
        official = model.official_forward(**x)
        same = model({**batch, 'audio_embedding': x['feat_aud']})
    assert out['pred_masks'].shape == (2, model.cfg.num_queries, 96, 96) and pred['labels'].shape == (2, 224, 224)
    assert diff(same['pred_logits'], official['class_queries_logits']) == 0

@pytest.mark.skipif(os.environ.get('AVSS_SLOW_TESTS') != '1', reason='slow: set AVSS_SLOW_TESTS=1 (Swin-B on the CPU)')
@pytest.mark.parametrize('stage', [1, 2])
def test_swin_b_timing(stage):
    "load_official_aavs + official_forward at the official size (Swin-B, 9 layers) on the CPU; reports the time and the gap to the reference."
    config = official_reference_config(stage, official=True)
    state = official_layout(config, stage)
    t0 = time.perf_counter(); model = load_official_aavs(f'aavs-stage{stage}', state, config.to_dict()); t1 = time.perf_counter()
    x = inputs(stage, t=5 if stage == 1 else 2)
    with torch.no_grad(): mine = model.official_forward(**x)
    t2 = time.perf_counter()
    reference = OfficialReference(stage, state, config)
    theirs = reference(**x)
    print(f"\naavs-stage{stage} Swin-B: load {t1 - t0:.1f} s, official_forward ({x['pixel_values'].shape[0]} frames, "
          f"{torch.get_num_threads()} threads) {t2 - t1:.1f} s; max |diff| masks {diff(theirs['masks_queries_logits'], mine['masks_queries_logits']):.2e}, "
          f"classes {diff(theirs['class_queries_logits'], mine['class_queries_logits']):.2e}")
    assert diff(theirs['class_queries_logits'], mine['class_queries_logits']) <= TOL
    assert diff(theirs['masks_queries_logits'], mine['masks_queries_logits']) <= TOL
