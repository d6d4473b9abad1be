"""Official TPAVI checkpoints: the key lists of `reference/official-checkpoints` import exactly, and `official_forward`
equals an independent plain-torch re-implementation of the official `Pred_endecoder.forward` (written here from the
facts file, on the state-dict tensors, without our modules) within 1e-4 in fp32 eval mode on the CPU."""
import json
from pathlib import Path
import pytest
import torch
import torch.nn.functional as F
from avss_nb.official import load_official, read_official_weights, evaluate_official

KEYS = Path(__file__).parent/'official_keys'
TOL = 1e-4

def parse_keys(name):
    "{key: (shape, dtype)} from a facts key list: `key<TAB>(d0, d1, ...)<TAB>dtype`."
    out = {}
    for line in (KEYS/name).read_text().splitlines():
        if not line.strip(): continue
        key, shape, dtype = line.split('\t')
        out[key] = (tuple(int(s) for s in shape.strip('()').split(',') if s.strip()), dtype)
    return out

def make_state(keys, seed):
    "Random values of the listed shapes, scaled so that a random ResNet-50 keeps activations of order 1."
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, (shape, dtype) in keys.items():
        if dtype == 'int64': sd[k] = torch.tensor(7, dtype=torch.long).expand(shape).clone(); continue
        if k.endswith('running_var'): v = torch.rand(shape, generator=g) * 0.5 + 0.75
        elif k.endswith('running_mean'): v = torch.randn(shape, generator=g) * 0.1
        elif len(shape) >= 2:                                   # conv / linear weight: He-like scale
            fan_in = 1
            for s in shape[1:]: fan_in *= s
            v = torch.randn(shape, generator=g) * (2 / fan_in) ** 0.5
        elif '.bn3.' in k and k.endswith('weight'): v = torch.rand(shape, generator=g) * 0.3 + 0.1   # tame residual growth
        elif k.endswith('weight'): v = torch.rand(shape, generator=g) * 0.5 + 0.75   # BN / LayerNorm scale (W_z's BN nonzero: the audio matters)
        else: v = torch.randn(shape, generator=g) * 0.05         # biases
        sd[k] = v.float()
    return sd

# ---------- the official forward, re-implemented from the facts with plain torch ops ----------
def bn(x, sd, p): return F.batch_norm(x, sd[f'{p}.running_mean'], sd[f'{p}.running_var'], sd[f'{p}.weight'], sd[f'{p}.bias'], False, 0.0, 1e-5)

def bottleneck(x, sd, p, stride):
    out = F.relu(bn(F.conv2d(x, sd[f'{p}.conv1.weight']), sd, f'{p}.bn1'))
    out = F.relu(bn(F.conv2d(out, sd[f'{p}.conv2.weight'], stride=stride, padding=1), sd, f'{p}.bn2'))
    out = bn(F.conv2d(out, sd[f'{p}.conv3.weight']), sd, f'{p}.bn3')
    res = bn(F.conv2d(x, sd[f'{p}.downsample.0.weight'], stride=stride), sd, f'{p}.downsample.1') if f'{p}.downsample.0.weight' in sd else x
    return F.relu(out + res)

def layer(x, sd, name, stride):
    i = 0
    while f'{name}.{i}.conv1.weight' in sd:
        x = bottleneck(x, sd, f'{name}.{i}', stride if i == 0 else 1); i += 1
    return x

def classifier(x, sd, p):                                       # Classifier_Module: sum of 4 dilated convs
    out = None
    for j, d in enumerate((3, 6, 12, 18)):
        y = F.conv2d(x, sd[f'{p}.conv2d_list.{j}.weight'], sd[f'{p}.conv2d_list.{j}.bias'], padding=d, dilation=d)
        out = y if out is None else out + y
    return out

