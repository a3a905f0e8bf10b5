"""Leak-free splits: whole groups of linked recordings go to one split, stratified by label and generator.

Rows are linked when they share a content hash (``sha256``), an ``utterance``, a ``parent_id`` (clips cut
from one recording by ``prepare``) or, when asked, a ``speaker``; the connected components of these links
(union-find over the rows) are the units that are assigned to splits, so none of these values can cross
a split boundary. Components are assigned greedily, largest first and in a seeded order among equals,
to the split that brings the per-(label, generator) counts closest to the requested ratios.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from audios.errors import ConfigError, SplitError

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test", "pretext", "downstream")
# Columns whose shared values always link rows: the same audio, the same sentence, the same source recording.
LINK_COLUMNS = ("sha256", "utterance", "parent_id")
LEAK_COLUMNS = ("path", "sha256", "utterance", "speaker", "parent_id")
# Values that say "not known" rather than naming a group; they must never link rows.
UNKNOWN_VALUES = frozenset({"", "unknown", "nan", "none", "null", "-", "n/a"})
# How corpora spell their official partitions (ASVspoof uses train/dev/eval).
OFFICIAL_SUBSETS = {
    "train": "train", "training": "train", "trn": "train",
    "dev": "val", "val": "val", "valid": "val", "validation": "val", "development": "val",
    "eval": "test", "evaluation": "test", "test": "test", "tst": "test",
}
BALANCE_METHODS = ("undersample", "oversample", "class-weights")


@dataclass(frozen=True)
class SplitConfig:
    """How to split a manifest.

    ``names``/``ratios``: the splits and their shares of rows (sum 1); ``pretext``/``downstream`` may
    stand in for ``train`` in self-supervised work. ``group_by``: extra columns whose shared values must
    not cross splits (``speaker`` for speaker-disjoint splits). ``keep_official``: use the manifest's
    ``subset`` column (None: when every row has one). ``holdout_generators``: generators that appear in
    test only. ``tolerance``: how far (absolute share) a split may miss its expected share before a warning.
    """

    ratios: tuple[float, ...] = (0.8, 0.1, 0.1)
    names: tuple[str, ...] = ("train", "val", "test")
    seed: int = 0
    group_by: tuple[str, ...] = ()
    stratify: tuple[str, ...] = ("label", "generator")
    keep_official: bool | None = None
    holdout_generators: tuple[str, ...] = ()
    tolerance: float = 0.05

    def __post_init__(self) -> None:
        if len(self.ratios) != len(self.names):
            raise ConfigError(f"ratios {list(self.ratios)} and names {list(self.names)} differ in length")
        if len(set(self.names)) != len(self.names):
            raise ConfigError(f"names: {list(self.names)} repeats a split")
        unknown = [n for n in self.names if n not in SPLIT_NAMES]
        if unknown:
            raise ConfigError(f"names: {unknown} not among {list(SPLIT_NAMES)}")
        if any(not np.isfinite(r) or r < 0 for r in self.ratios):
            raise ConfigError(f"ratios: {list(self.ratios)} must be finite and >= 0")
        if abs(sum(self.ratios) - 1.0) > 1e-6:
            raise ConfigError(f"ratios: {list(self.ratios)} sum to {sum(self.ratios):.6g}, not 1")
        if self.holdout_generators and "test" not in self.names:
            raise ConfigError("holdout_generators needs a 'test' split in names")
        if self.holdout_generators and self.keep_official:
            raise ConfigError("holdout_generators and keep_official=True cannot both be set: the official test is fixed")
        if not 0 <= self.tolerance <= 1:
            raise ConfigError(f"tolerance: {self.tolerance} must lie in [0, 1]")
        if self.seed < 0:
            raise ConfigError(f"seed: {self.seed} must be >= 0")


@dataclass(frozen=True)
class LeakReport:
    """Values shared between each pair of splits, per column; ``errors`` lists the overlaps that are leaks."""

    counts: dict[str, dict[str, int]]
    errors: tuple[str, ...]
    strict_columns: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "errors": list(self.errors), "strict_columns": list(self.strict_columns),
                "overlaps": self.counts}

    def table(self) -> pd.DataFrame:
        """One row per split pair, one column per checked column."""
        return pd.DataFrame.from_dict(self.counts, orient="index").rename_axis("pair").reset_index()


@dataclass
class SplitResult:
    """The manifest with a ``split`` column, what could not be honoured, and the leak check that proves it."""

    table: pd.DataFrame
    warnings: list[str]
    leak: LeakReport
    mode: str
    dropped: int = 0
    notes: list[str] = field(default_factory=list)

    def counts(self) -> pd.DataFrame:
        """Rows, hours and class counts per split."""
        return split_counts(self.table)

    def summary(self) -> str:
        lines = [f"mode: {self.mode}"]
        for _, r in self.counts().iterrows():
            lines.append(f"{r['split']}: {r['files']} files ({r['bonafide']} bonafide, {r['spoof']} spoof), "
                         f"{r['hours']:.2f} h, {r['generators']} generators, {r['speakers']} speakers")
        if self.dropped:
            lines.append(f"dropped {self.dropped} row(s)")
        lines.extend(self.notes)
        lines.extend(f"warning: {w}" for w in self.warnings)
        lines.append("leak check: " + ("ok" if self.leak.ok else "; ".join(self.leak.errors)))
        return "\n".join(lines)


def split_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Files, hours, bona fide/spoof counts, generators and speakers per split."""
    rows = []
    for name, g in table.groupby("split", sort=False):
        rows.append({
            "split": name, "files": len(g),
            "hours": float(g["duration_s"].sum()) / 3600 if "duration_s" in g else float("nan"),
            "bonafide": int((g["label"] == "bonafide").sum()), "spoof": int((g["label"] == "spoof").sum()),
            "generators": int(g["generator"].nunique()) if "generator" in g else 0,
            "speakers": int(g["speaker"][_linkable(g["speaker"])].nunique()) if "speaker" in g else 0,
        })
    order = {n: i for i, n in enumerate(SPLIT_NAMES)}
    return pd.DataFrame(rows).sort_values("split", key=lambda s: s.map(order)).reset_index(drop=True)


