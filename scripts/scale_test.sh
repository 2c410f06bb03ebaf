#!/usr/bin/env bash
# The label store at scale on this machine (docs/distill.md quotes its output): N (default
# 100,000) small generated photos labelled into tar shards by a tiny teacher, killed with
# SIGKILL part-way and resumed, resumed once more when finished (start-up time), then read by the
# trainer. Writes $OUT/scale_results.md. Usage: scripts/scale_test.sh [N]   (OUT=/tmp/scale)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
OUT=${OUT:-/tmp/scale}
rm -rf "$OUT" && mkdir -p "$OUT"
R="$OUT/scale_results.md"
say() { echo "$*" | tee -a "$R"; }
cargo build --release -p xtask >/dev/null 2>&1
X=target/release/xtask
say "# Label store at scale ($(date -u +%FT%TZ), $(nproc) cores, $N photos)"

# N photos of 64×48 random pixels in folders of 1000 (mixed content, one size)
python3 - "$OUT/photos" "$N" <<'PY'
import os, random, struct, sys, zlib
root, n = sys.argv[1], int(sys.argv[2])
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
rnd = random.Random(0)
for i in range(n):
    d = f"{root}/d{i // 1000:04}"
    if i % 1000 == 0: os.makedirs(d, exist_ok=True)
    w, h = 64, 48
    rows = b"".join(b"\x00" + bytes(rnd.getrandbits(8) for _ in range(3 * w)) for _ in range(h))
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) \
        + chunk(b"IDAT", zlib.compress(rows, 1)) + chunk(b"IEND", b"")
    open(f"{d}/{i:06}.png", "wb").write(png)
PY
say "photos: $(du -sh "$OUT/photos" | cut -f1)"

# a tiny teacher: one step of a scratch ViT (embed 32, depth 2) saved by the trainer
$X train --config xtask/tests/data/tiny_train.toml --set "out=\"$OUT/teacher\"" --set schedule.steps=1 >/dev/null 2>&1
T="$OUT/teacher/final.safetensors"
label() { $X pseudo-label --teacher "$T" --images "$OUT/photos" --store "$OUT/store" --shard-size 1000 --input-size 56 --batch-size 16 "$@"; }

# killed part-way, then resumed to the end
timeout -s KILL 15 bash -c "$(declare -f label); X=$X T=$T OUT=$OUT label" >/dev/null 2>&1 || true
say "killed after 15 s: $(ls "$OUT/store"/*.index.json 2>/dev/null | wc -l) shards done"
/usr/bin/time -f "%e %M" -o "$OUT/time_resume" bash -c "$(declare -f label); X=$X T=$T OUT=$OUT label" > "$OUT/resume.log" 2>&1
say "resumed to the end: $(tail -1 "$OUT/resume.log"); $(cut -d' ' -f1 "$OUT/time_resume") s, peak RSS $(( $(cut -d' ' -f2 "$OUT/time_resume") / 1024 )) MiB"
# a finished store: the start-up of a rerun
/usr/bin/time -f "%e %M" -o "$OUT/time_rerun" bash -c "$(declare -f label); X=$X T=$T OUT=$OUT label" > "$OUT/rerun.log" 2>&1
say "rerun of the finished store: $(tail -1 "$OUT/rerun.log"); $(cut -d' ' -f1 "$OUT/time_rerun") s"
python3 - "$OUT/store" >> "$R" <<'PY'
import glob, json, os, sys
store = sys.argv[1]
n, label, image = 0, 0, 0
for p in glob.glob(f"{store}/*.index.json"):
    for s in json.load(open(p))["samples"]:
        n += 1; label += s["label_at"][1]; image += s["image_at"][1]
tars = sum(os.path.getsize(p) for p in glob.glob(f"{store}/*.tar"))
idx = sum(os.path.getsize(p) for p in glob.glob(f"{store}/*.index.json"))
print(f"store: {n} samples, labels {label / n:.0f} bytes each (float16 at the 56-pixel input + header), "
      f"images {image / n:.0f} bytes each, tars {tars / 1e6:.1f} MB, indexes {idx / 1e6:.1f} MB ({idx / n:.0f} bytes per sample)")
PY

# the trainer reads the sharded store: 300 steps of the tiny student, batch 16
cat > "$OUT/data.toml" <<TOML
[[dataset]]
name = "scale"
kind = "pseudo"
root = "photos"
store = "store"
licence = "generated"
TOML
cat > "$OUT/train.toml" <<TOML
out = "student"
[teacher]
model = "final=$T"
input_size = 56
[model]
embed_dim = 32
depth = 2
num_heads = 2
features = 16
output_bias = 1.0
[data]
config = "data.toml"
[data.loader]
batch_size = 16
workers = 2
[data.loader.augment]
input_size = 56
crop = 56
[[data.source]]
dataset = "scale"
[schedule]
steps = 300
[checkpoint]
every = 1000
[log]
plot_every = 1000
TOML
/usr/bin/time -f "%e %M" -o "$OUT/time_train" $X train --config "$OUT/train.toml" > "$OUT/train.log" 2>&1
python3 - "$OUT" >> "$R" <<'PY'
import json, statistics, sys
out = sys.argv[1]
steps = [json.loads(l) for l in open(f"{out}/student/log.jsonl") if '"train"' in l]
ips = statistics.median(s["images_per_s"] for s in steps[20:])
wall, rss = open(f"{out}/time_train").read().split()
print(f"training on the shards (tiny student, batch 16, 56² crops, 2 loader workers): {len(steps)} steps, "
      f"median {ips:.0f} images/s, {wall} s wall, peak RSS {int(rss) // 1024} MiB")
PY
cat "$R"
