#!/bin/sh
# eval-routerbench.sh DATA_DIR SET OUT
#
# Trains the classifier strategy on DATA_DIR/routerbench_SET_train.jsonl,
# sweeps its knob over DATA_DIR/routerbench_SET_test.jsonl and writes every
# decision of every knob value to OUT ({"id","knob","model"} a line), so the
# figures can be recomputed from the data alone. The registry (each model's
# price and quality) comes from the train split; nothing is fitted to the
# test split. SET is arc_challenge, mbpp or winograde.
#
# Example: bench/eval-routerbench.sh ../shared/data/routing arc_challenge /tmp/arc.decisions.jsonl
set -eu
if [ $# -ne 3 ]; then
	echo "usage: $0 DATA_DIR SET OUT" >&2
	exit 2
fi
data=$1 set=$2 out=$3
train="$data/routerbench_${set}_train.jsonl"
test="$data/routerbench_${set}_test.jsonl"
cd "$(dirname "$0")/.."
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/caddy" ./cmd/caddy
"$bin/caddy" llm-route train --data "$train" --out "$bin/model.json" --seed 1
"$bin/caddy" llm-route eval --data "$test" --registry "$train" \
	--strategy "{\"name\":\"classifier\",\"model_file\":\"$bin/model.json\"}" \
	--steps 40 --decisions "$out"