def _as_str(values: pd.Series) -> pd.Series:
    return values.astype(object).where(values.notna(), "").astype(str).str.strip()


def _linkable(values: pd.Series) -> np.ndarray:
    """True where a value names a group (not empty, not 'unknown')."""
    return ~_as_str(values).str.lower().isin(UNKNOWN_VALUES).to_numpy()


def find_groups(df: pd.DataFrame, columns: tuple[str, ...]) -> np.ndarray:
    """Component id per row: rows sharing a known value in any of ``columns`` (absent ones skipped) are linked.

    Shape (n_rows,), ids 0..n_components-1 numbered by first appearance.
    """
    n = len(df)
    src: list[np.ndarray] = []
    dst: list[np.ndarray] = []
    offset = n
    for col in columns:
        if col not in df.columns:
            continue
        ok = _linkable(df[col])
        codes, uniques = pd.factorize(_as_str(df[col])[ok])
        src.append(np.flatnonzero(ok))
        dst.append(codes + offset)
        offset += len(uniques)
    if src:
        r, c = np.concatenate(src), np.concatenate(dst)
    else:
        r = c = np.zeros(0, dtype=np.int64)
    graph = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(offset, offset))
    _, labels = connected_components(graph, directed=False)
    comp, _ = pd.factorize(labels[:n])
    return comp.astype(np.int64)


