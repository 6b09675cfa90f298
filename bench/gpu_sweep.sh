#!/bin/bash
# Recipes of the `cpu` profile trained side by side on one lent GPU machine (16 cores, one
# GPU), each with fewshot-th train --eval-every; their final models come back in half precision.
#
#   bash bench/gpu_sweep.sh OUT MINUTES NAME "ARGS" [NAME "ARGS" ...]
#
# Run on the device machine once per task (bench/RESULTS.md records what it gave). Each
# recipe trains for MINUTES of wall-clock time; every minute it is scored on held-out
# SynthHeads identities (quality.jsonl). OUT receives NAME.safetensors (the model, float16,
# with NAME.json inside logs.tgz) and logs.tgz (logs, scores, samples, curves).
set -u
out=$1 minutes=$2
shift 2
runs=/tmp/sweep
mkdir -p "$runs" "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 MPLBACKEND=Agg NUMBA_NUM_THREADS=2 OMP_NUM_THREADS=2
nvidia-smi -L
python3 -c "import torch, numba; print('torch', torch.__version__, 'numba', numba.__version__)"

# Smoke test (also compiles and caches the numba kernels): if bfloat16 autocast fails on
# this machine, every recipe runs in float32 instead.
precision=""
if ! timeout 90 python3 -m fewshot_th train --out "$runs/smoke" --device cuda --steps 1000000 \
        --minutes 0.25 --eval-every 100 --identities 40 --test-identities 2 --workers 2 \
        > "$runs/smoke.log" 2>&1; then
    echo "smoke test with autocast failed:"; tail -5 "$runs/smoke.log"
    precision="--fp32"
fi
tail -2 "$runs/smoke.log"

limit=$(python3 -c "print(int($minutes * 60 + 100))")
names=()
while [ $# -ge 2 ]; do
    name=$1 recipe=$2
    shift 2
    names+=("$name")
    # shellcheck disable=SC2086
    timeout "$limit" python3 -m fewshot_th train --out "$runs/$name" --device cuda \
        --steps 1000000 --minutes "$minutes" --eval-every 1 --workers 3 --checkpoint-every 2000 \
        --sample-every 1000 \
        $precision $recipe > "$runs/$name.log" 2>&1 &
done
wait
for name in "${names[@]}"; do
    echo "== $name"; python3 bench/time_to_quality.py "$runs/$name" | tail -3
    tail -2 "$runs/$name.log" | grep -i error
    python3 - "$runs/$name" "$name" "$out" <<'EOF'
import shutil, sys
from pathlib import Path
from fewshot_th.checkpoint import latest_checkpoint
from fewshot_th.pretrained import export_pretrained
run, name, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
checkpoint = latest_checkpoint(run)
if checkpoint is None:
    sys.exit(f"{name}: no checkpoint")
export_pretrained(checkpoint, name, {"run": str(run)}, directory=run / "export")
shutil.copy(run / "export" / f"{name}.safetensors", out / f"{name}.safetensors")
EOF
done
tar czf "$out/logs.tgz" --exclude='*.safetensors' --exclude=smoke -C "$runs" .
ls -la "$out"
