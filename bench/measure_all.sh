#!/usr/bin/env bash
# The main measurements of docs/benchmarks.md, in order, on an otherwise idle machine.
#   bash bench/measure_all.sh runs/conll2003 artifacts/conll2003 path/to/conll2003
set -euo pipefail
MODEL=${1:-runs/conll2003}; ART=${2:-artifacts/conll2003}; DATA=${3:?a CoNLL folder}
PY=${PY:-.venv/bin/python}; OUT=bench/results
mkdir -p "$OUT"
stage() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }

stage export
.venv/bin/promptbert export "$MODEL" --output "$ART" --force 2>&1 | grep -vE "Warning|warn|onnx_export\(|setup_onnx|inverted_mask|provider_bridge|CreateExecutionProvider|^\s*$"
stage int8 configurations
$PY bench/quant_configs.py --artifact "$ART" --data "$DATA" --out $OUT/quant_configs.json 2>&1 | grep -vE "Warning|warn"
stage evaluate int8 on test
.venv/bin/promptbert evaluate "$ART" --variant int8 --data "$DATA" --split test --output $OUT/eval_int8_test.json
stage "evaluate int8 as text (the service's raw-text path)"
for unit in sentences documents paragraphs wrapped; do
    .venv/bin/promptbert evaluate "$ART" --variant int8 --data "$DATA" --split test --as-text $unit --output $OUT/astext_test_$unit.json
done
stage inference benchmark
$PY bench/infer.py --model "$MODEL" --artifact "$ART" --data "$DATA" --split test --out $OUT/infer.json 2>&1 | grep -vE "Warning|warn"
stage service overhead
$PY bench/service.py --artifact "$ART" --data "$DATA" --split test --limit 1000 --out $OUT/service.json
for b in batched nobatch; do
  envarg=(); [ "$b" = nobatch ] && envarg=(--serve-env PROMPTBERT_MAX_BATCH_SIZE=1)
  for u in 1 8 32; do
    stage "locust $b users=$u"
    $PY -m promptbert.loadtests.run --artifact "$ART" --profile cpu --users $u --spawn-rate $u --duration 40s \
        --corpus "$DATA/test.txt" --out loadtests/results/$b-u$u "${envarg[@]}" || true
  done
done
stage done