def leak_check(table: pd.DataFrame, strict_columns: tuple[str, ...] = ("path", "sha256", "utterance", "parent_id"),
               columns: tuple[str, ...] = LEAK_COLUMNS) -> LeakReport:
    """Count values of each column shared by each pair of splits; overlaps in ``strict_columns`` are errors."""
    if "split" not in table.columns:
        raise SplitError("manifest has no 'split' column to check")
    cols = [c for c in dict.fromkeys((*columns, *strict_columns)) if c in table.columns]
    names = [n for n in pd.unique(table["split"]) if str(n) != ""]
    order = {n: i for i, n in enumerate(SPLIT_NAMES)}
    names.sort(key=lambda n: order.get(n, len(order)))
    values = {}
    for name in names:
        part = table[table["split"] == name]
        values[name] = {c: set(_as_str(part[c])[_linkable(part[c])]) for c in cols}
    counts: dict[str, dict[str, int]] = {}
    errors = []
    for a, b in combinations(names, 2):
        pair = f"{a}|{b}"
        counts[pair] = {}
        for c in cols:
            shared = values[a][c] & values[b][c]
            counts[pair][c] = len(shared)
            if shared and c in strict_columns:
                errors.append(f"{len(shared)} {c} value(s) shared by {a} and {b}, e.g. {sorted(shared)[0]!r}")
    return LeakReport(counts, tuple(errors), tuple(c for c in strict_columns if c in cols))


def _strict_columns(config: SplitConfig) -> tuple[str, ...]:
    return tuple(dict.fromkeys(("path", *LINK_COLUMNS, *config.group_by)))


def _check_table(df: pd.DataFrame, config: SplitConfig) -> None:
    for col in ("label", *config.group_by):
        if col not in df.columns:
            raise SplitError(f"manifest has no {col!r} column; found {list(df.columns)}")
    if len(df) == 0:
        raise SplitError("manifest is empty: nothing to split")
    spoof_gens = set(_spoof_generators(df))
    unknown = [g for g in config.holdout_generators if g not in spoof_gens]
    if unknown:
        raise SplitError(f"holdout generator(s) {unknown} are not spoof generators of this manifest; "
                         f"known: {sorted(spoof_gens)}")


def _spoof_generators(df: pd.DataFrame) -> list[str]:
    if "generator" not in df.columns:
        return []
    return sorted(set(_as_str(df.loc[df["label"] == "spoof", "generator"])) - {""})


def _official_available(df: pd.DataFrame) -> bool:
    return "subset" in df.columns and bool(_as_str(df["subset"]).ne("").all())


def split_manifest(df: pd.DataFrame, config: SplitConfig = SplitConfig()) -> SplitResult:
    """Add a ``split`` column: the official partition when kept, else grouped, stratified and seeded."""
    _check_table(df, config)
    official = _official_available(df)
    if config.keep_official and not official:
        raise SplitError("keep_official: the manifest's 'subset' column is absent or has empty rows")
    use_official = official and config.keep_official is not False and not config.holdout_generators
    if use_official:
        return _official_split(df, config)
    notes = []
    if official and config.holdout_generators:
        notes.append("official subsets ignored: holdout generators need a test split of their own")
    gen = _as_str(df["generator"]) if "generator" in df.columns else pd.Series("", index=df.index)
    holdout = (df["label"] == "spoof").to_numpy() & gen.isin(config.holdout_generators).to_numpy()
    result = _grouped_split(df, config, only_test=holdout, no_test=np.zeros(len(df), dtype=bool))
    result.notes[:0] = notes
    if config.holdout_generators:
        result.mode = f"grouped, holdout generators {', '.join(config.holdout_generators)} in test"
        result.notes.append("rows of other generators linked to a held-out generator (same utterance, hash, "
                            "parent or speaker) were moved to test with it, so the attack stays unseen")
    return result


