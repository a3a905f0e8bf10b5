"""Compare trained checkpoints on one folder of audio: per-model summaries and the files where models disagree.

Checkpoints are exported models (``best.pt``) or the trainer's epoch checkpoints
(``checkpoints/epoch_03_valeer_0.0412.pt``); a run folder stands for all of its epoch checkpoints (or its
``best.pt`` alone with ``best_only``). Each model scores each recording as ``audios detect`` would with a trained
model: the mean bona fide score (``logit[bona fide] - logit[spoof]``) of its first ``eval_windows`` windows,
called *real* when ``score >= threshold`` (the model's validation-EER threshold) and *fake* otherwise. The
confidence of a decision is ``sigmoid(|score - threshold|)``: the softmax probability of the decided class
once the logits are shifted so the threshold sits at probability 0.5.

Labels are known when the folder has class sub-folders (the ``folders`` manifest layout: real/fake,
human/ai, bonafide/spoof) or a manifest is given; then every model also gets its EER and minDCF.

Written to ``out_dir``: ``summary.csv`` and ``summary.md`` (one row per model), ``scores.csv`` (one row per
file: label, then ``score:<model>`` and ``decision:<model>`` columns), ``disagreements.csv`` (the rows of
``scores.csv`` where the decisions differ, with the counts of fake and real votes) and ``skipped.csv``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audios.audio import AudioConfig, load_audio
from audios.config import build_config
from audios.errors import AudioError, ConfigError
from audios.evaluate.metrics import equal_error_rate, min_dcf
from audios.models import get_model
from audios.models.aasist import CheckpointError
from audios.parallel import progress_bar
from audios.runs import write_text_atomic
from audios.train.trainer import (
    BEST_FORMAT,
    CHECKPOINT_PATTERN,
    TrainConfig,
    TrainedModel,
    _load_checkpoint,
    load_trained_model,
)

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = ("model", "checkpoint", "files", "fake", "real", "fake_fraction", "mean_confidence", "threshold",
                   "eer", "min_dcf", "accuracy")


def load_checkpoint_model(path: str | Path, device: str = "cpu") -> TrainedModel:
    """A scoring-ready model from an exported ``best.pt`` or a trainer epoch checkpoint (eval mode)."""
    path = Path(path)
    data = _load_checkpoint(path)
    if data.get("format") == BEST_FORMAT:
        return load_trained_model(path, device)
    if not {"model", "config", "metrics"} <= set(data):
        raise CheckpointError(path, "neither an exported model (best.pt) nor a training checkpoint")
    try:
        config = build_config(TrainConfig, data["config"])
        model = get_model(config.model)(**config.model_config)
        model.load_state_dict(data["model"], strict=True)
    except (RuntimeError, TypeError, ConfigError) as exc:
        raise CheckpointError(path, f"weights do not fit its model: {exc}") from exc
    metrics = data["metrics"]
    threshold = metrics.get("val_threshold")
    return TrainedModel(model=model.to(device).eval(), name=config.model, model_config=dict(config.model_config),
                        sample_rate=config.sample_rate, clip_samples=config.clip_samples,
                        eval_windows=config.eval_windows,
                        threshold=float(threshold) if threshold is not None and math.isfinite(threshold) else 0.0,
                        val_eer=float(metrics.get("val_eer", float("nan"))), epoch=int(data.get("epoch", 0)))


def find_checkpoints(inputs: list[str | Path], best_only: bool = False) -> dict[str, Path]:
    """``{display name: file}`` for run folders (their epoch checkpoints, or best.pt) and checkpoint files."""
    found: dict[str, Path] = {}

    def add(name: str, path: Path) -> None:
        unique, k = name, 2
        while unique in found:
            unique, k = f"{name}#{k}", k + 1
        found[unique] = path

    for item in inputs:
        p = Path(item)
        if p.is_dir():
            epochs = sorted((int(m.group(1)), c) for c in (p / "checkpoints").glob("epoch_*.pt")
                            if (m := CHECKPOINT_PATTERN.match(c.name)))
            if (best_only or not epochs) and (p / "best.pt").is_file():
                add(f"{p.name}/best", p / "best.pt")
            elif epochs:
                for epoch, c in epochs:
                    add(f"{p.name}/epoch_{epoch:02d}", c)
            else:
                raise CheckpointError(p, "no best.pt or checkpoints/epoch_*.pt in this folder")
        elif p.is_file():
            add(f"{p.parent.name}/{p.stem}" if p.parent.name else p.stem, p)
        else:
            raise CheckpointError(p, "no such checkpoint file or run folder")
    if not found:
        raise ConfigError("give at least one run folder or checkpoint file")
    return found


@dataclass(frozen=True)
class AudioSet:
    """Recordings to score: absolute ``paths``, ``labels`` (``bonafide``/``spoof`` or None each) and where from."""

    paths: tuple[Path, ...]
    labels: tuple[str | None, ...]
    source: str

    @property
    def labelled(self) -> bool:
        return bool(self.labels) and all(label is not None for label in self.labels)


def audio_set(audio_dir: str | Path | None = None, manifest: str | Path | None = None) -> AudioSet:
    """The recordings of ``manifest`` (with labels), or of ``audio_dir``: labelled when it has class folders."""
    from audios.manifest import audio_paths, read_manifest
    from audios.manifest.layouts.folders import LAYOUT, walk_audio

    if manifest is not None:
        table = read_manifest(manifest)
        return AudioSet(tuple(audio_paths(table)), tuple(str(v) for v in table["label"]), f"manifest {manifest}")
    if audio_dir is None:
        raise ConfigError("give an audio folder or a manifest to score")
    root = Path(audio_dir).resolve()
    if not root.is_dir():
        raise ConfigError(f"{root}: audio folder does not exist")
    if LAYOUT.detect(root):
        entries = LAYOUT.list_entries(root).entries
        return AudioSet(tuple(root / e.path for e in entries), tuple(e.label for e in entries),
                        f"{root} (class folders)")
    files = walk_audio(root)
    if not files:
        raise ConfigError(f"{root}: no audio files found")
    return AudioSet(tuple(root / f for f in files), tuple(None for _ in files), f"{root} (unlabelled)")


@dataclass(frozen=True)
class CompareResult:
    """The per-model summary, the per-file scores, the disagreeing rows and the skipped files."""

    out_dir: Path
    summary_table: pd.DataFrame
    scores: pd.DataFrame
    disagreements: pd.DataFrame
    skipped: pd.DataFrame

    def summary(self) -> str:
        lines = [f"{len(self.scores)} files scored by {len(self.summary_table)} models; "
                 f"{len(self.disagreements)} with disagreeing decisions"]
        for r in self.summary_table.itertuples():
            eer = f", EER {r.eer:.4f}, minDCF {r.min_dcf:.4f}" if pd.notna(r.eer) else ""
            lines.append(f"  {r.model}: {r.fake} fake / {r.real} real, mean confidence {r.mean_confidence:.3f}{eer}")
        if len(self.skipped):
            lines.append(f"skipped files: {len(self.skipped)} (see skipped.csv)")
        lines.append(f"written to {self.out_dir}: summary.csv, summary.md, scores.csv, disagreements.csv")
        return "\n".join(lines)


def _markdown(frame: pd.DataFrame) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "" if not math.isfinite(v) else f"{v:.4f}"
        return str(v)

    head = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns) + "\n"
    return head + "".join("| " + " | ".join(cell(v) for v in row) + " |\n" for row in frame.itertuples(index=False))


def compare_checkpoints(checkpoints: dict[str, Path], audio: AudioSet, out_dir: str | Path, *, device: str = "cpu",
                        progress: bool = False) -> CompareResult:
    """Score every recording of ``audio`` with every checkpoint; write the tables listed in the module doc."""
    out_dir = Path(out_dir)
    models = {name: load_checkpoint_model(path, device) for name, path in checkpoints.items()}
    rates = sorted({m.sample_rate for m in models.values()})
    scores = {name: np.full(len(audio.paths), np.nan) for name in models}
    skipped: list[tuple[str, str]] = []
    bar = progress_bar(len(audio.paths), "compare", progress)
    try:
        for i, path in enumerate(audio.paths):
            bar.update()
            try:
                signals = {sr: load_audio(path, AudioConfig(sample_rate=sr)) for sr in rates}
                for name, m in models.items():
                    scores[name][i] = m.score(signals[m.sample_rate])
            except (AudioError, ValueError, RuntimeError) as exc:
                reason = str(getattr(exc, "reason", exc))
                skipped.append((str(path), reason.splitlines()[0] if reason else type(exc).__name__))
                for name in models:
                    scores[name][i] = np.nan
    finally:
        bar.close()
    ok = np.isfinite(np.column_stack(list(scores.values()))).all(axis=1) if models else np.zeros(0, bool)
    table = pd.DataFrame({"path": [str(p) for p in audio.paths], "label": [v or "" for v in audio.labels]})
    for name, m in models.items():
        table[f"score:{name}"] = scores[name]
        table[f"decision:{name}"] = np.where(scores[name] >= m.threshold, "real", "fake")
    table = table[ok].reset_index(drop=True)
    decisions = table[[f"decision:{n}" for n in models]]
    table["n_fake"] = (decisions == "fake").sum(axis=1)
    table["n_real"] = (decisions == "real").sum(axis=1)
    disagree = table[(table["n_fake"] > 0) & (table["n_real"] > 0)].reset_index(drop=True)

    labels = table["label"].to_numpy()
    labelled = audio.labelled and len(table) > 0 and {"bonafide", "spoof"} <= set(labels)
    rows = []
    for name, m in models.items():
        s = table[f"score:{name}"].to_numpy(dtype=np.float64)
        fake = int((s < m.threshold).sum())
        confidence = 1.0 / (1.0 + np.exp(-np.abs(s - m.threshold)))
        eer = dcf = acc = float("nan")
        if labelled:
            eer = equal_error_rate(s, labels).eer
            dcf = min_dcf(s, labels).value
            acc = float(np.mean((s >= m.threshold) == (labels == "bonafide")))
        rows.append({"model": name, "checkpoint": str(checkpoints[name]), "files": int(s.size), "fake": fake,
                     "real": int(s.size) - fake, "fake_fraction": fake / s.size if s.size else float("nan"),
                     "mean_confidence": float(confidence.mean()) if s.size else float("nan"),
                     "threshold": m.threshold, "eer": eer, "min_dcf": dcf, "accuracy": acc})
    summary = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    skipped_frame = pd.DataFrame(skipped, columns=["path", "reason"])

    write_text_atomic(out_dir / "summary.csv", summary.to_csv(index=False, float_format="%.6f"))
    write_text_atomic(out_dir / "summary.md", f"Scored: {audio.source}\n\n" + _markdown(summary.drop(columns="checkpoint")))
    write_text_atomic(out_dir / "scores.csv", table.to_csv(index=False, float_format="%.6f"))
    write_text_atomic(out_dir / "disagreements.csv", disagree.to_csv(index=False, float_format="%.6f"))
    if len(skipped_frame):
        write_text_atomic(out_dir / "skipped.csv", skipped_frame.to_csv(index=False))
    log.info("compared %d checkpoints on %d files (%d skipped)", len(models), len(table), len(skipped_frame))
    return CompareResult(out_dir=out_dir, summary_table=summary, scores=table, disagreements=disagree,
                         skipped=skipped_frame)


__all__ = ["AudioSet", "CompareResult", "audio_set", "compare_checkpoints", "find_checkpoints",
           "load_checkpoint_model"]
