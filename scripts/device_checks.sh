#!/usr/bin/env bash
# Every device check in one run (≤ 8 min on one H100), one results file: $OUT/device_results.md.
# Prepared here, run on a lent GPU machine (docs/gpu.md):
#
#   scripts/device_checks.sh --pack        # here: build with CUDA + NCCL, pack binaries in device-bin/
#   run(command="scripts/device_checks.sh", carry=["device-bin"])   # there
#   scripts/device_checks.sh --dry-run     # here: every step on the CPU build at toy sizes
#                                          # (no CUDA tests; checks commands, configs, the report)
#
# Phases, most important first, under a budget (BUDGET, 470 s: a phase that needs more than is
# left is skipped and says so; every command is capped at what is left; PHASES=… picks phases):
#   tests  the CUDA op, fused-kernel, loss, model and NCCL tests (CUDA vs CPU, full float32:
#          NVIDIA_TF32_OVERRIDE=0); the model test composed, with DEPTH_CUDA_KERNELS=fused, and
#          built with cuDNN (with and without TF32)
#   train  200 training steps of the ViT-S student at 518² in float32 and in bf16
#          (configs/device_518.toml: loss curves, images/s, peak GPU memory) and 20 with
#          activation checkpointing (memory), the default (composed) path
#   speed  `xtask bench --device cuda` in float32 and bf16 (ViT-S/B/L at 518², batch 1 and 16, a
#          training step at batch 16: ours fused, ours composed, transformers; the xtask built
#          with cuDNN when the machine has libcudnn.so.9), results kept case by case
#   label  pseudo-labelling images/s with a random-weight ViT-L teacher, float32 and bf16, fused
#   torch  the training step in PyTorch with and without AMP (benches/torch_bench.py)
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=device-bin
mode=${1:-run}