def leave_one_generator_out(df: pd.DataFrame, config: SplitConfig = SplitConfig()) -> dict[str, SplitResult]:
    """One split per spoof generator G: test holds G's spoofs and bona fide groups; train/val hold the rest.

    Rows linked to G (same utterance, hash, parent or speaker) go to test with it; spoofs of the other
    generators never reach test, so each test set measures detection of one unseen attack.
    """
    if "test" not in config.names:
        raise ConfigError("leave-one-generator-out needs a 'test' split in names")
    if config.keep_official:
        raise ConfigError("leave-one-generator-out replaces the official split; do not set keep_official")
    _check_table(df, config)
    gens = _spoof_generators(df)
    if len(gens) < 2:
        raise SplitError(f"leave-one-generator-out needs at least 2 spoof generators, found {gens}")
    gen = _as_str(df["generator"]).to_numpy()
    spoof = (df["label"] == "spoof").to_numpy()
    out = {}
    for g in gens:
        res = _grouped_split(df, config, only_test=spoof & (gen == g), no_test=spoof & (gen != g))
        res.mode = f"leave-one-generator-out: {g} in test"
        out[g] = res
    return out


def _official_split(df: pd.DataFrame, config: SplitConfig) -> SplitResult:
    subset = _as_str(df["subset"]).str.lower()
    unknown = sorted(set(subset) - set(OFFICIAL_SUBSETS))
    if unknown:
        raise SplitError(f"subset: cannot map official subset(s) {unknown} to train/val/test; "
                         f"known: {sorted(OFFICIAL_SUBSETS)} (use keep_official=False to re-split)")
    table = df.copy()
    if "split" in table.columns:
        log.warning("overwriting the manifest's existing 'split' column")
    table["split"] = subset.map(OFFICIAL_SUBSETS).to_numpy()
    warnings = []
    leak = leak_check(table, strict_columns=_strict_columns(config))
    if not leak.ok:
        warnings.append("the official split shares values across splits (see the leak check)")
    for w in warnings:
        log.warning(w)
    notes = [f"kept the official subsets ({', '.join(sorted(set(subset)))}); ratios and seed not used"]
    return SplitResult(table, warnings, leak, "official", notes=notes)


