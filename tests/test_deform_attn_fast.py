"The level-by-level deformable attention equals the previous stacked version: outputs and gradients, alone and in the pixel decoder."
import pytest, torch
import avss_nb.backbone as bb
from deform_reference import ms_deform_attn as reference

def _inputs(seed, n=2, heads=4, d=8, shapes=((3, 5), (6, 10), (12, 20)), lq=17, points=4):
    g = torch.Generator().manual_seed(seed)
    L = sum(h * w for h, w in shapes)
    value = torch.randn(n, L, heads, d, generator=g).requires_grad_()
    loc = (torch.rand(n, lq, heads, len(shapes), points, 2, generator=g) * 1.2 - 0.1).requires_grad_()   # some outside [0,1]
    wts = torch.rand(n, lq, heads, len(shapes), points, generator=g).requires_grad_()
    return value, list(shapes), loc, wts

@pytest.mark.parametrize('seed', range(3))
def test_ms_deform_attn_equals_reference(seed):
    a_in, b_in = _inputs(seed), _inputs(seed)
    a, b = reference(*a_in), bb.ms_deform_attn(*b_in)
    assert a.shape == b.shape and torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    g = torch.randn(a.shape, generator=torch.Generator().manual_seed(9))
    (a * g).sum().backward(); (b * g).sum().backward()
    for x, y in zip(a_in, b_in):
        if torch.is_tensor(x): assert torch.allclose(x.grad, y.grad, rtol=1e-5, atol=1e-6)

def test_pixel_decoder_equals_reference(monkeypatch):
    torch.manual_seed(0)
    dec = bb.MSDeformPixelDecoder([8, 16, 24, 32], hidden_dim=32, mask_dim=32, num_layers=2, heads=4, ffn_dim=64)
    feats = [torch.randn(2, c, s, s, generator=torch.Generator().manual_seed(c)) for c, s in zip([8, 16, 24, 32], [16, 8, 4, 2])]
    def run():
        dec.zero_grad(set_to_none=True)
        mask_features, maps = dec(feats)
        (mask_features.square().mean() + sum(m.square().mean() for m in maps)).backward()
        return [mask_features.detach(), *[m.detach() for m in maps]], {k: p.grad.clone() for k, p in dec.named_parameters() if p.grad is not None}
    new_out, new_grads = run()
    monkeypatch.setattr(bb, 'ms_deform_attn', reference)
    old_out, old_grads = run()
    for x, y in zip(old_out, new_out): assert torch.allclose(x, y, rtol=1e-5, atol=1e-6)
    assert old_grads.keys() == new_grads.keys()
    for k in old_grads: assert torch.allclose(old_grads[k], new_grads[k], rtol=1e-4, atol=1e-6), k
