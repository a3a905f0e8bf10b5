#!/usr/bin/env bash
# The main job, end to end, as one pipeline (configs/pipelines/dev-demo.yaml):
# manifest -> stats -> prepare -> split -> features -> train-classic -> evaluate -> model card -> detect,
# then a 2-D view of the features and verdicts on a few files.
# Usage: scripts/demo.sh [DATA_DIR] [OUT_DIR]. DATA_DIR defaults to ../shared/corpus/dev, then to the
# embedded synthetic toy corpus.
set -euo pipefail
DATA="${1:-}"
OUT="${2:-runs/demo}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
SHARED_DEV="$HERE/../shared/corpus/dev"
mkdir -p "$OUT"

if [ -n "$DATA" ]; then
  [ -d "$DATA" ] || { echo "error: DATA=$DATA is not a folder" >&2; exit 2; }
  CORPUS="$DATA"; USED="your folder $DATA"
  if ! audios manifest "$DATA" -o "$OUT/probe/manifest.csv" --limit 1 --no-progress >/dev/null 2>&1; then
    # No class folders and no table: take every recording as real speech and make the spoofs ourselves.
    echo "== $DATA has no real/fake (human/ai, bonafide/spoof) folders: taking all of it as bona fide speech"
    echo "   and making spoofs by WORLD copy-synthesis (audios synth). No real TTS/vocoder spoofs are in this run."
    audios manifest "$DATA" --layout bonafide-only -o "$OUT/bonafide/manifest.csv" --workers 2 --no-progress
    audios synth "$OUT/bonafide/manifest.csv" --method world -o "$OUT/synth" --workers 2 --no-progress
    CORPUS="$OUT/corpus"
    python - "$OUT/synth/paired.csv" "$CORPUS/manifest.csv" <<'PY'
import sys
from pathlib import Path
import pandas as pd
t = pd.read_csv(sys.argv[1], keep_default_na=False)
t["path"] = [str((Path(r) / p).resolve()) for r, p in zip(t["root"], t["path"])]
out = Path(sys.argv[2]); out.parent.mkdir(parents=True, exist_ok=True)
t[["path", "label", "generator", "speaker", "utterance"]].to_csv(out, index=False)
PY
    USED="your folder $DATA as bona fide speech, plus WORLD copy-synthesis spoofs made from it (no real fakes)"
  fi
elif [ -f "$SHARED_DEV/manifest.csv" ]; then
  CORPUS="$(cd "$SHARED_DEV" && pwd)"
  USED="the shared dev corpus: real bona fide speech and real vocoder/TTS output ($CORPUS)"
else
  CORPUS="$OUT/toy-corpus"
  USED="the EMBEDDED SYNTHETIC TOY CORPUS (not speech!) because ../shared/corpus/dev is absent and no DATA= folder was given"
  [ -f "$CORPUS/manifest.csv" ] || audios toy-corpus "$CORPUS"
fi
echo "== demo data: $USED"

echo "== pipeline (stages whose inputs and settings are unchanged are skipped on a rerun)"
audios run "$HERE/configs/pipelines/dev-demo.yaml" --corpus "$CORPUS" -o "$OUT" --no-progress

echo "== 2-D view of the features"
audios visualize "$OUT/features/spectral.parquet" --method pca --color-by label --color-by generator -o "$OUT/views"

echo "== verdicts of the trained detector on a few test files"
TEST_FILES=$(python - "$OUT/split/manifest.csv" <<'PY'
import sys, pandas as pd
t = pd.read_csv(sys.argv[1], keep_default_na=False)
t = t[t["split"] == "test"]
picked = pd.concat([t[t["label"] == "bonafide"].head(3), t[t["label"] == "spoof"].head(3)])
print("\n".join(f"{r}/{p}" for r, p in zip(picked["root"], picked["path"])))
PY
)
# shellcheck disable=SC2086
audios detect $TEST_FILES --model "$OUT/train-classic" --no-progress

echo "== headline (test split, 95 % bootstrap intervals)"
python - "$OUT/evaluate/metrics.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
ci = m.get("ci95", {})
def row(name, key, pct):
    lo, hi = ci.get(key, [float("nan")] * 2)
    f = (lambda v: f"{100 * v:6.2f} %") if pct else (lambda v: f"{v:8.4f}")
    print(f"  {name:<8} {f(m[key])}   [{f(lo)}, {f(hi)}]")
print(f"  {m['n_bonafide']} bona fide and {m['n_spoof']} spoof test recordings")
row("EER", "eer", True)
row("minDCF", "min_dcf", False)
row("ROC-AUC", "roc_auc", False)
PY

cat <<MSG

Done. Data used: $USED
  run folder:      $OUT  (resolved pipeline, versions and git commit in run.json)
  stats and plots: $OUT/stats/overview.png
  split + leaks:   $OUT/split/manifest.csv, $OUT/split/leakcheck.json
  features:        $OUT/features/spectral.parquet, view in $OUT/views/
  detector:        $OUT/train-classic/ (model.joblib, MODEL_CARD.md)
  report:          $OUT/evaluate/report.html
MSG
