"Multi-scale deformable attention as it was before the level-by-level weighted sum (avss_nb.backbone at df1a8a3)."
import torch, torch.nn.functional as F

def ms_deform_attn(value:torch.Tensor,        # [N, L, heads, d] values of all levels, flattened
                   shapes:list[tuple[int,int]], # (h, w) of each level
                   locations:torch.Tensor,    # [N, Lq, heads, levels, points, 2] in [0,1] (x, y)
                   weights:torch.Tensor,      # [N, Lq, heads, levels, points]
                  ) -> torch.Tensor:          # [N, Lq, heads*d]
    "Multi-scale deformable attention with `grid_sample`."
    n, _, heads, d = value.shape
    _, lq, _, levels, points, _ = locations.shape
    values = value.split([h * w for h, w in shapes], dim=1)
    grids = 2 * locations - 1
    sampled = []
    for lvl, (h, w) in enumerate(shapes):
        v = values[lvl].flatten(2).transpose(1, 2).reshape(n * heads, d, h, w)          # [N*heads, d, h, w]
        g = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)                          # [N*heads, Lq, points, 2]
        sampled.append(F.grid_sample(v, g, mode='bilinear', padding_mode='zeros', align_corners=False))  # [N*heads, d, Lq, points]
    w = weights.transpose(1, 2).reshape(n * heads, 1, lq, levels * points)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * w).sum(-1)                       # [N*heads, d, Lq]
    return out.view(n, heads * d, lq).transpose(1, 2)
