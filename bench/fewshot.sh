#!/bin/bash
# Few labels on a corpus a types model never saw: four arms x seeds at N training sentences, test F1 each.
#   bash bench/fewshot.sh MODEL DATA PROMPT EXAMPLES_PROMPT OUT [N] [SEEDS]
#   bash bench/fewshot.sh runs/multi path/to/wnut17 prompts/wnut17.yaml my_wnut17_examples.yaml runs/fewshot 50 "1 2 3"
# (a) the base model, a fixed head, no prompt; (b) the base model, the types head, PROMPT; (c) MODEL (a types model)
# fine-tuned under PROMPT; (d) as (c) under EXAMPLES_PROMPT (PROMPT with labelled examples in details.examples).
# The same schedule for every arm: learning rate 1e-4, batch 16, up to 20 epochs, dev F1 each epoch on 300 dev
# sentences, early stopping after 4 epochs without gain, the best checkpoint kept.
set -eu
MODEL=$1; DATA=$2; PROMPT=$3; EXAMPLES=$4; OUT=$5; N=${6:-50}; SEEDS=${7:-"1 2 3"}
mkdir -p "$OUT"
TYPES=$(python -c "import sys, yaml; print('[' + ','.join(yaml.safe_load(open(sys.argv[1]))['labels']) + ']')" "$PROMPT")
COMMON=(--data "$DATA" --set train_limit="$N" --set epochs=20 --set batch_size=16 --set dev_limit=300
        --set early_stopping_patience=4 --set learning_rate=1.0e-4 --set report_to=[none] --force)
for seed in $SEEDS; do
  promptbert train "${COMMON[@]}" --set seed="$seed" --prompt none --set "entity_types=$TYPES" --output "$OUT/a_n${N}_s$seed" > "$OUT/a_n${N}_s$seed.log" 2>&1
  promptbert train "${COMMON[@]}" --set seed="$seed" --prompt "$PROMPT" --set head=types --output "$OUT/b_n${N}_s$seed" > "$OUT/b_n${N}_s$seed.log" 2>&1
  promptbert train "${COMMON[@]}" --set seed="$seed" --base-model "$MODEL" --prompt "$PROMPT" --set head=types --output "$OUT/c_n${N}_s$seed" > "$OUT/c_n${N}_s$seed.log" 2>&1
  promptbert train "${COMMON[@]}" --set seed="$seed" --base-model "$MODEL" --prompt "$EXAMPLES" --set head=types --output "$OUT/d_n${N}_s$seed" > "$OUT/d_n${N}_s$seed.log" 2>&1
done
for arm in a b c d; do
  echo "$arm: $(grep -h '^test:' "$OUT"/${arm}_n${N}_s*.log | grep -v 'test:[a-z]' | awk '{print $4}' | tr '\n' ' ')"
done
