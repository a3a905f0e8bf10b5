"""Score fusion: a linear logistic-regression combination of several detectors' scores, output a calibrated LLR.

``llr = offset_ + sum_i weights_[i] * s_i`` where ``s_i`` is member ``i``'s score. The weights are learned on
validation scores by minimising the prior-weighted cross-entropy (the multi-score form of
:class:`audios.evaluate.calibration.LogisticCalibrator`, as in Brümmer's FoCal fusion), so the fused score is a
log-likelihood ratio whatever the validation class balance.

A fusion run folder holds ``fusion.json`` (members, weights, offset, threshold), the fused val/test scores,
``metrics.json`` and ``MODEL_CARD.md``. When every member has a detector spec (``load_detector`` form: a run
folder, ``aasist=PATH``...), :class:`FusedDetector` rebuilds the members and fuses their window scores, so the
folder is a detector ``audios detect --model`` and ``audios serve`` accept. The weights then apply to the
members' *detector* scores (what ``score_signals`` returns, e.g. calibrated LLRs for classic runs), so the
validation scores must be on that scale: :func:`score_members` produces them from a manifest.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit

from audios.audio import resample
from audios.errors import AudioError, AudiosError, ConfigError
from audios.evaluate.calibration import NotFittedError
from audios.evaluate.metrics import as_binary_labels, equal_error_rate
from audios.runs import write_text_atomic

log = logging.getLogger(__name__)

FUSION_FILE = "fusion.json"
FUSION_FORMAT = "audios-fusion"


class FusionError(AudiosError, ValueError):
    """Score files or a fusion folder cannot be used; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class FusionConfig:
    """``prior``: P(bona fide) the objective weights the classes by; ``l2``: ridge on the (standardised) weights.

    The ridge keeps the weights finite when the validation scores separate perfectly and shrinks the weight of a
    member that only adds noise.
    """

    prior: float = 0.5
    l2: float = 1e-3

    def __post_init__(self) -> None:
        if not 0.0 < self.prior < 1.0:
            raise ConfigError(f"FusionConfig.prior={self.prior} must lie strictly between 0 and 1")
        if not (self.l2 >= 0 and math.isfinite(self.l2)):
            raise ConfigError(f"FusionConfig.l2={self.l2} must be a finite non-negative number")


class LogisticFusion:
    """Weighted logistic regression from a score matrix (n, members) to LLRs; sklearn-style fit/transform."""

    def __init__(self, prior: float = 0.5, l2: float = 1e-3) -> None:
        self.prior = prior
        self.l2 = l2

    def get_params(self) -> dict[str, float]:
        return {"prior": self.prior, "l2": self.l2}

    def fit(self, scores: Any, labels: Any) -> LogisticFusion:
        """Learn ``weights_`` (members,) and ``offset_`` from validation scores (n, members); returns self."""
        config = FusionConfig(prior=self.prior, l2=self.l2)
        S = _score_matrix(scores)
        y = as_binary_labels(labels)
        if y.size != S.shape[0]:
            raise FusionError("labels", f"{y.size} labels for {S.shape[0]} score rows")
        if y.all() or not y.any():
            raise FusionError("labels", "fusion needs both bona fide and spoof validation scores")
        centre, scale = S.mean(axis=0), S.std(axis=0)
        scale[scale == 0] = 1.0
        Z = (S - centre) / scale
        Zb, Zs = Z[y], Z[~y]
        wb, ws = config.prior / Zb.shape[0], (1.0 - config.prior) / Zs.shape[0]
        prior_log_odds = math.log(config.prior / (1.0 - config.prior))
        k = Z.shape[1]

        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            a, b = theta[:k], theta[k]
            lb = Zb @ a + b + prior_log_odds
            ls = Zs @ a + b + prior_log_odds
            loss = wb * np.sum(np.logaddexp(0.0, -lb)) + ws * np.sum(np.logaddexp(0.0, ls)) + config.l2 * a @ a
            gb = -wb * expit(-lb)  # d loss / d lb
            gs = ws * expit(ls)
            grad = np.concatenate([Zb.T @ gb + Zs.T @ gs + 2 * config.l2 * a, [gb.sum() + gs.sum()]])
            return float(loss), grad

        x0 = np.concatenate([np.full(k, 1.0 / k), [0.0]])
        result = minimize(objective, x0=x0, jac=True, method="L-BFGS-B")
        a, b = result.x[:k], float(result.x[k])
        self.weights_ = a / scale
        self.offset_ = float(b - np.sum(a * centre / scale))
        self.converged_ = bool(result.success)
        return self

    def transform(self, scores: Any) -> np.ndarray:
        """Fused LLRs (n,) for a score matrix (n, members)."""
        if not hasattr(self, "weights_"):
            raise NotFittedError("LogisticFusion: call fit(scores, labels) before transform")
        S = _score_matrix(scores)
        if S.shape[1] != self.weights_.size:
            raise FusionError("scores", f"{S.shape[1]} score columns, the fusion has {self.weights_.size} members")
        return S @ self.weights_ + self.offset_


