"""Splits on synthetic manifests built in code, where the right answer is known."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from audios.cli import app
from audios.errors import ConfigError, SplitError
from audios.manifest import read_manifest, write_table
from audios.split import (
    SplitConfig, balance, balance_train, find_groups, leak_check, leave_one_generator_out, split_manifest,
)

GENERATORS = ("gen-a", "gen-b", "gen-c")


def make_manifest(n_utt: int = 200, n_speakers: int = 20, seed: int = 0, subset: str = "") -> pd.DataFrame:
    """Each utterance: one bona fide recording and one rendering per generator, same speaker, unique hashes."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_utt):
        spk = f"spk{u % n_speakers}"
        for label, gen in [("bonafide", "human"), *[("spoof", g) for g in GENERATORS]]:
            rows.append({"id": f"{gen}/u{u}", "path": f"{gen}/u{u}.wav", "label": label, "generator": gen,
                         "speaker": spk, "utterance": f"u{u}", "subset": subset,
                         "duration_s": float(rng.uniform(1, 5)), "sha256": f"{gen}-{u}"})
    return pd.DataFrame(rows)


def pairs_by(table: pd.DataFrame, col: str) -> int:
    """Number of values of ``col`` found in more than one split."""
    return int((table.groupby(col)["split"].nunique() > 1).sum())


def test_config_validates() -> None:
    with pytest.raises(ConfigError, match="sum to"):
        SplitConfig(ratios=(0.5, 0.3, 0.1))
    with pytest.raises(ConfigError, match="differ in length"):
        SplitConfig(ratios=(0.5, 0.5))
    with pytest.raises(ConfigError, match="not among"):
        SplitConfig(names=("train", "val", "holdout"))
    with pytest.raises(ConfigError, match="test"):
        SplitConfig(names=("pretext", "downstream"), ratios=(0.5, 0.5), holdout_generators=("gen-a",))


def test_find_groups_links_shared_values_transitively_and_ignores_unknown() -> None:
    df = pd.DataFrame({"sha256": ["h1", "h1", "h2", "h3", "h4"], "utterance": ["a", "b", "b", "c", ""],
                       "speaker": ["unknown", "unknown", "x", "x", ""]})
    assert len(set(find_groups(df, ("sha256", "utterance")))) == 3  # {0,1,2}, {3}, {4}
    g = find_groups(df, ("sha256", "utterance", "speaker"))
    assert g[0] == g[1] == g[2] == g[3] and g[4] != g[0]


def test_utterance_pairs_never_cross_splits() -> None:
    table = split_manifest(make_manifest(), SplitConfig(seed=1)).table
    assert pairs_by(table, "utterance") == 0
    assert set(table["split"]) == {"train", "val", "test"}


def test_identical_hashes_stay_together() -> None:
    df = make_manifest(n_utt=60)
    # The same audio listed under three different utterance ids must still land in one split.
    for i in range(10):
        df.loc[df["utterance"].isin([f"u{i}", f"u{i + 10}", f"u{i + 20}"]) & (df["generator"] == "human"),
               "sha256"] = f"dup{i}"
    table = split_manifest(df, SplitConfig(seed=3)).table
    assert pairs_by(table, "sha256") == 0
    for i in range(10):
        assert table.loc[table["utterance"].isin([f"u{i}", f"u{i + 10}", f"u{i + 20}"]), "split"].nunique() == 1


def test_parent_id_groups_clips() -> None:
    df = make_manifest(n_utt=100)
    df["utterance"] = df["id"]  # no utterance links: only the parent recording ties clips together
    df["parent_id"] = [f"rec{i // 8}" for i in range(len(df))]
    table = split_manifest(df, SplitConfig(seed=0)).table
    assert pairs_by(table, "parent_id") == 0
    assert table["split"].nunique() == 3


def test_group_by_speaker_is_speaker_disjoint() -> None:
    df = make_manifest(n_utt=200, n_speakers=20)
    plain = split_manifest(df, SplitConfig(seed=0)).table
    assert pairs_by(plain, "speaker") > 0  # without grouping speakers do cross (the test can fail)
    result = split_manifest(df, SplitConfig(seed=0, group_by=("speaker",)))
    assert pairs_by(result.table, "speaker") == 0
    assert "speaker" in result.leak.strict_columns and result.leak.ok


