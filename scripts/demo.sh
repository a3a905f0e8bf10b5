#!/usr/bin/env bash
# The main job, end to end: manifest -> stats -> prepare -> split (later stages are added as they land).
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

echo "== 1/4 manifest"
audios manifest "$CORPUS" -o "$OUT/manifest.csv" --workers 2 --no-progress
echo "== 2/4 stats (shortcut check)"
audios stats "$OUT/manifest.csv" --out "$OUT/stats"
echo "== 3/4 prepare: 16 kHz FLAC, loudness-normalised, edge silence trimmed, cut into 4 s clips"
audios prepare "$OUT/manifest.csv" -o "$OUT/prepared" --workers 2 --normalize rms --trim-silence --clip-s 4 --no-progress
echo "== 4/4 split: by utterance, content hash and parent recording; speakers kept apart where possible"
audios split "$OUT/prepared/manifest.csv" -o "$OUT/split.csv" --seed 0

cat <<MSG

Done. Data used: $USED
  manifest:        $OUT/manifest.csv
  stats and plots: $OUT/stats/
  prepared audio:  $OUT/prepared/ (manifest: $OUT/prepared/manifest.csv)
  split manifest:  $OUT/split.csv (leak check beside it)
MSG