if [ "$mode" = --pack ]; then
    set -e
    eval "$(../shared/gpu/setup-cuda.sh)"
    # NCCL to link against (the device's PyTorch ships the same library for run time)
    venv=$HOME/.cache/depth-cuda/venv
    nccl_lib() { ls -d "$venv"/lib/python3*/site-packages/nvidia/nccl/lib 2>/dev/null | head -1; }
    [ -n "$(nccl_lib)" ] || "$venv/bin/python" -m pip install -q nvidia-nccl-cu13
    ln -sf libnccl.so.2 "$(nccl_lib)/libnccl.so"
    # cuDNN likewise (the `cudnn` feature: convolutions through cuDNN)
    cudnn_lib() { ls -d "$venv"/lib/python3*/site-packages/nvidia/cudnn/lib 2>/dev/null | head -1; }
    [ -n "$(cudnn_lib)" ] || "$venv/bin/python" -m pip install -q --no-deps nvidia-cudnn-cu13
    ln -sf libcudnn.so.9 "$(cudnn_lib)/libcudnn.so"
    export LIBRARY_PATH="$(nccl_lib):$(cudnn_lib):${LIBRARY_PATH:-}"
    executables() { python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])'; }
    rm -rf "$BIN"; mkdir -p "$BIN"
    # without cuDNN (what the default path and every test run: no libcudnn needed), then with it
    cargo build --release --features nccl -p xtask --target-dir target/cuda
    cp target/cuda/release/xtask "$BIN/xtask"
    cargo build --release --features nccl,cudnn -p xtask --target-dir target/cuda
    cp target/cuda/release/xtask "$BIN/xtask_cudnn"
    tests=$(cargo test --release --no-run --target-dir target/cuda -p depth-core -p depth-losses -p depth-models \
        -p depth-train --features depth-core/cuda,depth-losses/cuda,depth-models/cuda,depth-train/nccl \
        --test cuda_ops --test cuda_losses --test cuda --test nccl --message-format=json | executables)
    while read -r name exe; do cp "$exe" "$BIN/test_$name"; done <<< "$tests"
    exe=$(cargo test --release --no-run --target-dir target/cuda -p depth-models --features depth-models/cudnn \
        --test cuda --message-format=json | executables | awk '{print $2}')
    cp "$exe" "$BIN/test_cuda_cudnn"
    strip "$BIN"/* && xz -T2 -9e "$BIN"/*
    ls -la "$BIN"; du -sh "$BIN"
    exit 0
fi

OUT=${OUT:-device-out}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
R="$OUT/device_results.md"
dry() { [ "$mode" = --dry-run ]; }
say() { echo "$*" | tee -a "$R"; }
: > "$R"
say "# Device checks ($(date -u +%FT%TZ))"
START=$(date +%s)
BUDGET=${BUDGET:-470}  # seconds for the whole script: a phase that needs more than is left is skipped
left() { echo $((BUDGET - ($(date +%s) - START))); }
# fits NEED: true when NEED seconds (what the phase needs to say anything) are left, else says
# the phase was skipped
fits() { [ "$(left)" -ge "$1" ] && return 0; say "(skipped: $1 s needed, $(left) s left of the budget)"; return 1; }
# PHASES picks phases (a second lease can run what the first one's budget skipped), e.g.
# PHASES=speed,label,torch scripts/device_checks.sh
PHASES=${PHASES:-tests,train,speed,label,torch}
want() { [[ ",$PHASES," == *",$1,"* ]] && return 0; say "(not in PHASES=$PHASES)"; return 1; }
# a command's timeout: at most $1 s, never past the budget (then killed 5 s after its TERM)
cap() { local l=$(( $(left) - 5 )); echo $(( l < $1 ? (l > 1 ? l : 1) : $1 )); }
run_capped() { local t=$1; shift; timeout -k 5 "$(cap "$t")" "$@"; }
DEV=cuda STEPS=200 CKPT_STEPS=20 PHOTOS=24 SIZE=518 TORCH_CASE=train/vits/518/b4
TOY=()
if dry; then
    # the CPU build, toy sizes: every command, config and the report's code run; no GPU call
    say "DRY RUN on the CPU at toy sizes: checks the commands and the report, measures nothing"
    cargo build --release -p xtask >/dev/null 2>&1 || { say "cargo build failed"; exit 1; }
    XT=target/release/xtask XTC=target/release/xtask DEV=cpu STEPS=3 CKPT_STEPS=2 PHOTOS=4 SIZE=56 TORCH_CASE=train/vits/56/b2
    TOY=(--set data.loader.augment.input_size=56 --set data.loader.augment.crop=56 --set data.loader.workers=2)
else
    XT="$BIN/xtask"
    for f in "$BIN"/*.xz; do unxz -kf "$f"; done
    chmod +x "$BIN"/xtask* "$BIN"/test_*
    # CUDA 13 libraries of the machine's PyTorch (cuBLAS, cudart, curand, NCCL), then the toolkit's
    libs=$(python3 -c 'import glob, os, nvidia; print(":".join(sorted({os.path.dirname(p) for d in nvidia.__path__ for p in glob.glob(d + "/**/lib*.so*", recursive=True)})))' 2>/dev/null)
    export LD_LIBRARY_PATH="$libs:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$R"
    # the binaries link NCCL, cuBLAS (and xtask_cudnn, test_cuda_cudnn cuDNN): a library the
    # loader cannot find is named here first; without libcudnn the speed phase takes plain xtask
    missing=$(ldd "$XT" "$BIN"/test_* 2>/dev/null | grep "not found" | sort -u)
    [ -z "$missing" ] || say "MISSING LIBRARIES (LD_LIBRARY_PATH=$LD_LIBRARY_PATH): $missing"
    XTC="$BIN/xtask_cudnn"
    if ldd "$XTC" | grep -q "not found"; then
        say "xtask_cudnn cannot load here ($(ldd "$XTC" | grep "not found" | tr -s ' ' | tr '\n' ' ')): speed phase without cuDNN"
        XTC="$XT"
    fi
fi

