#!/usr/bin/env bash
# GPU check: one prepared run of what a CUDA machine can tell and a CPU-only one cannot.
#
#   bash bench/gpu_check.sh ARTIFACT CONLL_DIR [OUT_DIR]
#
# Needs the serving dependencies (onnxruntime-gpu with CUDA 13 + cuDNN 9 loadable, bentoml),
# and for the last step the training/export ones and a CUDA torch. Each step has its own time
# limit and a failing step does not stop the next, so a partial run still reports what it
# measured.
#   1. the environment: GPU, driver, ONNX Runtime's providers;
#   2. CoNLL test F1 of the artifact's auto choice (fp16 on the CUDA provider) in process;
#   3. the service vs in-process at 1/8/32 clients x 1 and 8 sentences, defaults (4 workers on a GPU);
#   4. the test suite on the GPU machine (training takes CUDA + bf16, export, service on CUDA);
#   5. the cost of one ORT call on the GPU (bench/batching.py: PROMPTBERT_CALL_COST/ROW_COST);
#   6. the service with 8 workers on the same GPU (4, the default, measured against 1 only).
# The most wanted come first; about 9 minutes in all at most. Results: docs/benchmarks.md, "GPU".
set -u
ART=${1:?artifact folder}
DATA=${2:?CoNLL folder}
OUT=${3:-bench/results/gpu}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
step() { echo; echo "=== $* ($(date +%T))"; }

step "0. this checkout, installed (no deps: they come from the bundle): promptbert.cli, .training and .export exist only in an install"
"$PY" -m pip install -q --no-deps --no-build-isolation --no-index -e . 2>&1 | tail -3

step "1. environment"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
timeout 60 "$PY" - <<'EOF'
import sys, onnxruntime as ort
from promptbert.runtime import cuda_available
print("python", sys.version.split()[0], "| onnxruntime", ort.__version__, ort.get_device(),
      "| available:", ort.get_available_providers(), "| cuda_available():", cuda_available())
EOF

step "2. CoNLL test F1, artifact's auto choice, in process"
timeout 90 "$PY" -m promptbert.cli evaluate "$ART" --data "$DATA" --split test --limit ${LIMIT:-0} --output "$OUT/eval_test.json"
# as served: whole documents through the word and sentence splitters, calls filled up to the token budget
timeout 60 "$PY" -m promptbert.cli evaluate "$ART" --data "$DATA" --split test --as-text documents --output "$OUT/eval_test_documents.json" \
    | grep -E "micro|as text"

step "3. service vs in process, defaults"
timeout 200 "$PY" bench/service.py --artifact "$ART" --data "$DATA" --limit ${LIMIT:-0} --clients 1,8,32 --per-request 1,8 \
    --passes 2 --livez-every 0 --out "$OUT/service.json"

step "4. test suite"
XDIST=$("$PY" -c "import xdist" 2>/dev/null && echo "-n 8")  # serially the suite took over 170 s on an H200 machine
timeout 240 "$PY" -m pytest -q -rfE -p no:cacheprovider --timeout 120 $XDIST ${PYTEST_ARGS:-} 2>&1 | tail -40
step "5. one ORT call's cost on this device"
timeout 60 "$PY" bench/batching.py --artifact "$ART" --data "$DATA" --chunks 1,8,32 --repeats 5 --limit ${LIMIT:-0} \
    --out "$OUT/batching.json" 2>&1 | grep -v -i warn

step "6. service vs in process, 8 workers on one GPU"
timeout 100 "$PY" bench/service.py --artifact "$ART" --data "$DATA" --limit ${LIMIT:-0} --clients 8,32 --per-request 1 \
    --passes 2 --livez-every 0 --serve-env PROMPTBERT_WORKERS=8 --out "$OUT/service_w8.json"

step done
