"""Corpus statistics: hours per class/generator/speaker, per-class distributions, and shortcut warnings.

A *shortcut* is a nuisance variable (silence length, sample rate, duration, loudness, format) that on its own
separates bona fide from spoof; a detector trained on such data can learn it instead of synthesis artefacts.
Each variable is scored by the ROC-AUC it reaches alone (Mann-Whitney U with average ranks for ties),
folded so that 0.5 means useless and 1.0 means a perfect separator in either direction.
"""

from __future__ import annotations

import json
import logging
import textwrap
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from audios.errors import ConfigError, ManifestError
from audios.runs import write_text_atomic

log = logging.getLogger(__name__)

NUMERIC_VARIABLES = ("duration_s", "rms_dbfs", "peak", "sample_rate", "lead_silence_s", "trail_silence_s",
                     "clipped_fraction")
CATEGORICAL_VARIABLES = ("format", "sample_rate")
UNITS = {"duration_s": "s", "rms_dbfs": "dBFS", "peak": "", "sample_rate": "Hz", "lead_silence_s": "s",
         "trail_silence_s": "s", "clipped_fraction": ""}


@dataclass(frozen=True)
class StatsConfig:
    """Thresholds of the shortcut report and sizes of the plots.

    ``auc_threshold``: warn when one variable alone reaches this folded AUC. ``pure_share``/``min_pure_files``:
    warn when a category value occurs in one class only and holds at least this share (and count) of it.
    """

    auc_threshold: float = 0.75
    pure_share: float = 0.10
    min_pure_files: int = 5
    top_n: int = 20
    bins: int = 30

    def __post_init__(self) -> None:
        if not 0.5 <= self.auc_threshold <= 1:
            raise ConfigError(f"auc_threshold: {self.auc_threshold} must lie in [0.5, 1]")
        if not 0 < self.pure_share <= 1:
            raise ConfigError(f"pure_share: {self.pure_share} must lie in (0, 1]")
        if self.min_pure_files < 1 or self.top_n < 1 or self.bins < 2:
            raise ConfigError("min_pure_files and top_n must be >= 1 and bins >= 2")


def auc_bonafide(values: np.ndarray, is_bonafide: np.ndarray) -> float:
    """ROC-AUC of ``values`` as a score where higher means bona fide (Mann-Whitney U / (n_pos n_neg)).

    Ties get average ranks, so a tie between classes counts one half. Shapes (n,), (n,).
    """
    values = np.asarray(values, dtype=float)
    is_bonafide = np.asarray(is_bonafide, dtype=bool)
    if values.shape != is_bonafide.shape or values.ndim != 1:
        raise ValueError(f"values {values.shape} and labels {is_bonafide.shape} must be 1-D of one length")
    if not np.isfinite(values).all():
        raise ValueError("values must be finite")
    n_pos = int(is_bonafide.sum())
    n_neg = len(values) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"need both classes, got {n_pos} bona fide and {n_neg} spoof")
    ranks = rankdata(values)
    u = ranks[is_bonafide].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


@dataclass(frozen=True)
class Shortcut:
    """How well one variable alone separates the classes."""

    variable: str
    kind: str  # "numeric" or "categorical"
    auc: float  # folded: max(AUC, 1 - AUC)
    direction: str  # which class has the higher values / is favoured
    warn: bool
    detail: str


@dataclass(frozen=True)
class ShortcutReport:
    """One entry per variable that could be measured, strongest first."""

    shortcuts: tuple[Shortcut, ...]
    threshold: float
    notes: tuple[str, ...] = ()

    @property
    def warnings(self) -> list[Shortcut]:
        return [s for s in self.shortcuts if s.warn]

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(s) for s in self.shortcuts],
                            columns=["variable", "kind", "auc", "direction", "warn", "detail"])


def _require_labels(df: pd.DataFrame) -> None:
    if "label" not in df.columns:
        raise ManifestError(f"manifest has no 'label' column; found {list(df.columns)}")


