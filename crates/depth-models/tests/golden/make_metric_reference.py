"""Makes metric_vits_crop.safetensors: the official metric_depth DepthAnythingV2 (vits,
max_depth=20) with the shared seeded-random weights, on the centre 266x266 crop of the official
preprocessed input of fixtures/reference/vits_364/demo02.

Run from the repository root with PyTorch and a checkout of the official repository:
    DA2_REPO=/path/to/Depth-Anything-V2 python3 crates/depth-models/tests/golden/make_metric_reference.py
"""
import os
import sys

import torch
from safetensors.torch import load_file, save_file

repo = os.environ["DA2_REPO"]
fixtures = os.environ.get("DEPTH_FIXTURES", "../shared/fixtures")
sys.path.insert(0, os.path.join(repo, "metric_depth"))
from depth_anything_v2.dpt import DepthAnythingV2  # noqa: E402

torch.manual_seed(0)
model = DepthAnythingV2(encoder="vits", features=64, out_channels=[48, 96, 192, 384], max_depth=20.0)
state = torch.load(os.path.join(fixtures, "weights/da2_vits_random.pth"), map_location="cpu")
model.load_state_dict(state, strict=True)
model.eval()
x = load_file(os.path.join(fixtures, "reference/vits_364/demo02.safetensors"))["input"]
h0, w0 = (x.shape[2] - 266) // 2, (x.shape[3] - 266) // 2
x = x[:, :, h0 : h0 + 266, w0 : w0 + 266].contiguous()
with torch.no_grad():
    depth = model(x)
meta = {
    "what": "official metric_depth DepthAnythingV2(vits, max_depth=20) on da2_vits_random.pth",
    "input": f"reference/vits_364/demo02 input[:, :, {h0}:{h0 + 266}, {w0}:{w0 + 266}]",
    "crop_top": str(h0),
    "crop_left": str(w0),
    "max_depth": "20.0",
    "torch": torch.__version__,
}
out = os.path.join(os.path.dirname(__file__), "metric_vits_crop.safetensors")
save_file({"depth": depth.contiguous()}, out, metadata=meta)
print(out, tuple(depth.shape), float(depth.min()), float(depth.max()))
