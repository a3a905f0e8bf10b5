"""AASIST / AASIST-L: faithfulness to the authors' released checkpoints, config checks, training steps."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from audios.audio import load_audio
from audios.config import build_config, config_to_dict
from audios.errors import AudiosError, ConfigError
from audios.models import MODELS, get_model
from audios.models.aasist import (
    AASIST_CONFIG,
    AASIST_L_CONFIG,
    Aasist,
    AasistConfig,
    CheckpointError,
    load_model,
    load_released_checkpoint,
    prepare_waveform,
    released_key_to_ours,
    save_model,
    sinc_filter_bank,
)

torch.set_num_threads(2)

RELEASED = [("AASIST.pth", "aasist", AASIST_CONFIG), ("AASIST-L.pth", "aasist_l", AASIST_L_CONFIG)]
TOLERANCE = 1e-4  # README's acceptance tolerance (absolute); a real architecture mismatch moves logits by >4e-3


@functools.cache
def _load_reference(directory: Path) -> dict[str, np.ndarray]:
    return dict(np.load(directory / "reference_io.npz"))


@functools.cache
def _load_released(directory: Path) -> dict[str, Aasist]:
    return {prefix: load_released_checkpoint(directory / name) for name, prefix, _ in RELEASED}


@pytest.fixture
def reference(aasist_dir):
    return _load_reference(aasist_dir)


@pytest.fixture
def released_models(aasist_dir):
    return _load_released(aasist_dir)


@pytest.mark.parametrize("name,prefix,config", RELEASED, ids=["aasist", "aasist-l"])
def test_released_model_matches_reference_outputs(name, prefix, config, released_models, reference, aasist_dir):
    model = released_models[prefix]
    assert model.config == config  # inferred from tensor shapes alone
    assert not model.training
    sets = ["random", "sines"]
    # One batch of all six examples: in eval mode each example is independent of the others.
    x = torch.from_numpy(np.concatenate([reference[f"inputs_{s}"] for s in sets]))
    with torch.no_grad():
        hidden, logits = model(x)
    assert hidden.shape == (6, 160) and logits.shape == (6, 2)
    assert hidden.dtype == logits.dtype == torch.float32
    start = 0
    for s in sets:
        want_logits, want_hidden = reference[f"{prefix}_logits_{s}"], reference[f"{prefix}_hidden_{s}"]
        stop = start + len(want_logits)
        d_logits = np.abs(logits[start:stop].numpy() - want_logits).max()
        d_hidden = np.abs(hidden[start:stop].numpy() - want_hidden).max()
        print(f"{name} {s}: max |logits diff| {d_logits:.3g}, max |hidden diff| {d_hidden:.3g}")
        assert d_logits <= TOLERANCE and d_hidden <= TOLERANCE, (s, d_logits, d_hidden)
        start = stop
    # Synthetic inputs are all scored as clearly spoof (index 0 spoof, 1 bona fide).
    assert (logits[:, 0] > logits[:, 1]).all()
    assert torch.equal(model.score(x[:1]), logits[:1, 1])


@pytest.mark.parametrize("name,config", [("AASIST.pth", AASIST_CONFIG), ("AASIST-L.pth", AASIST_L_CONFIG)])
def test_released_keys_map_one_to_one(name, config, aasist_dir):
    released = torch.load(aasist_dir / name, map_location="cpu", weights_only=True)
    ours = Aasist(config).state_dict()
    mapped = {released_key_to_ours(k) for k in released}
    assert len(released) == 229 and len(mapped) == 229
    assert mapped == set(ours)
    assert "sinc.filters" not in ours  # rebuilt at construction, never stored


def test_parameter_counts_match_the_released_models():
    counts = {}
    for label, config in [("aasist", AASIST_CONFIG), ("aasist-l", AASIST_L_CONFIG)]:
        model = Aasist(config)
        counts[label] = (sum(p.numel() for p in model.parameters()),
                         sum(t.numel() for t in model.state_dict().values()), len(model.state_dict()))
    assert counts == {"aasist": (297_866, 299_550, 229), "aasist-l": (85_306, 86_270, 229)}


def test_dead_pre_activation_batch_norm_has_no_effect(released_models, reference):
    model = released_models["aasist_l"]
    x = torch.from_numpy(reference["inputs_sines"][:1, :32000])
    with torch.no_grad():
        _, before = model(x)
        saved = {k: v.clone() for k, v in model.state_dict().items()}
        dead = [m for n, m in model.named_modules() if n.endswith("unused_bn")]
        assert len(dead) == 5  # blocks 2-6
        for bn in dead:
            bn.weight.mul_(3.0).add_(1.0)
            bn.bias.add_(2.0)
            bn.running_mean.add_(5.0)
        _, after_dead = model(x)
        model.encoder[2].bn.bias.add_(0.5)  # a live BatchNorm, for contrast
        _, after_live = model(x)
        model.load_state_dict(saved)
    assert torch.equal(before, after_dead)
    assert (after_live - before).abs().max() > 1e-3


def test_checkpoint_that_does_not_fit_names_the_file(aasist_dir, tmp_path):
    with pytest.raises(CheckpointError, match="AASIST.pth") as info:
        load_released_checkpoint(aasist_dir / "AASIST.pth", config=AASIST_L_CONFIG)
    assert "shape" in str(info.value) and isinstance(info.value, ValueError)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth"):
        load_released_checkpoint(junk)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_released_checkpoint(tmp_path / "missing.pth")
    partial = tmp_path / "partial.pth"
    state = torch.load(aasist_dir / "AASIST-L.pth", map_location="cpu", weights_only=True)
    state.pop("out_layer.bias")
    torch.save(state, partial)
    with pytest.raises(CheckpointError, match="partial.pth.*missing keys"):
        load_released_checkpoint(partial)
    with pytest.raises(CheckpointError, match="small"):
        load_released_checkpoint(aasist_dir / "AASIST-L.pth", config=dataclasses.replace(AASIST_L_CONFIG, small=True))


def test_sinc_bank_matches_float64_design_and_is_symmetric():
    bank = sinc_filter_bank(70, 128).double().numpy()
    assert bank.shape == (70, 129)  # even kernel length rounded up to odd
    np.testing.assert_array_equal(bank, bank[:, ::-1])
    mel = 2595 * np.log10(1 + np.array([0.0, 8000.0]) / 700)
    edges = 700 * (10 ** (np.linspace(mel[0], mel[1], 71) / 2595) - 1)
    n = np.arange(-64, 65)
    lowpass = 2 * edges[:, None] / 16000 * np.sinc(2 * edges[:, None] * n / 16000)
    want = np.hamming(129) * (lowpass[1:] - lowpass[:-1])
    assert np.abs(bank - want).max() < 1e-6


def test_prepare_waveform_crops_and_tiles():
    long = np.arange(100, dtype=np.float64)
    np.testing.assert_array_equal(prepare_waveform(long, 10), np.arange(10))
    assert prepare_waveform(long, 10).dtype == np.float32
    short = np.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(prepare_waveform(short, 7), [1, 2, 3, 1, 2, 3, 1])
    np.testing.assert_array_equal(prepare_waveform(short, 6), [1, 2, 3, 1, 2, 3])
    assert prepare_waveform(np.ones(5)).shape == (64600,)
    with pytest.raises(ValueError, match="empty"):
        prepare_waveform(np.zeros(0))
    with pytest.raises(ValueError, match="mono"):
        prepare_waveform(np.zeros((2, 100)))


def test_config_checks_itself_and_round_trips():
    assert AASIST_L_CONFIG.gat_dims == (24, 32) and AASIST_L_CONFIG.pool_ratios == (0.4, 0.5, 0.7, 0.5)
    assert AASIST_CONFIG.nb_samp == 64600 and AASIST_CONFIG.n_spectral_nodes == 23
    yaml_like = {"filts": [70, [1, 32], [32, 32], [32, 24], [24, 24]], "gat_dims": [24, 32],
                 "pool_ratios": [0.4, 0.5, 0.7, 0.5], "temperatures": [2.0, 2.0, 100.0, 100.0]}
    assert build_config(AasistConfig, yaml_like) == AASIST_L_CONFIG
    assert build_config(AasistConfig, config_to_dict(AASIST_CONFIG)) == AASIST_CONFIG
    with pytest.raises(ConfigError, match=r"filts\[3\].*in=64"):
        AasistConfig(filts=(70, (1, 32), (32, 32), (64, 64), (64, 64)))
    with pytest.raises(ConfigError, match="pool_ratios"):
        AasistConfig(pool_ratios=(0.5, 1.5, 0.5, 0.5))
    with pytest.raises(ConfigError, match="temperatures"):
        AasistConfig(temperatures=(2.0, 0.0, 100.0, 100.0))
    with pytest.raises(ConfigError, match="gat_dims"):
        AasistConfig(gat_dims=(64,))


def test_registry_builds_models_and_lists_names_on_a_bad_lookup():
    assert {"aasist", "aasist-l"} <= set(MODELS)
    assert get_model("aasist-l")().config == AASIST_L_CONFIG
    assert get_model("aasist")(small=True).config.small
    with pytest.raises(ConfigError, match="aasist, aasist-l"):
        get_model("rawnet9")
    assert issubclass(ConfigError, AudiosError)


@pytest.mark.parametrize("small", [True, False], ids=["small", "full"])
def test_training_steps_reduce_the_loss(small):
    # 8000 samples (0.5 s) leave 3 frames after the encoder: enough for every graph stage.
    torch.manual_seed(0)
    model = Aasist(dataclasses.replace(AASIST_L_CONFIG, small=small)).train()
    x = torch.randn(2, 8000) * 0.1
    y = torch.tensor([0, 1])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        torch.manual_seed(1)  # the same dropout masks every step: one fixed optimisation problem
        hidden, logits = model(x)
        assert hidden.shape == (2, 160) and logits.shape == (2, 2)
        loss = F.cross_entropy(logits, y)
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_small_model_saves_and_loads(tmp_path):
    torch.manual_seed(0)
    model = Aasist(dataclasses.replace(AASIST_CONFIG, small=True)).eval()
    assert not hasattr(model, "branches")
    x = torch.randn(1, 4000) * 0.1
    loaded = load_model(save_model(model, tmp_path / "m"))
    assert loaded.config == model.config
    with torch.no_grad():
        assert torch.equal(model(x)[1], loaded(x)[1])


def test_aasist_score_command_scores_files_and_skips_bad_ones(aasist_dir, released_models, tmp_path):
    from tests.conftest import speechlike, tone, write
    from typer.testing import CliRunner

    from audios.cli import app

    short = write(tmp_path / "short.wav", tone(440.0, duration_s=1.0))  # tiled to 64600 samples
    voiced = write(tmp_path / "voiced.flac", speechlike(duration_s=5.0, sample_rate=22050), sample_rate=22050)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not really audio")
    res = CliRunner().invoke(app, ["aasist-score", str(aasist_dir / "AASIST-L.pth"), str(short), str(junk),
                                   str(voiced), "--batch-size", "1", "--no-progress"])
    assert res.exit_code == 0, res.output
    lines = [line.split("\t") for line in res.stdout.strip().splitlines()]
    assert [p for p, _ in lines] == [str(short), str(voiced)]
    model = released_models["aasist_l"]
    x = torch.from_numpy(prepare_waveform(load_audio(short)))[None]  # the 16-bit file, as the command reads it
    assert float(lines[0][1]) == pytest.approx(model.score(x).item(), abs=1e-5)
    assert float(lines[0][1]) < 0 and float(lines[1][1]) < 0  # synthetic audio: the released model says spoof
    assert "junk.wav" in res.stderr


def test_input_length_and_shape_are_checked():
    model = Aasist(dataclasses.replace(AASIST_L_CONFIG, small=True)).eval()
    assert model.config.min_samples == 2315  # 3**7 frames of pooling plus 129 taps, minus 1
    with torch.no_grad():
        assert model(torch.zeros(1, 2315))[1].shape == (1, 2)
        with pytest.raises(ValueError, match="at least 2315 samples"):
            model(torch.zeros(1, 2314))
        with pytest.raises(ValueError, match="batch, samples"):
            model(torch.zeros(2315))


def test_aasist_embedding_extractor_gives_the_reference_hidden_vectors(aasist_dir, tmp_path):
    from typer.testing import CliRunner

    from audios.cli import app
    from audios.features import get_extractor
    from audios.features.extract import read_feature_table
    from tests.conftest import write

    ref = np.load(aasist_dir / "reference_io.npz")
    ext = get_extractor("aasist", {"checkpoint": str(aasist_dir / "AASIST-L.pth")})
    out = ext.extract(list(ref["inputs_sines"]))
    np.testing.assert_allclose(np.stack(out), ref["aasist_l_hidden_sines"], atol=1e-4)
    # Through the CLI: one row per file, 160 columns.
    for i, x in enumerate(ref["inputs_sines"]):
        write(tmp_path / "c" / f"s{i}.wav", x, subtype="FLOAT")
    (tmp_path / "c" / "manifest.csv").write_text("path,label\ns0.wav,spoof\ns1.wav,bonafide\n")
    result = CliRunner().invoke(app, ["features", str(tmp_path / "c" / "manifest.csv"), "-e", "aasist",
                                      "--checkpoint", str(aasist_dir / "AASIST-L.pth"), "-o",
                                      str(tmp_path / "a.parquet"), "--cache", str(tmp_path / "cache"),
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    table, _ = read_feature_table(tmp_path / "a.parquet")
    emb = table[[f"emb_{i}" for i in range(160)]].to_numpy()
    np.testing.assert_allclose(emb, ref["aasist_l_hidden_sines"], atol=1e-4)


def test_aasist_embedding_batched_equals_one_by_one_and_needs_a_checkpoint(aasist_dir):
    from audios.errors import ConfigError
    from audios.features import get_extractor
    from tests.conftest import speechlike

    with pytest.raises(ConfigError, match="needs a checkpoint"):
        get_extractor("aasist").extract([speechlike(1.0)])
    ext = get_extractor("aasist", {"checkpoint": str(aasist_dir / "AASIST-L.pth")})
    batch = [speechlike(1.0, seed=1), speechlike(5.0, seed=2)]  # tiled, and one full window
    together = ext.extract(batch)
    alone = [ext.extract([x])[0] for x in batch]
    np.testing.assert_allclose(np.stack(together), np.stack(alone), atol=1e-4)