def test_single_speaker_corpus_warns() -> None:
    df = make_manifest(n_utt=40, n_speakers=1)
    result = split_manifest(df, SplitConfig(group_by=("speaker",)))
    assert result.table["split"].nunique() == 1
    text = " ".join(result.warnings)
    assert "ratios cannot hold" in text and "empty" in text


def test_ratios_approximately_met_per_stratum() -> None:
    df = make_manifest(n_utt=1000, n_speakers=100)
    df["utterance"] = df["id"]  # free rows: ratios should be met closely
    table = split_manifest(df, SplitConfig(ratios=(0.7, 0.2, 0.1), seed=5)).table
    share = table["split"].value_counts(normalize=True)
    assert share["train"] == pytest.approx(0.7, abs=0.01)
    assert share["val"] == pytest.approx(0.2, abs=0.01)
    assert share["test"] == pytest.approx(0.1, abs=0.01)
    per_gen = pd.crosstab(table["generator"], table["split"], normalize="index")
    assert (per_gen["test"] - 0.1).abs().max() < 0.02
    # Linked rows (one utterance = 4 rows) still come close.
    grouped = split_manifest(make_manifest(n_utt=1000, n_speakers=100), SplitConfig(seed=5)).table
    assert grouped["split"].value_counts(normalize=True)["test"] == pytest.approx(0.1, abs=0.02)


def test_seeded_reproducibility() -> None:
    df = make_manifest()
    a = split_manifest(df, SplitConfig(seed=7)).table["split"]
    b = split_manifest(df, SplitConfig(seed=7)).table["split"]
    c = split_manifest(df, SplitConfig(seed=8)).table["split"]
    assert a.equals(b)
    assert not a.equals(c)


def test_official_subset_kept() -> None:
    df = make_manifest(n_utt=30)
    df["subset"] = np.where(df["utterance"].str[1:].astype(int) < 20, "train",
                            np.where(df["utterance"].str[1:].astype(int) < 25, "dev", "eval"))
    result = split_manifest(df)
    assert result.mode == "official"
    assert (result.table["split"] == df["subset"].map({"train": "train", "dev": "val", "eval": "test"})).all()
    resplit = split_manifest(df, SplitConfig(keep_official=False, seed=2))
    assert resplit.mode != "official"
    bad = df.assign(subset="holdout")
    with pytest.raises(SplitError, match="holdout"):
        split_manifest(bad)
    with pytest.raises(SplitError, match="subset"):
        split_manifest(make_manifest(n_utt=10), SplitConfig(keep_official=True))


def test_holdout_generators_only_in_test() -> None:
    df = make_manifest(n_utt=200)
    # gen-b rendered only u0..u19, so other utterances are free to go anywhere.
    df = df[(df["generator"] != "gen-b") | (df["utterance"].str[1:].astype(int) < 20)].reset_index(drop=True)
    result = split_manifest(df, SplitConfig(holdout_generators=("gen-b",), seed=0))
    t = result.table
    assert set(t.loc[t["generator"] == "gen-b", "split"]) == {"test"}
    assert (t["generator"] == "gen-b").sum() == 20
    # Renderings of the held-out utterances by other generators follow them to test (documented choice).
    assert set(t.loc[t["utterance"].isin([f"u{i}" for i in range(20)]), "split"]) == {"test"}
    # Other generators still reach train, and nothing leaks.
    assert (t.loc[t["split"] == "train", "generator"] == "gen-a").any()
    assert result.leak.ok
    everywhere = split_manifest(make_manifest(n_utt=50), SplitConfig(holdout_generators=("gen-b",)))
    assert any("train is empty" in w for w in everywhere.warnings)
    with pytest.raises(SplitError, match="not spoof generators"):
        split_manifest(df, SplitConfig(holdout_generators=("nope",)))


def test_leave_one_generator_out() -> None:
    df = make_manifest(n_utt=120)
    # Bona fide recordings without a synthetic twin, to fill the test sets' bona fide side.
    extra = pd.DataFrame([{"id": f"solo{i}", "path": f"solo/{i}.wav", "label": "bonafide", "generator": "human",
                           "speaker": "s", "utterance": f"solo{i}", "subset": "", "duration_s": 2.0,
                           "sha256": f"solo{i}"} for i in range(40)])
    results = leave_one_generator_out(pd.concat([df, extra], ignore_index=True), SplitConfig(seed=0))
    assert sorted(results) == list(GENERATORS)
    for gen, result in results.items():
        t = result.table
        test_spoof = t[(t["split"] == "test") & (t["label"] == "spoof")]
        assert set(test_spoof["generator"]) == {gen}
        assert set(t.loc[t["generator"] == gen, "split"]) == {"test"}
        assert ((t["split"] == "test") & (t["label"] == "bonafide")).sum() > 0
        assert result.leak.ok