def _grouped_split(df: pd.DataFrame, config: SplitConfig, only_test: np.ndarray, no_test: np.ndarray) -> SplitResult:
    """Assign components to splits. ``only_test``/``no_test`` mark rows that must / must not be in test."""
    n = len(df)
    names = list(config.names)
    ratios = np.asarray(config.ratios, dtype=float)
    k_test = names.index("test") if "test" in names else -1
    comp = find_groups(df, (*LINK_COLUMNS, *config.group_by))
    n_comp = int(comp.max()) + 1

    strat_cols = [c for c in config.stratify if c in df.columns]
    if strat_cols:
        stratum = df[strat_cols].astype(str).groupby(strat_cols, sort=False).ngroup().to_numpy()
    else:
        stratum = np.zeros(n, dtype=np.int64)
    n_strata = int(stratum.max()) + 1

    # Which splits each component may enter: forced to test when it holds a must-be-test row.
    allowed = np.ones((n_comp, len(names)), dtype=bool)
    allowed[:, ratios == 0] = False
    forced = np.zeros(n_comp, dtype=bool)
    forced[np.unique(comp[only_test])] = True
    blocked = np.zeros(n_comp, dtype=bool)
    blocked[np.unique(comp[no_test])] = True
    if k_test >= 0:
        allowed[blocked, k_test] = False
    allowed[forced] = False
    if k_test >= 0:
        allowed[forced, k_test] = True

    # Per-stratum targets: the ratios over the splits the stratum may reach (test only for held-out
    # generators, no test for rows barred from it).
    reach = np.ones((n_strata, len(names)), dtype=bool)
    reach[:, ratios == 0] = False
    if k_test >= 0:
        only_strata = np.unique(stratum[only_test])
        reach[only_strata] = False
        reach[only_strata, k_test] = True
        reach[np.unique(stratum[no_test]), k_test] = False
    stratum_total = np.bincount(stratum, minlength=n_strata).astype(float)
    weights = reach * ratios[None, :]
    weights = weights / np.where(weights.sum(1, keepdims=True) > 0, weights.sum(1, keepdims=True), 1)
    target = stratum_total[:, None] * weights

    # Component x stratum counts as a sorted list of (component, stratum, count).
    pairs = pd.DataFrame({"c": comp, "s": stratum}).value_counts().sort_index()
    pc = pairs.index.get_level_values(0).to_numpy()
    ps = pairs.index.get_level_values(1).to_numpy()
    pn = pairs.to_numpy().astype(float)
    starts = np.searchsorted(pc, np.arange(n_comp + 1))
    size = np.bincount(comp, minlength=n_comp)

    rng = np.random.default_rng(config.seed)
    shuffled = rng.permutation(n_comp)
    # Forced components first, then the rest largest first; the seeded shuffle orders equals.
    order = shuffled[np.lexsort((-size[shuffled], ~forced[shuffled]))]
    assigned = np.zeros((n_strata, len(names)))
    choice = np.full(n_comp, -1, dtype=np.int64)
    split_rows = np.zeros(len(names))
    split_target = target.sum(0)
    for c in order:
        lo, hi = starts[c], starts[c + 1]
        s, cnt = ps[lo:hi], pn[lo:hi]
        # Change of the cost sum_s,k ((A - T) / total_s)^2 + sum_k ((R - T_k) / n)^2 when the component joins
        # split k: relative errors, so a 6-row generator counts as much as 200 bona fide rows, plus one
        # term for the splits' overall sizes.
        delta = ((2 * cnt[:, None] * (assigned[s] - target[s]) + cnt[:, None] ** 2) / stratum_total[s, None] ** 2).sum(0)
        delta += (2 * size[c] * (split_rows - split_target) + size[c] ** 2) / n**2
        delta[~allowed[c]] = np.inf
        if not np.isfinite(delta).any():
            continue
        k = int(np.argmin(delta))
        choice[c] = k
        assigned[s, k] += cnt
        split_rows[k] += size[c]

    row_choice = choice[comp].copy()
    if k_test >= 0:
        # Rows barred from test inside a component forced there (another generator's rendering of a held-out
        # utterance in leave-one-generator-out) can go nowhere without a leak: drop them.
        row_choice[no_test & (row_choice == k_test)] = -1
    table = df.copy()
    if "split" in table.columns:
        log.warning("overwriting the manifest's existing 'split' column")
    table["split"] = np.where(row_choice >= 0, np.asarray(names, dtype=object)[np.maximum(row_choice, 0)], "")
    dropped = int((row_choice < 0).sum())
    notes = []
    if dropped:
        notes.append(f"{dropped} row(s) of other generators linked to the test generator (same utterance, hash, "
                     "parent or speaker) fit no split without a leak and were dropped")
        table = table[row_choice >= 0].reset_index(drop=True)

    warnings = _fit_warnings(df, comp, size, forced, target, names, ratios, row_choice, config.tolerance)
    for w in warnings:
        log.warning(w)
    leak = leak_check(table, strict_columns=_strict_columns(config))
    if not leak.ok:  # cannot happen by construction; kept as a guard that the proof is real
        warnings.append("leak check failed: " + "; ".join(leak.errors))
    mode = "grouped" + (f" by {', '.join(config.group_by)}" if config.group_by else "")
    return SplitResult(table, warnings, leak, mode, dropped=dropped, notes=notes)


def _describe_component(df: pd.DataFrame, rows: np.ndarray) -> str:
    first = df.iloc[rows[0]]
    parts = [f"{c} {first[c]!r}" for c in ("speaker", "utterance") if c in df.columns and _linkable(df[c].iloc[rows[:1]])[0]]
    return ", ".join(parts) or f"path {first.get('path', '?')!r}"