def _score_matrix(scores: Any) -> np.ndarray:
    S = np.asarray(scores, dtype=np.float64)
    if S.ndim == 1:
        S = S[:, None]
    if S.ndim != 2 or S.shape[0] == 0:
        raise FusionError("scores", f"expected a non-empty (n, members) matrix, got shape {S.shape}")
    if not np.isfinite(S).all():
        raise FusionError("scores", "contains NaN or infinite scores")
    return S


def join_scores(frames: list[pd.DataFrame], names: list[str], where: list[str] | None = None) -> pd.DataFrame:
    """Inner-join score tables on ``id``: columns id, label (+ generator, speaker) and one score column per name.

    Labels must agree between tables; ids missing from some table are dropped with a warning.
    """
    if not frames:
        raise FusionError("scores", "no score tables to join")
    if len(frames) != len(names) or len(set(names)) != len(names):
        raise FusionError("scores", f"need one unique name per score table, got {names}")
    where = where or names
    keep = [c for c in ("id", "label", "generator", "speaker") if c in frames[0].columns]
    out = frames[0][keep].copy()
    out[names[0]] = frames[0]["score"].to_numpy(dtype=np.float64)
    for df, name, src in zip(frames[1:], names[1:], where[1:], strict=True):
        part = df[["id", "label", "score"]].rename(columns={"score": name, "label": f"_label_{name}"})
        out = out.merge(part, on="id", how="inner", validate="one_to_one")
        bad = out["label"] != out[f"_label_{name}"]
        if bad.any():
            raise FusionError(src, f"label of id {out['id'][bad].iloc[0]!r} disagrees with the first score file")
        out = out.drop(columns=f"_label_{name}")
    dropped = max(len(df) for df in frames) - len(out)
    if dropped:
        log.warning("fusion: %d ids are not scored by every member and were dropped", dropped)
    if out.empty:
        raise FusionError(where[0], "no id is scored by every member")
    return out.reset_index(drop=True)


@dataclass(frozen=True)
class Member:
    """One fused detector: its display ``name``, its ``load_detector`` spec (None: scores only) and weight."""

    name: str
    spec: str | None
    weight: float


@dataclass(frozen=True)
class FusionResult:
    out_dir: Path
    members: tuple[Member, ...]
    offset: float
    threshold: float
    metrics: dict[str, Any]

    def summary(self) -> str:
        lines = [f"fused {len(self.members)} members into {self.out_dir}"]
        lines += [f"  {m.name}: weight {m.weight:+.4f}" for m in self.members]
        lines.append(f"  offset {self.offset:+.4f}, threshold {self.threshold:+.4f} (LLR)")
        for split, values in self.metrics.items():
            eers = ", ".join(f"{k} {v:.4f}" for k, v in values.items())
            lines.append(f"  {split} EER: {eers}")
        return "\n".join(lines)


def _eers(table: pd.DataFrame, columns: list[str]) -> dict[str, float]:
    y = as_binary_labels(table["label"].to_numpy())
    if y.all() or not y.any():
        return {}
    return {c: equal_error_rate(table[c].to_numpy(), y).eer for c in columns}


