"Evaluation streams: each batch goes into the all-reducible sums and is dropped; the state does not grow with the split."
import torch, torch.nn as nn
from avss_nb.train import evaluate
from avss_nb.metrics import BinaryMetrics
from avss_nb.freeavs import ToyAVS

class _Fake(nn.Module):
    def __init__(self): super().__init__(); self.w = nn.Parameter(torch.zeros(1))
    def predict(self, batch, size):
        n = batch['frames'].shape[0] * batch['frames'].shape[1]
        prob = torch.rand(n, size, size, generator=torch.Generator().manual_seed(n))
        return dict(prob=prob, labels=(prob > 0.5).long())

def test_evaluate_streams_batches_into_fixed_sums():
    seen = []
    class Spy(BinaryMetrics):
        def update(self, prob, gt, has_gt=None, labels=None):
            seen.append(tuple(prob.shape)); return super().update(prob, gt, has_gt, labels)
    ds = ToyAVS('v1s', 'val', n_videos=4, size=32, binary=True)
    acc = Spy()
    evaluate(_Fake(), ds, 'binary', batch_size=1, metrics=acc, device=torch.device('cpu'))
    assert len(seen) == len(ds) and all(s[0] == 1 for s in seen)          # one video per update, never the split
    assert {k: v.shape for k, v in acc.state.items()} == {k: v.shape for k, v in BinaryMetrics().state.items()}