def _fit_warnings(df: pd.DataFrame, comp: np.ndarray, size: np.ndarray, forced: np.ndarray, target: np.ndarray,
                  names: list[str], ratios: np.ndarray, row_choice: np.ndarray, tolerance: float) -> list[str]:
    """Warnings for groups too large for the ratios and for splits that miss their expected share."""
    n = len(df)
    warnings = []
    expected = target.sum(0) / n
    largest = expected.max()
    too_big = [c for c in np.argsort(-size) if not forced[c] and size[c] > largest * n + 1e-9]
    for c in too_big[:5]:
        rows = np.flatnonzero(comp == c)
        warnings.append(f"one linked group holds {size[c]} of {n} rows ({size[c] / n:.0%}; {_describe_component(df, rows)}), "
                        f"more than the largest split ({largest:.0%}): the ratios cannot hold")
    if len(too_big) > 5:
        warnings.append(f"... and {len(too_big) - 5} more groups larger than the largest split")
    got = np.bincount(row_choice[row_choice >= 0], minlength=len(names)) / n
    for k, name in enumerate(names):
        if expected[k] > 0 and got[k] == 0:
            warnings.append(f"split {name} is empty (expected {expected[k]:.0%} of rows): the groups are too few or too large")
        elif abs(got[k] - expected[k]) > tolerance:
            warnings.append(f"split {name} holds {got[k]:.1%} of rows, expected {expected[k]:.1%}")
    return warnings


def class_weights(df: pd.DataFrame, by: str = "label") -> dict[str, float]:
    """Inverse-frequency weights n / (n_classes * n_c): each class then carries the same total weight."""
    if by not in df.columns:
        raise SplitError(f"balance: no {by!r} column")
    counts = df[by].value_counts()
    if len(counts) == 0:
        raise SplitError("balance: no rows to weight")
    return {str(k): float(len(df) / (len(counts) * v)) for k, v in counts.items()}


def balance(df: pd.DataFrame, method: str = "undersample", seed: int = 0, by: str = "label") -> pd.DataFrame:
    """Balanced training rows: ``undersample``/``oversample`` resample each class to the smallest/largest
    class's count (seeded); ``class-weights`` keeps the rows and adds a ``weight`` column (mean weight 1)."""
    if method not in BALANCE_METHODS:
        raise ConfigError(f"balance method {method!r} is not one of {list(BALANCE_METHODS)}")
    weights = class_weights(df, by)
    if method == "class-weights":
        out = df.copy()
        out["weight"] = df[by].astype(str).map(weights).to_numpy()
        return out
    rng = np.random.default_rng(seed)
    counts = df[by].value_counts()
    goal = int(counts.min() if method == "undersample" else counts.max())
    picked = []
    for value in sorted(counts.index, key=str):
        idx = np.flatnonzero((df[by] == value).to_numpy())
        if method == "undersample":
            picked.append(np.sort(rng.choice(idx, size=goal, replace=False)))
        else:
            extra = rng.choice(idx, size=goal - len(idx), replace=True)
            picked.append(np.sort(np.concatenate([idx, extra])))
    rows = np.sort(np.concatenate(picked))
    return df.iloc[rows].reset_index(drop=True)


def balance_train(table: pd.DataFrame, method: str, seed: int = 0, by: str = "label") -> pd.DataFrame:
    """Balance the ``train`` rows of a split manifest, leaving the other splits untouched.

    With ``class-weights`` every row gets the weight of its class as counted in train.
    """
    train_name = next((n for n in ("train", "pretext", "downstream") if (table["split"] == n).any()), None)
    if train_name is None:
        raise SplitError("balance: the split manifest has no train rows")
    train = table[table["split"] == train_name]
    rest = table[table["split"] != train_name]
    if method == "class-weights":
        weights = class_weights(train, by)
        out = table.copy()
        out["weight"] = out[by].astype(str).map(weights).fillna(1.0).to_numpy()
        return out
    return pd.concat([balance(train, method, seed, by), rest], ignore_index=True)


def safe_name(value: str) -> str:
    """A file-name-safe version of a generator id."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", value).strip("_") or "unnamed"