# peak GPU memory of a phase: nvidia-smi sampled every 100 ms while it runs
mem_start() { dry && return; nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$OUT/mem_$1.csv" & MEMPID=$!; }
mem_stop() { dry && return; kill "$MEMPID" 2>/dev/null; wait "$MEMPID" 2>/dev/null; say "peak GPU memory ($1): $(sort -n "$OUT/mem_$1.csv" | tail -1) MiB"; }
phase() { say ""; say "## $1"; }

phase "CUDA tests (CUDA against the CPU)"
dry && say "(skipped: no GPU)"
want tests || PHASE_OFF=1
# name, binary, env: against the CPU in full float32 (NVIDIA_TF32_OVERRIDE=0); the model test
# composed, with the fused kernels, and built with cuDNN with TF32 off and on (PyTorch's cuDNN
# default; its error is reported, the test's 1e-4 may fail then)
F32=NVIDIA_TF32_OVERRIDE=0
for spec in cuda_ops:cuda_ops:$F32 cuda_losses:cuda_losses:$F32 cuda:cuda:$F32 \
    cuda_model_fused:cuda:$F32,DEPTH_CUDA_KERNELS=fused cuda_cudnn:cuda_cudnn:$F32 cuda_cudnn_tf32:cuda_cudnn: \
    nccl:nccl:$F32; do
    dry && break
    [ -n "${PHASE_OFF:-}" ] && break
    IFS=: read -r name bin envs <<< "$spec"
    fits 15 || break
    env ${envs//,/ } timeout -k 5 "$(cap 60)" "$BIN/test_$bin" --nocapture --test-threads 1 > "$OUT/test_$name.log" 2>&1
    say "- $name: exit $?"
    grep -E "^test |rel|≤|forward|NCCL|result|panicked" "$OUT/test_$name.log" | head -40 | sed 's/^/    /' >> "$R"
done

train() { # name, extra --set args
    local name=$1; shift
    mem_start "$name"
    local t0=$(date +%s.%N)
    run_capped "$LIMIT" "$XT" train --config configs/device_518.toml --set "out=\"$OUT/run_$name\"" \
        --set "device=\"$DEV\"" --set schedule.steps=$STEPS "${TOY[@]}" "$@" > "$OUT/train_$name.log" 2>&1
    local rc=$?
    mem_stop "$name"
    say "- train $name: exit $rc, $(python3 -c "print(f'{$(date +%s.%N) - $t0:.0f}')") s wall"
}
phase "Training: ViT-S student, 518², batch 4 (configs/device_518.toml)"
want train && fits 150 && {
LIMIT=120 train f32 --set 'precision="f32"'
LIMIT=120 train bf16 --set 'precision="bf16"'
LIMIT=40 train bf16_ckpt --set 'precision="bf16"' --set activation_checkpointing=true --set schedule.steps=$CKPT_STEPS
python3 - "$OUT" "$STEPS" >> "$R" <<'PY'
import json, statistics, sys
out, steps = sys.argv[1], int(sys.argv[2])
window = max(1, steps // 10)
def log(name):
    steps = []
    try:
        for line in open(f"{out}/run_{name}/log.jsonl"):
            r = json.loads(line)
            if r.get("kind", "train") == "train" and "loss" in r:
                steps.append(r)
    except OSError:
        pass
    return steps
runs = {n: log(n) for n in ("f32", "bf16", "bf16_ckpt")}
for n, s in runs.items():
    ips = [r["images_per_s"] for r in s[window:]]
    print(f"- {n}: {len(s)} steps, median images/s after step {window}: {statistics.median(ips):.2f}" if ips else f"- {n}: no log")
a, b = runs["f32"], runs["bf16"]
if len(a) >= steps and len(b) >= steps:
    print("\n| steps | f32 loss | bf16 loss | difference |\n|---|---|---|---|")
    worst = 0
    for i in range(0, steps, window):
        x = statistics.mean(r["loss"] for r in a[i:i + window]); y = statistics.mean(r["loss"] for r in b[i:i + window])
        worst = max(worst, abs(y - x) / x)
        print(f"| {i + 1}-{i + window} | {x:.4f} | {y:.4f} | {100 * (y - x) / x:+.2f}% |")
    ia = statistics.median(r["images_per_s"] for r in a[window:]); ib = statistics.median(r["images_per_s"] for r in b[window:])
    print(f"\nbf16 / f32 images/s: {ib / ia:.2f}× (target ≥ 1.5×); worst {window}-step window {100 * worst:.1f}% (tolerance 10%)")
PY
}

phase "Speed: xtask bench --device $DEV (ours fused, ours composed, transformers; $(basename "$XTC"))"
want speed && for p in f32 bf16; do
    # the results are written after every case: a run cut by the budget keeps what it measured
    fits 60 || break
    cases=()
    dry && cases=(--cases infer/vits/518x518/b1 --python none)
    run_capped 200 "$XTC" bench --device "$DEV" --precision $p --reps 5 --warmup 2 \
        --timeout 60 --out "$OUT/bench_$p" "${cases[@]}" > "$OUT/bench_$p.log" 2>&1
    say "- bench $p: exit $?"
    [ -f "$OUT/bench_$p/results.md" ] && sed 's/^/    /' "$OUT/bench_$p/results.md" >> "$R"
done
# model FLOP utilisation of the training step against the H100 SXM datasheet (dense): 66.9
# TFLOP/s float32 without TF32 (the cuDNN convolutions take TF32), 989.4 bf16
python3 - "$OUT" >> "$R" <<'PY' 2>/dev/null
import json, sys
peak = {"f32": 66.9e12, "bf16": 989.4e12}
for p in ("f32", "bf16"):
    try:
        res = json.load(open(f"{sys.argv[1]}/bench_{p}/results.json"))
    except OSError:
        continue
    for c in res["cases"]:
        if c["case"].startswith("train/"):
            for r in c["rows"]:
                if r.get("gflop_per_s"):  # a row's stats are flattened into it
                    print(f"- MFU {p} {c['case']} {r['implementation']}: {100 * r['gflop_per_s'] * 1e9 / peak[p]:.1f}% of {peak[p] / 1e12:.0f} TFLOP/s")
PY

phase "Pseudo-labelling: random-weight ViT-L teacher, $PHOTOS procedural 518² photos, input $SIZE, fused kernels"
if want label && fits 90; then
run_capped 60 "$XT" data synth --count $PHOTOS --photos none --out "$OUT/photos" > "$OUT/synth.log" 2>&1
# a random ViT-L checkpoint: one training step of a scratch vitl at a small crop
run_capped 90 "$XT" train --config configs/device_518.toml --set "out=\"$OUT/vitl\"" --set "device=\"$DEV\"" \
    --set 'model.encoder="vitl"' --set schedule.steps=1 --set data.loader.augment.input_size=140 \
    --set data.loader.augment.crop=140 --set data.loader.workers=2 > "$OUT/vitl.log" 2>&1
say "- random ViT-L: exit $?"
for p in f32 bf16; do
    t0=$(date +%s.%N)
    DEPTH_CUDA_KERNELS=fused run_capped 90 "$XT" pseudo-label --teacher "$OUT/vitl/final.safetensors" --images "$OUT/photos/rgb" \
        --store "$OUT/labels_$p" --device "$DEV" --precision "$p" --batch-size 8 --input-size $SIZE > "$OUT/label_$p.log" 2>&1
    rc=$?
    say "- pseudo-label $p: exit $rc, labelling $(grep -o '[0-9.]* images/s' "$OUT/label_$p.log" | tail -1), $(python3 -c "print(f'{$PHOTOS / ($(date +%s.%N) - $t0):.2f}')") images/s with start-up ($PHOTOS photos)"
done
fi

phase "PyTorch twin: transformers' DepthAnything, same step (L_ssi + 2·L_gm, AdamW), 518², batch 4"
want torch && for p in f32 bf16; do
    fits 60 || break
    python3 -c 'import torch, transformers' 2>/dev/null || { say "- torch $p: skipped (no torch + transformers here)"; continue; }
    mem_start "torch_$p"
    run_capped 90 python3 benches/torch_bench.py --case "$TORCH_CASE" --impl transformers --device "$DEV" \
        --precision "$p" --warmup 3 --reps 20 > "$OUT/torch_$p.json" 2> "$OUT/torch_$p.err"
    rc=$?
    mem_stop "torch_$p"
    say "- torch $p: exit $rc: $(python3 -c "import json,statistics; d=json.loads(open('$OUT/torch_$p.json').read().strip().splitlines()[-1]); t=statistics.median(d['times_s']); print(f'{d[\"items\"]/t:.2f} images/s (median of {len(d[\"times_s\"])} steps), torch {d[\"versions\"].get(\"torch\")}')" 2>&1 | tail -1)"
done

say ""
say "done: $(date -u +%FT%TZ)"