def fuse_scores(val: list[pd.DataFrame], names: list[str], out_dir: str | Path, test: list[pd.DataFrame] | None = None,
                specs: list[str | None] | None = None, config: FusionConfig = FusionConfig()) -> FusionResult:
    """Fit the fusion on ``val`` score tables (one per member), apply it to ``test``, write the run folder."""
    out_dir = Path(out_dir)
    specs = specs or [None] * len(names)
    if len(specs) != len(names):
        raise FusionError("members", f"{len(specs)} member specs for {len(names)} score tables")
    val_table = join_scores(val, names)
    model = LogisticFusion(prior=config.prior, l2=config.l2).fit(val_table[names].to_numpy(),
                                                                  val_table["label"].to_numpy())
    val_table["score"] = model.transform(val_table[names].to_numpy())
    y_val = as_binary_labels(val_table["label"].to_numpy())
    threshold = equal_error_rate(val_table["score"].to_numpy(), y_val).threshold
    members = tuple(Member(name=n, spec=s, weight=float(w)) for n, s, w in zip(names, specs, model.weights_,
                                                                              strict=True))
    out_dir.mkdir(parents=True, exist_ok=True)
    from audios.evaluate.scores import write_scores

    metrics = {"val": _eers(val_table, [*names, "score"])}
    write_scores(val_table, out_dir / "scores_val.csv")
    if test:
        test_table = join_scores(test, names)
        test_table["score"] = model.transform(test_table[names].to_numpy())
        metrics["test"] = _eers(test_table, [*names, "score"])
        write_scores(test_table, out_dir / "scores_test.csv")
    metrics = {split: {("fused" if k == "score" else k): v for k, v in m.items()} for split, m in metrics.items()}
    result = FusionResult(out_dir=out_dir, members=members, offset=model.offset_, threshold=float(threshold),
                          metrics=metrics)
    write_fusion(result, config, n_val=len(val_table))
    return result


