#!/usr/bin/env bash
# The main job, end to end: manifest -> stats -> prepare -> split -> features -> visualize -> train -> evaluate -> card.
# Usage: scripts/demo.sh [DATA_DIR] [OUT_DIR]. DATA_DIR defaults to ../shared/corpus/dev, then to the
# embedded synthetic toy corpus.
set -euo pipefail
DATA="${1:-}"
OUT="${2:-runs/demo}"
SHARED_DEV="$(cd "$(dirname "$0")/.." && pwd)/../shared/corpus/dev"
mkdir -p "$OUT"

if [ -n "$DATA" ]; then
  [ -d "$DATA" ] || { echo "error: DATA=$DATA is not a folder" >&2; exit 2; }
  CORPUS="$DATA"; USED="your folder $DATA"
elif [ -f "$SHARED_DEV/manifest.csv" ]; then
  CORPUS="$SHARED_DEV"; USED="the shared dev corpus (real bona fide speech and real vocoder/TTS output, $SHARED_DEV)"
else
  CORPUS="$OUT/toy-corpus"
  USED="the EMBEDDED SYNTHETIC TOY CORPUS (not speech!) because ../shared/corpus/dev is absent and no DATA= folder was given"
  audios toy-corpus "$CORPUS"
fi
echo "== demo data: $USED"

echo "== 1/8 manifest"
audios manifest "$CORPUS" -o "$OUT/manifest.csv" --workers 2 --no-progress
echo "== 2/8 stats (shortcut check)"
audios stats "$OUT/manifest.csv" --out "$OUT/stats"
echo "== 3/8 prepare: 16 kHz FLAC, loudness-normalised to -23 dBFS RMS, edge silence trimmed"
audios prepare "$OUT/manifest.csv" "$OUT/prepared" --workers 2 --normalize rms --trim --no-progress
echo "== 4/8 split: by utterance, content hash and parent recording, speakers kept apart"
audios split "$OUT/prepared/manifest.csv" -o "$OUT/split/manifest.csv" --group-by speaker --seed 0
echo "== 5/8 features: spectral statistics"
audios features "$OUT/split/manifest.csv" -e spectral -o "$OUT/features/spectral.parquet" --workers 2 \
  --cache "$OUT/cache" --no-progress
echo "== 6/8 visualize"
audios visualize "$OUT/features/spectral.parquet" --method pca --color-by label --color-by generator \
  -o "$OUT/views"
echo "== 7/8 train-classic: logistic regression, chosen by grouped CV, calibrated on val, evaluated on test"
audios train-classic "$OUT/features/spectral.parquet" --model logreg --out "$OUT/logreg" --seed 0
echo "== 8/8 model card"
audios model-card "$OUT/logreg"

cat <<MSG

Done. Data used: $USED
  manifest:        $OUT/manifest.csv
  stats and plots: $OUT/stats/
  prepared audio:  $OUT/prepared/ (manifest: $OUT/prepared/manifest.csv)
  split manifest:  $OUT/split/manifest.csv (leak check beside it)
  features:        $OUT/features/spectral.parquet, views in $OUT/views/
  detector run:    $OUT/logreg/ (report, scores, metrics.json, MODEL_CARD.md)
MSG
