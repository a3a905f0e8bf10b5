"""The manifest builder on the real dev corpus, and the ``audios manifest`` command on a tiny tree."""

from __future__ import annotations

import numpy as np
import pandas as pd
from conftest import speechlike, write
from typer.testing import CliRunner

from audios.cli import app
from audios.manifest import build_manifest


def test_dev_corpus_auto_reproduces_its_manifest(dev_corpus):
    expected = pd.read_csv(dev_corpus / "manifest.csv", dtype={"speaker": str}, keep_default_na=False)
    result = build_manifest(dev_corpus, "auto", workers=2)
    assert result.layout == "csv" and "manifest.csv" in result.reason
    assert result.skipped == [] and result.missing == []
    got = result.table.set_index("path")
    want = expected.set_index("path")
    assert sorted(got.index) == sorted(want.index) and len(got) == 541
    got = got.loc[want.index]
    for column in ("label", "generator", "speaker", "utterance", "source", "licence"):
        mismatched = want.index[got[column].astype(str).to_numpy() != want[column].astype(str).to_numpy()]
        assert len(mismatched) == 0, f"{column} differs for {list(mismatched[:3])}"
    # The README's manifest rounds durations to 1 ms; rates and channels are exact.
    assert np.abs(got["duration_s"].to_numpy() - want["duration_s"].to_numpy()).max() <= 0.001 + 1e-9
    assert (got["sample_rate"].to_numpy() == want["sample_rate"].to_numpy()).all()
    assert (got["channels"].to_numpy() == want["channels"].to_numpy()).all()
    assert got["label"].value_counts().to_dict() == {"spoof": 317, "bonafide": 224}


def test_manifest_command_writes_the_table(tmp_path):
    root = tmp_path / "corpus"
    write(root / "fake/tts-a/a.wav", speechlike(0.5, seed=1))
    write(root / "fake/tts-b/b.flac", speechlike(0.5, seed=2))
    write(root / "real/c.wav", speechlike(0.5, seed=3))
    (root / "real/broken.wav").write_bytes(b"RIFF not really")
    out = tmp_path / "out" / "manifest.csv"
    result = CliRunner().invoke(app, ["manifest", str(root), "-o", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "layout: folders" in result.output and "skipped 1" in result.output
    table = pd.read_csv(out, keep_default_na=False)
    assert dict(zip(table["path"], table["label"], strict=True)) == {
        "fake/tts-a/a.wav": "spoof", "fake/tts-b/b.flac": "spoof", "real/c.wav": "bonafide"}
    assert dict(zip(table["path"], table["generator"], strict=True))["fake/tts-b/b.flac"] == "tts-b"
    assert (table["sample_rate"] == 16000).all() and np.allclose(table["duration_s"], 0.5)
    skipped = pd.read_csv(out.with_suffix(".skipped.csv"))
    assert list(skipped["path"]) == ["real/broken.wav"]
