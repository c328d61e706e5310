"""PyTorch eager SSLMem baseline for scripts/bench-score.sh (a benchmark, not a test).

What a researcher would write without sslmem: for each image, K pairs of views from
torchvision v2 transforms with the bundle's training augmentations (its `augment` list in
order, `transforms_of` below; a resize first when none of them sets the size; then ToDtype and
Normalize; a transform it does not know stops the run), one batched forward pass of the 2K
views through each encoder (PyTorch eager, `torch.inference_mode`, the intra-op threads PyTorch picks), l2
normalised representations, the mean l2 distance of the pairs under g minus under f.

The encoders are the bundle's own ONNX files, run op by op with torch.nn.functional (the ops
the trainer exports: Conv, Relu, Add, Gemm, GlobalAveragePool, Flatten, MaxPool,
BatchNormalization, and the ViT's MatMul, LayerNormalization, Softmax, Erf, Mul, Div, Reshape,
Transpose, Gather, Shape, Concat, Expand), so both sides compute with the same weights.

    python bench_score.py BUNDLE IMAGES_DIR K      prints images per second

Options (scripts/gpu-check.sh uses them; without them the run is the one above):
    --device cuda[:N]   run the encoders on a GPU (augmentation stays on the CPU, as a
                        DataLoader would do it); TF32 off, as in sslmem's CUDA sessions
    --batch N[,N...]    views per forward pass (whole images: max(1, N // 2K) images a pass);
                        one run per value. Default: one image (2K views) a pass
    --json              one JSON line per run instead of the bare figure
"""
import argparse
import json
import pathlib
import time

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from PIL import Image
from torchvision.transforms import v2


def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class Eager:
    """An ONNX graph of the trainer's ops, run with eager PyTorch calls."""

    def __init__(self, path, output):
        m = onnx.load(path)
        self.weights = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in m.graph.initializer}
        self.nodes = list(m.graph.node)
        self.input = m.graph.input[0].name
        self.output = output

    def to(self, device):
        self.weights = {k: v.to(device) for k, v in self.weights.items()}
        return self

    def __call__(self, x):
        env = dict(self.weights)
        env[self.input] = x
        for n in self.nodes:
            a = attrs(n)
            i = [env[name] if name else None for name in n.input]
            op = n.op_type
            if op == "Conv":
                pads = a.get("pads", [0, 0, 0, 0])
                y = F.conv2d(i[0], i[1], i[2] if len(i) > 2 else None, stride=a.get("strides", [1, 1]),
                             padding=(pads[0], pads[1]), groups=a.get("group", 1))
            elif op == "Relu":
                y = F.relu(i[0])
            elif op == "Add":
                y = i[0] + i[1]
            elif op == "Gemm":
                w = i[1].T if a.get("transB", 0) else i[1]
                y = i[0] @ w + (i[2] if len(i) > 2 else 0)
            elif op == "GlobalAveragePool":
                y = F.adaptive_avg_pool2d(i[0], 1)
            elif op == "Flatten":
                y = torch.flatten(i[0], a.get("axis", 1))
            elif op == "MaxPool":
                pads = a.get("pads", [0, 0, 0, 0])
                y = F.max_pool2d(i[0], a["kernel_shape"], a.get("strides"), (pads[0], pads[1]))
            elif op == "BatchNormalization":
                y = F.batch_norm(i[0], i[3], i[4], i[1], i[2], False, 0.0, a.get("epsilon", 1e-5))
            # The ViT's ops (src/onnx/vit.rs).
            elif op == "MatMul":
                y = i[0] @ i[1]
            elif op in ("Mul", "Div"):
                y = i[0] * i[1] if op == "Mul" else i[0] / i[1]
            elif op == "Erf":
                y = torch.erf(i[0])
            elif op == "Softmax":
                y = torch.softmax(i[0], a.get("axis", -1))
            elif op == "LayerNormalization":
                if a.get("axis", -1) != -1 or len(i) < 3:
                    raise SystemExit("bench_score.py: LayerNormalization over the last axis with a bias only")
                y = F.layer_norm(i[0], i[1].shape, i[1], i[2], a.get("epsilon", 1e-5))
            elif op == "Transpose":
                y = i[0].permute(*a["perm"])
            elif op == "Reshape":
                # ONNX: a 0 copies the input's dimension, -1 is inferred.
                shape = [i[0].shape[k] if d == 0 else d for k, d in enumerate(i[1].tolist())]
                y = i[0].reshape(shape)
            elif op == "Gather":
                axis = a.get("axis", 0)
                y = i[0].select(axis, int(i[1])) if i[1].dim() == 0 else torch.index_select(i[0], axis, i[1])
            elif op == "Shape":
                y = torch.tensor(i[0].shape[a.get("start", 0):a.get("end", i[0].dim())], device=i[0].device)
            elif op == "Concat":
                y = torch.cat(i, a["axis"])
            elif op == "Expand":
                y = i[0].expand(*i[1].tolist())
            else:
                raise SystemExit(f"bench_score.py: op {op} is not supported")
            env[n.output[0]] = y
            if n.output[0] == self.output:
                return y
        return env[self.output]


