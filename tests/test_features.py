"""Feature extractors on generated signals with known answers; the cached, resumable feature table; the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from audios.audio import AudioConfig, load_audio
from audios.errors import ConfigError, SilentAudioError
from audios.features import (
    EXTRACTORS,
    config_hash,
    describe_extractor,
    extractor_from_description,
    get_extractor,
)
from audios.features.extract import FeatureCache, extract_features, read_feature_table
from audios.features.frames import filterbank_features, linear_filterbank
from audios.manifest.metadata import measure_recording
from tests.conftest import speechlike, tone, write

SR = 16000
REPO = Path(__file__).resolve().parents[1]


def noise(duration_s: float = 1.0, seed: int = 0, amplitude: float = 0.1) -> np.ndarray:
    return (amplitude * np.random.default_rng(seed).standard_normal(int(duration_s * SR))).astype(np.float32)


def make_corpus(folder: Path, n: int, start: int = 0, duration_s: float = 0.3) -> pd.DataFrame:
    """``n`` distinct short clips (tones of different pitch, every third one noisy) and their manifest rows."""
    rows = []
    for i in range(start, start + n):
        x = tone(200 + 37 * i, duration_s, SR, amplitude=0.3)
        if i % 3 == 0:
            x = x + noise(duration_s, seed=i, amplitude=0.05)
        label = "bonafide" if i % 2 == 0 else "spoof"
        rel = f"{label}/clip{i:03d}.wav"
        write(folder / rel, x, SR)
        rows.append({"id": f"clip{i:03d}", "path": rel, "label": label,
                     "generator": "human" if label == "bonafide" else "toy-tts", "speaker": f"spk{i % 4}",
                     "split": "train" if i % 5 else "test", "root": str(folder)})
    return pd.DataFrame(rows)


# --- extractors on signals with known answers ---------------------------------------------------------

def test_pure_tone_centroid_is_its_frequency():
    (v,) = get_extractor("spectral").extract([tone(1000, 1.0, SR)])
    assert v[0] == pytest.approx(1000, rel=0.02)


def test_white_noise_centroid_is_a_quarter_of_the_rate():
    # Flat magnitude spectrum from 0 to sr/2: its mean frequency is sr/4.
    (v,) = get_extractor("spectral").extract([noise(2.0)])
    assert v[0] == pytest.approx(SR / 4, rel=0.03)


def test_entropy_of_noise_exceeds_entropy_of_a_tone_and_stays_in_bounds():
    ext = get_extractor("spectral")
    v_tone, v_noise = ext.extract([tone(1000, 1.0, SR), noise(1.0)])
    assert v_noise[1] > v_tone[1] + 2.0
    assert 0 <= v_tone[1] and v_noise[1] <= np.log2(ext.config.n_mels)


def test_spectral_base_table_has_exactly_fifteen_columns_in_order():
    ext = get_extractor("spectral")
    assert ext.columns == ("centroid", "entropy", *(f"mfcc_{i}" for i in range(13)))
    (v,) = ext.extract([speechlike(0.5)])
    assert v.shape == (15,) and np.isfinite(v).all()


def test_extended_option_adds_summaries_after_the_base_columns():
    ext = get_extractor("spectral", {"extended": True})
    cols = ext.columns
    assert cols[:15] == get_extractor("spectral").columns
    for name in ("mfcc_std_0", "dmfcc_mean_12", "dmfcc_std_0", "rolloff_mean", "flatness_std", "bandwidth_mean",
                 "contrast_0", "contrast_5", "zcr_mean", "zcr_std"):
        assert name in cols
    assert len(cols) == len(set(cols)) == 15 + 3 * 13 + 6 + 6 + 2
    v_tone, v_noise = ext.extract([tone(1000, 0.5, SR), noise(0.5)])
    assert v_tone.shape == (len(cols),) and np.isfinite(v_tone).all()
    # A tone is far less flat than white noise, and a 1 kHz tone crosses zero 2000 times a second.
    flat = cols.index("flatness_mean")
    assert v_tone[flat] < 0.01 < v_noise[flat]
    assert v_tone[cols.index("zcr_mean")] == pytest.approx(2000 / SR, rel=0.05)


def test_silent_signal_is_a_clear_error_naming_it():
    with pytest.raises(SilentAudioError, match=r"batch\[1\].*silent"):
        get_extractor("spectral").extract([tone(), np.zeros(SR, dtype=np.float32)])
    with pytest.raises(SilentAudioError, match="batch"):
        get_extractor("lfcc").extract([np.zeros(SR, dtype=np.float32)])


def test_silent_file_is_refused_by_the_load_path_naming_the_file(tmp_path):
    path = write(tmp_path / "hush.wav", np.zeros(SR, dtype=np.float32))
    with pytest.raises(SilentAudioError, match="hush.wav"):
        load_audio(path, AudioConfig())


@pytest.mark.parametrize(("name", "dims"), [("lfcc", 60), ("mfcc", 60), ("logmel", 80)])
def test_frame_extractor_shapes_follow_the_hop(name, dims):
    ext = get_extractor(name)
    lengths = (SR, 12345, 800)
    out = ext.extract([speechlike(n / SR, seed=n) for n in lengths])
    for n, m in zip(lengths, out, strict=True):
        assert m.dtype == np.float32 and m.shape == (1 + n // 160, dims)
        assert np.isfinite(m).all()
    assert len(ext.columns) == dims


def test_lfcc_differs_from_mfcc_and_delta_order_sets_the_width():
    x = speechlike(0.5)
    lfcc = get_extractor("lfcc").extract([x])[0]
    mfcc = get_extractor("mfcc", {"win_length": 320}).extract([x])[0]
    assert lfcc.shape == mfcc.shape
    assert np.abs(lfcc[:, :20] - mfcc[:, :20]).mean() > 0.5
    assert get_extractor("lfcc", {"delta_order": 0}).extract([x])[0].shape[1] == 20
    assert get_extractor("lfcc", {"delta_order": 1}).extract([x])[0].shape[1] == 40
    # The static part does not depend on whether deltas are appended.
    np.testing.assert_allclose(get_extractor("lfcc", {"delta_order": 0}).extract([x])[0], lfcc[:, :20], atol=1e-6)


def test_linear_filterbank_energy_peaks_in_the_filter_centred_on_a_tone():
    fb = linear_filterbank(SR, 512, 20, 0.0, SR / 2)
    centres = np.linspace(0, SR / 2, 22)[1:-1]
    k = 7
    (energies,) = filterbank_features([tone(centres[k], 0.5, SR)], fb, 512, 320, 160, 1e-10, None)
    assert np.all(np.argmax(energies[2:-2], axis=1) == k)


def test_deltas_of_a_linear_ramp_are_its_slope():
    from audios.features.frames import deltas

    ramp = np.arange(20, dtype=float)[:, None] * np.array([[1.0, -3.0]])
    d = deltas(ramp)
    np.testing.assert_allclose(d[2:-2], np.tile([1.0, -3.0], (16, 1)))


# The neural extractors (ssl and aasist need a checkpoint) have their own tests in tests/test_ssl.py and
# tests/test_aasist.py.
@pytest.mark.parametrize("name", sorted(set(EXTRACTORS) - {"ssl", "resemblyzer", "aasist"}))
def test_batched_equals_one_by_one(name):
    ext = get_extractor(name)
    batch = [speechlike(0.7, seed=1), noise(0.4, seed=2), tone(440, 0.25, SR), speechlike(1.1, seed=3)]
    together = ext.extract(batch)
    alone = [ext.extract([x])[0] for x in batch]
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_configs_validate_and_unknown_names_list_the_known_ones():
    with pytest.raises(ConfigError, match="n_coeffs=30 exceeds"):
        get_extractor("lfcc", {"n_coeffs": 30})
    with pytest.raises(ConfigError, match="win_length=1024 exceeds n_fft=512"):
        get_extractor("logmel", {"win_length": 1024})
    with pytest.raises(ConfigError, match="Nyquist"):
        get_extractor("spectral", {"contrast_bands": 6})
    with pytest.raises(ConfigError, match="unknown field"):
        get_extractor("mfcc", {"n_mel": 40})
    with pytest.raises(ConfigError, match="known: aasist, lfcc, logmel, mfcc, portable, resemblyzer, spectral, ssl"):
        get_extractor("wav2vec")


def test_description_round_trips_and_config_changes_the_hash():
    ext = get_extractor("lfcc", {"n_filters": 30, "f_max_hz": 4000})
    back = extractor_from_description(json.loads(json.dumps(describe_extractor(ext))))
    assert back.config == ext.config and config_hash(back) == config_hash(ext)
    assert config_hash(ext) != config_hash(get_extractor("lfcc"))


# --- the feature table ------------------------------------------------------------------------------

def test_table_has_manifest_columns_hash_features_and_config_metadata(tmp_path):
    manifest = make_corpus(tmp_path / "corpus", 6)
    report = extract_features(manifest, get_extractor("spectral"), tmp_path / "f.parquet", cache_dir=tmp_path / "c")
    table, description = read_feature_table(tmp_path / "f.parquet")
    expected = ["id", "label", "generator", "speaker", "split", "sha256", "centroid", "entropy",
                *(f"mfcc_{i}" for i in range(13))]
    assert list(table.columns) == expected
    assert list(table["id"]) == list(manifest["id"])
    assert report.n_rows == 6 and report.n_computed == 6 and report.n_cached == 0
    meta = json.loads(pq.read_schema(tmp_path / "f.parquet").metadata[b"audios.extractor"])
    assert meta == description and meta["extractor"]["name"] == "spectral"
    assert meta["extractor"]["config"]["n_mfcc"] == 13 and meta["audio"]["sample_rate"] == SR
    # The hash is the manifest builder's PCM hash, and values equal a direct extraction.
    first = Path(manifest["root"][0]) / manifest["path"][0]
    assert table["sha256"][0] == measure_recording(first)["sha256"]
    direct = get_extractor("spectral").extract([load_audio(first)])[0]
    np.testing.assert_allclose(table.iloc[0, 6:].to_numpy(dtype=float), direct, atol=1e-9)


def test_cache_second_run_computes_nothing_and_grown_manifest_only_new_rows(tmp_path):
    corpus = tmp_path / "corpus"
    small = make_corpus(corpus, 5)
    ext = get_extractor("spectral")
    first = extract_features(small, ext, tmp_path / "a.parquet", cache_dir=tmp_path / "c")
    again = extract_features(small, ext, tmp_path / "a.parquet", cache_dir=tmp_path / "c")
    assert (first.n_computed, first.n_cached) == (5, 0)
    assert (again.n_computed, again.n_cached) == (0, 5)
    grown = pd.concat([small, make_corpus(corpus, 3, start=5)], ignore_index=True)
    more = extract_features(grown, ext, tmp_path / "b.parquet", cache_dir=tmp_path / "c")
    assert (more.n_computed, more.n_cached, more.n_rows) == (3, 5, 8)
    fresh = extract_features(grown, ext, tmp_path / "fresh.parquet", cache_dir=tmp_path / "other")
    pd.testing.assert_frame_equal(read_feature_table(tmp_path / "b.parquet")[0],
                                  read_feature_table(tmp_path / "fresh.parquet")[0])
    assert fresh.n_computed == 8
    # Another config is another cache entry.
    other = extract_features(small, get_extractor("spectral", {"n_mels": 64}), tmp_path / "d.parquet",
                             cache_dir=tmp_path / "c")
    assert (other.n_computed, other.n_cached) == (5, 0)


def test_bad_files_are_skipped_with_reasons_and_the_rest_finishes(tmp_path):
    corpus = tmp_path / "corpus"
    manifest = make_corpus(corpus, 4)
    write(corpus / "spoof/silent.wav", np.zeros(SR // 2, dtype=np.float32))
    (corpus / "spoof/broken.wav").write_bytes(b"RIFF not really a wav file at all")
    bad = pd.DataFrame([
        {"id": "silent", "path": "spoof/silent.wav", "label": "spoof", "generator": "g", "speaker": "s",
         "split": "train", "root": str(corpus)},
        {"id": "broken", "path": "spoof/broken.wav", "label": "spoof", "generator": "g", "speaker": "s",
         "split": "train", "root": str(corpus)},
    ])
    out = tmp_path / "f.parquet"
    report = extract_features(pd.concat([manifest, bad], ignore_index=True), get_extractor("lfcc"), out,
                              cache_dir=tmp_path / "c")
    assert report.n_rows == 4 and report.n_skipped == 2
    skipped = pd.read_csv(tmp_path / "f.skipped.csv")
    assert list(skipped["id"]) == ["silent", "broken"]
    assert "silent" in skipped["reason"][0] and skipped["path"][0].endswith("silent.wav")
    assert "readable" in skipped["reason"][1]


def test_skips_found_while_extracting_are_recorded(tmp_path):
    # With a sha256 column given, the silent file is found by the decode in the extraction workers.
    corpus = tmp_path / "corpus"
    manifest = make_corpus(corpus, 3)
    write(corpus / "spoof/silent.wav", np.zeros(SR // 2, dtype=np.float32))
    manifest.loc[len(manifest)] = {"id": "silent", "path": "spoof/silent.wav", "label": "spoof", "generator": "g",
                                   "speaker": "s", "split": "train", "root": str(corpus)}
    manifest["sha256"] = [f"{i:064x}" for i in range(len(manifest))]
    report = extract_features(manifest, get_extractor("spectral"), tmp_path / "f.parquet", cache_dir=tmp_path / "c",
                              batch_size=4)
    assert report.n_rows == 3 and report.n_computed == 3
    assert report.skipped[0][0].endswith("silent.wav") and "silent" in report.skipped[0][1]


def test_frame_features_are_npy_files_beside_the_table(tmp_path):
    manifest = make_corpus(tmp_path / "corpus", 3, duration_s=0.5)
    out = tmp_path / "out" / "lfcc.parquet"
    extract_features(manifest, get_extractor("lfcc"), out, cache_dir=tmp_path / "c")
    table, description = read_feature_table(out)
    assert list(table.columns) == ["id", "label", "generator", "speaker", "split", "sha256", "n_frames",
                                   "features_path"]
    assert description["extractor"]["kind"] == "frames"
    for row, (root, rel) in zip(table.itertuples(), zip(manifest["root"], manifest["path"], strict=True),
                                strict=True):
        m = np.load(row.features_path)
        assert Path(row.features_path).parent == out.parent / "lfcc.frames"
        assert m.shape == (row.n_frames, 60) == (1 + 8000 // 160, 60)
        np.testing.assert_allclose(m, get_extractor("lfcc").extract([load_audio(Path(root) / rel)])[0], atol=1e-6)


def test_worker_processes_give_the_same_table(tmp_path):
    manifest = make_corpus(tmp_path / "corpus", 8)
    ext = get_extractor("mfcc", {"delta_order": 0})
    extract_features(manifest, ext, tmp_path / "one.parquet", cache_dir=tmp_path / "c1")
    report = extract_features(manifest, ext, tmp_path / "two.parquet", cache_dir=tmp_path / "c2", workers=2,
                              batch_size=3, part_size=2)
    assert report.n_computed == 8
    one, _ = read_feature_table(tmp_path / "one.parquet")
    two, _ = read_feature_table(tmp_path / "two.parquet")
    pd.testing.assert_frame_equal(one.drop(columns="features_path"), two.drop(columns="features_path"))
    for a, b in zip(one["features_path"], two["features_path"], strict=True):
        np.testing.assert_array_equal(np.load(a), np.load(b))


def _with_bad_files(corpus: Path, manifest: pd.DataFrame) -> pd.DataFrame:
    """``manifest`` plus a silent and a corrupt recording (sha256 given, so the extraction's decode finds them)."""
    write(corpus / "spoof/silent.wav", np.zeros(SR // 2, dtype=np.float32))
    (corpus / "spoof/broken.wav").write_bytes(b"RIFF not really a wav file at all")
    for name in ("silent", "broken"):
        manifest.loc[len(manifest)] = {"id": name, "path": f"spoof/{name}.wav", "label": "spoof", "generator": "g",
                                       "speaker": "s", "split": "train", "root": str(corpus)}
    manifest["sha256"] = [f"{i:064x}" for i in range(len(manifest))]
    return manifest


def test_decoding_ahead_in_a_helper_process_gives_the_same_table_and_skips(tmp_path):
    from audios.features.extract import decode_items, decoded_ahead

    manifest = _with_bad_files(tmp_path / "corpus", make_corpus(tmp_path / "corpus", 7))
    items = list(zip(manifest["sha256"], [str(tmp_path / "corpus" / p) for p in manifest["path"]], strict=True))
    batches = [items[i:i + 2] for i in range(0, len(items), 2)]
    ahead = list(decoded_ahead(AudioConfig(), batches))
    assert len(ahead) == len(batches)
    for batch, (keys, signals, skipped) in zip(batches, ahead, strict=True):
        want_keys, want_signals, want_skipped = decode_items(AudioConfig(), batch)
        assert keys == want_keys and skipped == want_skipped
        for a, b in zip(signals, want_signals, strict=True):
            np.testing.assert_array_equal(a, b)
    ext = get_extractor("spectral")
    reports = {flag: extract_features(manifest, ext, tmp_path / f"{flag}.parquet", cache_dir=tmp_path / f"c{flag}",
                                      batch_size=2, part_size=3, decode_ahead=flag) for flag in (False, True)}
    assert reports[True].n_computed == 7 and reports[True].skipped == reports[False].skipped
    assert {Path(p).name for p, _ in reports[True].skipped} == {"silent.wav", "broken.wav"}
    pd.testing.assert_frame_equal(read_feature_table(tmp_path / "True.parquet")[0],
                                  read_feature_table(tmp_path / "False.parquet")[0])


_PARENT = os.getpid()


def _decode_or_die_in_a_child(config, items):
    """``decode_items`` in this process; in any other (the forked decoding helper) the process dies at once."""
    from audios.features.extract import _decode_items_unpatched

    if os.getpid() != _PARENT:
        os._exit(3)
    return _decode_items_unpatched(config, items)


def test_a_dead_decoding_helper_falls_back_to_decoding_inline(tmp_path, monkeypatch, caplog):
    from audios.features import extract

    manifest = make_corpus(tmp_path / "corpus", 6)
    monkeypatch.setattr(extract, "_decode_items_unpatched", extract.decode_items, raising=False)
    monkeypatch.setattr(extract, "decode_items", _decode_or_die_in_a_child)
    report = extract_features(manifest, get_extractor("spectral"), tmp_path / "f.parquet", cache_dir=tmp_path / "c",
                              batch_size=2, decode_ahead=True)
    assert report.n_computed == 6 and report.n_skipped == 0
    assert "decoding helper process died" in caplog.text


_SLOW_RUN = """
import sys, time
import pandas as pd
from audios.features import get_extractor
from audios.features.extract import extract_features

ext = get_extractor("spectral")
fast = ext.extract
def slow(batch):  # slowed down so the test can kill it midway
    time.sleep(0.08 * len(batch))
    return fast(batch)
ext.extract = slow
extract_features(pd.read_csv(sys.argv[1]), ext, sys.argv[2], cache_dir=sys.argv[3], batch_size=2, part_size=4)
"""


def test_resumes_after_sigkill_and_matches_an_uninterrupted_run(tmp_path):
    manifest = make_corpus(tmp_path / "corpus", 60, duration_s=0.2)
    manifest["sha256"] = [measure_recording(Path(r) / p)["sha256"] for r, p in zip(manifest["root"], manifest["path"])]
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_RUN, str(tmp_path / "manifest.csv"),
                             str(tmp_path / "killed.parquet"), str(cache)], env=env)
    deadline = time.monotonic() + 20
    parts: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None:
        parts = list(cache.glob("*/parts/part-*.parquet"))
        if len(parts) >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    assert not (tmp_path / "killed.parquet").exists()
    ext = get_extractor("spectral")
    n_saved = len(FeatureCache(cache, ext, AudioConfig()).known())
    assert 12 <= n_saved < 60

    resumed = extract_features(manifest, ext, tmp_path / "resumed.parquet", cache_dir=cache)
    assert (resumed.n_cached, resumed.n_computed) == (n_saved, 60 - n_saved)
    clean = extract_features(manifest, ext, tmp_path / "clean.parquet", cache_dir=tmp_path / "fresh")
    assert clean.n_computed == 60
    pd.testing.assert_frame_equal(read_feature_table(tmp_path / "resumed.parquet")[0],
                                  read_feature_table(tmp_path / "clean.parquet")[0])


# --- CLI ----------------------------------------------------------------------------------------------

def test_cli_writes_table_run_record_and_reuses_the_cache(tmp_path):
    from audios.cli.app import app
    import audios.cli.features  # noqa: F401  (registers the command)

    manifest = make_corpus(tmp_path / "corpus", 4).drop(columns="root")
    manifest.to_csv(tmp_path / "corpus" / "manifest.csv", index=False)
    out = tmp_path / "feat.parquet"
    args = ["features", str(tmp_path / "corpus" / "manifest.csv"), "--extractor", "spectral", "-o", str(out),
            "--cache", str(tmp_path / "cache"), "--set", "extended=true", "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "4 recordings computed" in " ".join(result.output.split())
    table, description = read_feature_table(out)
    assert len(table) == 4 and "zcr_std" in table.columns and description["extractor"]["config"]["extended"] is True
    assert (tmp_path / "feat.run" / "config.yaml").exists() and (tmp_path / "feat.run" / "run.json").exists()
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0 and "0 recordings computed, 4 from cache" in " ".join(result.output.split())
    bad = CliRunner().invoke(app, ["features", str(tmp_path / "corpus" / "manifest.csv"), "-e", "nope"])
    known = "known: aasist, lfcc, logmel, mfcc, portable, resemblyzer, spectral, ssl"
    assert bad.exit_code == 2 and known in " ".join(bad.output.split())


def _torch_threads(_: int) -> int:
    import torch

    return torch.get_num_threads()


def test_worker_processes_run_one_torch_thread_each():
    # N workers must use N cores: a worker whose torch pool spans every core oversubscribes the machine
    # (ssl / resemblyzer / aasist with --workers > 1). Checked before and after the parent imports torch.
    pytest.importorskip("torch")
    from audios.parallel import map_ordered

    assert list(map_ordered(_torch_threads, range(4), workers=2)) == [1, 1, 1, 1]
    import torch

    threads = torch.get_num_threads()
    assert list(map_ordered(_torch_threads, range(4), workers=2)) == [1, 1, 1, 1]
    assert torch.get_num_threads() == threads  # the parent keeps its own pool


FORK_AFTER_TORCH = """
import torch
from audios.parallel import map_ordered

def work(n):
    return float(torch.ones(512, 512).matmul(torch.ones(512, 512)).sum())

torch.set_num_threads(2)
work(0)  # the parent's OpenMP pool now exists; a forked child that enters it waits forever
print(list(map_ordered(work, range(4), workers=2)))
"""


def test_torch_in_forked_workers_after_the_parent_used_torch_does_not_hang():
    # A Python user who extracts in-process and then with --workers 2 used to deadlock in the first worker's
    # first parallel torch op (GNU OpenMP does not survive fork).
    pytest.importorskip("torch")
    proc = subprocess.Popen([sys.executable, "-c", FORK_AFTER_TORCH], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")})
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the hung workers too
        proc.communicate()
        pytest.fail("map_ordered with 2 workers hung after the parent had used torch")
    assert proc.returncode == 0, err[-2000:]
    assert out.strip() == str([512.0**3] * 4)
