"""PyTorch side of the speed comparison (docs/benchmarks.md).

Builds Depth Anything V2 ViT-S in PyTorch with transformers' DepthAnythingForDepthEstimation
(the official architecture: DINOv2 ViT-S/14, DPT head with features 64 and out channels
[48, 96, 192, 384], random weights — speed does not depend on their values) and times the
forward pass on the CPU, float32, batch 1, with the same thread count as the Rust benchmark.

usage: python3 benches/torch_reference.py [--sizes 518x518,518x784] [--threads 2] [--iters 10]
       [--device cuda]
needs: pip install torch transformers
"""

import argparse
import json
import statistics
import time

import torch
from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config


def vits() -> DepthAnythingForDepthEstimation:
    backbone = Dinov2Config(
        hidden_size=384,
        num_hidden_layers=12,
        num_attention_heads=6,
        mlp_ratio=4,
        image_size=518,
        patch_size=14,
        layerscale_value=1.0,
        layer_norm_eps=1e-6,
        out_indices=[3, 6, 9, 12],
        apply_layernorm=True,
        reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        fusion_hidden_size=64,
        neck_hidden_sizes=[48, 96, 192, 384],
        head_hidden_size=32,
        reassemble_hidden_size=384,
        depth_estimation_type="relative",
    )
    return DepthAnythingForDepthEstimation(config).eval()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="518x518,518x784")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = vits().to(args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    for size in args.sizes.split(","):
        h, w = (int(v) for v in size.split("x"))
        x = torch.randn(1, 3, h, w, device=args.device)
        times = []
        with torch.inference_mode():
            for i in range(args.warmup + args.iters):
                sync()
                t = time.perf_counter()
                out = model(pixel_values=x).predicted_depth
                sync()
                if i >= args.warmup:
                    times.append(time.perf_counter() - t)
        print(json.dumps({
            "impl": "pytorch-transformers", "size": [h, w], "threads": args.threads, "device": args.device,
            "median_s": statistics.median(times), "min_s": min(times), "out": list(out.shape),
            "torch": torch.__version__,
        }))


if __name__ == "__main__":
    main()