def test_leak_check_counts_a_leaked_split() -> None:
    table = pd.DataFrame({
        "path": ["a.wav", "b.wav", "a.wav", "c.wav", "d.wav"],
        "sha256": ["h1", "h2", "h1", "h3", "h2"],
        "utterance": ["u1", "u2", "u3", "u4", "u5"],
        "speaker": ["s1", "s2", "s1", "unknown", "unknown"],
        "split": ["train", "train", "val", "test", "test"],
    })
    report = leak_check(table)
    assert report.counts["train|val"] == {"path": 1, "sha256": 1, "utterance": 0, "speaker": 1}
    assert report.counts["train|test"] == {"path": 0, "sha256": 1, "utterance": 0, "speaker": 0}
    assert report.counts["val|test"] == {"path": 0, "sha256": 0, "utterance": 0, "speaker": 0}
    assert not report.ok and len(report.errors) == 3  # path + sha train|val, sha train|test; speaker not strict
    assert leak_check(table, strict_columns=("speaker",)).errors == ("1 speaker value(s) shared by train and val, "
                                                                      "e.g. 's1'",)


def test_balance_methods() -> None:
    df = pd.DataFrame({"label": ["bonafide"] * 10 + ["spoof"] * 30, "id": range(40)})
    under = balance(df, "undersample", seed=0)
    assert under["label"].value_counts().to_dict() == {"bonafide": 10, "spoof": 10}
    assert under["id"].is_unique
    over = balance(df, "oversample", seed=0)
    assert over["label"].value_counts().to_dict() == {"bonafide": 30, "spoof": 30}
    assert set(over.loc[over["label"] == "bonafide", "id"]) == set(range(10))
    weighted = balance(df, "class-weights")
    assert weighted.groupby("label")["weight"].first().to_dict() == {"bonafide": 2.0, "spoof": 40 / 60}
    assert weighted.groupby("label")["weight"].sum().to_dict() == pytest.approx({"bonafide": 20.0, "spoof": 20.0})
    assert balance(df, "undersample", seed=1)["id"].tolist() != under["id"].tolist()
    with pytest.raises(ConfigError):
        balance(df, "smote")
    split = df.assign(split=["train"] * 5 + ["test"] * 5 + ["train"] * 25 + ["test"] * 5)
    bt = balance_train(split, "undersample")
    assert bt[bt["split"] == "train"]["label"].value_counts().to_dict() == {"bonafide": 5, "spoof": 5}
    assert (bt["split"] == "test").sum() == 10


def test_cli_split(tmp_path) -> None:
    manifest = write_table(make_manifest(n_utt=60, n_speakers=12), tmp_path / "manifest.csv")
    out = tmp_path / "out" / "split.csv"
    res = CliRunner().invoke(app, ["split", str(manifest), "-o", str(out), "--group-by", "speaker",
                                   "--balance", "class-weights"])
    assert res.exit_code == 0, res.output
    table = read_manifest(out)
    assert set(table["split"]) == {"train", "val", "test"} and "weight" in table.columns
    assert pairs_by(table, "speaker") == 0
    leak = json.loads(out.with_suffix(".leakcheck.json").read_text())
    assert leak["ok"] and leak["overlaps"]["train|test"]["speaker"] == 0
    assert (out.parent / "config.yaml").exists() and (out.parent / "run.json").exists()
    logo = tmp_path / "logo"
    res = CliRunner().invoke(app, ["split", str(manifest), "-o", str(logo), "--leave-one-generator-out"])
    assert res.exit_code == 0, res.output
    index = pd.read_csv(logo / "index.csv")
    assert sorted(index["generator"]) == list(GENERATORS)
    assert all((logo / f).exists() for f in index["file"])
    res = CliRunner().invoke(app, ["split", str(manifest), "--ratios", "0.5,0.6,0.1"])
    assert res.exit_code == 2 and "sum to" in res.output
