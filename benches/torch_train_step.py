"""PyTorch side of the training-step comparison (docs/benchmarks.md, `cargo bench -p depth-train`).

One optimiser step of the official Depth Anything V2 ViT-S (the official repository's
`DepthAnythingV2`, random weights): forward on a batch, the Depth Anything objective
(L_ssi with the lower-median/MAD normalisation + 2 x multi-scale L_gm, 4 scales — the same
definitions as depth-losses and shared/fixtures/golden/losses.safetensors), backward, and
torch.optim.AdamW with the official two groups (encoder lr, decoder 10x). CPU, float32, the same
thread count as the Rust bench.

usage: DA2_REPO=/path/to/Depth-Anything-V2 python3 benches/torch_train_step.py \
           [--size 266] [--batch 2] [--threads 2] [--iters 10]
needs: pip install torch torchvision (the official code imports torchvision)
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch


def normalize(d: torch.Tensor) -> torch.Tensor:
    t = d.median()  # the lower median, as torch.median
    s = (d - t).abs().mean()
    return (d - t) / s


def objective(pred, target, mask, scales=4, gm_weight=2.0):
    ssi, gm = 0.0, 0.0
    valid = 0
    residuals = []
    for b in range(pred.shape[0]):
        m = mask[b] > 0
        p = torch.zeros_like(pred[b])
        g = torch.zeros_like(pred[b])
        p[m] = normalize(pred[b][m])
        g[m] = normalize(target[b][m])
        ssi = ssi + (p[m] - g[m]).abs().sum()
        valid += int(m.sum())
        residuals.append(((p - g) * m, m))
    ssi = ssi / valid
    for k in range(scales):
        step = 2**k
        num, den = 0.0, 0
        for r, m in residuals:
            r, m = r[::step, ::step], m[::step, ::step].float()
            mx = m[:, 1:] * m[:, :-1]
            my = m[1:, :] * m[:-1, :]
            num = num + ((r[:, 1:] - r[:, :-1]).abs() * mx).sum() + ((r[1:, :] - r[:-1, :]).abs() * my).sum()
            den += int(m.sum())
        gm = gm + num / den
    return ssi + gm_weight * gm


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=266)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    args = ap.parse_args()
    sys.path.insert(0, os.environ["DA2_REPO"])
    from depth_anything_v2.dpt import DepthAnythingV2

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = DepthAnythingV2(encoder="vits", features=64, out_channels=[48, 96, 192, 384]).train()
    groups = [
        {"params": [p for n, p in model.named_parameters() if "pretrained" in n], "lr": 5e-6},
        {"params": [p for n, p in model.named_parameters() if "pretrained" not in n], "lr": 5e-5},
    ]
    opt = torch.optim.AdamW(groups, lr=5e-6, betas=(0.9, 0.999), weight_decay=0.01)
    n = args.size
    x = torch.randn(args.batch, 3, n, n)
    target = torch.rand(args.batch, n, n) + 0.1
    mask = torch.ones(args.batch, n, n)
    times = []
    for i in range(args.warmup + args.iters):
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = objective(model(x), target, mask)
        loss.backward()
        opt.step()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(json.dumps({
        "what": "official DepthAnythingV2 vits train step (forward + ssi/gm objective + backward + AdamW)",
        "size": n, "batch": args.batch, "threads": args.threads, "torch": torch.__version__,
        "median_s": med, "min_s": min(times), "max_s": max(times), "images_per_s": args.batch / med,
    }))


if __name__ == "__main__":
    main()
