"""Write ``MODEL_CARD.md`` for a run folder from what the run recorded (no metric is recomputed here).

Reads ``run.json`` (exact command, versions, commit), ``config.yaml``, ``metrics.json`` (from
:mod:`audios.evaluate`) and, when present, ``train.json`` (training data summary of ``train-classic``). Anything a
run did not record is written as "not recorded" rather than guessed. The limitations section is partly generic
(what no detector trained on this kind of data can promise) and partly measured (dominant speakers, few
generators, small test sets, wide intervals, attacks the model misses).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import yaml

from audios.errors import ManifestError
from audios.runs import write_text_atomic

log = logging.getLogger(__name__)

CARD_FILE = "MODEL_CARD.md"
#: A speaker holding more than this share of a class's training clips makes the model partly a speaker detector.
DOMINANT_SPEAKER_SHARE = 0.3
#: Fewer test clips per class than this make every number in the card fragile.
SMALL_TEST = 100
#: An attack whose EER (against all bona fide test clips) is at least this is listed as a weak spot.
WEAK_EER = 0.10


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read ({exc})") from exc


def _pct(x: Any) -> str:
    return "–" if x is None else f"{100 * float(x):.2f} %"


def _num(x: Any) -> str:
    return "–" if x is None else f"{float(x):.4f}"


def _hours(x: Any) -> str:
    return "not recorded" if x is None else f"{float(x):.2f} h"


def _training_data(train: dict[str, Any] | None) -> list[str]:
    if not train or "data" not in train:
        return ["Not recorded by this run (no `train.json`)."]
    data = train["data"]
    lines = [f"Features: `{data.get('features')}`, extractor `{train['extractor']['extractor']['name']}` "
             f"(version {train['extractor']['extractor']['version']}, config "
             f"`{json.dumps(train['extractor']['extractor']['config'], sort_keys=True)}`), decoded with "
             f"`{json.dumps(train['extractor'].get('audio', {}), sort_keys=True)}`.",
             f"Split: {data.get('split_source')}.", "",
             "| split | class | clips | hours | generators | speakers | languages |", "|---|---|---|---|---|---|---|"]
    for split, classes in data.get("splits", {}).items():
        for label, e in classes.items():
            gens = e.get("generators") or []
            gen_text = ", ".join(gens) if label == "spoof" else (", ".join(gens) or "–")
            langs = e.get("languages")
            lang_text = ", ".join(f"{k} ×{v}" for k, v in langs.items()) if langs else "not recorded"
            lines.append(f"| {split} | {label} | {e['clips']} | {_hours(e.get('hours'))} | {gen_text or '–'} | "
                         f"{e.get('speakers', 'not recorded')} | {lang_text} |")
    train_split = data.get("splits", {}).get("train", {})
    lines.append("")
    for key, title in (("sources", "Sources"), ("sample_rates", "Native sample rates (Hz)"), ("formats", "Formats")):
        for label, e in train_split.items():
            if e.get(key):
                lines.append(f"- {title}, train {label}: " + ", ".join(f"{k} ×{v}" for k, v in e[key].items()))
    if not data.get("manifest_found"):
        lines += ["", "The source manifest was not found beside the feature table, so durations, languages and "
                      "formats are not recorded (hours for frame features are counted from frames)."]
    return lines


def _results(metrics: dict[str, Any] | None) -> list[str]:
    if not metrics:
        return ["No `metrics.json` in the run folder: the model has not been evaluated."]
    ci = metrics.get("ci95", {})
    boot = metrics.get("bootstrap", {})

    def row(name: str, key: str, fmt: Any) -> str:
        interval = ci.get(key)
        text = f"[{fmt(interval[0])}, {fmt(interval[1])}]" if interval else "–"
        return f"| {name} | {fmt(metrics.get(key))} | {text} |"

    lines = [f"Test set: {metrics.get('n_bonafide')} bona fide and {metrics.get('n_spoof')} spoof clips. "
             f"95 % intervals: percentile bootstrap over {boot.get('n_units')} {boot.get('unit')}s, "
             f"{boot.get('n_resamples')} resamples." if boot.get("n_resamples") else
             f"Test set: {metrics.get('n_bonafide')} bona fide and {metrics.get('n_spoof')} spoof clips; no "
             "bootstrap intervals were computed.", "",
             "| metric | value | 95 % CI |", "|---|---|---|",
             row("EER", "eer", _pct), row("minDCF", "min_dcf", _num), row("actDCF", "act_dcf", _num),
             row("Cllr (bits)", "cllr", _num), row("minCllr (bits)", "min_cllr", _num),
             row("ROC-AUC", "roc_auc", _num), row("AP (spoof positive)", "ap", _num), row("ECE", "ece", _num)]
    th = metrics.get("threshold") or {}
    if th:
        lines += ["", f"At the deployed threshold ({th.get('source')}): {_pct(th.get('p_miss'))} of bona fide clips "
                      f"rejected, {_pct(th.get('p_fa'))} of spoofs accepted, balanced accuracy "
                      f"{_pct(th.get('balanced_accuracy'))}."]
    cal = metrics.get("calibration")
    if cal:
        lines += [f"Calibration fitted on validation: Cllr {_num(cal.get('cllr_before'))} -> "
                  f"{_num(cal.get('cllr_after'))} bits on test."]
    costs = metrics.get("costs")
    if costs:
        lines += [f"DCF costs: Cmiss={costs.get('c_miss')}, Cfa={costs.get('c_fa')}, pi_spoof={costs.get('p_spoof')}."]
    return lines


def _weak_spots(metrics: dict[str, Any] | None) -> tuple[list[str], list[str]]:
    rows = [r for r in (metrics or {}).get("per_generator", []) if r.get("group") != "pooled"
            and r.get("mode") == "vs-all-bonafide"]
    if not rows:
        return ["No per-attack breakdown was recorded (no generator column in the test scores)."], []
    rows.sort(key=lambda r: -float(r["eer"]))
    lines = ["Each attack's spoofs scored against every bona fide test clip, worst first:", "",
             "| attack | spoof clips | EER | minDCF | ROC-AUC |", "|---|---|---|---|---|"]
    lines += [f"| {r['group']} | {r['n_spoof']} | {_pct(r['eer'])} | {_num(r['min_dcf'])} | {_num(r['roc_auc'])} |"
              for r in rows]
    weak = [r["group"] for r in rows if float(r["eer"]) >= WEAK_EER]
    tiny = [r["group"] for r in rows if int(r["n_spoof"]) < 5]
    if tiny:
        lines += ["", f"Fewer than 5 test clips: {', '.join(tiny)}; their EERs are anecdotes, not estimates."]
    return lines, weak


def _limitations(train: dict[str, Any] | None, metrics: dict[str, Any] | None, weak: list[str]) -> list[str]:
    out = [
        "- **Unseen generators.** The model was trained on the generators listed above only. Newer TTS (diffusion, "
        "language-model, end-to-end), voice conversion, commercial voices and in-the-wild fakes may score as bona "
        "fide; nothing in this card measures them.",
        "- **Codecs and channels.** Telephone bands, low-bitrate MP3/Opus/AAC, re-recording (replay) and "
        "streaming platforms change the spectral cues classic features rely on; performance on them is unknown.",
        "- **Noise and reverberation.** Training and test audio are mostly clean read speech; background noise, "
        "music and room reverberation were not part of the evaluation.",
    ]
    splits = (train or {}).get("data", {}).get("splits", {})
    langs = {k for c in splits.get("train", {}).values() for k in (c.get("languages") or {})}
    out.append("- **Languages.** " + (f"Training languages: {', '.join(sorted(langs))}; other languages are untested."
                                      if langs else "The training languages were not recorded (most public "
                                      "spoofing corpora are English read speech); other languages are untested."))
    for label, e in splits.get("train", {}).items():
        share = e.get("top_speaker_share")
        if share is not None and share > DOMINANT_SPEAKER_SHARE:
            out.append(f"- **Single-speaker sources.** Speaker `{e.get('top_speaker')}` holds {100 * share:.0f} % of "
                       f"the {label} training clips: the model may partly learn that voice (or its recording "
                       "chain) instead of synthesis artefacts.")
    bona, spoof = splits.get("train", {}).get("bonafide", {}), splits.get("train", {}).get("spoof", {})
    for key, what in (("sample_rates", "native sample rate (Hz)"), ("formats", "format")):
        for mine, other, label in ((bona, spoof, "bona fide"), (spoof, bona, "spoof")):
            counts, theirs = mine.get(key) or {}, other.get(key) or {}
            only = [f"{k} ({v} clips)" for k, v in counts.items() if k not in theirs and theirs]
            if only:
                out.append(f"- **Class-specific {what}.** Only {label} training clips have {', '.join(only)}: a "
                           "shortcut the model can learn instead of synthesis artefacts.")
    spoof_gens = spoof.get("generators") or []
    if spoof_gens and len(spoof_gens) < 10:
        out.append(f"- **Few attacks.** Only {len(spoof_gens)} spoof generator(s) in training.")
    if metrics:
        n_min = min(int(metrics.get("n_bonafide", 0)), int(metrics.get("n_spoof", 0)))
        if n_min < SMALL_TEST:
            out.append(f"- **Small test set.** The smaller class has {n_min} test clips, so one clip moves the EER by "
                       f"{100 / max(n_min, 1):.1f} points; read the intervals, not the point estimates.")
        eer_ci = metrics.get("ci95", {}).get("eer")
        if eer_ci and eer_ci[1] - eer_ci[0] > 0.10:
            out.append(f"- **Wide intervals.** The EER's 95 % interval spans {_pct(eer_ci[0])} to {_pct(eer_ci[1])}.")
    if weak:
        out.append(f"- **Weak attacks.** EER of at least {100 * WEAK_EER:.0f} % on: {', '.join(weak)}.")
    if train and "no split column" in str(train.get("data", {}).get("split_source", "")):
        out.append("- **Possible leakage.** The split was a shuffled row split: clips of one speaker or sentence "
                   "can be on both sides, which flatters the test numbers.")
    out.append("- **Shortcuts.** Sample rate, bandwidth, container, loudness normalisation and source repository "
               "can differ between classes in the training data; a classic back-end will use any of them. Resample "
               "and normalise before features, and check results per source.")
    return out


def _command(run: dict[str, Any]) -> str:
    """The run's full command line: ``command`` when it is one, else rebuilt from ``argv``."""
    command = str(run.get("command") or "")
    if command.startswith("audios "):
        return command
    argv = run.get("argv") or []
    return "audios " + " ".join(argv[1:]) if len(argv) > 1 else (command or "not recorded")


