#!/bin/bash
# One study row over seeds on the tune split (docs/training.md): for each seed, a params file (the project's, with
# the seed, absolute paths and optionally a preset), then `clips4 prototypes` into a cache of its own (the other
# stores linked from the project) and `clips4 train`; the train stage's tune score lands in OUT/log.
#   benchmarks/tune_seeds.sh NAME [PRESET]    (env: ROOT = project with a finished dvc repro, OUT, SEEDS, OMP_NUM_THREADS)
set -u
name=$1; preset=${2:-}; root=$(cd "${ROOT:-.}" && pwd); out=${OUT:-/tmp/tune_study}; seeds=${SEEDS:-"0 1 2"}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$out"
for seed in $seeds; do
  d=$out/$name-$seed; rm -rf "$d"; mkdir -p "$d/cache"
  for store in contours superpixels clip_dense segments; do ln -s "$root/data/cache/$store.zarr" "$d/cache/$store.zarr"; done
  python - "$root" "$d" "$seed" <<'PY'
import sys, yaml
root, d, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
p = yaml.safe_load(open(f"{root}/params.yaml"))
p["seed"] = seed
p["dataset"]["root"], p["video"]["root"] = f"{root}/data/synth", f"{root}/data/synth_video"
p["clip"]["pretrained"] = f"{root}/models/clip.pt"
yaml.safe_dump(p, open(f"{d}/params.yaml", "w"), sort_keys=False)
PY
  if [ -n "$preset" ]; then clips4 params preset "$preset" --params "$d/params.yaml" --presets-dir "$root/pipeline/presets" > "$d/preset.log" || exit 1; fi
  a=$(date +%s)
  clips4 prototypes --params "$d/params.yaml" --cache-dir "$d/cache" > "$d/prototypes.log" 2>&1 || { echo "$name $seed: prototypes failed, see $d/prototypes.log" | tee -a "$out/log"; continue; }
  b=$(date +%s)
  clips4 train --params "$d/params.yaml" --cache-dir "$d/cache" --out "$d/clips4.pt" --metrics "$d/clips4.json" \
    --live-dir "$d/live" > "$d/train.log" 2>&1 || { echo "$name $seed: train failed, see $d/train.log" | tee -a "$out/log"; continue; }
  c=$(date +%s)
  python -c "import json; r = json.load(open('$d/clips4.json')); print('$name', $seed, r['score']['split'], r['miou'], r['avgsim'], 'prototypes', $((b - a)), 's, train', $((c - b)), 's')" | tee -a "$out/log"
done
