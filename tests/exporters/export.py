"""Exports one small encoder the ways people export encoders, for tests/exporters.rs.

Usage: python export.py OUT_DIR GREY_A.png GREY_B.png RGB_A.png RGB_B.png

Writes into OUT_DIR, from one seeded PyTorch encoder (conv, ReLU, pooling, linear):
  legacy_dynamic.onnx   torch.onnx.export(dynamo=False) with a dynamic batch axis
  legacy_fixed.onnx     the same without dynamic axes (the batch axis fixed at 1)
  dynamo_dynamic.onnx   torch.onnx.export(dynamo=True) with a dynamic batch dimension
  dynamo_external.onnx  the same with its weights in an external data file
  fp16.onnx             the encoder in float16, float16 input and output
  nhwc.onnx             a channels-last wrapper: input [N, 28, 28, 1]
  nhwc_rgb.onnx         a channels-last wrapper of a 3-channel encoder: input [N, 28, 28, 3]
and expected.json: the l2-normalised distance between the two grey images' representations
(`distance`) and between the two RGB images' under the 3-channel encoder (`distance_rgb`), as
PyTorch computes them, with the input normalisation (x / 255 - 0.5) / 0.5.
"""

import copy
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image


class Encoder(torch.nn.Module):
    def __init__(self, channels=1):
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, 8, 3, stride=2, padding=1)
        self.pool = torch.nn.AdaptiveAvgPool2d(7)
        self.fc = torch.nn.Linear(8 * 49, 32)

    def forward(self, x):
        h = self.pool(torch.relu(self.conv(x)))
        return self.fc(torch.flatten(h, 1))


class ChannelsLast(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x.permute(0, 3, 1, 2))


def main():
    out, a, b, ra, rb = Path(sys.argv[1]), *sys.argv[2:6]
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    enc = Encoder().eval()
    x = torch.zeros(2, 1, 28, 28)
    names = dict(input_names=["input"], output_names=["representation"])
    torch.onnx.export(enc, (x,), out / "legacy_dynamic.onnx", dynamo=False,
                      dynamic_axes={"input": {0: "batch"}, "representation": {0: "batch"}},
                      **names)
    torch.onnx.export(enc, (x[:1],), out / "legacy_fixed.onnx", dynamo=False, **names)
    batch = torch.export.Dim("batch", min=1, max=4096)
    torch.onnx.export(enc, (x,), out / "dynamo_dynamic.onnx", dynamo=True,
                      dynamic_shapes={"x": {0: batch}}, external_data=False, **names)
    torch.onnx.export(enc, (x,), out / "dynamo_external.onnx", dynamo=True,
                      dynamic_shapes={"x": {0: batch}}, external_data=True, **names)
    # A copy: .half() converts in place, and the reference below uses the float32 weights.
    torch.onnx.export(copy.deepcopy(enc).half(), (x.half(),), out / "fp16.onnx", dynamo=False,
                      dynamic_axes={"input": {0: "batch"}, "representation": {0: "batch"}},
                      **names)
    torch.onnx.export(ChannelsLast(enc), (x.permute(0, 2, 3, 1),), out / "nhwc.onnx",
                      dynamo=False,
                      dynamic_axes={"input": {0: "batch"}, "representation": {0: "batch"}},
                      **names)

    rgb = Encoder(channels=3).eval()
    torch.onnx.export(ChannelsLast(rgb), (torch.zeros(2, 28, 28, 3),), out / "nhwc_rgb.onnx",
                      dynamo=False,
                      dynamic_axes={"input": {0: "batch"}, "representation": {0: "batch"}},
                      **names)

    def rep(model, path, mode):
        img = np.asarray(Image.open(path).convert(mode), dtype=np.float32)
        t = (torch.from_numpy(img) / 255.0 - 0.5) / 0.5
        t = t[None, None] if mode == "L" else t.permute(2, 0, 1)[None]
        with torch.no_grad():
            r = model(t).double()[0]
        return r / r.norm().clamp_min(1e-12)

    d = float((rep(enc, a, "L") - rep(enc, b, "L")).norm())
    d_rgb = float((rep(rgb, ra, "RGB") - rep(rgb, rb, "RGB")).norm())
    (out / "expected.json").write_text(json.dumps({"distance": d, "distance_rgb": d_rgb}))


if __name__ == "__main__":
    main()
