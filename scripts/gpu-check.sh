#!/usr/bin/env bash
# One-shot GPU check: the CuPy test suite, the PyTorch-CUDA test suite, the
# training example and gradient table on CuPy, and the GPU benchmark.
# Writes a short report (markdown + JSON + logs) to $OUT (default ./gpu-report).
#
#   bash scripts/gpu-check.sh            # on a machine with CUDA, CuPy and PyTorch
#   BENCH=0 bash scripts/gpu-check.sh    # test suites and CLI only
#   PROFILE=1 bash scripts/gpu-check.sh  # also the op-by-op profile of a large step
#
# Our other dependencies come from wheels in .whl/ when that folder exists
# (a machine without network), else they must be installed already.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-report}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python3}"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
report="$OUT/gpu-report.md"
{
  echo "# portable_nn GPU check"
  echo
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | sed 's/^/gpu: /'
  "$PY" - <<'PYEOF'
import importlib, sys
print("python:", sys.version.split()[0])
for m in ("numpy", "cupy", "torch", "jax", "array_api_compat", "array_api_extra", "array_api_strict", "hypothesis", "pytest"):
    try:
        print(f"{m}: {importlib.import_module(m).__version__}")
    except Exception as exc:
        print(f"{m}: not available ({type(exc).__name__})")
PYEOF
} > "$report" 2>&1

status=0
run_suite() {  # name, then pytest arguments
  local name="$1"; shift
  local t0=$SECONDS
  "$PY" -m pytest -q -p no:cacheprovider "$@" > "$OUT/pytest-$name.log" 2>&1
  local rc=$?
  [ $rc -ne 0 ] && status=1
  echo "- $name: $(tail -n 1 "$OUT/pytest-$name.log") (exit $rc, $((SECONDS - t0)) s)" >> "$report"
}
echo -e "\n## Test suites" >> "$report"
run_suite cupy --backend cupy
run_suite torch-cuda --backend torch --device cuda
echo -e "\n## Training example and gradient check on CuPy" >> "$report"
{
  echo '```'
  "$PY" -m portable_nn train --backend cupy --quiet 2>&1
  "$PY" -m portable_nn train --backend cupy --dataset digits --quiet 2>&1
  "$PY" -m portable_nn check --backend cupy 2>&1
  echo '```'
} >> "$report"
if [ "${PROFILE:-0}" = 1 ]; then
  { echo -e "\n## Where a large CuPy step spends its time"; echo "\`\`\`"; "$PY" -m benchmarks.gpu_profile 2>&1; echo "\`\`\`"; } >> "$report"
fi
if [ "${BENCH:-1}" = 1 ]; then
  echo -e "\n## Benchmark (CuPy backend vs PyTorch CUDA eager vs GEMM only)" >> "$report"
  {
    echo '```'
    "$PY" -m benchmarks --backend cupy --rounds "${ROUNDS:-5}" --json "$OUT/bench-gpu.json" 2>&1
    echo
    "$PY" -m benchmarks.memory --backend cupy --json "$OUT/memory-gpu.json" 2>&1
    echo '```'
  } >> "$report"
fi
cat "$report"
exit $status
