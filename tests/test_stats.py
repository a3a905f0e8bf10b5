"""Corpus statistics on synthetic manifests with known answers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from audios.cli import app
from audios.manifest import write_table
from audios.stats import StatsConfig, auc_bonafide, compute_stats, hours_table, shortcut_report, write_stats


def make_manifest(n: int = 200, seed: int = 0, separate_rate: bool = False) -> pd.DataFrame:
    """Half bona fide, half spoof; every variable drawn from one distribution unless told otherwise."""
    rng = np.random.default_rng(seed)
    label = np.array(["bonafide", "spoof"] * (n // 2))
    rate = np.where(label == "bonafide", 16000, 22050) if separate_rate else rng.choice([16000, 22050], size=n)
    return pd.DataFrame({
        "id": [f"f{i}" for i in range(n)], "path": [f"f{i}.wav" for i in range(n)], "label": label,
        "generator": np.where(label == "bonafide", "human", rng.choice(["g1", "g2"], size=n)),
        "speaker": rng.choice(["s1", "s2", "s3"], size=n),
        "duration_s": rng.uniform(1, 8, size=n), "sample_rate": rate, "channels": 1,
        "format": rng.choice(["wav", "flac"], size=n), "peak": rng.uniform(0.3, 1, size=n),
        "rms_dbfs": rng.normal(-23, 3, size=n), "clipped_fraction": rng.uniform(0, 1e-4, size=n),
        "lead_silence_s": rng.exponential(0.1, size=n), "trail_silence_s": rng.exponential(0.1, size=n),
    })


def test_auc_known_answers_with_ties() -> None:
    y = np.array([True, True, False, False])
    assert auc_bonafide(np.array([3.0, 4.0, 1.0, 2.0]), y) == 1.0
    assert auc_bonafide(np.array([1.0, 2.0, 3.0, 4.0]), y) == 0.0
    # Hand count: pairs (b, s): (2,2) tie 0.5, (2,1) 1, (3,2) 1, (3,1) 1 -> 3.5 / 4.
    assert auc_bonafide(np.array([2.0, 3.0, 2.0, 1.0]), y) == pytest.approx(0.875)
    assert auc_bonafide(np.ones(4), y) == 0.5
    x = np.array([0.1, 5.0, 2.0, 3.0, 0.5])
    lab = np.array([True, False, True, False, True])
    assert auc_bonafide(np.exp(x), lab) == auc_bonafide(x, lab)  # monotone-transform invariant
    with pytest.raises(ValueError, match="both classes"):
        auc_bonafide(np.ones(3), np.ones(3, dtype=bool))


def test_sample_rate_separating_classes_warns_with_auc_1() -> None:
    report = shortcut_report(make_manifest(separate_rate=True))
    by = {s.variable: s for s in report.shortcuts}
    assert by["sample_rate"].auc == 1.0 and by["sample_rate"].warn
    assert by["sample_rate"].direction == "higher in spoof"
    assert by["sample_rate (category)"].auc == 1.0 and by["sample_rate (category)"].warn
    detail = by["sample_rate (category)"].detail
    assert "16000 only in bonafide" in detail.replace("occurs ", "") and "22050" in detail
    assert {s.variable for s in report.warnings} == {"sample_rate", "sample_rate (category)"}


def test_identically_distributed_variables_give_no_warning() -> None:
    report = shortcut_report(make_manifest(n=400, seed=1))
    assert report.warnings == []
    assert all(0.5 <= s.auc < 0.65 for s in report.shortcuts)
    assert len(report.shortcuts) == 9  # 7 numeric + 2 categorical


def test_pure_category_warns_below_auc_threshold() -> None:
    df = make_manifest(n=400, seed=2)
    bona = np.flatnonzero(df["label"] == "bonafide")
    df.loc[bona[:40], "format"] = "mp3"  # 20 % of bona fide and no spoof: a giveaway even at modest AUC
    report = shortcut_report(df)
    fmt = next(s for s in report.shortcuts if s.variable == "format (category)")
    assert fmt.warn and fmt.auc < 0.75 and "mp3 occurs only in bonafide" in fmt.detail
    assert not shortcut_report(df, StatsConfig(pure_share=0.5)).warnings


def test_hours_tables_sum_correctly() -> None:
    df = make_manifest()
    total_h = df["duration_s"].sum() / 3600
    for by in ("label", "generator", "speaker"):
        t = hours_table(df, by)
        assert t["hours"].sum() == pytest.approx(total_h)
        assert t["files"].sum() == len(df)
        assert (t["bonafide_hours"] + t["spoof_hours"]).to_numpy() == pytest.approx(t["hours"].to_numpy())
        assert t["share"].sum() == pytest.approx(1.0)
        assert t["hours"].is_monotonic_decreasing
    per_class = hours_table(df, "label").set_index("label")
    assert per_class.loc["bonafide", "hours"] == pytest.approx(df.loc[df.label == "bonafide", "duration_s"].sum() / 3600)
    human = hours_table(df, "generator").set_index("generator").loc["human"]
    assert human["spoof_hours"] == 0 and human["files"] == 100


def test_plots_and_summaries_written(tmp_path) -> None:
    df = make_manifest(separate_rate=True)
    stats = compute_stats(df)
    paths = write_stats(df, stats, tmp_path / "stats")
    names = {p.name for p in paths}
    assert {"overview.png", "hours_per_class.png", "hours_per_generator.png", "hist_sample_rate.png",
            "stats.json", "stats.md"} <= names
    for p in paths:
        assert p.stat().st_size > 0
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((tmp_path / "stats" / "stats.json").read_text())
    assert summary["n_files"] == 200
    assert any(v["variable"] == "sample_rate" and v["warn"] for v in summary["shortcuts"]["variables"])


def test_cli_stats(tmp_path) -> None:
    manifest = write_table(make_manifest(separate_rate=True), tmp_path / "m.csv")
    res = CliRunner().invoke(app, ["stats", str(manifest), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "WARN" in res.output and "sample_rate" in res.output and "1.000" in res.output
    assert (tmp_path / "out" / "overview.png").exists()
    res = CliRunner().invoke(app, ["stats", str(tmp_path / "absent.csv")])
    assert res.exit_code == 2 and "does not exist" in " ".join(res.output.split())
