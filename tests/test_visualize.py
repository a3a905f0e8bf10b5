"""Feature views: silhouettes with known answers, files written, CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from audios.cli import app
from audios.errors import ConfigError
from audios.visualize import ViewConfig, compute_view, visualize_features

COLUMNS = [f"emb_{i}" for i in range(8)]
DESCRIPTION = {"extractor": {"name": "test", "kind": "vector", "columns": COLUMNS}}


def table(separated: bool, n: int = 80, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    label = np.array(["bonafide", "spoof"] * (n // 2))
    x = rng.standard_normal((n, len(COLUMNS)))
    if separated:
        x[label == "spoof"] += 6.0
    df = pd.DataFrame(x, columns=COLUMNS)
    df.insert(0, "id", [f"u{i}" for i in range(n)])
    df.insert(1, "label", label)
    df.insert(2, "generator", np.where(label == "spoof", rng.choice(["g1", "g2"], n), "human"))
    df.insert(3, "speaker", rng.choice(["a", "b", "c"], n))
    return df


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_separated_classes_have_high_silhouette(method):
    view = compute_view(table(True), DESCRIPTION, ViewConfig(method=method, color_by=("label", "speaker")))
    assert view.coords.shape == (80, 2)
    assert view.silhouettes["label"] > 0.5
    assert abs(view.silhouettes["speaker"]) < 0.1  # speakers were drawn at random


def test_mixed_classes_have_silhouette_near_zero():
    view = compute_view(table(False), DESCRIPTION, ViewConfig(method="pca", color_by=("label",)))
    assert abs(view.silhouettes["label"]) < 0.1


def test_seeded_projection_is_reproducible():
    a = compute_view(table(True), DESCRIPTION, ViewConfig(method="tsne", seed=3)).coords
    b = compute_view(table(True), DESCRIPTION, ViewConfig(method="tsne", seed=3)).coords
    np.testing.assert_allclose(a, b)


def test_files_and_html(tmp_path):
    view, written = visualize_features(table(True), DESCRIPTION, tmp_path, ViewConfig(method="pca"))
    names = {p.name for p in written}
    assert {"pca_label.png", "pca_generator.png", "pca.html", "pca_silhouette.json"} <= names
    page = (tmp_path / "pca.html").read_text()
    assert page.count("<circle") == 80 and "http" not in page.split("<script>")[1]  # no external resources
    assert json.loads((tmp_path / "pca_silhouette.json").read_text())["label"] == pytest.approx(view.silhouettes["label"])


def test_config_errors():
    with pytest.raises(ConfigError, match="method"):
        ViewConfig(method="lda")
    with pytest.raises(ConfigError, match="color_by"):
        ViewConfig(color_by=("colour",))


def test_cli(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow = pa.Table.from_pandas(table(True), preserve_index=False)
    arrow = arrow.replace_schema_metadata({b"audios.extractor": json.dumps(DESCRIPTION).encode()})
    pq.write_table(arrow, tmp_path / "f.parquet")
    result = CliRunner().invoke(app, ["visualize", str(tmp_path / "f.parquet"), "--method", "pca", "-o",
                                      str(tmp_path / "v"), "--color-by", "label"])
    assert result.exit_code == 0, result.output
    assert "silhouette by label" in result.output and (tmp_path / "v" / "pca_label.png").exists()
