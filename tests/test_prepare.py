"""prepare: known-answer checks of each step, skipping bad files, determinism, in-place safety, SIGKILL resumption."""

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
import pytest
import soundfile as sf
from scipy.signal import welch
from typer.testing import CliRunner

from audios.cli import app
from audios.errors import ConfigError
from audios.manifest import read_manifest
from audios.prepare import PrepareConfig, prepare
from conftest import speechlike, tone, write

SR = 16000


def make_manifest(root: Path, names: list[str], label: str = "bonafide") -> pd.DataFrame:
    """A manifest CSV for files already under ``root``, read back as the library expects it."""
    rows = [{"id": Path(n).with_suffix("").as_posix(), "path": n, "label": label, "speaker": "s1"} for n in names]
    path = root / "manifest.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return read_manifest(path)


def one_file(tmp_path: Path, x: np.ndarray, sample_rate: int = SR, name: str = "a.wav") -> pd.DataFrame:
    write(tmp_path / "corpus" / name, x, sample_rate)
    return make_manifest(tmp_path / "corpus", [name])


def run_one(tmp_path: Path, df: pd.DataFrame, **cfg) -> tuple[np.ndarray, int, pd.DataFrame]:
    report = prepare(df, tmp_path / "out", PrepareConfig(**cfg))
    out = pd.read_csv(report.manifest_path)
    assert len(out) == 1, report.summary()
    y, rate = sf.read(tmp_path / "out" / out["path"][0], dtype="float32")
    return y, rate, out


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    noise = noisy.astype(np.float64) - clean.astype(np.float64)
    return float(10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(noise**2)))


def slope_db_per_octave(x: np.ndarray) -> float:
    f, p = welch(x, SR, nperseg=4096)
    band = (f > 100) & (f < 6000)
    return float(np.polyfit(np.log2(f[band]), 10 * np.log10(p[band]), 1)[0])


def test_resample_44k_to_16k_flac(tmp_path):
    df = one_file(tmp_path, tone(440, 1.5, 44100), 44100)
    y, rate, out = run_one(tmp_path, df)
    assert rate == 16000 and abs(y.size - 24000) <= 1
    assert out["path"][0] == "a.flac" and out["format"][0] == "flac" and out["sample_rate"][0] == 16000
    assert sf.info(tmp_path / "out" / "a.flac").format == "FLAC"
    assert out["parent_id"][0] == "a" and out["speaker"][0] == "s1"
    assert Path(out["root"][0]) == (tmp_path / "out").resolve()
    assert (tmp_path / "out" / "config.yaml").exists() and (tmp_path / "out" / "run.json").exists()


def test_peak_normalise(tmp_path):
    y, _, out = run_one(tmp_path, one_file(tmp_path, speechlike(1.0, amplitude=0.2)), normalize="peak",
                        peak_target_dbfs=-1.0)
    assert abs(20 * np.log10(np.max(np.abs(y))) - (-1.0)) < 0.05
    assert abs(20 * np.log10(out["peak"][0]) - (-1.0)) < 0.05


def test_rms_normalise(tmp_path):
    y, _, out = run_one(tmp_path, one_file(tmp_path, speechlike(1.0, amplitude=0.6)), normalize="rms",
                        rms_target_dbfs=-23.0)
    assert abs(10 * np.log10(np.mean(y.astype(np.float64) ** 2)) - (-23.0)) < 0.2
    assert abs(out["rms_dbfs"][0] - (-23.0)) < 0.2


