"""PyTorch side of the pseudo-labelling throughput (docs/benchmarks.md, `cargo xtask pseudo-label`).

The official Depth Anything V2 code labels a folder the way its run.py does: cv2.imread, then
`DepthAnythingV2.infer_image(image, input_size)` (resize keeping the aspect ratio to a multiple
of 14, normalise, forward, bilinear back to the image size), one image at a time, no gradients.
Prints images/s over the whole folder after one warm-up image, like our summary.json.

usage: DA2_REPO=/path/to/Depth-Anything-V2 python3 benches/torch_pseudo_label.py \
           --weights da2_vits_random.pth --images assets/photos [--size 518] [--threads 2]
needs: pip install torch torchvision opencv-python-headless
"""

import argparse
import json
import os
import sys
import time

import cv2
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--size", type=int, default=518)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, os.environ["DA2_REPO"])
    from depth_anything_v2.dpt import DepthAnythingV2

    model = DepthAnythingV2(encoder="vits", features=64, out_channels=[48, 96, 192, 384])
    model.load_state_dict(torch.load(args.weights, map_location="cpu"))
    model.eval()
    exts = (".jpg", ".jpeg", ".png")
    paths = sorted(os.path.join(args.images, f) for f in os.listdir(args.images) if f.lower().endswith(exts))
    with torch.inference_mode():
        model.infer_image(cv2.imread(paths[0]), args.size)  # warm-up
        t0 = time.perf_counter()
        for p in paths:
            model.infer_image(cv2.imread(p), args.size)
        seconds = time.perf_counter() - t0
    print(json.dumps({"images": len(paths), "seconds": seconds, "images_per_s": len(paths) / seconds}))


if __name__ == "__main__":
    main()
