"""A training process for tests/test_train.py: run directly or under torchrun.

python tests/train_worker.py {tiny,aavs} --out DIR [--batch-size B] [--kill-after K] [--resume] [--record FILE]
"""
import argparse, json, os, signal, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import torch, torch.nn as nn
from avss_nb.train import Trainer, TrainConfig, init_distributed, unwrap
from avss_nb.freeavs import ToyAVS
from avss_nb.criterion import bce_loss


class PixelModel(nn.Module):
    "Deterministic per-pixel binary model (no dropout, no sampling): DDP and one process must agree."
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2, self.audio = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 1, 3, padding=1), nn.Linear(64, 8)
    def forward(self, batch):
        frames = batch['frames'].flatten(0, 1)                                   # [N,3,S,S]
        gate = self.audio(batch['audio'].flatten(0, 1).mean(1))                   # [N,8]
        return dict(logits=self.conv2(torch.relu(self.conv1(frames) + gate[:, :, None, None])))
    def predict(self, batch, size=None):
        prob = self(batch)['logits'][:, 0].sigmoid()
        return dict(labels=(prob > 0.5).long(), prob=prob)


def pixel_criterion(outputs, batch):
    loss = bce_loss(outputs['logits'], batch['target'], batch['has_gt'])
    return dict(loss=loss)


def main():
    p = argparse.ArgumentParser()
    p.add_argument('model', choices=['tiny', 'aavs'])
    p.add_argument('--out', required=True)
    p.add_argument('--batch-size', type=int, default=2)
    p.add_argument('--epochs', type=int, default=2)
    p.add_argument('--videos', type=int, default=8)
    p.add_argument('--kill-after', type=int, default=0, help='SIGKILL this process right after this global step')
    p.add_argument('--ckpt-every', type=int, default=0)
    p.add_argument('--resume', action='store_true')
    p.add_argument('--record', default=None, help='JSON file for per-step losses and final metrics (rank 0)')
    p.add_argument('--mix', action='store_true', help='tiny: train on 5-frame v1m and 10-frame v2 clips (length buckets)')
    a = p.parse_args()
    torch.manual_seed(0)
    if a.model == 'tiny':
        model, criterion = PixelModel(), pixel_criterion
        train = ToyAVS('v1m', 'train', a.videos, size=32, binary=True)   # every frame annotated: equal frames per rank
        if a.mix:
            from torch.utils.data import ConcatDataset
            train = ConcatDataset([ToyAVS('v1m', 'train', a.videos // 2, size=32, binary=True),
                                   ToyAVS('v2', 'train', a.videos // 2, size=32, binary=True)])
        val = ToyAVS('v1m', 'val', 3, size=32, binary=True)
        cfg = TrainConfig(epochs=a.epochs, batch_size=a.batch_size, lr=0.01, grad_clip=1.0, progress=False,
                          ckpt_every=a.ckpt_every, device='cpu')
    else:
        from avss_nb.aavs import build_aavs
        from avss_nb.criterion import SetCriterion, CriterionConfig
        model = build_aavs('smoke', 'binary')
        criterion = SetCriterion(CriterionConfig.from_preset('smoke', 'binary'))
        train = ToyAVS('v1s', 'train', a.videos, size=64, binary=True)
        val = ToyAVS('v1s', 'val', 2, size=64, binary=True)
        cfg = TrainConfig.from_preset('smoke', 'binary', epochs=a.epochs, batch_size=a.batch_size, progress=False,
                                      ckpt_every=a.ckpt_every, device='cpu')
    losses = []
    def cb(trainer, event):
        if event == 'step':
            losses.append(trainer.last_loss)
            if a.kill_after and trainer.global_step == a.kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
    trainer = Trainer(model, criterion, train, val, cfg, a.out, task='binary', callbacks=[cb])
    result = trainer.fit(resume=a.resume)
    if a.record and trainer.info.is_main:
        Path(a.record).write_text(json.dumps(dict(losses=losses, history=result['history'], best=result['best'],
                                                  world_size=trainer.info.world_size)))
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():   # a clean shutdown: without it gloo threads can abort at exit
        dist.barrier(); dist.destroy_process_group()


if __name__ == '__main__':
    main()
