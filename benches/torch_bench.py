"""The PyTorch twin of every `cargo xtask bench` case: the same work, threads, dtype and input,
timed the same way (warm-ups, then repetitions; median, min, max), one JSON line on stdout.

Implementations (--impl):
  official      Depth-Anything-V2's own DepthAnythingV2 (its DINOv2 attention writes out the
                N x N matrix); needs the official checkout: --official-repo or DA2_REPO
  transformers  transformers' DepthAnythingForDepthEstimation with the same configuration
                (attention through scaled_dot_product_attention)
  torch         plain torch (the sgemm case)

Cases (--case), named as in xtask/src/bench:
  sgemm/N                      torch.mm of two N x N float32 matrices
  infer/ENC/HxW/bB             forward, random weights (speed does not depend on their values)
  train/vits/S/bB              forward + L_ssi + 2 L_gm (4 scales) + backward + AdamW (two groups)
  pseudo-label/vits/S          the official run.py loop: cv2.imread, infer_image(image, S) over
                               --images (a list file), with --weights

usage: python3 benches/torch_bench.py --case infer/vits/518x518/b1 --impl transformers \
           [--threads 2] [--warmup 1] [--reps 5] [--device cuda] [--precision bf16]
needs: pip install torch torchvision transformers opencv-python-headless
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch

HEADS = {"vits": (384, 12, 6, 64, [48, 96, 192, 384]), "vitb": (768, 12, 12, 128, [96, 192, 384, 768]),
         "vitl": (1024, 24, 16, 256, [256, 512, 1024, 1024])}


def official_model(encoder: str, repo: str):
    if not repo or not os.path.isdir(os.path.join(repo, "depth_anything_v2")):
        raise SystemExit("the official code is needed: --official-repo DIR or DA2_REPO=DIR "
                         "(a checkout of github.com/DepthAnything/Depth-Anything-V2)")
    sys.path.insert(0, repo)
    from depth_anything_v2.dpt import DepthAnythingV2

    _, _, _, features, out_channels = HEADS[encoder]
    return DepthAnythingV2(encoder=encoder, features=features, out_channels=out_channels)


def transformers_model(encoder: str):
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    dim, depth, heads, features, out_channels = HEADS[encoder]
    layers = {"vits": [3, 6, 9, 12], "vitb": [3, 6, 9, 12], "vitl": [5, 12, 18, 24]}[encoder]
    backbone = Dinov2Config(hidden_size=dim, num_hidden_layers=depth, num_attention_heads=heads, mlp_ratio=4,
                            image_size=518, patch_size=14, layerscale_value=1.0, layer_norm_eps=1e-6,
                            out_indices=layers, apply_layernorm=True, reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, fusion_hidden_size=features,
                                 neck_hidden_sizes=out_channels, head_hidden_size=32, reassemble_hidden_size=dim,
                                 depth_estimation_type="relative")
    model = DepthAnythingForDepthEstimation(config)
    return lambda x: model(pixel_values=x).predicted_depth, model


def build(impl: str, encoder: str, repo: str):
    """(forward(x) -> (B, H, W) depth, the nn.Module)."""
    if impl == "official":
        m = official_model(encoder, repo)
        return m, m
    if impl == "transformers":
        return transformers_model(encoder)
    raise SystemExit(f"--impl {impl}: this case runs official or transformers")


def normalize(d):
    t = d.median()  # the lower median, as torch.median and depth-losses
    return (d - t) / (d - t).abs().mean()


def objective(pred, target, scales=4, gm_weight=2.0):
    """L_ssi + gm_weight * L_gm over a full mask (depth-losses' definitions)."""
    residuals = [normalize(p.flatten()).view_as(p) - normalize(g.flatten()).view_as(g) for p, g in zip(pred, target)]
    ssi = sum(r.abs().sum() for r in residuals) / pred.numel()
    gm = 0.0
    for k in range(scales):
        num, den = 0.0, 0
        for r in residuals:
            r = r[:: 2**k, :: 2**k]
            num = num + (r[:, 1:] - r[:, :-1]).abs().sum() + (r[1:, :] - r[:-1, :]).abs().sum()
            den += r.numel()
        gm = gm + num / den
    return ssi + gm_weight * gm


def timed(step, warmup: int, reps: int, sync):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(reps):
        sync()
        t = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", required=True)
    ap.add_argument("--impl", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--official-repo", default=os.environ.get("DA2_REPO", ""))
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--precision", default="f32", choices=["f32", "bf16"],
                    help="bf16: the case runs under torch.autocast(dtype=torch.bfloat16)")
    ap.add_argument("--weights", help="pseudo-label: the official .pth")
    ap.add_argument("--images", help="pseudo-label: a text file listing the images")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    parts = args.case.split("/")
    kind = parts[0]
    flops = None
    count = 1  # items per repetition
    if kind == "sgemm":
        n = int(parts[1])
        a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
        step = lambda: torch.mm(a, b)  # noqa: E731
        flops = 2 * n**3
    elif kind == "infer":
        encoder, size, batch = parts[1], parts[2], int(parts[3][1:])
        h, w = (int(v) for v in size.split("x"))
        forward, module = build(args.impl, encoder, args.official_repo)
        module.eval().to(dev)
        x = torch.randn(batch, 3, h, w, device=dev)

        def step():
            with torch.inference_mode():
                forward(x)

        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            forward(x)
        flops, count = counter.get_total_flops(), batch
    elif kind == "train":
        encoder, size, batch = parts[1], int(parts[2]), int(parts[3][1:])
        forward, module = build(args.impl, encoder, args.official_repo)
        module.train().to(dev)
        enc = [p for n, p in module.named_parameters() if n.startswith(("pretrained", "backbone"))]
        dec = [p for n, p in module.named_parameters() if not n.startswith(("pretrained", "backbone"))]
        opt = torch.optim.AdamW([{"params": enc, "lr": 5e-6}, {"params": dec, "lr": 5e-5}],
                                betas=(0.9, 0.999), weight_decay=0.01)
        x = torch.randn(batch, 3, size, size, device=dev)
        target = torch.rand(batch, size, size, device=dev) + 0.1

        def step():
            opt.zero_grad()
            # the loss in float32, as depth-losses computes it (autocast leaves it to the caller)
            objective(forward(x).float(), target).backward()
            opt.step()

        count = batch
    elif kind == "pseudo-label":
        import cv2

        size = int(parts[2])
        model = official_model(parts[1], args.official_repo)
        model.load_state_dict(torch.load(args.weights, map_location="cpu"))
        model.eval().to(dev)
        paths = [p for p in open(args.images).read().splitlines() if p]

        def step():
            with torch.inference_mode():
                for p in paths:
                    model.infer_image(cv2.imread(p), size)

        count = len(paths)
    else:
        raise SystemExit(f"unknown case {args.case}")
    if args.precision == "bf16":
        plain = step

        def step():
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16):
                plain()

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = timed(step, args.warmup, args.reps, sync)
    try:
        import transformers

        tf_version = transformers.__version__
    except ImportError:
        tf_version = None
    print(json.dumps({
        "case": args.case, "impl": args.impl, "device": args.device, "precision": args.precision,
        "threads": args.threads, "warmup": args.warmup,
        "times_s": times, "items": count, "flops": flops,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak_gpu_bytes": torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None,
        "versions": {"torch": torch.__version__, "transformers": tf_version,
                     "python": sys.version.split()[0]},
    }))


if __name__ == "__main__":
    main()
