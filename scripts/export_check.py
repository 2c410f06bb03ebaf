#!/usr/bin/env python3
"""Runs an export of `cargo xtask export` in its target and compares its depth with ours.

Called by `cargo xtask export --check` (and the export tests) with a reference file of network
inputs and our depths. Exit 0: every image within the tolerance; 1: a difference or a load
problem; 3: the target's Python packages are missing, nothing was run (the message says what to
install). Usage: export_check.py FORMAT EXPORT REFERENCE [--official-repo DIR] [--fp16]
"""
import argparse
import sys
import types

NOT_RUN = 3


def missing(what):
    print(f"NOT RUN: python3 has no {what} (pip install {what})")
    sys.exit(NOT_RUN)


def rel(a, b):
    import numpy as np
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("format", choices=["transformers", "official", "onnx"])
    ap.add_argument("export")
    ap.add_argument("reference")
    ap.add_argument("--official-repo")
    ap.add_argument("--fp16", action="store_true", help="a float16 ONNX graph: compared with float32 depth at 1e-2")
    a = ap.parse_args()
    try:
        import numpy as np
        from safetensors.numpy import load_file
        from safetensors import safe_open
    except ImportError:
        missing("numpy safetensors")
    ref = load_file(a.reference)
    with safe_open(a.reference, "np") as f:
        meta = f.metadata() or {}
    images = sorted(k[len("input_"):] for k in ref if k.startswith("input_"))
    tol = 1e-2 if a.fp16 else {"transformers": 1e-5, "official": 1e-5, "onnx": 1e-4}[a.format]
    run = globals()[f"load_{a.format}"](a, meta)
    worst = 0.0
    for k in images:
        x = ref[f"input_{k}"]
        got = run(x)
        err = rel(got, ref[f"ours_{k}"])
        orig = rel(got, ref[f"original_{k}"])
        worst = max(worst, err)
        verdict = "ok" if err <= tol else "FAIL"
        print(f"{a.format} image {k} {x.shape[2]}x{x.shape[3]}: max|diff|/max = {err:.2e} against ours reading the export "
              f"(tolerance {tol:.0e}) {verdict}; {orig:.2e} against the model exported")
    print(f"{a.format}: worst {worst:.2e}, tolerance {tol:.0e}: {'PASS' if worst <= tol else 'FAIL'}")
    sys.exit(0 if worst <= tol else 1)


def load_transformers(a, meta):
    try:
        import torch
        from transformers import DepthAnythingForDepthEstimation
    except ImportError:
        missing("torch transformers")
    model, info = DepthAnythingForDepthEstimation.from_pretrained(a.export, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    if problems:
        print(f"transformers: loading reported {problems}")
        sys.exit(1)
    print("transformers: from_pretrained loaded it with no missing, unexpected or mismatched keys")
    model.eval()

    def run(x):
        with torch.no_grad():
            return model(pixel_values=torch.from_numpy(x)).predicted_depth.numpy()
    return run


def load_official(a, meta):
    try:
        import torch
    except ImportError:
        missing("torch")
    state = torch.load(a.export, map_location="cpu", weights_only=True)
    print(f"official: torch.load(weights_only=True) read {len(state)} tensors")
    if not a.official_repo:
        print("NOT RUN: the official model needs its code: pass --official-repo (a clone of "
              "github.com/DepthAnything/Depth-Anything-V2)")
        sys.exit(NOT_RUN)
    metric = bool(meta.get("max_depth"))
    sys.path.insert(0, f"{a.official_repo}/metric_depth" if metric else a.official_repo)
    # dpt.py imports cv2 and torchvision for infer_image only; the forward needs neither
    class Absent(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return 0
    for name in ["cv2", "torchvision", "torchvision.transforms"]:
        try:
            __import__(name)
        except ImportError:
            sys.modules[name] = Absent(name)
    from depth_anything_v2.dpt import DepthAnythingV2
    kw = dict(encoder=meta["encoder"], features=int(meta["features"]),
              out_channels=[int(c) for c in meta["out_channels"].split(",")])
    if metric:
        kw["max_depth"] = float(meta["max_depth"])
    model = DepthAnythingV2(**kw)
    model.load_state_dict(state, strict=True)
    print(f"official: DepthAnythingV2({kw}).load_state_dict(strict=True) loaded it")
    model.eval()

    def run(x):
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()
    return run


def load_onnx(a, meta):
    try:
        import onnx
        import onnxruntime as ort
    except ImportError:
        missing("onnx onnxruntime")
    onnx.checker.check_model(a.export)  # by path: a model with external data may pass 2 GB
    model = onnx.load(a.export, load_external_data=False)
    opset = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    print(f"onnx: onnx.checker accepts it (opset {opset[0]}, {len(model.graph.node)} nodes)")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the unused initializers kept for the round trip are expected
    session = ort.InferenceSession(a.export, options, providers=["CPUExecutionProvider"])

    def run(x):
        return session.run(None, {"pixel_values": x})[0]
    return run


if __name__ == "__main__":
    main()
