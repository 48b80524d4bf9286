#!/usr/bin/env bash
# SASRec on ML-1M, the benchmark behind the README's figures. Resumable: run it again and
# training continues from the last checkpoint of each run directory.
#
#   bash bench/sasrec_ml1m.sh [ce|bce|sampled-ce] [extra `movierec train sasrec` options]
#
# Data: ../shared/data/ml-1m (ratings.dat.gz when present, else ratings_ts_partial.dat.gz;
# the metrics JSON names the file used). Output under $BENCH_DIR (default ../bench-runs).
set -euo pipefail
loss="${1:-ce}"; shift || true
here="$(cd "$(dirname "$0")/.." && pwd)"
out="${BENCH_DIR:-$here/../bench-runs}"
data="$out/data/ml-1m"
mkdir -p "$out"
if [ ! -f "$data/manifest.json" ]; then
  movierec data --source "${ML1M_SOURCE:-$here/../shared/data/ml-1m}" --out "$data"
fi
movierec train sasrec --data "$data" --run-dir "$out/runs/sasrec-ml-1m-$loss" --loss "$loss" "$@"
