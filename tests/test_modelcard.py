"""MODEL_CARD.md from a run folder: required sections, measured limitations, the reproduce command."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audios.classic import TrainConfig, train_classic
from audios.errors import ManifestError
from audios.modelcard import write_model_card
from tests.test_classic import vector_table

SECTIONS = ("## Intended use", "## Out-of-scope uses", "## Training data", "## Evaluation",
            "## Per-attack weak spots", "## Known limitations and biases", "## Reproduce")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("card")
    features = vector_table(tmp / "f.parquet", shift=1.5)
    train_classic(TrainConfig(features=str(features), model="logreg", out=str(tmp / "run"), n_bootstrap=50))
    return tmp / "run"


def test_card_has_every_required_section_in_order(run_dir: Path) -> None:
    text = write_model_card(run_dir).read_text()
    positions = [text.index(s) for s in SECTIONS]
    assert positions == sorted(positions)
    for topic in ("Unseen generators", "Codecs", "Noise", "Languages"):
        assert topic in text


def test_card_reports_recorded_numbers_and_command(run_dir: Path) -> None:
    text = write_model_card(run_dir).read_text()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    lo, hi = metrics["ci95"]["eer"]
    assert f"| EER | {100 * metrics['eer']:.2f} % | [{100 * lo:.2f} %, {100 * hi:.2f} %] |" in text
    run = json.loads((run_dir / "run.json").read_text())
    assert run["command"].startswith("audios train-classic") and run["command"] in text
    # Per-attack rows for both spoof generators, and the training generators listed.
    assert "| g1 |" in text and "| g2 |" in text and "g1, g2" in text
    # 18 test clips (12 bona fide, 6 spoof): the small-test warning names the smaller class's size.
    assert "The smaller class has 6 test clips" in text


def test_card_flags_a_dominant_speaker(tmp_path: Path) -> None:

    features = vector_table(tmp_path / "f.parquet")
    table = pq.read_table(features)
    df = table.to_pandas()
    df.loc[df.label == "spoof", "speaker"] = "LJ"  # one voice makes every spoof: a shortcut the card must name
    df.loc[df.label == "spoof", "split"] = ["train"] * 44 + ["val"] * 8 + ["test"] * 8
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(table.schema.metadata),
                   features)
    train_classic(TrainConfig(features=str(features), model="logreg", out=str(tmp_path / "run"), n_bootstrap=0,
                              cv_group_by=("sha256",)))
    text = write_model_card(tmp_path / "run").read_text()
    assert "Speaker `LJ` holds 100 % of the spoof training clips" in text
    assert "no bootstrap intervals" in text


def test_missing_run_folder_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="does not exist"):
        write_model_card(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="no run.json"):
        write_model_card(tmp_path / "empty")