def write_fusion(result: FusionResult, config: FusionConfig, n_val: int) -> Path:
    """``fusion.json``, ``metrics.json`` and ``MODEL_CARD.md`` in ``result.out_dir``."""
    out = result.out_dir
    data = {"format": FUSION_FORMAT, "prior": config.prior, "l2": config.l2, "offset": result.offset,
            "threshold": result.threshold, "threshold_source": "EER point of the fused validation scores",
            "n_val": n_val, "members": [{"name": m.name, "spec": m.spec, "weight": m.weight} for m in result.members]}
    write_text_atomic(out / "metrics.json", json.dumps(result.metrics, indent=2) + "\n")
    lines = ["# Fused detector", "",
             f"Logistic-regression fusion of {len(result.members)} detectors, fitted on {n_val} validation "
             f"recordings (prior {config.prior}); the fused score is a calibrated log-likelihood ratio "
             f"(llr = {result.offset:+.4f} + sum of weight x member score).", "",
             "| member | weight | spec |", "|---|---|---|"]
    lines += [f"| {m.name} | {m.weight:+.4f} | {m.spec or '(scores only)'} |" for m in result.members]
    lines += ["", f"Threshold {result.threshold:+.4f} (EER point on the fused validation scores).", ""]
    for split, values in result.metrics.items():
        lines.append(f"{split} EER: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()))
    write_text_atomic(out / "MODEL_CARD.md", "\n".join(lines) + "\n")
    return write_text_atomic(out / FUSION_FILE, json.dumps(data, indent=2) + "\n")


def read_fusion(folder: str | Path) -> dict[str, Any]:
    """The checked contents of ``folder/fusion.json``."""
    folder = Path(folder)
    file = folder / FUSION_FILE if folder.is_dir() else folder
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError:
        raise FusionError(file, "fusion.json not found (make one with `audios fuse`)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise FusionError(file, f"cannot read ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FUSION_FORMAT:
        raise FusionError(file, f"not an audios fusion file (format tag {FUSION_FORMAT!r} missing)")
    members = data.get("members")
    if not isinstance(members, list) or not members:
        raise FusionError(file, "no members")
    for i, m in enumerate(members):
        if not isinstance(m, dict) or not isinstance(m.get("weight"), (int, float)) or "name" not in m:
            raise FusionError(file, f"members[{i}] needs a name and a numeric weight")
    for key in ("offset", "threshold"):
        if not isinstance(data.get(key), (int, float)):
            raise FusionError(file, f"{key!r} must be a number")
    return data


def _resolve_spec(spec: str, base: Path) -> str:
    """Member specs are stored as given; relative paths are tried against the fusion folder first."""
    if "=" in spec:
        kind, path = spec.split("=", 1)
        p = Path(path)
        return f"{kind}={base / p}" if not p.is_absolute() and (base / p).exists() else spec
    p = Path(spec)
    return str(base / p) if not p.is_absolute() and (base / p).exists() else spec


class FusedDetector:
    """A fusion folder as a detector: every member scores each window (at its own rate), then the weights apply."""

    kind = "fused"

    def __init__(self, folder: str | Path) -> None:
        from audios.detect import load_detector

        self.path = Path(folder)
        data = read_fusion(self.path)
        missing = [m["name"] for m in data["members"] if not m.get("spec")]
        if missing:
            raise FusionError(self.path / FUSION_FILE, f"members {missing} have no detector spec; re-run "
                              "`audios fuse` with --member so that the fused model can score audio")
        self.members = [load_detector(_resolve_spec(str(m["spec"]), self.path)) for m in data["members"]]
        self.weights = np.array([float(m["weight"]) for m in data["members"]])
        self.member_names = [str(m["name"]) for m in data["members"]]
        self.offset = float(data["offset"])
        self.threshold = float(data["threshold"])
        self.name = "fused-" + "+".join(self.member_names)
        self.sample_rate = max(d.sample_rate for d in self.members)
        self.window_s = max(d.window_s for d in self.members)
        self.hop_s = min(d.hop_s for d in self.members)

    def member_scores(self, signals: list[np.ndarray]) -> np.ndarray:
        """Each member's scores of ``signals`` (at ``sample_rate``), shape (n, members)."""
        cols = []
        for d in self.members:
            xs = [resample(np.asarray(s, dtype=np.float32), self.sample_rate, d.sample_rate) for s in signals]
            cols.append(np.asarray(d.score_signals(xs), dtype=np.float64))
        return np.stack(cols, axis=1)

    def score_signals(self, signals: list[np.ndarray]) -> np.ndarray:
        return self.member_scores(signals) @ self.weights + self.offset

    def info(self) -> dict[str, Any]:
        infos = [d.info() for d in self.members]
        params = [i.get("n_params") for i in infos]
        card = "Fusion of " + ", ".join(f"{n} (weight {w:+.3f})" for n, w in zip(self.member_names, self.weights,
                                                                                   strict=True))
        return {"name": self.name, "kind": self.kind, "version": infos[0].get("version"), "threshold": self.threshold,
                "window_s": self.window_s, "hop_s": self.hop_s, "sample_rate": self.sample_rate, "calibrated": True,
                "size_bytes": sum(int(i.get("size_bytes") or 0) for i in infos),
                "n_params": sum(params) if all(p is not None for p in params) else None,
                "card": card, "path": str(self.path),
                "members": [{"name": n, "weight": float(w), "detector": i.get("name")}
                            for n, w, i in zip(self.member_names, self.weights, infos, strict=True)]}


def score_members(specs: list[str], manifest: pd.DataFrame, progress: bool = False) -> list[pd.DataFrame]:
    """Score every manifest row with each detector (``load_detector`` specs) through ``detect_path``.

    Returns one score table per member (id, score, label, generator/speaker when present); files a member cannot
    read are left out of its table (and so out of the join).
    """
    from audios.detect import detect_path, load_detector
    from audios.manifest.io import audio_paths
    from audios.parallel import progress_bar

    for column in ("id", "label", "path", "root"):
        if column not in manifest.columns:
            raise FusionError("manifest", f"missing column {column!r}")
    paths = audio_paths(manifest)
    extra = [c for c in ("generator", "speaker") if c in manifest.columns]
    tables = []
    for spec in specs:
        detector = load_detector(spec)
        rows = []
        bar = progress_bar(len(paths), f"score {detector.name}", progress)
        for (_, row), path in zip(manifest.iterrows(), paths, strict=True):
            try:
                score = detect_path(detector, path)["score"]
            except AudioError as exc:
                log.warning("%s: skipped (%s)", path, exc.reason)
                bar.update()
                continue
            rows.append({"id": str(row["id"]), "score": float(score), "label": str(row["label"]).lower(),
                         **{c: str(row[c]) for c in extra}})
            bar.update()
        bar.close()
        if not rows:
            raise FusionError(spec, "scored no file of the manifest")
        tables.append(pd.DataFrame(rows))
    return tables


def member_name(spec: str, taken: set[str]) -> str:
    """A short unique column name for a member spec (its folder or file stem)."""
    base = Path(spec.split("=", 1)[-1]).name or spec
    base = Path(base).stem if base.endswith((".csv", ".pt", ".pth", ".joblib", ".txt")) else base
    name, i = base, 2
    while name in taken or name in ("id", "label", "generator", "speaker", "score"):
        name, i = f"{base}-{i}", i + 1
    taken.add(name)
    return name


__all__ = ["FUSION_FILE", "FusedDetector", "FusionConfig", "FusionError", "FusionResult", "LogisticFusion", "Member",
           "fuse_scores", "join_scores", "member_name", "read_fusion", "score_members"]