def batch_sizes(text):
    try:
        sizes = [int(b) for b in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a list of positive view counts (e.g. 64,256)")
    return sizes


def parse_args():
    ap = argparse.ArgumentParser(description="PyTorch eager SSLMem baseline: images per second.")
    ap.add_argument("bundle", type=pathlib.Path)
    ap.add_argument("images_dir", type=pathlib.Path)
    ap.add_argument("k", type=int)
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    ap.add_argument("--batch", type=batch_sizes, default=[None],
                    help="views per forward pass, comma-separated for a sweep (default: 2K, one image)")
    ap.add_argument("--json", action="store_true", help="one JSON line per run")
    a = ap.parse_args()
    if a.k < 1:
        ap.error("K must be at least 1")
    return a


def device_of(name):
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise SystemExit(f"bench_score.py: --device {name}: {e}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit(f"bench_score.py: --device {name} asked for, but PyTorch {torch.__version__} "
                             f"(CUDA {torch.version.cuda}) sees no CUDA device")
        # Full float32 as sslmem's CUDA sessions compute (cuDNN's TF32 is on by default).
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    elif device.type != "cpu":
        raise SystemExit(f"bench_score.py: --device {name}: cpu, cuda or cuda:N")
    return device


def as_list(aug):
    """The manifest's `augment` as a list of tagged transforms (docs/bundle.md#augment): the
    list itself, SimCLR's when absent, or the list the older object form stands for (as
    sslmem reads it, src/augment/legacy.rs)."""
    if aug is None:
        return [{"type": "random_resized_crop"}, {"type": "random_horizontal_flip", "p": 0.5},
                {"type": "color_jitter", "brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1,
                 "p": 0.8},
                {"type": "random_grayscale", "p": 0.2}]
    if isinstance(aug, list):
        return aug
    crop = aug.get("crop")
    steps = [dict(type="random_resized_crop", **crop) if crop is not None else {"type": "resize"},
             {"type": "random_horizontal_flip", "p": aug.get("flip_p", 0.0)}]
    if aug.get("jitter") is not None:
        steps.append(dict({"p": 0.8}, type="color_jitter", **aug["jitter"]))
    steps.append({"type": "random_grayscale", "p": aug.get("grayscale_p", 0.0)})
    if aug.get("blur") is not None:
        steps.append(dict(type="gaussian_blur", **aug["blur"]))
    if aug.get("solarize") is not None:
        steps.append(dict(type="random_solarize", **aug["solarize"]))
    return steps


def transforms_of(aug, height, width):
    """torchvision v2 transforms for the bundle's augmentations, on uint8 images (pixel values
    given in [0, 1] are scaled to 0-255). Defaults as sslmem's (src/augment/*.rs)."""
    size = (height, width)
    steps = []
    for i, t in enumerate(as_list(aug)):
        kind = t.get("type")
        if kind == "random_resized_crop":
            steps.append(v2.RandomResizedCrop(size, scale=tuple(t.get("scale", (0.08, 1.0))),
                                              ratio=tuple(t.get("ratio", (3 / 4, 4 / 3))), antialias=True))
        elif kind == "resize":
            steps.append(v2.Resize(size, antialias=True))
        elif kind == "random_horizontal_flip":
            steps.append(v2.RandomHorizontalFlip(t.get("p", 0.5)))
        elif kind == "color_jitter":
            jitter = v2.ColorJitter(t.get("brightness", 0), t.get("contrast", 0), t.get("saturation", 0),
                                    t.get("hue", 0))
            steps.append(v2.RandomApply([jitter], p=t.get("p", 1.0)))
        elif kind == "random_grayscale":
            steps.append(v2.RandomGrayscale(t.get("p", 0.1)))
        elif kind == "gaussian_blur":
            side = min(height, width)
            k = t.get("kernel_size") or (side // 10) // 2 * 2 + 1
            blur = v2.GaussianBlur(k, sigma=tuple(t.get("sigma", (0.1, 2.0))))
            steps.append(v2.RandomApply([blur], p=t.get("p", 1.0)))
        elif kind == "random_solarize":
            steps.append(v2.RandomSolarize(round(255 * t.get("threshold", 0.5)), p=t.get("p", 0.5)))
        elif kind == "random_erasing":
            steps.append(v2.RandomErasing(t.get("p", 0.5), scale=tuple(t.get("scale", (0.02, 0.33))),
                                          ratio=tuple(t.get("ratio", (0.3, 3.3))),
                                          value=round(255 * t.get("value", 0.0))))
        else:
            raise SystemExit(f"bench_score.py: augment[{i}] is '{kind}', a transform this script does not "
                             f"implement; add it to transforms_of")
    if not any(t.get("type") in ("random_resized_crop", "resize") for t in as_list(aug)):
        steps.insert(0, v2.Resize(size, antialias=True))
    return steps


def main():
    a = parse_args()
    bundle, images_dir, k = a.bundle, a.images_dir, a.k
    device = device_of(a.device)
    man = json.loads((bundle / "sslmem.json").read_text())
    inp, aug, out = man["input"], man.get("augment"), man["representation"]["output"]
    f = [Eager(bundle / e["path"], out).to(device) for e in man["f"]]
    g = [Eager(bundle / e["path"], out).to(device) for e in man["g"]]
    steps = transforms_of(aug, inp["height"], inp["width"])
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(inp["mean"], inp["std"])]
    transform = v2.Compose(steps)
    paths = sorted(images_dir.glob("*.png"))
    if not paths:
        raise SystemExit(f"bench_score.py: no *.png in {images_dir}")
    mode = "L" if inp["channels"] == 1 else "RGB"

    def views_of(p):
        x = torch.from_numpy(np.array(Image.open(p).convert(mode)))
        x = x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1)
        return torch.stack([transform(x) for _ in range(2 * k)])

    def align(encoders, views, n):
        """Mean distance of each image's K view pairs (consecutive views), per image."""
        d = []
        for e in encoders:
            z = F.normalize(e(views).flatten(1), dim=1)  # tokens: all of them, one l2 norm
            d.append((z[0::2] - z[1::2]).norm(dim=1).view(n, k).mean(dim=1))
        return torch.stack(d).mean(dim=0)

    for batch in a.batch:
        per_pass = 1 if batch is None else max(1, batch // (2 * k))
        torch.manual_seed(0)
        scores = []
        with torch.inference_mode():
            zeros = torch.zeros(per_pass * 2 * k, inp["channels"], inp["height"], inp["width"], device=device)
            align(f + g, zeros, per_pass)  # warm-up
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            for i in range(0, len(paths), per_pass):
                group = paths[i:i + per_pass]
                views = torch.cat([views_of(p) for p in group]).to(device)
                # tolist() waits for the GPU: every score is computed when the clock stops.
                scores += (align(g, views, len(group)) - align(f, views, len(group))).tolist()
            secs = time.perf_counter() - start
        if len(scores) != len(paths) or not all(np.isfinite(scores)):
            raise SystemExit("bench_score.py: missing or non-finite scores")
        if a.json:
            print(json.dumps({
                "device": str(device),
                "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                "batch_views": per_pass * 2 * k,
                "images_per_pass": per_pass,
                "images": len(paths),
                "pairs": k,
                "seconds": secs,
                "images_per_s": len(paths) / secs,
                "torch": torch.__version__,
            }), flush=True)
        else:
            print(f"{len(paths) / secs:.2f}", flush=True)


if __name__ == "__main__":
    main()
