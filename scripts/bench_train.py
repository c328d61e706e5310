"""PyTorch eager baseline for scripts/bench-train.sh (a benchmark, not a test).

The same recipe as `sslmem-train bench-epoch`: model (resnet-mini-28x28x1: stem 32 with
--stem-stride, blocks 32/64(s2)/128(s2), projector 128-64), SimCLR loss (NT-Xent,
temperature 0.5), SGD (lr 0.06, momentum 0.9, wd 5e-4), batch size and augmentations
(torchvision v2: RandomResizedCrop(28, antialias), flip, ColorJitter (0.4, 0.4, 0.4, 0.1)
p 0.8, RandomGrayscale 0.2, normalise), in eager mode with a DataLoader of WORKERS processes.

--arch vit-tiny-28x28x1 trains the trainer's ViT instead (7x7 patches, class token, learned
position embeddings, 6 pre-norm blocks of width 96 with 3 heads and MLP 384 with exact GELU,
layer-norm eps 1e-6, final layer norm, class token as the representation, projector 128-64)
with AdamW (lr 1e-3, weight decay 0.05), as `sslmem-train bench-epoch --arch` does; attention
is PyTorch's fused F.scaled_dot_product_attention.

--images N trains on the first N Fashion-MNIST training images. --subset N trains what
`sslmem-train pair --subset N` trains as f: 90% of the first N images (the rest are the
independent set), with pair's memorization monitor every --monitor-every epochs and after the
last (4 view pairs of 256 training and 256 independent images through the model in eval mode,
mean l2 distance of the normalised representation and projection per image, AUC of seen
against unseen) and a checkpoint (model and optimiser state) after each measured epoch and
every 120 s. Prints images per second of the epoch loop (monitor and checkpoints included).

    python bench_train.py (--images N | --subset N) [--epochs E] [--batch B] [--workers W]
        [--stem-stride S] [--monitor-every M] [--arch resnet-mini-28x28x1|vit-tiny-28x28x1]
"""
import argparse
import gzip
import os
import sys
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.transforms import v2

p = argparse.ArgumentParser()
size = p.add_mutually_exclusive_group(required=True)
size.add_argument("--images", type=int)
size.add_argument("--subset", type=int)
p.add_argument("--epochs", type=int, default=1)
p.add_argument("--batch", type=int, default=256)
p.add_argument("--workers", type=int, default=2)
p.add_argument("--stem-stride", type=int, default=1)
p.add_argument("--monitor-every", type=int, default=5)
p.add_argument("--arch", choices=["resnet-mini-28x28x1", "vit-tiny-28x28x1"], default="resnet-mini-28x28x1")
args = p.parse_args()

with gzip.open("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") as f:
    raw = f.read()
n = args.subset or args.images
images = torch.frombuffer(bytearray(raw[16:]), dtype=torch.uint8).reshape(-1, 1, 28, 28)[:n]
if args.subset:
    # pair's split: 10% candidate (trained by f), 10% independent (never trained by f).
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    independent = order[: round(0.1 * n)]
    train = order[round(0.1 * n):]
else:
    independent = torch.arange(0)
    train = torch.arange(n)

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
        return len(train)

    def __getitem__(self, i):
        x = images[train[i]]
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


class VitBlock(nn.Module):
    def __init__(self, width=96, heads=3, mlp=384):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width, eps=1e-6)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, mlp), nn.GELU(), nn.Linear(mlp, width))

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(a)
        return x + self.mlp(self.norm2(x))


class Vit(nn.Module):
    def __init__(self, patch=7, width=96, depth=6):
        super().__init__()
        self.embed = nn.Conv2d(1, width, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.pos = nn.Parameter(torch.randn(1, (28 // patch) ** 2 + 1, width) * 0.02)
        self.blocks = nn.Sequential(*[VitBlock(width) for _ in range(depth)])
        self.norm = nn.LayerNorm(width, eps=1e-6)

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], 1) + self.pos
        return self.norm(self.blocks(x))[:, 0]


vit = args.arch == "vit-tiny-28x28x1"
if vit:
    backbone, features = Vit(), 96
else:
    backbone, features = nn.Sequential(
        conv_bn(1, 32, args.stem_stride), nn.ReLU(), Block(32, 32, 1), Block(32, 64, 2),
        Block(64, 128, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    ), 128
projector = nn.Sequential(nn.Linear(features, 128), nn.ReLU(), nn.Linear(128, 64))
model = nn.Sequential(backbone, projector)
if vit:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
else:
    opt = torch.optim.SGD(model.parameters(), lr=0.06, momentum=0.9, weight_decay=5e-4)


def nt_xent(z1, z2, t=0.5):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / t
    sim.fill_diagonal_(float("-inf"))
    n = len(z1)
    target = torch.cat([torch.arange(n) + n, torch.arange(n)])
    return F.cross_entropy(sim, target)


def sample(pool, k=256):
    return pool if len(pool) <= k else pool[torch.arange(k) * len(pool) // k]


def alignments(idx, pairs=4):
    rep, proj = [], []
    for chunk in idx.split(64):
        views = torch.stack([aug(images[i]) for i in chunk for _ in range(2 * pairs)])
        r = backbone(views)
        for out, acc in ((r, rep), (projector(r), proj)):
            z = F.normalize(out, dim=1).reshape(len(chunk), pairs, 2, -1)
            acc.append((z[:, :, 0] - z[:, :, 1]).norm(dim=2).mean(dim=1))
    return torch.cat(rep), torch.cat(proj)


def auc(seen, unseen):
    # P(an unseen image aligns looser than a seen one), ties counted half.
    d = unseen[None, :] - seen[:, None]
    return ((d > 0).float().mean() + 0.5 * (d == 0).float().mean()).item()


def monitor():
    model.eval()
    with torch.no_grad():
        (sr, sp), (ur, up) = alignments(sample(train)), alignments(sample(independent))
    model.train()
    return auc(sr, ur), auc(sp, up)


loader = torch.utils.data.DataLoader(Pairs(), batch_size=args.batch, shuffle=True,
                                     drop_last=True, num_workers=args.workers,
                                     persistent_workers=args.workers > 0)
ckpt = os.path.join(tempfile.mkdtemp(prefix="bench-train-"), "ckpt.pt")
model.train()
start = last_save = time.perf_counter()
seen = 0
for epoch in range(args.epochs):
    for x1, x2 in loader:
        loss = nt_xent(model(x1), model(x2))
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += len(x1)
    last = epoch + 1 == args.epochs
    measured = args.subset and args.monitor_every > 0 and (
        (epoch + 1) % args.monitor_every == 0 or last)
    if measured:
        monitor()
    if measured or last or time.perf_counter() - last_save >= 120:
        torch.save({"model": model.state_dict(), "optim": opt.state_dict()}, ckpt)
        last_save = time.perf_counter()
secs = time.perf_counter() - start
os.remove(ckpt)
os.rmdir(os.path.dirname(ckpt))
print(f"{seen / secs:.1f}")
