"""Ablations: train every point of a declared grid with the same seed and data, then one table of EER/minDCF.

The YAML config holds a base `TrainConfig` and a ``grid`` mapping field paths to lists of values::

    manifest: runs/dev/split.csv
    base: {model: ssl-head, model_config: {encoder: facebook/wav2vec2-base}, epochs: 10, seed: 0}
    grid:
      loss: [ce, ce+supcon]
      model_config.proj_dim: [64, 128, 256]
      model_config.freeze: [frozen, last-2]
      augment: [{}, {rawboost_convolutive: true, gain: true}]

Every combination (the Cartesian product, in the declared order) is one point: the base config with those
fields replaced (a mapping value replaces the whole section). The seed and the splits cannot be varied, so
every point trains and is scored on the same data from the same seed. Each point trains into
``out_dir/points/NN`` (a finished point is reused, a paused one resumed). The table reports the scores of
``split`` (``test``, or ``val``) with percentile-bootstrap 95 % intervals from `audios.evaluate.bootstrap_ci`
(speakers are resampled when the manifest names at least two), all points resampled with the same seed.
Written: ``ablation.csv``, ``ablation.md`` and the resolved ``ablate.yaml``.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from audios.config import build_config, config_to_dict, load_config
from audios.errors import ConfigError
from audios.evaluate import bootstrap_ci, equal_error_rate, min_dcf, read_scores
from audios.manifest import read_manifest
from audios.runs import write_text_atomic
from audios.train.compare import _markdown
from audios.train.trainer import TrainConfig, TrainResult, _checkpoints, resume, train

log = logging.getLogger(__name__)

# Varying these would break "same seed, same data" across the points.
FIXED_FIELDS = ("seed", "train_split", "val_split", "test_split")
SPLITS = ("test", "val")


@dataclass(frozen=True)
class AblateConfig:
    """manifest: split manifest every point trains on; base: the TrainConfig all points start from;
    grid: ``{field path: [values]}``; split: whose scores the table reports; n_bootstrap / bootstrap_seed:
    bootstrap replicates (0: no intervals) and their seed."""

    manifest: str = ""
    base: TrainConfig = TrainConfig()
    grid: dict[str, Any] = field(default_factory=dict)
    split: str = "test"
    n_bootstrap: int = 1000
    bootstrap_seed: int = 0

    def __post_init__(self) -> None:
        grid = dict(self.grid or {})
        object.__setattr__(self, "grid", grid)
        if not grid:
            raise ConfigError("AblateConfig.grid: declare at least one field path with a list of values")
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"AblateConfig.grid.{key}: expected a non-empty list of values, got {values!r}")
            if key.split(".")[0] in FIXED_FIELDS:
                raise ConfigError(f"AblateConfig.grid.{key}: every point shares the seed and the data; "
                                  f"{', '.join(FIXED_FIELDS)} cannot be varied")
        if self.split not in SPLITS:
            raise ConfigError(f"AblateConfig.split={self.split!r} is not one of {list(SPLITS)}")
        if self.n_bootstrap < 0:
            raise ConfigError(f"AblateConfig.n_bootstrap must be >= 0, got {self.n_bootstrap}")
        self.points()  # every point must be a valid TrainConfig before anything trains

    def points(self) -> list[tuple[dict[str, Any], TrainConfig]]:
        """``(grid values, TrainConfig)`` of every point, in grid order."""
        keys = list(self.grid)
        base = config_to_dict(self.base)
        out = []
        for combo in itertools.product(*(self.grid[k] for k in keys)):
            data = json.loads(json.dumps(base))
            for key, value in zip(keys, combo, strict=True):
                node = data
                parts = key.split(".")
                for p in parts[:-1]:
                    node = node.setdefault(p, {})
                    if not isinstance(node, dict):
                        raise ConfigError(f"AblateConfig.grid.{key}: {p} is not a section")
                node[parts[-1]] = value
            try:
                config = build_config(TrainConfig, data)
            except ConfigError as exc:
                raise ConfigError(f"AblateConfig.grid point {dict(zip(keys, combo, strict=True))}: {exc}") from exc
            out.append((dict(zip(keys, combo, strict=True)), config))
        return out


def load_ablate_config(path: str | Path, overrides: list[str] | None = None) -> AblateConfig:
    """An AblateConfig from YAML plus ``key=value`` overrides (e.g. ``base.epochs=2``)."""
    return load_config(AblateConfig, path, overrides)


@dataclass(frozen=True)
class AblateResult:
    out_dir: Path
    table: pd.DataFrame

    def summary(self) -> str:
        return (_markdown_table(self.table) + f"\nwritten to {self.out_dir}: ablation.csv, ablation.md, "
                "points/NN (one run folder per point)")


def _ci(value: float, low: float, high: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.4f}" + (f" [{low:.4f}, {high:.4f}]" if math.isfinite(low) else "")


def _markdown_table(table: pd.DataFrame) -> str:
    shown = table.drop(columns=["eer", "eer_low", "eer_high", "min_dcf", "min_dcf_low", "min_dcf_high", "run_dir"])
    shown.insert(len(shown.columns) - 3, "EER [95% CI]",
                 [_ci(r.eer, r.eer_low, r.eer_high) for r in table.itertuples()])
    shown.insert(len(shown.columns) - 3, "minDCF [95% CI]",
                 [_ci(r.min_dcf, r.min_dcf_low, r.min_dcf_high) for r in table.itertuples()])
    return _markdown(shown)


def _speaker_groups(manifest: Path, ids: pd.Series) -> np.ndarray | None:
    table = read_manifest(manifest)
    if "speaker" not in table.columns:
        return None
    speakers = dict(zip(table["id"].astype(str), table["speaker"].astype(str), strict=True))
    groups = np.array([speakers.get(str(i), "unknown") for i in ids])
    known = set(groups) - {"unknown", "", "nan"}
    # Resample speakers only when every scored clip has a named speaker and there are at least two.
    return groups if len(known) >= 2 and known == set(groups) else None


def _run_point(manifest: Path, config: TrainConfig, run_dir: Path, progress: bool) -> None:
    if (run_dir / "metrics.json").is_file():
        log.info("%s: finished earlier, reusing its scores", run_dir)
        return
    result: TrainResult = (resume(run_dir, progress=progress) if _checkpoints(run_dir)
                           else train(manifest, config, run_dir, progress=progress))
    log.info("%s: best val EER %.4f", run_dir, result.best_val_eer)


def run_ablation(config: AblateConfig, out_dir: str | Path, *, manifest: str | Path | None = None,
                 progress: bool = False) -> AblateResult:
    """Train every grid point of ``config`` into ``out_dir/points/NN`` and tabulate EER/minDCF with 95 % CIs."""
    out_dir = Path(out_dir)
    manifest = Path(manifest or config.manifest)
    if not str(manifest) or not manifest.is_file():
        raise ConfigError(f"AblateConfig.manifest: {str(manifest) or '(empty)'} is not a manifest file")
    manifest = manifest.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "ablate.yaml", yaml.safe_dump(
        {**config_to_dict(config), "manifest": str(manifest)}, sort_keys=False))
    rows = []
    for k, (values, point) in enumerate(config.points(), 1):
        run_dir = out_dir / "points" / f"{k:02d}"
        log.info("ablation point %d: %s", k, values)
        _run_point(manifest, point, run_dir, progress)
        name = "scores.csv" if config.split == "test" else "val_scores.csv"
        if not (run_dir / name).is_file():
            raise ConfigError(f"{run_dir}: no {name}; does the manifest have a {config.split!r} split?")
        scores = read_scores(run_dir / name)
        s, y = scores["score"].to_numpy(dtype=np.float64), scores["label"].to_numpy()
        estimate = {"eer": equal_error_rate(s, y).eer, "min_dcf": min_dcf(s, y).value}
        intervals = {m: (float("nan"), float("nan")) for m in estimate}
        if config.n_bootstrap:
            boot = bootstrap_ci(s, y, lambda bs, by: {"eer": equal_error_rate(bs, by).eer,
                                                      "min_dcf": min_dcf(bs, by).value},
                                np.random.default_rng(config.bootstrap_seed), n_resamples=config.n_bootstrap,
                                groups=_speaker_groups(manifest, scores["id"]))
            intervals = {m: (ci.low, ci.high) for m, ci in boot.intervals.items()}
        metrics = json.loads((run_dir / "metrics.json").read_text())
        rows.append({"point": k, **{key: _cell(v) for key, v in values.items()},
                     "eer": estimate["eer"], "eer_low": intervals["eer"][0], "eer_high": intervals["eer"][1],
                     "min_dcf": estimate["min_dcf"], "min_dcf_low": intervals["min_dcf"][0],
                     "min_dcf_high": intervals["min_dcf"][1], "val_eer": metrics.get("val_eer"),
                     "best_epoch": metrics.get("best_epoch"), "files": int(s.size), "run_dir": str(run_dir)})
    table = pd.DataFrame(rows)
    write_text_atomic(out_dir / "ablation.csv", table.to_csv(index=False, float_format="%.6f"))
    header = (f"Ablation on {manifest} ({config.split} split), seed {config.base.seed}; 95 % bootstrap intervals "
              f"from {config.n_bootstrap} replicates.\n\n")
    write_text_atomic(out_dir / "ablation.md", header + _markdown_table(table))
    return AblateResult(out_dir=out_dir, table=table)


def _cell(value: Any) -> Any:
    """Grid values as table cells: scalars as they are, lists and mappings as compact JSON."""
    return value if isinstance(value, (int, float, str, bool)) or value is None else json.dumps(value)


__all__ = ["AblateConfig", "AblateResult", "load_ablate_config", "run_ablation"]
