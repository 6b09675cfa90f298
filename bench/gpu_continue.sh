#!/bin/bash
# Train the `cpu` profile on a lent GPU machine (16 cores, one GPU) for MINUTES of training:
# from a checkpoint packed by bench/checkpoint_parts.py, or from scratch (PARTS = none).
#
#   python bench/checkpoint_parts.py pack RUN/step-N.json .carry/parts     # here
#   bash bench/gpu_continue.sh .carry/parts OUT MINUTES [fewshot-th train options]  # there
#   python bench/checkpoint_parts.py unpack OUT/final RUN                  # here, afterwards
#
# Environment: RUN (the run folder there, default /tmp/continue), WORKERS (data-loading
# processes, default 12), DEVICE (default cuda; DEVICE=cpu WORKERS=1 is a dry run here),
# FINAL=parts (default: OUT/final/ holds the last checkpoint, packed, to resume here) or
# FINAL=model (OUT/model.safetensors: the model alone in half precision, as shipped), SCORE=1
# (also score its feed-forward model there with fewshot-th evaluate --modes ff; default 0:
# score it here, for free).
# OUT/logs.tgz holds the losses, samples, the training log (and the scores).
set -u
parts=$1 out=$2 minutes=$3
shift 3
run=${RUN:-/tmp/continue} device=${DEVICE:-cuda} workers=${WORKERS:-12} final=${FINAL:-parts} scores=${SCORE:-0}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 MPLBACKEND=Agg NUMBA_NUM_THREADS=1
mkdir -p "$out" "$run"
nvidia-smi -L || true
python3 -c "import torch, numba; print('torch', torch.__version__, 'numba', numba.__version__)"
resume=--resume
if [ "$parts" = none ]; then  # a fresh run from step 0
    resume=""
else
    python3 bench/checkpoint_parts.py unpack "$parts" "$run" || exit 1
fi
train() {
    # OMP_NUM_THREADS=1: the data workers share the cores; the step itself runs on the GPU
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=1 python3 -m fewshot_th train --profile cpu --out "$run" $resume \
        --steps 10000000 --minutes "$minutes" --device "$device" --workers "$workers" \
        --checkpoint-every 1000 --sample-every 1000 "$@" >> "$run/train.log" 2>&1
    grep -a "^step" "$run/train.log" | tail -1
}
newest() { ls "$run"/step-*.json | sort | tail -1; }
score() {
    echo "== $1: $2"
    python3 -m fewshot_th evaluate --checkpoint "$2" --modes ff --no-fid \
        --out "$run/quality-$1" > "$run/quality-$1.txt" 2>&1
    cat "$run/quality-$1.txt"
}
train "$@"
last=$(newest)
[ "$scores" = 1 ] && score final "$last"
if [ "$final" = model ]; then
    python3 - "$last" "$run" <<'EOF'
import sys
from pathlib import Path
from fewshot_th.pretrained import export_pretrained
export_pretrained(sys.argv[1], "model", {"checkpoint": Path(sys.argv[1]).name},
                  directory=Path(sys.argv[2]))
EOF
    mv "$run/model.safetensors" "$out/"
else
    python3 bench/checkpoint_parts.py pack "$last" "$out/final"
fi
tar czf "$out/logs.tgz" -C "$run" --exclude='step-*' .
ls -la "$out"
