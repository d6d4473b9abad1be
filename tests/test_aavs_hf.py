"AAVS with its audio and prior paths off is Hugging Face's Mask2Former: import their weights, compare every prediction."
import pytest, torch

transformers = pytest.importorskip('transformers')   # test-only dependency
from avss_nb.aavs import AAVSConfig, build_aavs, hf_mask2former_config, import_hf_mask2former, load_hf_mask2former

# The smoke preset's tiny Swin (its 1/32 stage is smaller than a window: always_partition matters) and a small head
# with two deformable layers and three decoder layers (every level visited once).
CFG = AAVSConfig.from_preset('smoke', 'binary', pixel_decoder_layers=2, decoder_layers=3, num_queries=5,
                             audio_queries='none', adapters=False)

@pytest.fixture(scope='module')
def pair():
    torch.manual_seed(0)
    hf = transformers.Mask2FormerForUniversalSegmentation(hf_mask2former_config(CFG)).eval()
    ours = build_aavs(config=CFG).eval()
    report = import_hf_mask2former(ours, hf.state_dict())
    return hf, ours, report

def test_import_covers_every_weight(pair):
    _, _, report = pair
    assert report['missing'] == [] and report['mismatched'] == [], report
    assert report['unused'] == [], report

def test_outputs_match_hf(pair):
    hf, ours, _ = pair
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = hf(pixel_values=images, output_auxiliary_logits=True)
        mine = ours({'frames': images[:, None]})
    assert mine['pred_masks'].shape == theirs.masks_queries_logits.shape
    assert (mine['pred_logits'] - theirs.class_queries_logits).abs().max() <= 1e-4
    assert (mine['pred_masks'] - theirs.masks_queries_logits).abs().max() <= 1e-4
    assert len(mine['aux_outputs']) == len(theirs.auxiliary_logits) == CFG.decoder_layers
    for a, b in zip(mine['aux_outputs'], theirs.auxiliary_logits):
        assert (a['pred_logits'] - b['class_queries_logits']).abs().max() <= 1e-4
        assert (a['pred_masks'] - b['masks_queries_logits']).abs().max() <= 1e-4

def test_weights_matter(pair):
    "The comparison can fail: a perturbed decoder weight breaks the match."
    hf, ours, _ = pair
    images = torch.randn(1, 3, 64, 64)
    state = {k: v.clone() for k, v in hf.state_dict().items()}
    state['model.transformer_module.decoder.layers.1.fc2.weight'] += 0.5 * torch.randn_like(state['model.transformer_module.decoder.layers.1.fc2.weight'])   # (a constant would vanish in the LayerNorm)
    other = build_aavs(config=CFG).eval(); import_hf_mask2former(other, state)
    with torch.no_grad():
        a, b = ours({'frames': images[:, None]})['pred_masks'], other({'frames': images[:, None]})['pred_masks']
    assert (a - b).abs().max() > 1e-3

def test_checkpoint_directory(pair, tmp_path):
    "A local checkpoint directory in HF layout (safetensors) loads through the same importer."
    hf, ours, _ = pair
    hf.save_pretrained(tmp_path)
    fresh = build_aavs(config=CFG).eval()
    report = load_hf_mask2former(fresh, tmp_path, strict=True)
    assert report['loaded'] > 0
    for k, v in ours.state_dict().items(): assert torch.equal(v, fresh.state_dict()[k]), k

def test_transformers4_checkpoint_names(pair):
    "Checkpoints saved by transformers 4.x (the official code's 4.35, the Hub's ADE20k files) use the older Swin names."
    hf, ours, _ = pair
    legacy = {}
    for k, v in hf.state_dict().items():
        k = k.replace('encoder.swin.', 'encoder.')                                  # SwinBackbone had no `swin` wrapper
        for new, old in [('attention.q_proj', 'attention.self.query'), ('attention.k_proj', 'attention.self.key'),
                         ('attention.v_proj', 'attention.self.value'), ('attention.o_proj', 'attention.output.dense'),
                         ('attention.relative_position_bias.relative_position_bias_table', 'attention.self.relative_position_bias_table'),
                         ('blocks.0.mlp.fc1', 'blocks.0.intermediate.dense'), ('blocks.0.mlp.fc2', 'blocks.0.output.dense'),
                         ('blocks.1.mlp.fc1', 'blocks.1.intermediate.dense'), ('blocks.1.mlp.fc2', 'blocks.1.output.dense')]:
            k = k.replace(new, old)
        legacy[k] = v
    assert any('attention.self.query' in k for k in legacy) and not any('.swin.' in k for k in legacy)
    fresh = build_aavs(config=CFG).eval()
    report = import_hf_mask2former(fresh, legacy)
    assert report['missing'] == [] and report['mismatched'] == [], report
    for k, v in ours.state_dict().items(): assert torch.equal(v, fresh.state_dict()[k]), k
