#!/usr/bin/env bash
# The GPU check, one command, about 10 minutes on one GPU (run it from anywhere; it works in the
# repository root, in the environment where recbole-tiger is installed with its [test] extra):
#
#   bash benchmarks/gpu_check.sh [DATA_PATH]        # DATA_PATH: default ../shared/data/atomic
#
# 1. the device: torch, CUDA, the GPU's name, where bf16 is native;
# 2. the tests that need CUDA (tests/test_cuda.py: TIGER and its dense head trained and ranked on
#    the GPU in float32 and bf16, rankings as on the CPU) and the precision tests;
# 3. with CUDA only: training throughput of the paper preset on Amazon Beauty in float32 and bf16
#    (benchmarks.throughput), then a short run of each (run_benchmark.py, BUDGET minutes of
#    training, default 2) with its epoch time and its valid and test metrics.
# Without CUDA, step 3 is skipped with the reason and the script still exits 0.
# Everything goes to $OUT (default runs/gpu-check): device.txt, tests.log, and the result tables.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu-check}
DATA=${1:-../shared/data/atomic}
BUDGET=${BUDGET:-2}
mkdir -p "$OUT"

python - <<'PY' | tee "$OUT/device.txt"
import torch
from recbole_tiger.precision import hardware_bf16, resolve_precision
print("torch", torch.__version__, "| CUDA build", torch.version.cuda)
if torch.cuda.is_available():
    print("GPU:", torch.cuda.get_device_name(0), "| bf16 native:", hardware_bf16("cuda"),
          "| precision auto ->", resolve_precision("auto", "cuda"))
else:
    print("no CUDA: torch.cuda.is_available() is False")
print("CPU bf16 native:", hardware_bf16("cpu"), "| precision auto on the CPU ->", resolve_precision("auto", "cpu"))
PY

python -m pytest -q -rs tests/test_cuda.py tests/test_precision.py 2>&1 | tee "$OUT/tests.log"

if ! python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA device here: the CUDA tests skipped (reasons above); throughput and the short runs need a GPU, skipped."
  exit 0
fi

python -m benchmarks.throughput --dataset=amazon-beauty --data_path="$DATA" --steps=30 --results_dir="$OUT" \
  paper-float32:precision=float32 paper-bfloat16:precision=bfloat16 2>&1 | tee "$OUT/throughput.log"
for precision in float32 bfloat16; do
  python run_benchmark.py --dataset=amazon-beauty --data_path="$DATA" --models=TIGER --tiger_preset=paper \
    --budget="$BUDGET" --variant="gpu-$precision" --precision="$precision" --eval_step=1 \
    --results_dir="$OUT" --checkpoint_dir="$OUT/saved" 2>&1 | tee "$OUT/run-$precision.log"
done
echo "gpu_check: done; tables in $OUT (amazon-beauty.md: epochs, train wall, valid and test metrics per precision)"
