"""Calibration, bootstrap, score files, report and the ``audios evaluate`` command."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from audios.cli import app
from audios.evaluate import (
    FORMATS,
    LogisticCalibrator,
    MetricInputError,
    NotFittedError,
    ScoreFileError,
    bootstrap_ci,
    cllr,
    evaluate_scores,
    min_cllr,
    read_key,
    read_scores,
    summarize_metrics,
    write_key,
    write_report,
    write_scores,
)
from audios.evaluate.metrics import CI_METRICS, act_dcf, equal_error_rate, min_dcf

runner = CliRunner()
REQUIRED_KEYS = {"eer", "eer_threshold", "min_dcf", "act_dcf", "cllr", "min_cllr", "roc_auc", "ap", "ece",
                 "n_bonafide", "n_spoof", "ci95"}


def score_table(seed: int = 0, n: int = 400, speakers: int = 0, prefix: str = "LA_E_") -> pd.DataFrame:
    """Gaussian scores, attacks A01-A03 of differing difficulty, durations; optional speakers."""
    rng = np.random.default_rng(seed)
    bona = rng.random(n) < 0.4
    attack = np.where(bona, "human", rng.choice(["A01", "A02", "A03"], n))
    difficulty = pd.Series(attack).map({"human": 0.0, "A01": 0.0, "A02": 1.0, "A03": 2.5}).to_numpy()
    df = pd.DataFrame({
        "id": [f"{prefix}{i:07d}" for i in range(n)],
        "score": rng.normal(size=n) + np.where(bona, 2.0, 0.0) + difficulty,
        "label": np.where(bona, "bonafide", "spoof"),
        "generator": attack,
        "duration_s": rng.uniform(0.5, 12.0, n),
    })
    if speakers:
        df["speaker"] = [f"LA_{i:04d}" for i in rng.integers(0, speakers, n)]
    return df


# ------------------------------------------------------------------------------------------------ calibration


def test_calibration_lowers_cllr_of_mis_scaled_scores():
    # True LLR is 2x for N(+1,1) vs N(-1,1); the detector reports 10x + 5 (over-confident and shifted).
    rng = np.random.default_rng(0)

    def draw(n):
        y = rng.random(n) < 0.3
        x = rng.normal(size=n) + np.where(y, 1.0, -1.0)
        return 10 * x + 5, y

    val_s, val_y = draw(4000)
    test_s, test_y = draw(4000)
    cal = LogisticCalibrator().fit(val_s, val_y)
    assert cal.slope_ == pytest.approx(0.2, rel=0.1)  # 2x = 0.2 * (10x + 5) - 1
    assert cal.offset_ == pytest.approx(-1.0, abs=0.15)
    after = cal.transform(test_s)
    before_cllr, after_cllr = cllr(test_s, test_y), cllr(after, test_y)
    assert before_cllr > 1.0  # worse than saying nothing
    assert after_cllr < 0.5 * before_cllr
    assert after_cllr - min_cllr(test_s, test_y) < 0.02
    assert act_dcf(after, test_y).value < act_dcf(test_s, test_y).value
    # An affine map with positive slope keeps the ranking: EER and minDCF unchanged.
    assert equal_error_rate(after, test_y).eer == pytest.approx(equal_error_rate(test_s, test_y).eer)
    assert min_dcf(after, test_y).value == pytest.approx(min_dcf(test_s, test_y).value)


def test_calibrator_contract():
    with pytest.raises(NotFittedError):
        LogisticCalibrator().transform([0.0])
    cal = LogisticCalibrator()
    assert cal.fit([0.0, 1.0, 2.0, 3.0], [0, 0, 1, 1]) is cal
    assert cal.slope_ > 0 and np.isfinite(cal.slope_)  # separable data: the ridge keeps the slope finite
    with pytest.raises(ValueError, match="prior"):
        LogisticCalibrator(prior=0.0).fit([0.0, 1.0], [0, 1])


# -------------------------------------------------------------------------------------------------- bootstrap


def all_metrics(s, y):
    d = summarize_metrics(s, y).as_dict()
    return {k: d[k] for k in CI_METRICS}


def test_bootstrap_ci_contains_estimate_and_is_reproducible():
    df = score_table(1, n=300)
    s, y = df["score"].to_numpy(), df["label"].to_numpy()
    a = bootstrap_ci(s, y, all_metrics, np.random.default_rng(42), n_resamples=200)
    b = bootstrap_ci(s, y, all_metrics, np.random.default_rng(42), n_resamples=200)
    c = bootstrap_ci(s, y, all_metrics, np.random.default_rng(43), n_resamples=200)
    assert a == b
    assert a.as_pairs() != c.as_pairs()
    assert a.unit == "utterance" and a.n_resamples == 200
    for name, ci in a.intervals.items():
        assert ci.low <= ci.estimate <= ci.high, name
        assert ci.low < ci.high, name


def test_utterance_bootstrap_keeps_class_counts():
    s = np.arange(10, dtype=float)
    y = np.array([1] * 3 + [0] * 7)
    counts = bootstrap_ci(s, y, lambda bs, by: {"n_bona": by.sum(), "n": by.size}, np.random.default_rng(0),
                          n_resamples=30)
    assert counts.intervals["n_bona"].low == counts.intervals["n_bona"].high == 3
    assert counts.intervals["n"].low == counts.intervals["n"].high == 10


def test_speaker_bootstrap_keeps_speakers_together():
    # Every speaker has 3 clips with one shared score; resampling speakers keeps each score's count a multiple of 3.
    n_spk = 40
    s = np.repeat(np.arange(n_spk, dtype=float), 3)
    y = np.repeat(np.arange(n_spk) % 2 == 0, 3)
    groups = np.repeat([f"spk{i}" for i in range(n_spk)], 3)

    def stat(bs, by):
        _, counts = np.unique(bs, return_counts=True)
        return {"whole": float(np.all(counts % 3 == 0)), "n": float(bs.size)}

    r = bootstrap_ci(s, y, stat, np.random.default_rng(0), n_resamples=100, groups=groups)
    assert r.unit == "speaker" and r.n_groups == n_spk
    assert r.intervals["whole"].low == 1.0
    assert r.intervals["n"].low == r.intervals["n"].high == 3 * n_spk
    u = bootstrap_ci(s, y, stat, np.random.default_rng(0), n_resamples=100)
    assert u.intervals["whole"].low == 0.0  # utterance resampling splits speakers


def test_speaker_bootstrap_is_wider_for_clustered_scores():
    # Each speaker is all bona fide or all spoof and has its own score offset, so clips of one speaker are
    # correlated and the speaker sample, not the clip sample, drives the uncertainty: speaker CIs must be wider.
    rng = np.random.default_rng(5)
    n_spk, per = 30, 20
    spk = np.repeat(np.arange(n_spk), per)
    y = spk % 2 == 0
    s = 0.5 * rng.normal(size=n_spk * per) + 1.0 * y + rng.normal(size=n_spk)[spk]

    def eer(bs, by):
        return {"eer": equal_error_rate(bs, by).eer}

    by_spk = bootstrap_ci(s, y, eer, np.random.default_rng(0), n_resamples=300, groups=spk).intervals["eer"]
    by_utt = bootstrap_ci(s, y, eer, np.random.default_rng(0), n_resamples=300).intervals["eer"]
    assert (by_spk.high - by_spk.low) > 1.5 * (by_utt.high - by_utt.low)


def test_bootstrap_rejects_bad_arguments():
    with pytest.raises(MetricInputError, match="rng"):
        bootstrap_ci([0.0, 1.0], [0, 1], all_metrics, rng=0)  # type: ignore[arg-type]
    with pytest.raises(MetricInputError, match="n_resamples"):
        bootstrap_ci([0.0, 1.0], [0, 1], all_metrics, np.random.default_rng(0), n_resamples=0)


# ------------------------------------------------------------------------------------------------ score files


@pytest.mark.parametrize("fmt", FORMATS)
def test_score_file_round_trip(tmp_path, fmt):
    df = score_table(2, n=60, speakers=5)
    scores_path = tmp_path / f"scores.{fmt}.txt"
    write_scores(df, scores_path, fmt)
    key = None
    if fmt != "ours":
        key = write_key(df, tmp_path / f"key.{fmt}.txt", fmt)
    back = read_scores(scores_path, format=fmt, key=key)
    assert read_scores(scores_path, format="auto", key=key)["id"].tolist() == back["id"].tolist()
    merged = df.merge(back, on="id", suffixes=("", "_back"))
    assert len(merged) == len(df) == len(back)
    np.testing.assert_array_equal(merged["score"], merged["score_back"])  # exact floats
    assert (merged["label"] == merged["label_back"]).all()
    assert (merged["generator"] == merged["generator_back"]).all()
    if fmt != "ours":
        assert (merged["speaker"] == merged["speaker_back"]).all()


def test_asvspoof2019_four_column_scores_carry_their_labels(tmp_path):
    path = tmp_path / "cm.txt"
    path.write_text("LA_E_1 A07 spoof -3.5\nLA_E_2 - bonafide 4.25\n# comment\n\nLA_E_3 A19 spoof 0.5\n")
    df = read_scores(path)
    assert df["label"].tolist() == ["spoof", "bonafide", "spoof"]
    assert df["generator"].tolist() == ["A07", "human", "A19"]
    assert df["score"].tolist() == [-3.5, 4.25, 0.5]


def test_asvspoof_protocols_and_keys(tmp_path):
    scores = tmp_path / "score.txt"
    scores.write_text("LA_E_9332881 1.5\nLA_E_1 -2\n")
    trial = tmp_path / "trial_metadata.txt"  # 2021 LA trial metadata layout
    trial.write_text("LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval\n"
                     "LA_0010 LA_E_1 pstn ita_tx bonafide bonafide notrim eval\n")
    df = read_scores(scores, "asvspoof2021", key=trial)
    assert df.set_index("id")["label"].to_dict() == {"LA_E_9332881": "spoof", "LA_E_1": "bonafide"}
    assert df.set_index("id")["generator"].to_dict() == {"LA_E_9332881": "A07", "LA_E_1": "human"}
    assert df.set_index("id")["speaker"].to_dict() == {"LA_E_9332881": "LA_0009", "LA_E_1": "LA_0010"}
    # ASVspoof 5 evaluation-package key: header TSV.
    s5 = tmp_path / "s5.tsv"
    s5.write_text("filename\tcm-score\nE_000001\t0.01\nE_000002\t-0.02\n")
    k5 = tmp_path / "k5.tsv"
    k5.write_text("filename\tcm-label\tattack_anon\nE_000001\tbonafide\tbonafide\nE_000002\tspoof\tA17\n")
    df5 = read_scores(s5, key=k5)
    assert df5["label"].tolist() == ["bonafide", "spoof"] and df5["generator"].tolist() == ["human", "A17"]
    # A manifest as key: ids are paths without extension when the manifest has no id column.
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,label,generator,speaker\nspoof/A17/E_000002.wav,spoof,A17,s1\n"
                        "bonafide/x/E_000001.flac,bonafide,human,s2\n")
    ours = tmp_path / "ours.csv"
    ours.write_text("id,score\nspoof/A17/E_000002,-1.0\nbonafide/x/E_000001,2.0\n")
    dfm = read_scores(ours, key=manifest)
    assert dfm["label"].tolist() == ["spoof", "bonafide"] and dfm["speaker"].tolist() == ["s1", "s2"]
    assert read_key(manifest)["id"].tolist() == ["spoof/A17/E_000002", "bonafide/x/E_000001"]


def test_score_file_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,score,label\na,1.0,bonafide\nb,oops,spoof\n")
    with pytest.raises(ScoreFileError, match=r"bad.csv: row 3 \(id 'b'\): score 'oops'"):
        read_scores(bad)
    bad.write_text("id,score,label\na,1.0,bonafide\nb,2.0,fake\n")
    with pytest.raises(ScoreFileError, match=r"row 3: label 'fake'"):
        read_scores(bad)
    bad.write_text("id,score,label\na,1.0,bonafide\na,2.0,spoof\n")
    with pytest.raises(ScoreFileError, match="'a' is scored more than once"):
        read_scores(bad)
    txt = tmp_path / "s.txt"
    txt.write_text("LA_E_1 0.5\nLA_E_2 nan\n")
    with pytest.raises(ScoreFileError, match="line 2: score 'nan' is not finite"):
        read_scores(txt, "asvspoof2021")
    with pytest.raises(ScoreFileError, match="no labels"):
        read_scores(_two_col(tmp_path), "asvspoof2021")
    key = tmp_path / "key.txt"
    key.write_text("LA_0001 LA_E_1 - - bonafide\n")
    with pytest.raises(ScoreFileError, match=r"1 scored ids are not in the key \(e.g. LA_E_2\)"):
        read_scores(_two_col(tmp_path), "asvspoof2021", key=key)
    with pytest.raises(ScoreFileError, match="file not found"):
        read_scores(tmp_path / "missing.csv", "ours")
    with pytest.raises(ScoreFileError, match="unknown score format"):
        read_scores(_two_col(tmp_path), "kaldi")


def _two_col(tmp_path):
    p = tmp_path / "two.txt"
    p.write_text("LA_E_1 0.5\nLA_E_2 -0.5\n")
    return p


# ------------------------------------------------------------------------------------------ evaluate + report


def test_evaluate_scores_with_validation_and_breakdowns():
    test, val = score_table(3, n=500, speakers=25), score_table(4, n=500)
    for df in (test, val):  # the same mis-scaling on both, which calibration on val must undo on test
        df["score"] = df["score"] * 4 - 3
    r = evaluate_scores(test, val=val, per=["generator", "duration"], n_bootstrap=50,
                        rng=np.random.default_rng(0))
    assert r.bootstrap["unit"] == "speaker"
    assert r.threshold_source == "validation EER"
    assert r.calibration is not None and r.calibration.cllr_after < r.calibration.cllr_before
    gens = [row.group for row in r.breakdowns["generator"]]
    assert gens == ["pooled", "A01", "A02", "A03"]  # bona fide "human" is not an attack row
    eers = {row.group: row.eer for row in r.breakdowns["generator"]}
    assert eers["A01"] < eers["A02"] < eers["A03"]  # by construction A03 is hardest
    assert [row.group for row in r.breakdowns["duration"]][1:] == ["<2 s", "2-4 s", "4-8 s", ">=8 s"]
    d = r.to_dict()
    assert REQUIRED_KEYS <= d.keys() and "per_generator" in d and "per_duration" in d
    assert set(d["ci95"]) == set(CI_METRICS)
    json.dumps(d)


def test_threshold_at_target_far_chosen_on_validation():
    test, val = score_table(10, n=400), score_table(11, n=400)
    r = evaluate_scores(test, val=val, n_bootstrap=0, target_far=0.05)
    assert r.threshold_source == "validation FAR <= 0.05"
    assert r.bootstrap["n_resamples"] == 0 and r.ci95 == {}
    from audios.evaluate import decision_metrics
    on_val = decision_metrics(val["score"], val["label"], r.decision.threshold)
    assert on_val.p_fa <= 0.05
    # The lowest threshold meeting the target: any lower distinct score would accept more spoofs than allowed.
    lower = val["score"][val["score"] < r.decision.threshold].max()
    assert decision_metrics(val["score"], val["label"], lower).p_fa > 0.05
    assert r.decision.p_fa == pytest.approx(0.05, abs=0.05)  # and on test it lands near the target


def test_evaluate_scores_needs_columns_and_rng():
    df = score_table(0, n=50)
    with pytest.raises(MetricInputError, match="rng"):
        evaluate_scores(df, n_bootstrap=10)
    with pytest.raises(MetricInputError, match="'source' column"):
        evaluate_scores(df, per=["source"], n_bootstrap=0)


def test_write_report(tmp_path):
    df = score_table(5, n=300, speakers=10)
    r = evaluate_scores(df, val=score_table(6, n=300), per=["generator"], n_bootstrap=30,
                        rng=np.random.default_rng(0))
    paths = write_report(r, tmp_path / "rep")
    for name in ("roc", "det", "scores", "attacks", "calibration"):
        assert paths[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = paths["markdown"].read_text()
    assert "| EER |" in md and "## Per generator" in md and "![DET (normal-deviate axes)](det.png)" in md
    page = paths["html"].read_text()
    assert page.count("data:image/png;base64,") == 5
    assert not re.search(r'src="(?!data:)', page)  # nothing outside the one file
    metrics = json.loads(paths["metrics"].read_text())
    assert metrics["eer"] == r.metrics.eer


# ------------------------------------------------------------------------------------------------------- CLI


def test_cli_json(tmp_path):
    path = tmp_path / "scores.csv"
    write_scores(score_table(7, n=200, speakers=8), path)
    result = runner.invoke(app, ["evaluate", str(path), "--json", "--bootstrap", "40", "--seed", "3",
                                 "--per", "generator"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert REQUIRED_KEYS <= d.keys()
    assert all(len(v) == 2 and v[0] <= v[1] for v in d["ci95"].values())
    assert d["ci95"].keys() >= {"eer", "min_dcf", "act_dcf", "cllr", "min_cllr", "roc_auc", "ap", "ece"}
    assert [row["group"] for row in d["per_generator"]] == ["pooled", "A01", "A02", "A03"]
    assert d["n_bonafide"] + d["n_spoof"] == 200
    again = json.loads(runner.invoke(app, ["evaluate", str(path), "--json", "--bootstrap", "40", "--seed", "3"]).stdout)
    assert again["ci95"] == d["ci95"]


def test_cli_table_val_report_and_asvspoof_format(tmp_path):
    test, val = score_table(8, n=200), score_table(9, n=200)
    write_scores(test, tmp_path / "test.txt", "asvspoof2021")
    write_key(test, tmp_path / "test_key.txt", "asvspoof2021")
    write_scores(val, tmp_path / "val.csv")
    result = runner.invoke(app, [
        "evaluate", str(tmp_path / "test.txt"), "--format", "asvspoof2021", "--key", str(tmp_path / "test_key.txt"),
        "--val", str(tmp_path / "val.csv"), "--val-key", str(tmp_path / "val.csv"), "--bootstrap", "20",
        "--report", str(tmp_path / "rep"), "--per", "generator",
    ])
    assert result.exit_code == 0, result.output
    assert "EER" in result.stdout and "validation EER" in result.stdout and "per generator" in result.stdout
    assert (tmp_path / "rep" / "report.html").exists()


def test_cli_error_is_one_line(tmp_path):
    result = runner.invoke(app, ["evaluate", str(tmp_path / "nope.csv"), "--format", "ours"])
    assert result.exit_code == 2
    assert "nope.csv: file not found" in " ".join(result.output.split())
    scores = tmp_path / "s.csv"
    write_scores(score_table(0, n=40), scores)
    result = runner.invoke(app, ["evaluate", str(scores), "--per", "source", "--bootstrap", "0"])
    assert result.exit_code == 2
    assert "needs a 'source' column" in " ".join(result.output.split())
