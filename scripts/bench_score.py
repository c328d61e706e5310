"""PyTorch eager SSLMem baseline for scripts/bench-score.sh (a benchmark, not a test).

What a researcher would write without sslmem: for each image, K pairs of views from
torchvision v2 transforms with the bundle's training augmentations (RandomResizedCrop with
its scale and ratio, antialias; RandomHorizontalFlip; ColorJitter with probability p;
RandomGrayscale; ToDtype; Normalize), one batched forward pass of the 2K views through each
encoder (PyTorch eager, `torch.inference_mode`, the intra-op threads PyTorch picks), l2
normalised representations, the mean l2 distance of the pairs under g minus under f.

The encoders are the bundle's own ONNX files, run op by op with torch.nn.functional (the ops
the trainer exports: Conv, Relu, Add, Gemm, GlobalAveragePool, Flatten, MaxPool,
BatchNormalization), so both sides compute with the same weights.

    python bench_score.py BUNDLE IMAGES_DIR K      prints images per second
"""
import json
import pathlib
import sys
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
            else:
                raise SystemExit(f"bench_score.py: op {op} is not supported")
            env[n.output[0]] = y
            if n.output[0] == self.output:
                return y
        return env[self.output]


def main():
    bundle, images_dir, k = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), int(sys.argv[3])
    man = json.loads((bundle / "sslmem.json").read_text())
    inp, aug, out = man["input"], man["augment"], man["representation"]["output"]
    f = [Eager(bundle / e["path"], out) for e in man["f"]]
    g = [Eager(bundle / e["path"], out) for e in man["g"]]
    steps = [v2.RandomResizedCrop((inp["height"], inp["width"]), scale=tuple(aug["crop"]["scale"]),
                                  ratio=tuple(aug["crop"]["ratio"]), antialias=True),
             v2.RandomHorizontalFlip(aug["flip_p"])]
    j = aug.get("jitter")
    if j:
        steps.append(v2.RandomApply([v2.ColorJitter(j["brightness"], j["contrast"], j["saturation"], j["hue"])],
                                    p=j["p"]))
    if aug.get("grayscale_p"):
        steps.append(v2.RandomGrayscale(aug["grayscale_p"]))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(inp["mean"], inp["std"])]
    transform = v2.Compose(steps)
    paths = sorted(images_dir.glob("*.png"))
    torch.manual_seed(0)

    def align(encoders, views):
        d = []
        for e in encoders:
            z = F.normalize(e(views), dim=1)
            d.append((z[0::2] - z[1::2]).norm(dim=1).mean())
        return torch.stack(d).mean()

    scores = []
    with torch.inference_mode():
        align(f + g, torch.zeros(2 * k, inp["channels"], inp["height"], inp["width"]))  # warm-up
        start = time.perf_counter()
        for p in paths:
            mode = "L" if inp["channels"] == 1 else "RGB"
            x = torch.from_numpy(np.array(Image.open(p).convert(mode)))
            x = x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1)
            views = torch.stack([transform(x) for _ in range(2 * k)])
            scores.append(float(align(g, views) - align(f, views)))
        secs = time.perf_counter() - start
    if len(scores) != len(paths) or not all(np.isfinite(scores)):
        raise SystemExit("bench_score.py: missing or non-finite scores")
    print(f"{len(paths) / secs:.2f}")


if __name__ == "__main__":
    main()
