#!/usr/bin/env bash
# NCF on ML-1M with and without side features and posters: the README's NCF figures.
# Resumable: each variant has its own run directory and continues from its last checkpoint.
#
#   bash bench/ncf_ml1m.sh [extra `movierec train ncf` options]
#
# Data: ../shared/data/ml-1m (ratings.dat.gz when present, else ratings_ts_partial.dat.gz, as the
# SASRec benchmark) and ../shared/data/ml-1m-posters/poster_vectors_effnet_lite0.npz.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
out="${BENCH_DIR:-$here/../bench-runs}"
data="$out/data/ml-1m"
posters="${POSTERS:-$here/../shared/data/ml-1m-posters/poster_vectors_effnet_lite0.npz}"
mkdir -p "$out"
if [ ! -f "$data/manifest.json" ]; then
  movierec data --source "${ML1M_SOURCE:-$here/../shared/data/ml-1m}" --out "$data"
fi
common=(--data "$data" --epochs 20 --patience 4 "$@")
movierec train ncf "${common[@]}" --run-dir "$out/runs/ncf-side-posters" --posters "$posters"
movierec train ncf "${common[@]}" --run-dir "$out/runs/ncf-side"
movierec train ncf "${common[@]}" --run-dir "$out/runs/ncf-ids" --no-side-features
movierec train ncf "${common[@]}" --run-dir "$out/runs/ncf-gmf" --no-side-features --no-mlp
python "$here/bench/report.py" "$out"/runs/ncf-*