def write_model_card(run_dir: str | Path) -> Path:
    """Write ``run_dir/MODEL_CARD.md`` from the run's recorded files; returns its path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ManifestError(f"{run_dir}: run folder does not exist")
    run = _read_json(run_dir / "run.json")
    if run is None:
        raise ManifestError(f"{run_dir}: no run.json (not a run folder written by audios)")
    config: dict[str, Any] = {}
    if (run_dir / "config.yaml").is_file():
        config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    metrics = _read_json(run_dir / "metrics.json")
    train = _read_json(run_dir / "train.json")

    model = (train or {}).get("model") or config.get("model") or "unknown"
    details = [f"- Model: `{model}`" + (f" ({train['backend']})" if train and train.get("backend") else ""),
               f"- Hyperparameters: `{json.dumps((train or {}).get('params', 'not recorded'), default=str)}`"
               + (f", chosen by {train['selection']}" if train and train.get("selection") else ""),
               f"- Calibration: {(train or {}).get('calibration_source', 'not recorded')}; decision threshold "
               f"(raw score) {(train or {}).get('threshold', 'not recorded')}",
               f"- Score: higher = more bona fide; the detector outputs a calibrated log-likelihood ratio and "
               "p(fake) at a 0.5 prior.",
               f"- audios {run.get('audios_version')}, commit `{run.get('git_commit')}`, created "
               f"{run.get('created_utc')}; packages: "
               + ", ".join(f"{k} {v}" for k, v in (run.get("versions") or {}).items())]
    weak_lines, weak = _weak_spots(metrics)
    features_cmd = None
    if train and train.get("data", {}).get("features"):
        feat_run = Path(train["data"]["features"]).with_suffix(".run") / "run.json"
        if feat_run.is_file():
            fr = json.loads(feat_run.read_text())
            argv = fr.get("argv") or []
            features_cmd = "audios " + " ".join(argv[1:]) if len(argv) > 1 else None

    md = [f"# Model card: {model} ({run_dir.name})", "",
          "Generated by `audios model-card` from the files in this run folder. Relative paths are relative to the "
          "folder the run was started from.", "",
          "## Model details", "", *details, "",
          "## Intended use", "",
          "- Research and triage: flag recordings that may be synthetic (neural vocoder or TTS output) for a "
          "human to review, and benchmark detection methods on data like the training data.",
          "- Input: one speech recording at a time, any length the decoder accepts; it is decoded, mixed to mono and "
          "resampled exactly as during training.", "",
          "## Out-of-scope uses", "",
          "- Sole evidence for legal, forensic, journalistic or disciplinary decisions about a person.",
          "- Speaker verification or identification, and authentication without a human in the loop.",
          "- Audio unlike the training data (other languages, codecs, phone lines, noisy or music-mixed audio, "
          "unseen generator families) without a new evaluation on such audio.",
          "- Claims that a recording is genuine: a bona fide score only means the model did not recognise "
          "artefacts it was trained on.", "",
          "## Training data", "", *_training_data(train), "",
          "## Evaluation", "", *_results(metrics), "",
          "## Per-attack weak spots", "", *weak_lines, "",
          "## Known limitations and biases", "", *_limitations(train, metrics, weak), "",
          "## Reproduce", "",
          "```", *([features_cmd] if features_cmd else []), _command(run), "```", "",
          f"Versions and platform: see `run.json` ({run.get('platform')})."
          ]
    path = write_text_atomic(run_dir / CARD_FILE, "\n".join(md) + "\n")
    log.info("wrote %s", path)
    return path