def tpavi(x, audio, sd, p):                                     # TPAVIModule, mode 'dot', T hard-coded to 5
    bt, c, h, w = x.shape
    v = x.reshape(-1, 5, c, h, w).permute(0, 2, 1, 3, 4)         # [B,C,5,H,W]
    b = v.shape[0]
    a = F.linear(audio.view(-1, 5, audio.shape[-1]), sd[f'{p}.align_channel.weight'], sd.get(f'{p}.align_channel.bias'))   # [B,5,C]
    amap = a.permute(0, 2, 1)[..., None, None].repeat(1, 1, 1, h, w)
    conv = lambda t, n: F.conv3d(t, sd[f'{p}.{n}.weight'], sd[f'{p}.{n}.bias'])
    g = conv(v, 'g').view(b, 128, -1).permute(0, 2, 1)            # [B,THW,C']
    theta = conv(v, 'theta').view(b, 128, -1).permute(0, 2, 1)    # [B,THW,C']
    phi = conv(amap, 'phi').view(b, 128, -1)                      # [B,C',THW]
    f = theta @ phi
    f = f / f.size(-1)                                            # N = T*H*W, no softmax
    y = (f @ g).permute(0, 2, 1).contiguous().view(b, 128, 5, h, w)
    wy = F.batch_norm(F.conv3d(y, sd[f'{p}.W_z.0.weight'], sd[f'{p}.W_z.0.bias']), sd[f'{p}.W_z.1.running_mean'],
                      sd[f'{p}.W_z.1.running_var'], sd[f'{p}.W_z.1.weight'], sd[f'{p}.W_z.1.bias'], False, 0.0, 1e-5)
    z = F.layer_norm((wy + v).permute(0, 2, 3, 4, 1), (c,), sd[f'{p}.norm_layer.weight'], sd[f'{p}.norm_layer.bias'], 1e-5)
    return z.permute(0, 4, 1, 2, 3).permute(0, 2, 1, 3, 4).reshape(-1, c, h, w), a

def rcu(x, sd, p):                                               # in-place ReLU: the residual is relu(x)
    r = F.relu(x)
    out = F.conv2d(F.relu(F.conv2d(r, sd[f'{p}.conv1.weight'], sd[f'{p}.conv1.bias'], padding=1)), sd[f'{p}.conv2.weight'], sd[f'{p}.conv2.bias'], padding=1)
    return out + r

def fusion(xs, sd, p):
    out = xs[0]
    if len(xs) == 2: out = out + rcu(xs[1], sd, f'{p}.resConfUnit1')
    out = rcu(out, sd, f'{p}.resConfUnit2')
    return F.interpolate(out, scale_factor=2, mode='bilinear', align_corners=True)

def official_reference(sd, imgs, audio, flag=None):
    m = (lambda t: t) if flag is None else (lambda t: t * flag.view(-1, 1, 1, 1))
    x = F.max_pool2d(F.relu(bn(F.conv2d(imgs, sd['resnet.conv1.weight'], stride=2, padding=3), sd, 'resnet.bn1')), 3, 2, 1)
    x1 = layer(x, sd, 'resnet.layer1', 1); x2 = layer(x1, sd, 'resnet.layer2', 2)
    x3 = layer(x2, sd, 'resnet.layer3_1', 2); x4 = layer(x3, sd, 'resnet.layer4_1', 2)   # layer3_2 / layer4_2 unused
    feats = [m(classifier(xi, sd, f'conv{i + 1}')) for i, xi in enumerate((x1, x2, x3, x4))]
    a_fea = []
    for i in range(4):
        z, a = tpavi(feats[i], audio, sd, f'tpavi_b{i + 1}')
        feats[i] = m(z); a_fea.append(a)
    c4 = m(fusion([feats[3]], sd, 'path4'))
    c43 = m(fusion([c4, feats[2]], sd, 'path3'))
    c432 = m(fusion([c43, feats[1]], sd, 'path2'))
    c4321 = m(fusion([c432, feats[0]], sd, 'path1'))
    y = F.conv2d(c4321, sd['output_conv.0.weight'], sd['output_conv.0.bias'], padding=1)
    y = F.interpolate(y, scale_factor=2, mode='bilinear', align_corners=False)
    y = F.relu(F.conv2d(y, sd['output_conv.2.weight'], sd['output_conv.2.bias'], padding=1))
    pred = m(F.conv2d(y, sd['output_conv.4.weight'], sd['output_conv.4.bias']))
    return dict(pred=pred, **{f'feature_map_{i}': F.relu(f) for i, f in enumerate(feats)},   # ReLU'd in place by the decoder
                **{f'a_fea_{i}': a for i, a in enumerate(a_fea)})

# ---------- the tests ----------
SMALL_AUDIO = {'audio_encoder': 'small'}   # forward(batch) is not used here; spare the 70M-parameter VGGish

@pytest.fixture(scope='module')
def s4_state(): return make_state(parse_keys('tpavi_s4_keys.txt'), 1)

@pytest.fixture(scope='module')
def avss_state(): return make_state(parse_keys('tpavi_avss_keys.txt'), 2)

def test_key_lists_are_the_official_ones():
    s4, avss = parse_keys('tpavi_s4_keys.txt'), parse_keys('tpavi_avss_keys.txt')
    assert len(s4) == 630 and len(avss) == 626
    assert set(s4) - set(avss) == {f'tpavi_b{i}.align_channel.bias' for i in range(1, 5)}