def test_trim_silence_leaves_the_tone(tmp_path):
    pad = np.zeros(SR // 2, dtype=np.float32)
    x = np.concatenate([pad, tone(440, 1.0, SR, 0.3), pad])
    y, _, _ = run_one(tmp_path, one_file(tmp_path, x), trim_silence=True, trim_margin_s=0.05)
    assert 1.0 <= y.size / SR <= 1.0 + 2 * 0.05 + 0.02
    untrimmed, _, _ = run_one(tmp_path / "b", one_file(tmp_path / "b", x))
    assert untrimmed.size == x.size


@pytest.mark.parametrize("kind", ["white", "pink"])
def test_noise_at_snr(tmp_path, kind):
    x = speechlike(3.0, amplitude=0.3)
    y, _, _ = run_one(tmp_path, one_file(tmp_path, x), noise=kind, snr_db=10.0, seed=3)
    clean = sf.read(tmp_path / "corpus" / "a.wav", dtype="float32")[0]  # the 16-bit input as stored
    assert abs(snr_db(clean, y) - 10.0) < 0.5
    slope = slope_db_per_octave(y.astype(np.float64) - clean)
    if kind == "white":
        assert abs(slope) < 1.0
    else:
        assert slope < -2.0  # 1/f noise falls about 3 dB per octave


def test_noise_from_folder(tmp_path):
    noise_dir = tmp_path / "noises"
    write(noise_dir / "hum.wav", tone(300, 0.7, 22050, 0.5), 22050)  # resampled to 16 kHz and looped
    x = tone(2000, 2.0, SR, 0.3)
    y, _, _ = run_one(tmp_path, one_file(tmp_path, x), noise="folder", noise_dir=str(noise_dir), snr_db=10.0)
    clean = sf.read(tmp_path / "corpus" / "a.wav", dtype="float32")[0]
    assert abs(snr_db(clean, y) - 10.0) < 0.5
    diff = y.astype(np.float64) - clean
    spectrum = np.abs(np.fft.rfft(diff))
    assert abs(np.argmax(spectrum) * SR / diff.size - 300) < 2  # the added noise is the hum file


def test_noise_seeded_per_file_not_per_run(tmp_path):
    x = speechlike(1.0)
    for d in ("c1", "c2"):
        write(tmp_path / d / "a.wav", x)
        write(tmp_path / d / "b.wav", x)
    prepare(make_manifest(tmp_path / "c1", ["a.wav", "b.wav"]), tmp_path / "o1", PrepareConfig(noise="white"))
    prepare(make_manifest(tmp_path / "c2", ["b.wav"]), tmp_path / "o2", PrepareConfig(noise="white"))
    b1, b2 = sf.read(tmp_path / "o1" / "b.flac")[0], sf.read(tmp_path / "o2" / "b.flac")[0]
    a1 = sf.read(tmp_path / "o1" / "a.flac")[0]
    assert np.array_equal(b1, b2)  # same id, same noise, whatever else is in the run
    assert not np.array_equal(a1, b1)  # different ids, different noise


@pytest.mark.parametrize(
    ("overlap_s", "remainder", "bounds"),
    [
        (0.0, "pad", [(0, 2), (2, 4), (4, 5)]),
        (0.0, "drop", [(0, 2), (2, 4)]),
        (1.0, "pad", [(0, 2), (1, 3), (2, 4), (3, 5)]),
        (1.0, "drop", [(0, 2), (1, 3), (2, 4), (3, 5)]),
    ],
)
def test_clips(tmp_path, overlap_s, remainder, bounds):
    x = speechlike(5.0, amplitude=0.4)
    df = one_file(tmp_path, x, name="sub/long.wav")
    report = prepare(df, tmp_path / "out", PrepareConfig(clip_s=2.0, overlap_s=overlap_s, remainder=remainder))
    out = pd.read_csv(report.manifest_path)
    assert list(zip(out["clip_start_s"], out["clip_end_s"], strict=True)) == [(float(s), float(e)) for s, e in bounds]
    assert list(out["path"]) == [f"sub/long__c{k:04d}.flac" for k in range(len(bounds))]
    assert list(out["id"]) == [f"sub/long__c{k:04d}" for k in range(len(bounds))]
    assert set(out["parent_id"]) == {"sub/long"}
    stored = sf.read(tmp_path / "corpus" / "sub" / "long.wav", dtype="int16")[0]
    for path, (s, e) in zip(out["path"], bounds, strict=True):
        clip = sf.read(tmp_path / "out" / path, dtype="int16")[0]
        assert clip.size == 2 * SR  # padded clips keep the full length
        assert np.array_equal(clip[: (e - s) * SR], stored[s * SR: e * SR])
        assert not clip[(e - s) * SR:].any()


def test_short_file_dropped_when_remainder_drop(tmp_path):
    df = one_file(tmp_path, speechlike(1.0), name="short.wav")
    report = prepare(df, tmp_path / "out", PrepareConfig(clip_s=2.0, remainder="drop"))
    assert report.table.empty
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv")
    assert list(skipped["path"]) == ["short.wav"] and "shorter than one" in skipped["reason"][0]


def test_bad_files_skipped_rest_finish(tmp_path):
    root = tmp_path / "corpus"
    write(root / "good1.wav", speechlike(1.0))
    (root / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" * 10)
    (root / "empty.wav").write_bytes(b"")
    write(root / "good2.flac", speechlike(1.0, seed=1))
    df = make_manifest(root, ["good1.wav", "corrupt.wav", "empty.wav", "good2.flac"])
    report = prepare(df, tmp_path / "out", PrepareConfig(normalize="peak"))
    assert list(report.table["id"]) == ["good1", "good2"]
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv")
    assert list(skipped["path"]) == ["corrupt.wav", "empty.wav"]
    assert skipped["reason"][1].startswith("empty:")
    assert (tmp_path / "out" / "good2.flac").exists()


def _three_files(tmp_path: Path) -> pd.DataFrame:
    root = tmp_path / "corpus"
    names = []
    for i, rate in enumerate((16000, 44100, 22050)):
        pad = np.zeros(rate // 4, dtype=np.float32)
        write(root / f"d{i}" / f"f{i}.wav", np.concatenate([pad, speechlike(4.3, rate, seed=i), pad]), rate)
        names.append(f"d{i}/f{i}.wav")
    return make_manifest(root, names)


def _tree_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.flac"))}


def test_workers_and_low_memory_give_identical_bytes(tmp_path):
    df = _three_files(tmp_path)
    base = dict(normalize="rms", trim_silence=True, noise="pink", snr_db=15.0, clip_s=2.0, overlap_s=0.5)
    prepare(df, tmp_path / "w1", PrepareConfig(**base), workers=1)
    prepare(df, tmp_path / "w2", PrepareConfig(**base), workers=2)
    prepare(df, tmp_path / "lm", PrepareConfig(**base, low_memory=True, block_s=0.37), workers=1)
    ref = _tree_bytes(tmp_path / "w1")
    assert len(ref) >= 6
    assert _tree_bytes(tmp_path / "w2") == ref
    assert _tree_bytes(tmp_path / "lm") == ref
    m1 = pd.read_csv(tmp_path / "w1" / "manifest.csv").drop(columns="root")
    for other in ("w2", "lm"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / other / "manifest.csv").drop(columns="root"), m1)


def test_in_place_refused_without_flag(tmp_path):
    df = one_file(tmp_path, speechlike(1.0))
    with pytest.raises(ConfigError, match="in_place"):
        prepare(df, tmp_path / "corpus", PrepareConfig(normalize="peak"))
    result = CliRunner().invoke(app, ["prepare", str(tmp_path / "corpus" / "manifest.csv"), str(tmp_path / "corpus"),
                                      "--normalize", "peak", "--no-progress"])
    assert result.exit_code == 2
    assert sf.read(tmp_path / "corpus" / "a.wav")[0].size == SR  # untouched
    with pytest.raises(ConfigError, match="in_place"):
        PrepareConfig(in_place=True, clip_s=2.0)


def test_in_place_with_flag_runs_once(tmp_path):
    df = one_file(tmp_path, speechlike(1.0, amplitude=0.2))
    runner = CliRunner()
    args = ["prepare", str(tmp_path / "corpus" / "manifest.csv"), str(tmp_path / "run"), "--in-place",
            "--normalize", "peak", "--noise", "white", "--snr-db", "30", "--no-progress"]
    assert runner.invoke(app, args).exit_code == 0
    first = (tmp_path / "corpus" / "a.wav").read_bytes()
    assert abs(20 * np.log10(np.abs(sf.read(tmp_path / "corpus" / "a.wav")[0]).max()) + 1) < 0.3
    out = pd.read_csv(tmp_path / "run" / "manifest.csv")
    assert out["path"][0] == "a.wav" and Path(out["root"][0]) == (tmp_path / "corpus").resolve()
    assert runner.invoke(app, args).exit_code == 0  # rerun: done, so noise is not added twice
    assert (tmp_path / "corpus" / "a.wav").read_bytes() == first


def test_rerun_skips_done_and_redoes_missing(tmp_path):
    df = _three_files(tmp_path)
    cfg = PrepareConfig(normalize="peak", noise="white")
    prepare(df, tmp_path / "out", cfg)
    ref = _tree_bytes(tmp_path / "out")
    (tmp_path / "out" / "d1" / "f1.flac").unlink()
    again = prepare(df, tmp_path / "out", cfg)
    assert again.n_resumed == 2
    assert _tree_bytes(tmp_path / "out") == ref
    changed = prepare(df, tmp_path / "out", PrepareConfig(normalize="peak", noise="white", seed=1))
    assert changed.n_resumed == 0  # other settings: earlier records are not trusted


KILL_SCRIPT = """
import sys
from audios.manifest import read_manifest
from audios.prepare import PrepareConfig, prepare
prepare(read_manifest(sys.argv[1]), sys.argv[2],
        PrepareConfig(normalize="rms", noise="pink", snr_db=20.0, clip_s=2.0, overlap_s=0.5, seed=7), workers=1)
"""


@pytest.mark.slow
def test_sigkill_midway_then_rerun_matches_uninterrupted(tmp_path):
    root = tmp_path / "corpus"
    rng = np.random.default_rng(0)
    names = []
    for i in range(40):
        x = (0.2 * rng.standard_normal(44100 * 4)).astype(np.float32)
        write(root / f"g{i % 4}" / f"r{i:02d}.wav", x, 44100)
        names.append(f"g{i % 4}/r{i:02d}.wav")
    make_manifest(root, names)
    manifest = root / "manifest.csv"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent / "src")}

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(manifest), str(killed)], env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = list((killed / ".done").glob("*.json")) if (killed / ".done").exists() else []
        if len(done) >= 4 or proc.poll() is not None:
            break
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    n_done = len(list((killed / ".done").glob("*.json")))
    assert 4 <= n_done < 40, f"kill came at {n_done}/40 done; stderr: {proc.stderr.read().decode()[-500:]}"
    assert not (killed / "manifest.csv").exists()

    # A half-written file under a final name (as a non-atomic writer would leave) must not count as done.
    records = {json.loads(p.read_text())["id"] for p in (killed / ".done").glob("*.json")}
    pending = next(n for n in names if Path(n).with_suffix("").as_posix() not in records)
    fake = killed / Path(pending).with_name(Path(pending).stem + "__c0000.flac")
    fake.parent.mkdir(parents=True, exist_ok=True)
    fake.write_bytes(b"fLaC\x00half")
    (fake.parent / f".{fake.name}.abc.part").write_bytes(b"partial")

    # Rerun and the uninterrupted reference run in this process: the same call the script makes.
    cfg = PrepareConfig(normalize="rms", noise="pink", snr_db=20.0, clip_s=2.0, overlap_s=0.5, seed=7)
    resumed = prepare(read_manifest(manifest), killed, cfg)
    assert resumed.n_resumed == n_done
    clean = tmp_path / "clean"
    prepare(read_manifest(manifest), clean, cfg)

    assert not list(killed.rglob("*.part"))
    a = pd.read_csv(killed / "manifest.csv").drop(columns="root")
    b = pd.read_csv(clean / "manifest.csv").drop(columns="root")
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 40 * 3  # 4 s in 2 s clips, 0.5 s overlap: starts 0, 1.5 (full) and 3 (padded)
    assert _tree_bytes(killed) == _tree_bytes(clean)
    assert set(_tree_bytes(clean)) == set(a["path"])
