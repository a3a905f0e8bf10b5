"""ssl-head on tiny random wav2vec2 folders (no network): shapes, freezing, SupCon known answers, a training epoch."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from audios.errors import ConfigError
from audios.models import get_model
from audios.models.sslhead import trainable_encoder_modules
from audios.train import TrainConfig, load_trained_model, train
from audios.train.augment import AugmentConfig
from audios.train.contrastive import TwoViewClipDataset, supcon_loss
from conftest import speechlike, tone, write

transformers = pytest.importorskip("transformers")
torch.set_num_threads(2)

SR = 16000
CLIP = 4000  # 0.25 s: 50 frames of the tiny CNN below


def save_tiny_wav2vec2(folder: Path, stable: bool) -> str:
    """Two transformer layers of width 32 over a three-layer CNN (a frame every 80 samples), saved like a hub
    download; ``stable`` picks the pre-norm (large-model) variant with a layer-norm CNN."""
    torch.manual_seed(0)
    config = transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16, 16, 16),
        conv_kernel=(10, 4, 4), conv_stride=(5, 4, 4), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        feat_extract_norm="layer" if stable else "group", do_stable_layer_norm=stable, layerdrop=0.0)
    transformers.AutoModel.from_config(config).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def encoders(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("w2v")
    return {"post": save_tiny_wav2vec2(root / "post", stable=False),
            "pre": save_tiny_wav2vec2(root / "pre", stable=True)}


def build(encoder: str, **fields):
    torch.manual_seed(0)
    return get_model("ssl-head")(encoder=encoder, **fields)


def test_output_shapes_unit_projection_and_random_init(encoders) -> None:
    model = build(encoders["post"], proj_dim=24).eval()
    z, logits = model(torch.randn(3, CLIP) * 0.1)
    assert z.shape == (3, 24) and logits.shape == (3, 2)
    np.testing.assert_allclose(z.norm(dim=1).detach().numpy(), 1.0, atol=1e-5)
    # Pretrained weights come from the folder; pretrained=False draws fresh ones from the same config.
    saved = transformers.AutoModel.from_pretrained(encoders["post"]).state_dict()
    key = "encoder.layers.1.attention.k_proj.weight"
    assert torch.equal(model.encoder.state_dict()[key], saved[key])
    torch.manual_seed(1)  # the folder was written from seed 0
    random = get_model("ssl-head")(encoder=encoders["post"], pretrained=False)
    assert not torch.equal(random.encoder.state_dict()[key], saved[key])
    with pytest.raises(ValueError, match="at least"):
        model(torch.zeros(1, 50))  # shorter than one frame of this CNN


def _expected_trainable(names: list[str], freeze: str, stable: bool) -> set[str]:
    heads = {n for n in names if n.startswith(("projection.", "classifier."))}
    if freeze == "full":
        return set(names)
    layers = {"frozen": [], "last-1": [1], "last-2": [0, 1]}[freeze]
    chosen = {n for n in names for k in layers if n.startswith(f"encoder.encoder.layers.{k}.")}
    if layers and stable:
        chosen |= {n for n in names if n.startswith("encoder.encoder.layer_norm.")}
    return heads | chosen


@pytest.mark.parametrize("norm", ["post", "pre"])
@pytest.mark.parametrize("freeze", ["frozen", "last-1", "last-2", "full"])
def test_each_freezing_strategy_trains_exactly_its_parameters(encoders, norm: str, freeze: str) -> None:
    model = build(encoders[norm], freeze=freeze)
    names = [n for n, _ in model.named_parameters()]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == _expected_trainable(names, freeze, stable=norm == "pre")
    # One step: exactly the trainable parameters receive gradients; frozen ones stay put.
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    z, logits = model(torch.randn(4, CLIP) * 0.1)
    (F.cross_entropy(logits, torch.tensor([0, 1, 0, 1])) + supcon_loss(z, torch.tensor([0, 1, 0, 1]))).backward()
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5).step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    assert changed <= trainable
    assert {n for n in trainable if n.startswith("encoder.encoder.layers.1.feed_forward")} <= changed
    if freeze == "frozen":
        assert not model.encoder.training  # a frozen encoder runs in eval mode (no dropout, no masking)


def test_bad_configs_are_named(encoders, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="freeze"):
        build(encoders["post"], freeze="last-3x")
    with pytest.raises(ConfigError, match="only 2 layer"):
        trainable_encoder_modules(build(encoders["post"]).encoder, "last-3")
    with pytest.raises(ConfigError, match="encoder"):
        build(str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="loss"):
        TrainConfig(loss="triplet")
    with pytest.raises(ConfigError, match="views='augment'"):
        TrainConfig(loss="ce+supcon", views="augment")


# --------------------------------------------------------------------------------------------- SupCon


def test_supcon_known_answers() -> None:
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    # Two copies of one class: the only candidate is the positive itself, so every log-probability is 0.
    assert float(supcon_loss(torch.stack([e1, e1]), torch.tensor([1, 1]), temperature=0.5)) == pytest.approx(0.0)
    # e1, e1, e2, e2 at t = 1: each anchor sees its positive at exp(1) and two orthogonal points at exp(0).
    z = torch.stack([e1, e1, e2, e2])
    y = torch.tensor([0, 0, 1, 1])
    assert float(supcon_loss(z, y, temperature=1.0)) == pytest.approx(math.log(1 + 2 / math.e), rel=1e-6)
    # No anchor has a positive: nothing to contrast.
    assert float(supcon_loss(torch.stack([e1, e2]), torch.tensor([0, 1]))) == 0.0


def test_supcon_clustered_beats_random_and_is_permutation_invariant() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.tensor([0, 1] * 8)
    centres = F.normalize(torch.randn(2, 16, generator=g), dim=1)
    clustered = centres[y]
    random = F.normalize(torch.randn(16, 16, generator=g), dim=1)
    swapped = centres[1 - y]
    lc, lr, ls = (float(supcon_loss(z, y, 0.1)) for z in (clustered, random, swapped))
    assert math.isfinite(lr) and lc < lr
    perm = torch.randperm(16, generator=g)
    assert float(supcon_loss(random[perm], y[perm], 0.1)) == pytest.approx(lr, rel=1e-5)
    # Unnormalised inputs are normalised first; tiny temperatures stay finite.
    assert float(supcon_loss(3.0 * random, y, 0.1)) == pytest.approx(lr, rel=1e-5)
    assert math.isfinite(float(supcon_loss(random, y, 1e-3)))
    assert ls == pytest.approx(lc, rel=1e-6)  # the same clusters relabelled consistently: the same loss


# ------------------------------------------------------------------------------------------------ training


@pytest.fixture(scope="module")
def toy_manifest(tmp_path_factory) -> Path:
    """48 train + 8 val clips of 0.3 s: bona fide speechlike; spoof = speechlike + a loud 3 kHz tone."""
    root = tmp_path_factory.mktemp("toyssl")
    rows = []
    for i in range(56):
        bona = i % 2 == 0
        x = speechlike(0.3, f0_hz=90 + 3 * i, seed=i)
        if not bona:
            x = x + tone(3000.0, 0.3, amplitude=0.3)
        write(root / f"c{i:02d}.wav", x)
        rows.append({"id": f"c{i:02d}", "path": f"c{i:02d}.wav", "label": "bonafide" if bona else "spoof",
                     "generator": "human" if bona else "tone", "split": "train" if i < 48 else "val"})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv"


def test_two_view_dataset_gives_two_different_views(toy_manifest: Path) -> None:
    from audios.manifest import read_manifest

    table = read_manifest(toy_manifest)
    ds = TwoViewClipDataset(table, CLIP, train=True, augment=AugmentConfig(noise=True, noise_p=1.0), seed=1)
    item = ds[3]
    assert item["x"].shape == (2, CLIP) and not torch.equal(item["x"][0], item["x"][1])
    assert torch.equal(item["x"], ds[3]["x"])  # seeded by (seed, epoch, index)
    crops = TwoViewClipDataset(table, CLIP, train=True, seed=1, views="crop")[3]["x"]
    assert crops.shape == (2, CLIP) and not torch.equal(crops[0], crops[1])


def test_one_epoch_of_ce_plus_supcon_lowers_the_loss(encoders, toy_manifest: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(model="ssl-head", model_config={"encoder": encoders["post"], "freeze": "full", "proj_dim": 16,
                                                      "classifier_hidden": 16, "dropout": 0.0},
                      clip_samples=CLIP, batch_size=6, epochs=1, lr=2e-3, scheduler="none", loss="ce+supcon",
                      views="crop", contrastive_weight=0.5, contrastive_temperature=0.1, cache_audio=True,
                      early_stopping_patience=0, balance="none", eval_batch_size=16)
    result = train(toy_manifest, cfg, tmp_path / "run")
    steps = pd.read_csv(tmp_path / "run" / "steps.csv")["loss"].to_numpy()
    assert len(steps) == 8 and np.isfinite(steps).all()
    assert steps[-3:].mean() < steps[:3].mean(), steps
    assert result.finished
    best = load_trained_model(tmp_path / "run" / "best.pt")  # rebuilt from the folder, weights restored
    assert best.name == "ssl-head" and np.isfinite(best.score(speechlike(0.3)))


def test_onnx_export_and_pruning_of_the_ssl_head(encoders, tmp_path: Path) -> None:
    from audios.train.export import OnnxModel, export_onnx, onnx_max_abs_diff, prune_magnitude

    model = build(encoders["pre"]).eval()
    path = export_onnx(model, tmp_path / "sslhead.onnx", CLIP)
    assert onnx_max_abs_diff(model, OnnxModel(path), CLIP, batch=3) < 1e-4
    # The weight-normed positional convolution computes its weight, so it is neither pruned nor counted.
    _, sparsity = prune_magnitude(model, 0.3)
    assert sparsity == pytest.approx(0.3, abs=1e-3)


def test_detached_classifier_keeps_cross_entropy_off_the_encoder(encoders, toy_manifest: Path, tmp_path: Path) -> None:
    model = build(encoders["post"], freeze="full", detach_classifier=True).train()
    z, logits = model(torch.randn(4, CLIP) * 0.1)
    F.cross_entropy(logits, torch.tensor([0, 1, 0, 1])).backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.classifier.parameters())
    supcon_loss(z, torch.tensor([0, 1, 0, 1])).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())
    # loss: supcon needs that detachment; without it the run is refused before training.
    cfg = TrainConfig(model="ssl-head", model_config={"encoder": encoders["post"]}, clip_samples=CLIP, loss="supcon",
                      views="crop", epochs=1, cache_audio=True)
    with pytest.raises(ConfigError, match="detach_classifier"):
        train(toy_manifest, cfg, tmp_path / "refused")