@pytest.mark.parametrize('kind', ['tpavi-s4', 'tpavi-avss'])
def test_every_key_consumed_and_shapes_match(kind, s4_state, avss_state):
    state = s4_state if kind == 'tpavi-s4' else avss_state
    model = load_official(kind, state, SMALL_AUDIO)
    assert model.official['keys'] == len(state) and model.official['loaded'] + model.official['ignored'] == len(state)
    assert model.official['ignored'] == sum(k.startswith(('resnet.layer3_2.', 'resnet.layer4_2.')) for k in state)
    from avss_nb.official import tpavi_official_key
    ours = {k: v for k, v in model.state_dict().items() if not k.startswith('audio_encoder.')}
    assert len(ours) == model.official['loaded']
    for k, v in ours.items():                                   # every tensor of ours came from its official key
        official = tpavi_official_key(k)
        assert official in state and torch.equal(v, state[official].to(v.dtype)), k

@pytest.mark.parametrize('edit, message', [('unknown', 'tpavi_b3.extra.weight'), ('missing', 'path2.resConfUnit1.conv2.bias'),
                                           ('shape', 'conv2.conv2d_list.1.weight'), ('fc', 'resnet.fc.weight')])
def test_bad_keys_are_named(edit, message, s4_state):
    state = dict(s4_state)
    if edit == 'unknown': state['tpavi_b3.extra.weight'] = torch.zeros(3)
    if edit == 'missing': del state['path2.resConfUnit1.conv2.bias']
    if edit == 'shape': state['conv2.conv2d_list.1.weight'] = torch.zeros(256, 512, 1, 1)
    if edit == 'fc': state['resnet.fc.weight'] = torch.zeros(1000, 2048)
    with pytest.raises((KeyError, ValueError), match=message.replace('.', r'\.')):
        load_official('tpavi-s4', state, SMALL_AUDIO)

def test_wrong_kind_is_named(s4_state):
    with pytest.raises((KeyError, ValueError), match='tpavi-s4 checkpoint'): load_official('tpavi-avss', s4_state, SMALL_AUDIO)

def test_file_formats(tmp_path, s4_state):
    "A .pth with `module.` prefix in a {'model': ...} wrapper, a .safetensors file and a model folder read the same."
    from safetensors.torch import save_file
    s4_state = {k: v for k, v in s4_state.items() if not k.startswith('resnet.')}   # (the reading, not the size, is tested)
    torch.save({'model': {f'module.{k}': v for k, v in s4_state.items()}, 'epoch': 3}, tmp_path/'a.pth')
    save_file(s4_state, str(tmp_path/'b.safetensors'))
    (tmp_path/'hf').mkdir(); torch.save(s4_state, tmp_path/'hf'/'pytorch_model.bin'); (tmp_path/'hf'/'config.json').write_text('{}')
    for src in (tmp_path/'a.pth', tmp_path/'b.safetensors', tmp_path/'hf'):
        state, _ = read_official_weights(src)
        assert state.keys() == s4_state.keys() and all(torch.equal(state[k], s4_state[k]) for k in state)

def _compare(out, ref):
    assert set(out) == set(ref), sorted(set(out) ^ set(ref))
    for k in ref:
        assert out[k].shape == ref[k].shape, (k, out[k].shape, ref[k].shape)
        diff = (out[k] - ref[k]).abs().max().item()
        assert diff <= TOL, f"{k}: max abs difference {diff:.2e} (scale {ref[k].abs().max().item():.2e})"

def test_s4_outputs_equal_the_official(s4_state):
    "tpavi-s4 (and tpavi-ms3, the same model file) equals the official forward; each official option, flipped, breaks it."
    torch.manual_seed(3)
    imgs, audio = torch.randn(5, 3, 64, 64), torch.randn(5, 128).relu()
    with torch.no_grad(): ref = official_reference(s4_state, imgs, audio)
    assert ref['pred'].shape == (5, 1, 64, 64) and ref['a_fea_0'].shape == (1, 5, 256) and ref['pred'].abs().max() > 1e-2
    for kind, flip in [('tpavi-s4', {}), ('tpavi-ms3', {}), ('tpavi-s4', {'rcu_relu_residual': False}),
                       ('tpavi-s4', {'head_align_corners': True}), ('tpavi-s4', {'path_align_corners': False})]:
        model = load_official(kind, s4_state, {**SMALL_AUDIO, **flip})
        with torch.no_grad(): out = model.official_forward(imgs=imgs, audio=audio)
        if not flip: _compare(out, ref)
        else: assert (out['pred'] - ref['pred']).abs().max() > 100 * TOL, flip   # the option is what makes it official

