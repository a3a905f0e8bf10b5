#!/usr/bin/env bash
# Rebuild the bundled default detector (src/audios/data/default_detector: model.onnx, weights.npz, detector.json, train_info.json) exactly as
# shipped. Needs the dev corpus (default ../shared/corpus/dev, or AUDIOS_DEV_CORPUS) and espeak-ng; scratch files
# (decoded audio, features, synth spoofs, the train-classic run folder) go to AUDIOS_EXP_CACHE (default
# /tmp/audios_exp). Takes ~15-25 min on 2 CPU cores, most of it `audios synth`.
# Usage: scripts/train_default_detector.sh        (then rewrite MODEL_CARD.md from train_info.json)
set -euo pipefail
cd "$(dirname "$0")/.."
export AUDIOS_DEV_CORPUS="${AUDIOS_DEV_CORPUS:-$(pwd)/../shared/corpus/dev}"
export AUDIOS_EXP_CACHE="${AUDIOS_EXP_CACHE:-/tmp/audios_exp}"

# 1. Spoofs from every dev bona fide recording with the offline synth methods (resumable). All three are made (the
#    benchmarks compare them); the shipped model trains on WORLD only, the one that helped leave-one-generator-out.
audios synth "$AUDIOS_DEV_CORPUS/manifest.csv" --root "$AUDIOS_DEV_CORPUS" -m world,griffinlim,espeak \
  -o "$AUDIOS_EXP_CACHE/synth" --workers 2 --seed 0

# 2. Windows + augmentation + features + train-classic + validation; --install copies the model into the package.
python bench/experiments/default_detector.py --features portable --model logreg --synth-methods world --copies 1 --max-windows 3 \
  --seed 0 --run-dir "$AUDIOS_EXP_CACHE/default_detector_run" --install
