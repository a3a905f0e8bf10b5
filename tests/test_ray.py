"""The Ray engine gives the local engine's feature table: spectral vectors, frame matrices and a tiny SSL model,
with bad files skipped alike, a cache shared between engines, and the CLI's ``--engine ray``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from audios.features import get_extractor
from audios.features.extract import METADATA_KEY, extract_features, read_feature_table, skipped_path
from tests.conftest import speechlike, write

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'ray[data]'")
pytest.importorskip("ray.data", reason="the Ray engine needs Ray Data: pip install 'ray[data]'")

from audios.features.ray_engine import extract_features_ray  # noqa: E402

SR = 16000


@pytest.fixture(scope="module", autouse=True)
def ray_session():
    """One local two-CPU Ray for the whole module (Ray takes seconds to start)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> pd.DataFrame:
    """12 speech-like clips of 0.3-1.4 s (distinct pitch and length), one silent and one corrupt file."""
    folder = tmp_path_factory.mktemp("corpus")
    rows = []
    for i in range(12):
        duration = 0.3 + 0.1 * ((7 * i) % 12)
        label = "bonafide" if i % 2 == 0 else "spoof"
        rel = f"{label}/clip{i:02d}.wav"
        write(folder / rel, speechlike(duration, SR, f0_hz=90 + 17 * i, seed=i), SR)
        rows.append({"id": f"clip{i:02d}", "path": rel, "label": label, "speaker": f"spk{i % 3}",
                     "duration_s": duration})
    write(folder / "spoof/silent.wav", np.zeros(SR // 2, dtype=np.float32), SR)
    (folder / "spoof/broken.wav").write_bytes(b"RIFF not really a wav file")
    rows.append({"id": "silent", "path": "spoof/silent.wav", "label": "spoof", "speaker": "spk0", "duration_s": 0.5})
    rows.append({"id": "broken", "path": "spoof/broken.wav", "label": "spoof", "speaker": "spk1", "duration_s": 0.5})
    table = pd.DataFrame(rows)
    table["root"] = str(folder)
    return table


def both(manifest: pd.DataFrame, extractor, tmp_path: Path, **ray_kwargs):
    """Run both engines with separate caches; return (local report, ray report, local table, ray table)."""
    local = extract_features(manifest, extractor, tmp_path / "local.parquet", cache_dir=tmp_path / "cache-local")
    remote = extract_features_ray(manifest, extractor, tmp_path / "ray.parquet", cache_dir=tmp_path / "cache-ray",
                                  **ray_kwargs)
    return local, remote, read_feature_table(tmp_path / "local.parquet"), read_feature_table(tmp_path / "ray.parquet")


def assert_same_tables(a: pd.DataFrame, b: pd.DataFrame, atol: float = 1e-6) -> None:
    assert list(a.columns) == list(b.columns)
    text = [c for c in a.columns if not pd.api.types.is_numeric_dtype(a[c])]
    pd.testing.assert_frame_equal(a[text], b[text])
    numbers = [c for c in a.columns if c not in text]
    np.testing.assert_allclose(a[numbers].to_numpy(float), b[numbers].to_numpy(float), atol=atol, rtol=0)


def test_spectral_table_metadata_and_skips_equal_the_local_engine(corpus, tmp_path):
    local, remote, (a, da), (b, db) = both(corpus, get_extractor("spectral"), tmp_path, batch_size=3, part_size=4)
    assert (remote.n_rows, remote.n_computed, remote.n_cached) == (local.n_rows, local.n_computed, 0) == (12, 12, 0)
    assert len(a) == 12 and a["id"].tolist() == [f"clip{i:02d}" for i in range(12)]
    assert_same_tables(a, b)
    assert da == db
    meta = [pq.read_schema(tmp_path / f"{n}.parquet").metadata[METADATA_KEY] for n in ("local", "ray")]
    assert json.loads(meta[0]) == json.loads(meta[1])
    assert pq.read_schema(tmp_path / "local.parquet").types == pq.read_schema(tmp_path / "ray.parquet").types
    # The silent and the corrupt file are skipped by both, with the same reasons, and listed.
    assert sorted(p for p, _ in remote.skipped) == sorted(p for p, _ in local.skipped)
    assert {Path(p).name for p, _ in remote.skipped} == {"silent.wav", "broken.wav"}
    pd.testing.assert_frame_equal(pd.read_csv(skipped_path(tmp_path / "local.parquet")),
                                  pd.read_csv(skipped_path(tmp_path / "ray.parquet")))
    # Results were flushed to the cache as they came, in parts of part_size (4) plus at most one batch (3).
    sizes = [len(pq.read_table(p)) for p in (tmp_path / "cache-ray").glob("*/parts/part-*.parquet")]
    assert sum(sizes) == 12 and len(sizes) >= 2 and max(sizes) <= 4 + 3 - 1


def test_frame_matrices_equal_and_the_cache_is_shared_between_engines(corpus, tmp_path):
    ext = get_extractor("lfcc")
    local, remote, (a, _), (b, _) = both(corpus, ext, tmp_path, batch_size=5)
    assert remote.n_computed == local.n_computed == 12
    pd.testing.assert_frame_equal(a.drop(columns="features_path"), b.drop(columns="features_path"))
    for pa_, pb_ in zip(a["features_path"], b["features_path"], strict=True):
        ma, mb = np.load(pa_), np.load(pb_)
        assert ma.dtype == mb.dtype == np.float32 and ma.shape == mb.shape
        np.testing.assert_array_equal(ma, mb)
    # The local engine's cache already holds 7 of the recordings: the Ray engine computes only the rest.
    part = corpus.iloc[:7]
    extract_features(part, ext, tmp_path / "part.parquet", cache_dir=tmp_path / "shared")
    rest = extract_features_ray(corpus, ext, tmp_path / "rest.parquet", cache_dir=tmp_path / "shared")
    assert (rest.n_cached, rest.n_computed) == (7, 5)
    again = extract_features_ray(corpus, ext, tmp_path / "again.parquet", cache_dir=tmp_path / "shared")
    assert (again.n_cached, again.n_computed) == (12, 0)
    pd.testing.assert_frame_equal(read_feature_table(tmp_path / "rest.parquet")[0].drop(columns="features_path"),
                                  a.drop(columns="features_path"))


def test_missing_hashes_are_measured_in_ray_tasks_alike(corpus, tmp_path):
    """Without a sha256 column both engines hash the decoded PCM; the corrupt file fails at hashing."""
    assert "sha256" not in corpus.columns
    local, remote, (a, _), (b, _) = both(corpus.iloc[::-1], get_extractor("spectral"), tmp_path)
    assert a["sha256"].str.len().eq(64).all()
    assert_same_tables(a, b)
    assert dict(remote.skipped) == dict(local.skipped)


def test_tiny_ssl_model_equals_the_local_engine(corpus, tmp_path):
    transformers = pytest.importorskip("transformers")
    import torch

    from tests.test_ssl import tiny_config

    torch.manual_seed(0)
    folder = tmp_path / "tiny-wav2vec2"
    transformers.AutoModel.from_config(tiny_config("wav2vec2")).save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(folder)
    ext = get_extractor("ssl", {"model": str(folder), "pool": "mean+std"})
    # Different batch sizes: the masked model's embeddings do not depend on what shares their batch.
    local, remote, (a, _), (b, _) = both(corpus, ext, tmp_path, batch_size=4)
    assert remote.n_computed == local.n_computed == 12
    assert [c for c in b.columns if c.startswith("emb_")] == [f"emb_{i}" for i in range(64)]
    assert_same_tables(a, b, atol=1e-6)
    assert float(b["emb_0"].std()) > 0  # real, distinct embeddings


def test_too_many_actors_for_the_cluster_is_a_clear_error(corpus, tmp_path):
    from audios.errors import ConfigError

    with pytest.raises(ConfigError, match="Ray cluster has 2"):
        extract_features_ray(corpus, get_extractor("spectral"), tmp_path / "x.parquet", cache_dir=tmp_path / "c",
                             workers=2)
    assert not (tmp_path / "x.parquet").exists()


def test_cli_engine_ray(corpus, tmp_path):
    from typer.testing import CliRunner

    import audios.cli.features  # noqa: F401  (registers the command)
    from audios.cli.app import app

    corpus.to_csv(tmp_path / "manifest.csv", index=False)
    common = ["features", str(tmp_path / "manifest.csv"), "--cache", str(tmp_path / "cache"), "--no-progress"]
    result = CliRunner().invoke(app, [*common, "-o", str(tmp_path / "r.parquet"), "--engine", "ray"])
    assert result.exit_code == 0, result.output
    assert "12 recordings computed" in " ".join(result.output.split())
    run = json.loads((tmp_path / "r.run" / "run.json").read_text())
    assert "ray" in json.dumps(run)
    # Same cache, local engine: nothing left to compute, same table.
    result = CliRunner().invoke(app, [*common, "-o", str(tmp_path / "l.parquet")])
    assert result.exit_code == 0 and "0 recordings computed, 12 from cache" in " ".join(result.output.split())
    pd.testing.assert_frame_equal(read_feature_table(tmp_path / "r.parquet")[0],
                                  read_feature_table(tmp_path / "l.parquet")[0])
    bad = CliRunner().invoke(app, [*common, "--engine", "spark"])
    assert bad.exit_code != 0 and "local, ray" in " ".join(bad.output.split())