def test_project_forward_takes_embeddings(s4_state):
    "The imported model's own forward(batch) with audio [B,T,128] (VGGish embeddings) gives official_forward's logits."
    torch.manual_seed(6)
    imgs, audio = torch.randn(5, 3, 64, 64), torch.randn(5, 128).relu()
    model = load_official('tpavi-s4', s4_state, SMALL_AUDIO)
    batch = dict(frames=imgs[None], audio=audio[None], target=torch.zeros(1, 5, 64, 64, dtype=torch.long), has_gt=torch.ones(1, 5, dtype=torch.bool))
    with torch.no_grad(): ours, official = model(batch)['logits'], model.official_forward(imgs=imgs, audio=audio)['pred']
    assert (ours - official).abs().max() <= TOL
    assert model.predict(batch)['labels'].shape == (5, 64, 64)

@pytest.mark.parametrize('case', ['v2', 'v1'])
def test_avss_outputs_equal_the_official(case, avss_state):
    torch.manual_seed(4)
    imgs, audio = torch.randn(10, 3, 64, 64), torch.randn(10, 128).relu()
    flag = torch.ones(10) if case == 'v2' else torch.tensor([1.] * 5 + [0.] * 5)
    audio = audio * flag[:, None]                                  # train.py multiplies by the flag before the model
    model = load_official('tpavi-avss', avss_state, SMALL_AUDIO)
    with torch.no_grad():
        out, ref = model.official_forward(imgs=imgs, audio=audio, vid_temporal_mask_flag=flag), official_reference(avss_state, imgs, audio, flag)
    assert ref['pred'].shape == (10, 71, 64, 64) and ref['a_fea_3'].shape == (2, 5, 256)
    _compare(out, ref)
    if case == 'v2':                                                # one 10-frame clip instead of the official two halves
        model = load_official('tpavi-avss', avss_state, {**SMALL_AUDIO, 'clip_frames': None})
        with torch.no_grad(): whole = model.official_forward(imgs=imgs, audio=audio, vid_temporal_mask_flag=flag)
        assert (whole['pred'] - ref['pred']).abs().max() > 100 * TOL

def test_evaluate_official_cli(tmp_path, s4_state):
    "`avss-nb evaluate --official tpavi-s4:PATH --config ...` scores a toy dataset and writes a registry record with the sha256."
    from avss_nb.cli import main
    from avss_nb.audio import SmallAudioEncoder
    from avss_nb.official import sha256_file
    torch.save(s4_state, tmp_path/'tpavi_s4.pth')
    torch.save(SmallAudioEncoder().state_dict(), tmp_path/'audio.pt')
    (tmp_path/'cfg.json').write_text(json.dumps({'audio_encoder': 'small', 'audio_weights': str(tmp_path/'audio.pt')}))
    runs = tmp_path/'runs'
    argv = ['--runs-dir', str(runs), '--device', 'cpu', 'evaluate', '--official', f'tpavi-s4:{tmp_path/"tpavi_s4.pth"}',
            '--config', str(tmp_path/'cfg.json'), '--dataset', 'toy:v1s', '--preset', 'smoke']
    assert main(argv) == 0
    (record,) = runs.glob('*.json')
    rec = json.loads(record.read_text())
    assert rec['status'] == 'official' and rec['official']['sha256'] == sha256_file(tmp_path/'tpavi_s4.pth')
    assert rec['official']['kind'] == 'tpavi-s4' and rec['spec']['dataset'] == 'toy:v1s'
    assert 0 <= rec['metrics']['test']['miou'] <= 1 and rec['metrics']['test']['frames'] > 0
    with pytest.raises(ValueError, match='audio_weights'):
        evaluate_official('tpavi-s4', tmp_path/'tpavi_s4.pth', None, 'toy:v1s')

@pytest.mark.skipif(not __import__('os').environ.get('AVSS_SLOW'), reason='set AVSS_SLOW=1: full-size 224 px forwards (~4 GB, minutes on 2 cores)')
def test_outputs_equal_the_official_at_224(s4_state, avss_state):
    "The official input contract itself: [5,3,224,224] (S4) and [10,3,224,224] with the v1 flag (AVSS)."
    torch.manual_seed(5)
    for kind, state, t, flag in [('tpavi-s4', s4_state, 5, None), ('tpavi-avss', avss_state, 10, torch.tensor([1.] * 5 + [0.] * 5))]:
        imgs, audio = torch.randn(t, 3, 224, 224), torch.randn(t, 128).relu()
        if flag is not None: audio = audio * flag[:, None]
        model = load_official(kind, state, SMALL_AUDIO)
        extra = {} if flag is None else dict(vid_temporal_mask_flag=flag)
        with torch.no_grad(): out = model.official_forward(imgs=imgs, audio=audio, **extra)
        with torch.no_grad(): ref = official_reference(state, imgs, audio, flag)
        assert ref['pred'].shape == (t, model.config.num_outputs, 224, 224)
        _compare(out, ref)
        del out, ref
