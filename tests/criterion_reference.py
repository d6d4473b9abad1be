"The set criterion as it was before the matching was batched (avss_nb.criterion at df1a8a3): the unoptimised path the tests compare with."
from __future__ import annotations
import torch, torch.nn as nn, torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from avss_nb.criterion import CriterionConfig, semantic_targets, point_sample, _num_masks, _zero_like_outputs

def uncertain_points(mask_logits, num_points, oversample_ratio=3.0, importance_sample_ratio=0.75):
    m = mask_logits.shape[0]
    sampled = int(num_points * oversample_ratio)
    coords = torch.rand(m, sampled, 2, device=mask_logits.device)
    uncertainty = -point_sample(mask_logits, coords).abs()[:, 0]
    n_uncertain = int(importance_sample_ratio * num_points)
    idx = torch.topk(uncertainty, k=n_uncertain, dim=1).indices
    chosen = torch.gather(coords, 1, idx[..., None].expand(-1, -1, 2))
    rest = torch.rand(m, num_points - n_uncertain, 2, device=mask_logits.device)
    return torch.cat([chosen, rest], 1)

def pairwise_mask_costs(point_logits, point_targets, point_weights=None):
    w = torch.ones_like(point_logits[0]) if point_weights is None else point_weights.to(point_logits)
    bce = ((F.softplus(point_logits) * w).sum(-1)[:, None] - (point_logits * w) @ point_targets.T) / w.sum().clamp(min=1e-6)
    prob = point_logits.sigmoid() * w
    tw = point_targets * w
    dice = 1 - (2 * prob @ point_targets.T + 1) / (prob.sum(-1)[:, None] + tw.sum(-1)[None, :] + 1)
    return bce, dice

class HungarianMatcher:
    def __init__(self, cost_class=1.0, cost_mask=5.0, cost_dice=5.0, num_points=12544):
        self.cost_class, self.cost_mask, self.cost_dice, self.num_points = cost_class, cost_mask, cost_dice, num_points

    @torch.no_grad()
    def cost_matrices(self, pred_logits, pred_masks, targets, coords=None):
        v = pred_logits.shape[0]
        if coords is None: coords = torch.rand(v, self.num_points, 2, device=pred_masks.device)
        point_logits = point_sample(pred_masks.float(), coords)
        probs = pred_logits.float().softmax(-1)
        costs = []
        for i, tgt in enumerate(targets):
            point_targets = point_sample(tgt['masks'][None].to(point_logits), coords[i:i + 1])[0]
            weights = None if tgt['valid'] is None else point_sample(tgt['valid'][None, None].to(point_logits), coords[i:i + 1])[0, 0]
            bce, dice = pairwise_mask_costs(point_logits[i], point_targets, weights)
            cost = self.cost_mask * bce + self.cost_class * -probs[i][:, tgt['labels']] + self.cost_dice * dice
            big = torch.finfo(cost.dtype).max
            costs.append(torch.nan_to_num(cost, nan=big, posinf=big, neginf=big))
        return costs

    @torch.no_grad()
    def __call__(self, pred_logits, pred_masks, targets, coords=None):
        out = []
        for cost in self.cost_matrices(pred_logits, pred_masks, targets, coords):
            rows, cols = linear_sum_assignment(cost.cpu().numpy())
            out.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return out

class SetCriterion(nn.Module):
    def __init__(self, config=None):
        super().__init__()
        self.config = config = config or CriterionConfig()
        self.matcher = HungarianMatcher(config.cost_class, config.cost_mask, config.cost_dice, config.num_points)
        empty_weight = torch.ones(config.num_classes + 1)
        empty_weight[-1] = config.no_object_weight
        self.register_buffer('empty_weight', empty_weight)
        self.matches = []                     # (layer, frame) matches, for the tests

    def loss_labels(self, pred_logits, indices):
        v, q, k1 = pred_logits.shape
        target_classes = torch.full((v, q), self.config.num_classes, dtype=torch.int64, device=pred_logits.device)
        for i, (rows, cols, labels) in enumerate(indices): target_classes[i, rows.to(pred_logits.device)] = labels[cols].to(pred_logits.device)
        return F.cross_entropy(pred_logits.float().transpose(1, 2), target_classes, weight=self.empty_weight.float())

    def loss_masks(self, pred_masks, targets, indices, num_masks):
        cfg = self.config
        frame = torch.cat([torch.full_like(rows, i) for i, (rows, _, _) in enumerate(indices)]).to(pred_masks.device)
        rows = torch.cat([rows for rows, _, _ in indices]).to(pred_masks.device)
        src = pred_masks[frame, rows][:, None].float()
        tgt = torch.cat([t['masks'][cols.to(t['masks'].device)] for t, (_, cols, _) in zip(targets, indices)])[:, None].to(src)
        weighted = any(t['valid'] is not None for t in targets)
        if weighted:
            valid = torch.cat([(torch.ones_like(t['masks'][:1]) if t['valid'] is None else t['valid'][None]).expand(len(c), -1, -1)
                               for t, (_, c, _) in zip(targets, indices)])[:, None].to(src)
        with torch.no_grad():
            coords = uncertain_points(src, cfg.num_points, cfg.oversample_ratio, cfg.importance_sample_ratio)
            labels = point_sample(tgt, coords)[:, 0]
            weights = point_sample(valid, coords)[:, 0] if weighted else torch.ones_like(labels)
        logits = point_sample(src, coords)[:, 0]
        bce = F.binary_cross_entropy_with_logits(logits, labels, reduction='none')
        loss_mask = ((bce * weights).sum(1) / weights.sum(1).clamp(min=1e-6)).sum() / num_masks
        prob = logits.sigmoid() * weights
        dice = 1 - (2 * (prob * labels).sum(1) + 1) / (prob.sum(1) + (labels * weights).sum(1) + 1)
        return loss_mask, dice.sum() / num_masks

    def _layer(self, pred_logits, pred_masks, frames, targets, num_masks):
        logits, masks = pred_logits[frames], pred_masks[frames]
        matched = self.matcher(logits, masks, targets)
        self.matches.append(matched)
        indices = [(rows, cols, t['labels']) for (rows, cols), t in zip(matched, targets)]
        loss_mask, loss_dice = self.loss_masks(masks, targets, indices, num_masks)
        return dict(loss_ce=self.loss_labels(logits, indices), loss_mask=loss_mask, loss_dice=loss_dice)

    def forward(self, outputs, batch):
        cfg = self.config
        pred_logits = outputs['pred_logits']
        all_targets = semantic_targets(batch['target'], batch.get('has_gt'), cfg.num_classes)
        frames = [i for i, t in enumerate(all_targets) if t is not None]
        targets = [all_targets[i] for i in frames]
        num_masks = _num_masks(sum(len(t['labels']) for t in targets), pred_logits.device)
        layers = [outputs] + (list(outputs.get('aux_outputs') or []) if cfg.deep_supervision else [])
        if not frames:
            zero = _zero_like_outputs(outputs)
            return dict(loss=zero)
        parts, total = {}, 0
        for j, layer in enumerate(layers):
            terms = self._layer(layer['pred_logits'], layer['pred_masks'], frames, targets, num_masks)
            weighted = cfg.class_weight * terms['loss_ce'] + cfg.mask_weight * terms['loss_mask'] + cfg.dice_weight * terms['loss_dice']
            total = total + (weighted if j == 0 else cfg.aux_weight * weighted)
            parts.update({(k if j == 0 else f'{k}_{j - 1}'): v for k, v in terms.items()})
        return dict(loss=total, **parts)