def shortcut_report(df: pd.DataFrame, config: StatsConfig = StatsConfig()) -> ShortcutReport:
    """Score each numeric and categorical nuisance variable as a one-variable classifier of the label."""
    _require_labels(df)
    bona = (df["label"] == "bonafide").to_numpy()
    notes = []
    if bona.all() or not bona.any():
        return ShortcutReport((), config.auc_threshold, ("only one class present: no shortcut can be measured",))
    out = []
    for var in NUMERIC_VARIABLES:
        if var not in df.columns:
            continue
        x = pd.to_numeric(df[var], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(x)
        if ok.sum() < len(x):
            notes.append(f"{var}: {len(x) - ok.sum()} missing value(s) left out")
        if bona[ok].all() or not bona[ok].any():
            continue
        auc = auc_bonafide(x[ok], bona[ok])
        folded = max(auc, 1 - auc)
        higher = "bonafide" if auc >= 0.5 else "spoof"
        med_b, med_s = np.median(x[ok & bona]), np.median(x[ok & ~bona])
        unit = f" {UNITS[var]}" if UNITS[var] else ""
        detail = f"median bonafide {med_b:.5g}{unit}, spoof {med_s:.5g}{unit}"
        out.append(Shortcut(var, "numeric", round(folded, 4), f"higher in {higher}",
                            folded >= config.auc_threshold, detail))
    for var in CATEGORICAL_VARIABLES:
        if var not in df.columns:
            continue
        out.append(_categorical_shortcut(df[var].astype(str).to_numpy(), bona, var, config))
    out.sort(key=lambda s: (-s.warn, -s.auc))
    return ShortcutReport(tuple(out), config.auc_threshold, tuple(notes))


def _categorical_shortcut(values: np.ndarray, bona: np.ndarray, var: str, config: StatsConfig) -> Shortcut:
    """AUC of scoring each row by its category's bona fide rate (the best one-variable classifier on these
    data, so optimistic for many rare categories), and the largest one-class category."""
    cats, inverse = np.unique(values, return_inverse=True)
    n_b = np.bincount(inverse, weights=bona, minlength=len(cats))
    n_all = np.bincount(inverse, minlength=len(cats))
    rate = n_b / n_all
    auc = auc_bonafide(rate[inverse], bona)
    folded = max(auc, 1 - auc)
    totals = {"bonafide": bona.sum(), "spoof": (~bona).sum()}
    pure = []
    for i, cat in enumerate(cats):
        cls = "bonafide" if rate[i] == 1 else "spoof" if rate[i] == 0 else None
        if cls is None:
            continue
        share = n_all[i] / totals[cls]
        pure.append((share, cls, cat, int(n_all[i])))
    pure.sort(reverse=True)
    flagged = [p for p in pure if p[0] >= config.pure_share and p[3] >= config.min_pure_files]
    if flagged:
        share, cls, cat, n = flagged[0]
        detail = f"{var}={cat} occurs only in {cls} ({n} files, {share:.0%} of {cls})"
        if len(flagged) > 1:
            detail += "; also " + ", ".join(f"{c} only in {k} ({s:.0%})" for s, k, c, _ in flagged[1:4])
    else:
        mix = ", ".join(f"{c}: {b:.0f}/{a - b:.0f}" for c, b, a in zip(cats, n_b, n_all))[:200]
        detail = f"bonafide/spoof per value: {mix}"
    direction = "category" if not flagged else f"{flagged[0][2]} → {flagged[0][1]}"
    return Shortcut(f"{var} (category)", "categorical", round(folded, 4), direction,
                    folded >= config.auc_threshold or bool(flagged), detail)


def hours_table(df: pd.DataFrame, by: str) -> pd.DataFrame:
    """Files and hours per value of ``by``, split by class, largest first; a column ``share`` of all hours."""
    _require_labels(df)
    if by not in df.columns:
        raise ManifestError(f"manifest has no {by!r} column")
    if "duration_s" not in df.columns:
        raise ManifestError("manifest has no 'duration_s' column (build it with `audios manifest`)")
    d = df.assign(_h=pd.to_numeric(df["duration_s"], errors="coerce").fillna(0) / 3600, _key=df[by].astype(str))
    files = d.groupby("_key").size().rename("files")
    hours = d.groupby("_key")["_h"].sum().rename("hours")
    per = d.pivot_table(index="_key", columns="label", values="_h", aggfunc="sum", fill_value=0.0)
    table = pd.concat([files, hours], axis=1)
    for cls in ("bonafide", "spoof"):
        table[f"{cls}_hours"] = per[cls] if cls in per.columns else 0.0
    total = table["hours"].sum()
    table["share"] = table["hours"] / total if total > 0 else 0.0
    return table.sort_values(["hours", "files"], ascending=False).rename_axis(by).reset_index()


def describe_by_class(df: pd.DataFrame, variables: tuple[str, ...] = NUMERIC_VARIABLES) -> pd.DataFrame:
    """Mean, median, standard deviation, min and max of each variable per class (long format)."""
    _require_labels(df)
    rows = []
    for var in variables:
        if var not in df.columns:
            continue
        x = pd.to_numeric(df[var], errors="coerce")
        for cls, g in x.groupby(df["label"]):
            g = g.dropna()
            rows.append({"variable": var, "label": cls, "n": len(g), "mean": g.mean(), "median": g.median(),
                         "std": g.std(), "min": g.min(), "max": g.max()})
    return pd.DataFrame(rows)


@dataclass
class CorpusStats:
    """Every table of `audios stats` plus the shortcut report."""

    per_class: pd.DataFrame
    per_generator: pd.DataFrame
    per_speaker: pd.DataFrame
    distributions: pd.DataFrame
    sample_rates: pd.DataFrame
    shortcuts: ShortcutReport
    n_files: int
    hours: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        def records(t: pd.DataFrame) -> list[dict]:
            return json.loads(t.to_json(orient="records"))
        return {
            "n_files": self.n_files, "hours": self.hours,
            "per_class": records(self.per_class), "per_generator": records(self.per_generator),
            "per_speaker": records(self.per_speaker), "distributions": records(self.distributions),
            "sample_rates": records(self.sample_rates),
            "shortcuts": {"threshold": self.shortcuts.threshold, "notes": list(self.shortcuts.notes),
                          "variables": records(self.shortcuts.table())},
        }

    def to_markdown(self, top_n: int = 20) -> str:
        def md(t: pd.DataFrame) -> str:
            return t.to_markdown(index=False, floatfmt=".3f") if _has_tabulate() else t.to_string(index=False)
        lines = [f"# Corpus statistics\n\n{self.n_files} files, {self.hours:.2f} hours\n",
                 "## Per class\n", md(self.per_class), "\n## Shortcut check\n",
                 f"Folded ROC-AUC of each variable alone (warn at >= {self.shortcuts.threshold}).\n",
                 md(self.shortcuts.table()), f"\n## Top {top_n} generators\n", md(self.per_generator.head(top_n)),
                 f"\n## Top {top_n} speakers\n", md(self.per_speaker.head(top_n)),
                 "\n## Sample rates per class\n", md(self.sample_rates),
                 "\n## Distributions per class\n", md(self.distributions)]
        return "\n".join(lines) + "\n"


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


def compute_stats(df: pd.DataFrame, config: StatsConfig = StatsConfig()) -> CorpusStats:
    """All tables and the shortcut report of a manifest."""
    _require_labels(df)
    if len(df) == 0:
        raise ManifestError("manifest is empty: no statistics to compute")
    filled = df.copy()
    for col, default in (("generator", "unknown"), ("speaker", "unknown")):
        if col not in filled.columns:
            filled[col] = default
    if "sample_rate" in filled.columns:
        rates = filled.groupby(["sample_rate", "label"]).size().unstack(fill_value=0).reset_index()
        rates.columns.name = None
    else:
        rates = pd.DataFrame()
    return CorpusStats(
        per_class=hours_table(filled, "label"), per_generator=hours_table(filled, "generator"),
        per_speaker=hours_table(filled, "speaker"), distributions=describe_by_class(filled),
        sample_rates=rates, shortcuts=shortcut_report(filled, config), n_files=len(filled),
        hours=float(pd.to_numeric(filled["duration_s"], errors="coerce").fillna(0).sum() / 3600),
    )


def plot_stats(df: pd.DataFrame, stats: CorpusStats, out_dir: str | Path, config: StatsConfig = StatsConfig()) -> list[Path]:
    """Write hours bar charts, per-class histograms of each variable and an overview; returns the PNG paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    aucs = {s.variable: s.auc for s in stats.shortcuts.shortcuts if s.kind == "numeric"}
    variables = [v for v in NUMERIC_VARIABLES if v in df.columns]
    bars = [("class", stats.per_class, "label"), ("generator", stats.per_generator, "generator"),
            ("speaker", stats.per_speaker, "speaker")]

    def bar(ax: Any, table: pd.DataFrame, key: str, title: str) -> None:
        t = table.head(config.top_n).iloc[::-1]
        y = np.arange(len(t))
        ax.barh(y, t["bonafide_hours"], color="tab:blue", label="bonafide")
        ax.barh(y, t["spoof_hours"], left=t["bonafide_hours"], color="tab:red", label="spoof")
        ax.set_yticks(y, [str(v)[:28] for v in t[key]], fontsize=7)
        ax.set_xlabel("hours")
        more = f" (top {config.top_n} of {len(table)})" if len(table) > config.top_n else ""
        ax.set_title(f"hours per {title}{more}", fontsize=9)
        ax.legend(fontsize=7)

    def hist(ax: Any, var: str) -> None:
        x = pd.to_numeric(df[var], errors="coerce")
        finite = x[np.isfinite(x)]
        edges = np.histogram_bin_edges(finite, bins=config.bins) if len(finite) and finite.min() < finite.max() \
            else config.bins
        for cls, color in (("bonafide", "tab:blue"), ("spoof", "tab:red")):
            v = x[(df["label"] == cls).to_numpy() & np.isfinite(x).to_numpy()]
            if len(v):
                ax.hist(v, bins=edges, alpha=0.5, color=color, label=f"{cls} ({len(v)})", density=True)
        auc = aucs.get(var)
        flag = " ⚠" if auc is not None and auc >= stats.shortcuts.threshold else ""
        ax.set_title(f"{var}" + (f"  AUC {auc:.2f}{flag}" if auc is not None else ""), fontsize=9,
                     color="darkred" if flag else "black")
        ax.set_xlabel(f"{var} [{UNITS[var]}]" if UNITS[var] else var, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)

    for name, table, key in bars:
        fig, ax = plt.subplots(figsize=(7, max(2.5, 0.25 * min(len(table), config.top_n) + 1.2)))
        bar(ax, table, key, name)
        fig.tight_layout()
        path = out_dir / f"hours_per_{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    for var in variables:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        hist(ax, var)
        fig.tight_layout()
        path = out_dir / f"hist_{var}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    n_hist = len(variables)
    cols = 3
    rows = 1 + int(np.ceil(n_hist / cols))
    fig = plt.figure(figsize=(15, 4.2 * rows))
    grid = fig.add_gridspec(rows, cols)
    bar(fig.add_subplot(grid[0, 0]), stats.per_class, "label", "class")
    bar(fig.add_subplot(grid[0, 1]), stats.per_generator, "generator", "generator")
    ax = fig.add_subplot(grid[0, 2])
    ax.axis("off")
    lines = [f"{stats.n_files} files, {stats.hours:.2f} h", "", "single-variable AUC (folded):"]
    for s in stats.shortcuts.shortcuts:
        lines.append(f"{'WARN ' if s.warn else '     '}{s.variable[:24]:<24} {s.auc:.2f}")
    for s in stats.shortcuts.warnings:
        lines += ["", f"{s.variable}:", *textwrap.wrap(s.detail, 44)[:3]]
    ax.text(0.0, 1.0, "\n".join(lines), va="top", family="monospace", fontsize=9, transform=ax.transAxes)
    for i, var in enumerate(variables):
        hist(fig.add_subplot(grid[1 + i // cols, i % cols]), var)
    fig.suptitle("corpus overview", fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    path = out_dir / "overview.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    written.append(path)
    return written


def write_stats(df: pd.DataFrame, stats: CorpusStats, out_dir: str | Path, config: StatsConfig = StatsConfig()) -> list[Path]:
    """Write ``stats.json``, ``stats.md`` and the plots into ``out_dir``; returns every path written."""
    out_dir = Path(out_dir)
    paths = [write_text_atomic(out_dir / "stats.json", json.dumps(stats.to_dict(), indent=2)),
             write_text_atomic(out_dir / "stats.md", stats.to_markdown(config.top_n))]
    return paths + plot_stats(df, stats, out_dir, config)
