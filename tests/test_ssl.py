"""Neural extractors: tiny random wav2vec2 / HuBERT / WavLM checkpoints saved to folders (no network), duration
bucketing with known padding waste, int8 quantisation, and Resemblyzer's pretrained speaker encoder."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audios.audio import AudioConfig, load_audio
from audios.errors import ConfigError, SilentAudioError, TooShortError
from audios.features import get_extractor
from audios.features.batching import (
    batching_report,
    bucket_batches,
    fixed_batches,
    padding_waste,
    split_windows,
)
from audios.features.extract import extract_features, read_feature_table
from audios.features.ssl import SslConfig, load_ssl_model, quantization_cosine
from tests.conftest import speechlike, tone, write

transformers = pytest.importorskip("transformers")

SR = 16000
HIDDEN = 32
FAMILIES = ("wav2vec2", "hubert", "wavlm")


def tiny_config(family: str, norm: str = "layer"):
    """Two transformer layers of width 32 over a three-layer CNN (kernels 10, 4, 4; strides 5, 4, 4: a frame
    every 80 samples, so a 2 s clip is 400 frames)."""
    cls = {"wav2vec2": transformers.Wav2Vec2Config, "hubert": transformers.HubertConfig,
           "wavlm": transformers.WavLMConfig}[family]
    return cls(hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
               conv_dim=(16, 16, 16), conv_kernel=(10, 4, 4), conv_stride=(5, 4, 4), num_conv_pos_embeddings=16,
               num_conv_pos_embedding_groups=4, feat_extract_norm=norm, do_stable_layer_norm=norm == "layer")


def save_tiny(folder: Path, family: str, norm: str = "layer", processor: dict | None = None) -> str:
    """A random tiny checkpoint written with save_pretrained, as a hub download would lay it out."""
    import torch

    torch.manual_seed(0)
    transformers.AutoModel.from_config(tiny_config(family, norm)).save_pretrained(folder)
    if processor is not None:
        transformers.Wav2Vec2FeatureExtractor(**processor).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    """Layer-norm CNN checkpoints whose feature extractor returns attention masks (like the large models)."""
    root = tmp_path_factory.mktemp("ssl")
    return {f: save_tiny(root / f, f, processor={"do_normalize": True, "return_attention_mask": True})
            for f in FAMILIES}


def clips(durations_s=(0.5, 1.3, 0.35, 0.9, 2.0)) -> list[np.ndarray]:
    return [speechlike(d, seed=i, f0_hz=100 + 25 * i) for i, d in enumerate(durations_s)]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# --- duration bucketing ----------------------------------------------------------------------------

def test_bucketing_known_answer():
    lengths = [10, 5, 10, 5]
    assert bucket_batches(lengths, budget=20) == [[0, 2], [1, 3]]
    assert padding_waste(lengths, [[0, 2], [1, 3]]) == 0.0
    # In given order, pairs (10, 5) pad to 20 samples each: 30 of 40 padded samples carry signal.
    assert padding_waste(lengths, fixed_batches(4, 2)) == pytest.approx(0.25)
    # An item longer than the budget is batched alone.
    assert bucket_batches([50, 3, 3], budget=20) == [[0], [1, 2]]
    assert bucket_batches([4, 4, 4, 4], budget=100, max_items=3) == [[0, 1, 2], [3]]
    # max_waste: 80 would pad to 100 (20% waste), so it opens its own batch, which 75 may join.
    assert bucket_batches([100, 90, 80, 75], budget=1000, max_waste=0.1) == [[0, 1], [2, 3]]
    assert bucket_batches([100, 90, 80, 75], budget=1000) == [[0, 1, 2, 3]]
    with pytest.raises(ConfigError, match="exactly once"):
        batching_report(lengths, [[0, 1]])


def test_bucketing_keeps_padding_under_ten_percent_where_given_order_wastes_far_more():
    rng = np.random.default_rng(0)
    lengths = (rng.uniform(1.0, 20.0, 200) * SR).astype(int)
    budget = 80 * SR
    buckets = bucket_batches(lengths, budget)
    report = batching_report(lengths, buckets)
    naive = padding_waste(lengths, fixed_batches(len(lengths), 8))
    assert report.waste < 0.10
    assert naive > 0.30  # about 1 - 10.5 / 17.9 = 41% expected
    assert all(len(b) * lengths[b].max() <= budget for b in buckets)
    assert sorted(i for b in buckets for i in b) == list(range(200))
    assert "padding" in report.summary()
    # A handful of items under a large budget would share one batch; max_waste caps each batch instead.
    few = lengths[:12]
    assert padding_waste(few, bucket_batches(few, budget)) > 0.10
    assert padding_waste(few, bucket_batches(few, budget, max_waste=0.1)) <= 0.10


def test_windows_are_equal_and_cover_the_signal():
    assert split_windows(45 * SR, 20 * SR) == [(0, 15 * SR), (15 * SR, 30 * SR), (30 * SR, 45 * SR)]
    assert split_windows(100, 100) == [(0, 100)]
    windows = split_windows(1001, 300)
    assert windows[0][0] == 0 and windows[-1][1] == 1001 and len(windows) == 4
    assert all(a[1] == b[0] for a, b in zip(windows, windows[1:], strict=False))
    assert max(e - s for s, e in windows) - min(e - s for s, e in windows) <= 1


# --- ssl extractor on tiny checkpoints ------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_dims_determinism_and_batched_equals_one_by_one(models, family):
    # A 3 s budget groups the five clips in pairs (1.3 + 0.9 s, 0.5 + 0.35 s, both padded) and 2 s alone.
    ext = get_extractor("ssl", {"model": models[family], "batch_seconds": 3.0, "max_padding": 0.9})
    assert ext.columns == tuple(f"emb_{i}" for i in range(HIDDEN))
    batch = clips()
    together = ext.extract(batch)
    again = ext.extract(batch)
    alone = [ext.extract([x])[0] for x in batch]
    for a, b, c in zip(together, again, alone, strict=True):
        assert a.shape == (HIDDEN,) and np.isfinite(a).all()
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, atol=1e-4, rtol=0)
    # Different inputs give different embeddings.
    assert not np.allclose(together[0], together[1], atol=1e-3)


@pytest.mark.parametrize("family", FAMILIES)
def test_layer_choice_changes_the_vector(models, family):
    x = clips()[:2]
    get = lambda **kw: get_extractor("ssl", {"model": models[family], **kw}).extract(x)[0]  # noqa: E731
    last, first, every, pair, top = get(), get(layer=0), get(layer="all"), get(layer=[1, 2]), get(layer=2)
    # These pre-norm models apply a final layer norm to last_hidden_state, not to hidden state 2.
    for a, b in ((last, first), (last, every), (first, every), (pair, every), (pair, last), (top, last)):
        assert not np.allclose(a, b, atol=1e-4)
    with pytest.raises(ConfigError, match="hidden states 0..2"):
        get(layer=3)


def test_mean_std_doubles_the_columns_and_keeps_the_mean(models):
    x = clips()[:3]
    mean = get_extractor("ssl", {"model": models["wav2vec2"]})
    both = get_extractor("ssl", {"model": models["wav2vec2"], "pool": "mean+std"})
    assert both.columns == tuple(f"emb_{i}" for i in range(2 * HIDDEN))
    for m, b in zip(mean.extract(x), both.extract(x), strict=True):
        assert b.shape == (2 * HIDDEN,)
        np.testing.assert_allclose(b[:HIDDEN], m, atol=1e-6)
        assert (b[HIDDEN:] > 0).all()


def test_long_input_is_windowed_and_pooled_over_all_frames(tmp_path):
    # Without input normalisation each window is exactly what the model sees on its own.
    folder = save_tiny(tmp_path / "raw", "wav2vec2", processor={"do_normalize": False, "return_attention_mask": True})
    x = speechlike(2.5, seed=7)
    windowed = get_extractor("ssl", {"model": folder, "max_window_s": 1.0}).extract([x])[0]
    whole = get_extractor("ssl", {"model": folder}).extract([x])[0]
    model = load_ssl_model(folder).model
    parts = [(x[s:e], int(model._get_feat_extract_output_lengths(e - s))) for s, e in split_windows(x.size, SR)]
    assert len(parts) == 3
    single = get_extractor("ssl", {"model": folder})
    expected = sum(n * single.extract([w])[0] for w, n in parts) / sum(n for _, n in parts)
    np.testing.assert_allclose(windowed, expected, atol=1e-5)
    # The windows really are embedded apart: attention over the whole signal gives another vector.
    assert not np.allclose(windowed, whole, atol=1e-4)


def test_group_norm_model_without_mask_pads_or_runs_alone(tmp_path):
    # No preprocessor config and a group-norm CNN (like wav2vec2-base): no attention mask is passed.
    folder = save_tiny(tmp_path / "base", "wav2vec2", norm="group")
    assert load_ssl_model(folder).attention_mask is False
    batch = [speechlike(1.85, seed=1), speechlike(2.0, seed=2)]  # 7.5% padding: within max_padding
    padded = get_extractor("ssl", {"model": folder}).extract(batch)
    exact = get_extractor("ssl", {"model": folder, "pad_unmasked": False}).extract(batch)
    alone = [get_extractor("ssl", {"model": folder}).extract([x])[0] for x in batch]
    np.testing.assert_allclose(exact[0], alone[0], atol=1e-6)
    np.testing.assert_allclose(padded[1], alone[1], atol=1e-6)  # the longest item carries no padding
    # In a post-norm model hidden state 2 of 2 is the final output.
    np.testing.assert_allclose(get_extractor("ssl", {"model": folder, "layer": 2}).extract(batch[:1])[0],
                               alone[0], atol=1e-6)
    # The padded short clip moves a little: its group norm sees the zeros.
    assert 0.95 < cosine(padded[0], alone[0]) < 1 - 1e-6


def test_int8_quantisation_stays_close_to_fp32(models):
    x = clips()
    similarity = quantization_cosine(SslConfig(model=models["wavlm"]), x)
    assert similarity.shape == (len(x),) and (similarity > 0.9).all() and (similarity <= 1 + 1e-9).all()
    for family in FAMILIES:
        loaded = load_ssl_model(models[family], "int8")
        assert any(type(m).__module__.startswith("torch.ao.nn.quantized.dynamic") for m in loaded.model.modules())
        q = get_extractor("ssl", {"model": models[family], "quantize": "int8"}).extract(x[:1])[0]
        f = get_extractor("ssl", {"model": models[family]}).extract(x[:1])[0]
        assert q.shape == f.shape and not np.allclose(q, f, atol=1e-7) and cosine(q, f) > 0.9


def test_extractor_pickles_without_its_model(models):
    ext = get_extractor("ssl", {"model": models["hubert"]})
    before = ext.extract(clips()[:1])[0]
    blob = pickle.dumps(ext)
    assert len(blob) < 2000
    np.testing.assert_array_equal(pickle.loads(blob).extract(clips()[:1])[0], before)


def test_bad_inputs_and_configs_are_named(models, tmp_path):
    ext = get_extractor("ssl", {"model": models["wav2vec2"]})
    with pytest.raises(TooShortError, match=r"batch\[1\].*at least 85"):  # 10 + 5*(4-1) + 20*(4-1) for one frame
        ext.extract([speechlike(0.2), np.full(84, 0.1, dtype=np.float32)])
    with pytest.raises(SilentAudioError, match=r"batch\[0\]"):
        ext.extract([np.zeros(SR, dtype=np.float32)])
    assert get_extractor("ssl", {"layer": "1,2"}).config.layer == (1, 2)
    assert get_extractor("ssl", {"layer": "3"}).config.layer == 3
    with pytest.raises(ConfigError, match="pool"):
        get_extractor("ssl", {"pool": "max"})
    with pytest.raises(ConfigError, match="layer"):
        get_extractor("ssl", {"layer": "first"})
    with pytest.raises(ConfigError, match="quantize"):
        get_extractor("ssl", {"quantize": "int4"})
    with pytest.raises(ConfigError, match="cannot load"):
        _ = get_extractor("ssl", {"model": str(tmp_path / "no-such-model")}).columns


def test_extract_features_end_to_end_with_a_model_folder(models, tmp_path):
    durations = (0.4, 1.5, 0.6, 1.2, 0.8, 0.5)
    rows = []
    signals = clips(durations)
    for i, x in enumerate(signals):
        label = "bonafide" if i % 2 else "spoof"
        write(tmp_path / "corpus" / f"c{i}.wav", x)
        rows.append({"id": f"c{i}", "path": f"c{i}.wav", "label": label, "root": str(tmp_path / "corpus"),
                     "duration_s": durations[i]})
    ext = get_extractor("ssl", {"model": models["wavlm"], "pool": "mean+std"})
    report = extract_features(pd.DataFrame(rows), ext, tmp_path / "ssl.parquet", tmp_path / "cache", batch_size=4)
    assert report.n_computed == 6 and report.n_skipped == 0
    table, description = read_feature_table(tmp_path / "ssl.parquet")
    assert list(table["id"]) == [f"c{i}" for i in range(6)]
    assert [c for c in table.columns if c.startswith("emb_")] == [f"emb_{i}" for i in range(2 * HIDDEN)]
    assert description["extractor"]["config"]["model"] == models["wavlm"]
    # The table holds what the decoder gives back from 16-bit files.
    direct = ext.extract([load_audio(tmp_path / "corpus" / f"c{i}.wav", AudioConfig()) for i in range(6)])
    np.testing.assert_allclose(table[list(ext.columns)].to_numpy(), np.stack(direct), atol=1e-6)



def test_features_cli_ssl_options_and_int8_report(models, tmp_path):
    from typer.testing import CliRunner

    from audios.cli import app

    rows = []
    for i, x in enumerate(clips((0.6, 0.9, 0.5, 0.7))):
        write(tmp_path / "corpus" / f"c{i}.wav", x)
        rows.append({"id": f"c{i}", "path": f"c{i}.wav", "label": "bonafide" if i % 2 else "spoof"})
    pd.DataFrame(rows).to_csv(tmp_path / "corpus" / "manifest.csv", index=False)
    out = tmp_path / "ssl.parquet"
    args = ["features", str(tmp_path / "corpus" / "manifest.csv"), "-e", "ssl", "--model", models["wav2vec2"],
            "--layer", "0", "--pool", "mean+std", "--quantize", "int8", "-o", str(out), "--cache", str(tmp_path / "c"),
            "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "int8 vs fp32 embedding cosine" in result.output
    table, description = read_feature_table(out)
    assert description["extractor"]["config"]["quantize"] == "int8"
    assert description["extractor"]["config"]["layer"] == 0
    assert len([c for c in table.columns if c.startswith("emb_")]) == 2 * HIDDEN
    result = CliRunner().invoke(app, ["features", str(tmp_path / "corpus" / "manifest.csv"), "-e", "spectral",
                                      "--model", "x", "-o", str(tmp_path / "s.parquet")])
    assert result.exit_code == 2 and "only apply to the ssl extractor" in result.output


# --- resemblyzer ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def voice():
    try:
        ext = get_extractor("resemblyzer")
        ext.extract([tone(300, 0.5)])
    except ConfigError as exc:
        pytest.skip(f"resemblyzer unavailable: {exc}")
    return ext


def test_resemblyzer_embeddings_are_unit_256d_and_separate_voices(voice):
    low_a, low_b = speechlike(2.0, f0_hz=100, seed=1), speechlike(2.5, f0_hz=100, seed=2)
    high = speechlike(2.0, f0_hz=230, seed=3)
    embs = voice.extract([low_a, low_b, high])
    assert voice.columns == tuple(f"emb_{i}" for i in range(256))
    for e in embs:
        assert e.shape == (256,) and np.linalg.norm(e) == pytest.approx(1.0, abs=1e-9)
    same, other = embs[0] @ embs[1], max(embs[0] @ embs[2], embs[1] @ embs[2])
    assert same > other + 0.1
    alone = [voice.extract([x])[0] for x in (low_a, low_b, high)]
    for a, b in zip(embs, alone, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    with pytest.raises(ConfigError, match="16000"):
        get_extractor("resemblyzer", {"sample_rate": 8000})


def test_neural_alias_picks_ssl_with_a_model_and_resemblyzer_without(voice, models, tmp_path):
    from typer.testing import CliRunner

    from audios.cli import app

    rows = []
    for i, x in enumerate(clips((0.6, 0.9))):
        write(tmp_path / "corpus" / f"c{i}.wav", x)
        rows.append({"id": f"c{i}", "path": f"c{i}.wav", "label": "bonafide" if i % 2 else "spoof"})
    pd.DataFrame(rows).to_csv(tmp_path / "corpus" / "manifest.csv", index=False)
    base = ["features", str(tmp_path / "corpus" / "manifest.csv"), "-e", "neural", "--cache", str(tmp_path / "c"),
            "--no-progress"]
    result = CliRunner().invoke(app, [*base, "-o", str(tmp_path / "r.parquet")])
    assert result.exit_code == 0, result.output
    assert "using resemblyzer" in result.output
    assert read_feature_table(tmp_path / "r.parquet")[1]["extractor"]["name"] == "resemblyzer"
    result = CliRunner().invoke(app, [*base, "--model", models["wav2vec2"], "-o", str(tmp_path / "s.parquet")])
    assert result.exit_code == 0, result.output
    assert read_feature_table(tmp_path / "s.parquet")[1]["extractor"]["name"] == "ssl"


def test_bf16_autocast_stays_close_to_fp32_and_is_reported(models, tmp_path):
    from typer.testing import CliRunner

    from audios.cli import app

    x = clips()
    similarity = quantization_cosine(SslConfig(model=models["wav2vec2"]), x, mode="bf16")
    assert similarity.shape == (len(x),) and (similarity > 0.98).all() and (similarity <= 1 + 1e-9).all()
    b = get_extractor("ssl", {"model": models["wav2vec2"], "quantize": "bf16"}).extract(x[:1])[0]
    f = get_extractor("ssl", {"model": models["wav2vec2"]}).extract(x[:1])[0]
    assert b.shape == f.shape and not np.allclose(b, f, atol=1e-7)  # it did run in bf16
    with pytest.raises(ConfigError, match="mode"):
        quantization_cosine(SslConfig(model=models["wav2vec2"]), x, mode="fp8")
    rows = []
    for i, sig in enumerate(clips((0.6, 0.9))):
        write(tmp_path / "corpus" / f"c{i}.wav", sig)
        rows.append({"id": f"c{i}", "path": f"c{i}.wav", "label": "bonafide" if i % 2 else "spoof"})
    pd.DataFrame(rows).to_csv(tmp_path / "corpus" / "manifest.csv", index=False)
    result = CliRunner().invoke(app, ["features", str(tmp_path / "corpus" / "manifest.csv"), "-e", "ssl", "--model",
                                      models["wav2vec2"], "--quantize", "bf16", "-o", str(tmp_path / "b.parquet"),
                                      "--cache", str(tmp_path / "c"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "bf16 vs fp32 embedding cosine" in result.output


# --- the chunked CNN front end (audios.features.ssl_cnn) -------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("norm", ["group", "layer"])
def test_chunked_cnn_equals_the_stock_one(tmp_path, family, norm):
    import torch

    from audios.features.ssl_cnn import chunked_encoder

    torch.manual_seed(1)
    config = tiny_config(family, norm)
    config.conv_bias = norm == "layer"  # the large models' layer-norm CNN has biases, the base models' does not
    stock = transformers.AutoModel.from_config(config).eval().feature_extractor
    # Padded rows of unequal content and a length that is no multiple of the hop; chunks of 3 frames put many
    # chunk borders inside each clip.
    x = torch.zeros(3, 2 * SR + 37)
    for row, d in enumerate((2.0, 1.3, 0.6)):
        clip = torch.from_numpy(speechlike(d, seed=row))
        x[row, :clip.numel()] = clip * (10.0 if row == 1 else 1.0)
    chunked = chunked_encoder(stock, chunk_frames=3)
    with torch.inference_mode():
        want, got = stock(x), chunked(x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_int8_cnn_keeps_quiet_frames_with_a_scale_per_frame():
    import torch

    from audios.features.ssl_cnn import chunked_encoder

    torch.manual_seed(2)
    encoder = transformers.AutoModel.from_config(tiny_config("wav2vec2", "group")).eval().feature_extractor
    # A loud first half and a second half 40 dB quieter: one scale for the whole tensor would leave the quiet
    # frames with a handful of integer levels.
    signal = speechlike(2.0, seed=3)
    signal[SR:] *= 0.01
    x = torch.from_numpy(signal)[None]
    with torch.inference_mode():
        fp32 = chunked_encoder(encoder)(x)[0].T  # (frames, channels)
        int8 = chunked_encoder(encoder, int8=True)(x)[0].T
    error = torch.linalg.vector_norm(int8 - fp32, dim=1) / torch.linalg.vector_norm(fp32, dim=1)
    quiet = error[int(0.6 * error.numel()):]
    assert 0 < float(error.max()) and float(quiet.max()) < 0.05, (float(error.max()), float(quiet.max()))


def test_ssl_cnn_option_chooses_the_front_end(tmp_path):
    folder = save_tiny(tmp_path / "base", "wav2vec2", norm="group")
    x = clips((1.85, 2.0, 0.9))
    assert type(load_ssl_model(folder).model.feature_extractor).__name__ == "ChunkedEncoder"
    assert type(load_ssl_model(folder, cnn="stock").model.feature_extractor).__name__ != "ChunkedEncoder"
    chunked = get_extractor("ssl", {"model": folder}).extract(x)
    stock = get_extractor("ssl", {"model": folder, "cnn": "stock"}).extract(x)
    np.testing.assert_allclose(np.stack(chunked), np.stack(stock), atol=1e-5)
    int8 = get_extractor("ssl", {"model": folder, "quantize": "int8"}).extract(x)
    assert all(cosine(q, f) > 0.99 for q, f in zip(int8, chunked, strict=True))
    with pytest.raises(ConfigError, match="cnn"):
        get_extractor("ssl", {"cnn": "fast"})


def test_unhandled_encoder_layouts_keep_the_stock_cnn():
    import torch

    from audios.features.ssl_cnn import chunked_encoder

    encoder = transformers.AutoModel.from_config(tiny_config("wav2vec2", "group")).eval().feature_extractor
    assert chunked_encoder(encoder) is not None
    encoder.conv_layers[1].conv.padding = (1,)
    assert chunked_encoder(encoder) is None
    assert chunked_encoder(torch.nn.Linear(2, 2)) is None
