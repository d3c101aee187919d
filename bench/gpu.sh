#!/usr/bin/env bash
# One prepared run for a lent GPU host (an H200 through the device tool; under ~8 minutes):
#   1. a CUDA PyTorch: the host's own when it already sees the GPU (the device tool's image:
#      torch, triton and transformers preinstalled, no network), else
#      `make install TORCH_PIN=... TORCH_INDEX=...` into .venv (a host with network);
#   2. the Triton kernel tests compiled on the GPU (tests/kernels/test_kernels.py with ZHUFU_KERNEL_DEVICE=cuda);
#   3. python -m bench.moe_kernels --preset base: fused MoE vs torch path vs transformers' loop at
#      decode and prefill shapes, with achieved GB/s and TFLOP/s;
#   4. python -m bench.engine --preset base: engine vs generate() at batch 1/32/256.
# Every step writes its log and JSON into $OUT (default ./gpu-results) and has its own time limit,
# so one failing step does not take the others down. From the repository root:
#   bash bench/gpu.sh                 # on the GPU host
#   DRY_RUN=1 bash bench/gpu.sh       # anywhere: the same steps on CPU with tiny shapes, no install
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
TORCH_PIN=${TORCH_PIN:-torch==2.13.0}
TORCH_INDEX=${TORCH_INDEX:-https://download.pytorch.org/whl/cu128}
DRY_RUN=${DRY_RUN:-0}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"

note() { echo "$*" | tee -a "$SUMMARY"; }

# step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log, note rc and duration
step() {
    local name=$1 limit=$2 start rc
    shift 2
    start=$(date +%s)
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    note "$name: rc=$rc in $(($(date +%s) - start)) s (limit $limit s)"
    tail -n 25 "$OUT/$name.log"
    return 0
}

sees_gpu() { "$1" -c 'import sys, torch, triton, transformers; sys.exit(not torch.cuda.is_available())' 2>/dev/null; }

note "bench/gpu.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname); DRY_RUN=$DRY_RUN"
if [ "$DRY_RUN" = 1 ]; then
    PY=${PYTHON:-.venv/bin/python}
    DEVICE=cpu
elif [ -n "${PYTHON:-}" ]; then
    PY=$PYTHON
    DEVICE=cuda
elif [ -x .venv/bin/python ] && sees_gpu .venv/bin/python; then
    PY=.venv/bin/python
    DEVICE=cuda
elif sees_gpu python3; then
    PY=python3  # a preinstalled CUDA image: nothing to install (and often no network)
    DEVICE=cuda
else
    step install 300 make install TORCH_PIN="$TORCH_PIN" TORCH_INDEX="$TORCH_INDEX"
    PY=.venv/bin/python
    DEVICE=cuda
fi
"$PY" - <<'PY' 2>&1 | tee -a "$SUMMARY"
import torch, transformers
try:
    import triton; tv = triton.__version__
except ImportError:
    tv = None
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
print(f"python torch {torch.__version__} (cuda {torch.version.cuda}), triton {tv}, transformers {transformers.__version__}, GPU {gpu}")
PY
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$SUMMARY"

# 2. kernel tests: compiled on the GPU (the dry run keeps Triton's interpreter on CPU)
KERNEL_ENV=(ZHUFU_KERNEL_DEVICE=cuda)
[ "$DEVICE" = cpu ] && KERNEL_ENV=(TRITON_INTERPRET=1 OMP_NUM_THREADS=1)
step kernel_tests 240 env "${KERNEL_ENV[@]}" "$PY" -m pytest -q --noconftest -p no:cacheprovider -p no:django \
    -o addopts="" tests/kernels/test_kernels.py

# 3. MoE kernels: base shapes on the GPU; the dry run times small shapes once
if [ "$DEVICE" = cuda ]; then
    step moe_kernels 150 "$PY" -m bench.moe_kernels --device cuda --preset base --repeats 20 --out "$OUT/moe_kernels.json"
else
    step moe_kernels 300 "$PY" -m bench.moe_kernels --device cpu --quick --repeats 1 --out "$OUT/moe_kernels.json"
fi

# 4. engine vs generate(): base preset, batch 1/32/256, prompts of 16 and 512 tokens
if [ "$DEVICE" = cuda ]; then
    step engine 240 "$PY" -m bench.engine --device cuda --preset base --batches 1,32,256 --prompt-lens 16,512 \
        --new-tokens 128 --repeats 1 --generate-batch-timeout 30 --out "$OUT/engine.json"
else
    step engine 300 "$PY" -m bench.engine --device cpu --preset tiny --batches 1,4 --prompt-lens 8 \
        --new-tokens 8 --repeats 1 --generate-batch-timeout 0 --out "$OUT/engine.json"
fi
note "done $(date -u +%Y-%m-%dT%H:%M:%SZ); results in $OUT"
