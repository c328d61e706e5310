"""PyTorch eager baseline for scripts/bench-train.sh (a benchmark, not a test).

The same model (resnet-mini-28x28x1: stem 32, blocks 32/64(s2)/128(s2), projector 128-64),
SimCLR loss (NT-Xent, temperature 0.5), SGD (lr 0.06, momentum 0.9, wd 5e-4), batch size
and augmentations (torchvision v2: RandomResizedCrop(28, antialias), flip, ColorJitter
(0.4, 0.4, 0.4, 0.1) p 0.8, RandomGrayscale 0.2, normalise) as `sslmem-train`, on the first
N Fashion-MNIST training images. Prints images per second of one epoch.

    python bench_train.py IMAGES BATCH WORKERS
"""
import gzip
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.transforms import v2

N, BATCH, WORKERS = (int(a) for a in sys.argv[1:4])

with gzip.open("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") as f:
    raw = f.read()
images = torch.frombuffer(bytearray(raw[16:]), dtype=torch.uint8).reshape(-1, 1, 28, 28)[:N]

aug = v2.Compose([
    v2.RandomResizedCrop(28, scale=(0.08, 1.0), antialias=True),
    v2.RandomHorizontalFlip(),
    v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
    v2.RandomGrayscale(p=0.2),
    v2.ToDtype(torch.float32, scale=True),
    v2.Normalize([0.2860], [0.3530]),
])


class Pairs(torch.utils.data.Dataset):
    def __len__(self):
        return len(images)

    def __getitem__(self, i):
        x = images[i]
        return aug(x), aug(x)


def conv_bn(cin, cout, stride, k=3):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.a = conv_bn(cin, cout, stride)
        self.b = conv_bn(cout, cout, 1)
        self.short = conv_bn(cin, cout, stride, 1) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x):
        return F.relu(self.b(F.relu(self.a(x))) + self.short(x))


model = nn.Sequential(
    conv_bn(1, 32, 1), nn.ReLU(), Block(32, 32, 1), Block(32, 64, 2), Block(64, 128, 2),
    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 64),
)
opt = torch.optim.SGD(model.parameters(), lr=0.06, momentum=0.9, weight_decay=5e-4)


def nt_xent(z1, z2, t=0.5):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / t
    sim.fill_diagonal_(float("-inf"))
    n = len(z1)
    target = torch.cat([torch.arange(n) + n, torch.arange(n)])
    return F.cross_entropy(sim, target)


loader = torch.utils.data.DataLoader(Pairs(), batch_size=BATCH, shuffle=True, drop_last=True,
                                     num_workers=WORKERS, persistent_workers=WORKERS > 0)
model.train()
start = time.perf_counter()
seen = 0
for x1, x2 in loader:
    loss = nt_xent(model(x1), model(x2))
    opt.zero_grad()
    loss.backward()
    opt.step()
    seen += len(x1)
secs = time.perf_counter() - start
print(f"{seen / secs:.1f}")
