"""Makes the trainer's goldens with PyTorch (run from the repository root):
    python3 crates/depth-train/tests/golden/make_goldens.py

optim.safetensors: torch.optim.AdamW with three parameter groups (own lr, weight decay, betas,
eps), 10 steps on seeded random gradients, the learning rate of every group set after each step
as the official metric_depth/train.py does (lr * (1 - iters / total) ** 0.9, total = 10).
Keys: `init.<p>`, `grad.<step>.<p>`, `param.<step>.<p>` (after the step), `exp_avg.<p>` and
`exp_avg_sq.<p>` (after the last step), `lr.<step>` (the lr each group used at that step, f64),
and for clipping: `clip.grad.<p>` (a gradient set), `clip.total_norm`, `clip.out.<p>`
(torch.nn.utils.clip_grad_norm_ with max_norm 1.0).

events.tfevents: torch.utils.tensorboard.SummaryWriter's bytes for the scalars listed in
the metadata (`scalars`: tag, value, step, wall time), after the file_version event.
"""
import glob
import json
import os
import shutil
import tempfile

import torch
from safetensors.torch import save_file

here = os.path.dirname(os.path.abspath(__file__))
torch.manual_seed(1234)
shapes = {"a": (4, 5), "b": (5,), "c": (3, 3), "d": (7,)}
params = {k: torch.nn.Parameter(torch.randn(s, dtype=torch.float32)) for k, s in shapes.items()}
groups = [
    {"params": [params["a"], params["b"]], "lr": 1e-3, "weight_decay": 0.01, "betas": (0.9, 0.999), "eps": 1e-8},
    {"params": [params["c"]], "lr": 1e-2, "weight_decay": 0.0, "betas": (0.8, 0.99), "eps": 1e-6},
    {"params": [params["d"]], "lr": 5e-3, "weight_decay": 0.1, "betas": (0.9, 0.95), "eps": 1e-8},
]
base = [g["lr"] for g in groups]
opt = torch.optim.AdamW(groups, foreach=False)
out = {f"init.{k}": p.detach().clone() for k, p in params.items()}
total = 10
for step in range(total):
    out[f"lr.{step}"] = torch.tensor([g["lr"] for g in opt.param_groups], dtype=torch.float64)
    for k, p in params.items():
        g = torch.randn(p.shape, dtype=torch.float32) * (0.1 + step)
        p.grad = g
        out[f"grad.{step}.{k}"] = g.clone()
    opt.step()
    for k, p in params.items():
        out[f"param.{step}.{k}"] = p.detach().clone()
    for g, b in zip(opt.param_groups, base):
        g["lr"] = b * (1 - step / total) ** 0.9
for k, p in params.items():
    st = opt.state[p]
    out[f"exp_avg.{k}"] = st["exp_avg"].clone()
    out[f"exp_avg_sq.{k}"] = st["exp_avg_sq"].clone()

clip = {k: torch.nn.Parameter(torch.zeros(s)) for k, s in shapes.items()}
for k, p in clip.items():
    p.grad = torch.randn(p.shape) * 0.7
    out[f"clip.grad.{k}"] = p.grad.clone()
norm = torch.nn.utils.clip_grad_norm_(list(clip.values()), max_norm=1.0)
out["clip.total_norm"] = norm.reshape(1).to(torch.float64)
for k, p in clip.items():
    out[f"clip.out.{k}"] = p.grad.clone()
meta = {"torch": torch.__version__, "what": __doc__.strip()}
save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(here, "optim.safetensors"), metadata=meta)

from torch.utils.tensorboard import SummaryWriter  # noqa: E402

scalars = [("train/loss", 0.75, 0, 1700000000.25), ("train/loss", 0.5, 1, 1700000001.5),
           ("lr/encoder", 5e-6, 1, 1700000001.5), ("val/nyu/abs_rel", 0.123456, 10, 1700000002.0)]
tmp = tempfile.mkdtemp()
w = SummaryWriter(tmp)
for tag, v, step, t in scalars:
    w.add_scalar(tag, v, step, walltime=t)
w.close()
(f,) = glob.glob(os.path.join(tmp, "events.out.tfevents.*"))
shutil.copy(f, os.path.join(here, "events.tfevents"))
with open(os.path.join(here, "events.json"), "w") as fh:
    json.dump({"scalars": scalars, "torch": torch.__version__}, fh, indent=1)
print("ok", os.path.getsize(f))
