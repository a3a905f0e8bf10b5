"""Corpus layouts: a miniature tree per layout, read by name and by ``auto``, with known labels and metadata."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from conftest import speechlike, tone, write

from audios.errors import LayoutError
from audios.manifest import build_manifest
from audios.manifest.layouts import DETECTION_ORDER, LAYOUTS, detect_layout, get_layout

SR = 16000


def clip(seed: int, duration_s: float = 0.3) -> np.ndarray:
    return speechlike(duration_s, SR, f0_hz=100 + 10 * seed, seed=seed)


def write_mp4(path: Path, x: np.ndarray, sample_rate: int = SR) -> Path:
    """An mp4 with one AAC audio stream, written with PyAV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=sample_rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(x[None, :].astype(np.float32), format="fltp", layout="mono")
        frame.sample_rate = sample_rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def by_path(result) -> dict[str, dict]:
    return {row["path"]: row for row in result.table.to_dict("records")}


# --- miniature trees -------------------------------------------------------------------------------------------


def make_asvspoof2019(root: Path) -> Path:
    la = root / "LA"
    protocols = la / "ASVspoof2019_LA_cm_protocols"
    protocols.mkdir(parents=True)
    (protocols / "ASVspoof2019.LA.cm.train.trn.txt").write_text(
        "LA_0079 LA_T_1138215 - - bonafide\nLA_0080 LA_T_1271820 - A01 spoof\n")
    (protocols / "ASVspoof2019.LA.cm.dev.trl.txt").write_text(
        "LA_0069 LA_D_1047731 - - bonafide\n\nLA_0070 LA_D_1105538 - A05 spoof\n")
    # Eval audio was not downloaded: its rows are missing.
    (protocols / "ASVspoof2019.LA.cm.eval.trl.txt").write_text("LA_0039 LA_E_2834763 - A11 spoof\n")
    # The ASV protocols share the folder tree but not the format; they must not be read.
    asv = la / "ASVspoof2019_LA_asv_protocols"
    asv.mkdir()
    (asv / "ASVspoof2019.LA.asv.dev.female.trn.txt").write_text("LA_0069 LA_D_1047731,LA_D_1105538\n")
    write(la / "ASVspoof2019_LA_train/flac/LA_T_1138215.flac", clip(1))
    write(la / "ASVspoof2019_LA_train/flac/LA_T_1271820.flac", clip(2))
    write(la / "ASVspoof2019_LA_dev/flac/LA_D_1047731.flac", clip(3))
    write(la / "ASVspoof2019_LA_dev/flac/LA_D_1105538.flac", clip(4))
    pa = root / "PA"
    (pa / "ASVspoof2019_PA_cm_protocols").mkdir(parents=True)
    (pa / "ASVspoof2019_PA_cm_protocols/ASVspoof2019.PA.cm.train.trn.txt").write_text(
        "PA_0079 PA_T_0000001 aaa - bonafide\nPA_0079 PA_T_0000002 bcc AB spoof\n")
    write(pa / "ASVspoof2019_PA_train/flac/PA_T_0000001.flac", clip(5))
    write(pa / "ASVspoof2019_PA_train/flac/PA_T_0000002.flac", clip(6))
    return root


def make_asvspoof2021(root: Path) -> Path:
    (root / "keys/LA/CM").mkdir(parents=True)
    (root / "keys/LA/CM/trial_metadata.txt").write_text(
        "LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval\n"
        "LA_0031 LA_E_5932896 none no_tx - bonafide notrim progress\n")
    (root / "DF-keys-full/keys/DF/CM").mkdir(parents=True)
    (root / "DF-keys-full/keys/DF/CM/trial_metadata.txt").write_text(
        "LA_0043 DF_E_2000026 mp3m4a asvspoof A09 spoof notrim eval traditional_vocoder - - - -\n"
        "VCC2TF1 DF_E_2000027 nocodec vcc2020 - bonafide notrim eval bonafide - - - -\n")
    write(root / "ASVspoof2021_LA_eval/flac/LA_E_9332881.flac", clip(7))
    write(root / "ASVspoof2021_LA_eval/flac/LA_E_5932896.flac", clip(8))
    write(root / "ASVspoof2021_DF_eval_part00/ASVspoof2021_DF_eval/flac/DF_E_2000026.flac", clip(9))
    write(root / "ASVspoof2021_DF_eval_part00/ASVspoof2021_DF_eval/flac/DF_E_2000027.flac", clip(10))
    # A file of the same id outside the corpus folders must not be taken for it.
    write(root / "scratch/LA_E_9332881.wav", tone(300, 0.3))
    return root


def make_asvspoof5(root: Path) -> Path:
    protocols = root / "ASVspoof5_protocols"
    protocols.mkdir(parents=True)
    (protocols / "ASVspoof5.train.tsv").write_text(
        "T_4850 T_0000000000 F - - - AC3 A05 spoof -\n"
        "T_3734 T_0000000011 F - - - - bonafide bonafide -\n"
        "T_3734 T_0000000022 M - - - AC1 A01 spoof -\n")
    (protocols / "ASVspoof5.dev.track_1.tsv").write_text(
        "D_4461 D_0000000169 F - - - AC1 A14 spoof -\n"
        "D_0461 D_0000000190 M - - - - bonafide bonafide -\n"
        "D_4579 D_0000000211 M - - - AC1 A09 spoof -\n"
        "D_1045 D_0000000232 F - - - AC2 A10 spoof -\n")
    (protocols / "ASVspoof5.dev.track_2.trial.tsv").write_text("D_0461 D_0000000190 target\n")
    # Partial download: only the second dev archive, holding two of the four dev files.
    write(root / "flac_D_ab/D_0000000190.flac", clip(11))
    write(root / "flac_D_ab/D_0000000211.flac", clip(12))
    return root


def make_for(root: Path) -> Path:
    base = root / "for-2sec" / "for-2seconds"
    for i, (split, cls) in enumerate([("training", "fake"), ("training", "real"), ("validation", "fake"),
                                      ("validation", "real"), ("testing", "fake"), ("testing", "real")]):
        write(base / split / cls / f"file{i}.mp3_16k.wav_norm.wav_mono.wav_silence.wav_2sec.wav", clip(20 + i))
    write(root / "for-norm/training/real/file9.wav", clip(30))
    return root


def make_itw(root: Path) -> Path:
    base = root / "release_in_the_wild"
    base.mkdir(parents=True)
    (base / "meta.csv").write_text(
        "file,speaker,label\n0.wav,Alec Guinness,spoof\n1.wav,Alec Guinness,bona-fide\n"
        "2.wav,Barack Obama,bona-fide\n3.wav,Barack Obama,spoof\n4.wav,Ayn Rand,unsure\n")
    for i in range(3):
        write(base / f"{i}.wav", clip(40 + i))
    write(base / "4.wav", clip(44))
    return root


META_HEADER = "source,target1,target2,method,category,type,race,gender,path,\n"


def make_fakeavceleb(root: Path, with_meta: bool = True) -> Path:
    base = root / "FakeAVCeleb_v1.2"
    files = [
        ("RealVideo-RealAudio", "00109.mp4", "-", "-", "real", "A"),
        ("RealVideo-FakeAudio", "00109_fake.mp4", "id00076", "-", "rtvc", "B"),
        ("FakeVideo-RealAudio", "00109_id00166_wavtolip.mp4", "id00166", "-", "wav2lip", "C"),
        ("FakeVideo-FakeAudio", "00109_10_id00476_wavtolip.mp4", "id00476", "10", "faceswap-wav2lip", "D"),
    ]
    lines = [META_HEADER]
    for i, (category, name, target1, target2, method, letter) in enumerate(files):
        write_mp4(base / category / "African/men/id00076" / name, clip(50 + i, 0.4))
        lines.append(f"id00076,{target1},{target2},{method},{letter},{category},African,men,{name},"
                     f"FakeAVCeleb/{category}/African/men/id00076\n")
    # Listed but not downloaded.
    lines.append("id00077,-,-,real,A,RealVideo-RealAudio,African,men,00001.mp4,"
                 "FakeAVCeleb/RealVideo-RealAudio/African/men/id00077\n")
    if with_meta:
        (base / "meta_data.csv").write_text("".join(lines))
    return root


def make_folders(root: Path) -> Path:
    write(root / "data/ai_full/gen_a/x.mp3", clip(60), format="MP3")
    write(root / "data/ai_full/elevenlabs/v2/z.wav", clip(61))
    write(root / "data/human_full/y.mp3", clip(62), format="MP3")
    write(root / "data/human_full/podcasts/w.wav", clip(63))
    return root


def make_csv(root: Path) -> Path:
    write(root / "a.wav", clip(70))
    write(root / "b.flac", clip(71))
    write(root / "c.wav", clip(72))
    (root / "manifest.csv").write_text(
        "path,label,generator,speaker\na.wav,human,,s1\nb.flac,fake,tts-x,s2\nc.wav,maybe,,s3\nd.wav,real,,s4\n")
    return root


TREES = {"asvspoof2019": make_asvspoof2019, "asvspoof2021": make_asvspoof2021, "asvspoof5": make_asvspoof5,
         "for": make_for, "itw": make_itw, "fakeavceleb": make_fakeavceleb, "folders": make_folders,
         "csv": make_csv}


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("layouts")
    return {name: make(base / name) for name, make in TREES.items()}


def build_both(root: Path, layout: str):
    """The manifest by name and by ``auto``; both must agree."""
    named = build_manifest(root, layout=layout)
    auto = build_manifest(root, "auto")
    assert auto.layout == layout
    assert auto.reason and named.reason == "chosen by --layout"
    assert auto.table.drop(columns="root").equals(named.table.drop(columns="root"))
    return named


# --- registry and detection ------------------------------------------------------------------------------------


def test_every_layout_is_tried_by_auto_and_folders_comes_last():
    # bonafide-only is a statement only the user can make: never tried by auto.
    assert set(DETECTION_ORDER) == set(LAYOUTS) - {"bonafide-only"}
    assert DETECTION_ORDER[0] == "csv" and DETECTION_ORDER[-1] == "folders"
    assert DETECTION_ORDER.index("asvspoof5") < DETECTION_ORDER.index("for") < DETECTION_ORDER.index("fakeavceleb")


def test_unknown_layout_name_lists_known_ones():
    with pytest.raises(LayoutError, match="known: auto, asvspoof2019"):
        get_layout("asvspoof2015")


@pytest.mark.parametrize("tree", sorted(TREES))
def test_each_layout_claims_only_its_own_tree(trees, tree):
    root = trees[tree]
    for name, layout in LAYOUTS.items():
        if name == "folders" and tree == "for":
            continue  # FoR really is fake/real folders; auto tries `for` first
        claimed = layout.detect(root)
        assert bool(claimed) == (name == tree), f"{name}.detect on the {tree} tree said {claimed!r}"
    chosen, reason = detect_layout(root)
    assert chosen.name == tree and reason == LAYOUTS[tree].detect(root)


def test_auto_names_what_it_tried_when_nothing_matches(tmp_path):
    write(tmp_path / "stuff/a.wav", clip(0))
    with pytest.raises(LayoutError, match="no known corpus layout.*tried csv, asvspoof2019"):
        build_manifest(tmp_path, "auto")


# --- one test per layout ---------------------------------------------------------------------------------------


def test_asvspoof2019_la_and_pa(trees):
    result = build_both(trees["asvspoof2019"], "asvspoof2019")
    rows = by_path(result)
    assert set(rows) == {
        "LA/ASVspoof2019_LA_train/flac/LA_T_1138215.flac", "LA/ASVspoof2019_LA_train/flac/LA_T_1271820.flac",
        "LA/ASVspoof2019_LA_dev/flac/LA_D_1047731.flac", "LA/ASVspoof2019_LA_dev/flac/LA_D_1105538.flac",
        "PA/ASVspoof2019_PA_train/flac/PA_T_0000001.flac", "PA/ASVspoof2019_PA_train/flac/PA_T_0000002.flac"}
    t = result.table.set_index("id")
    assert t.loc["LA_T_1138215", ["label", "generator", "speaker", "subset", "track"]].tolist() == \
        ["bonafide", "human", "LA_0079", "train", "LA"]
    assert t.loc["LA_T_1271820", ["label", "generator", "speaker"]].tolist() == ["spoof", "A01", "LA_0080"]
    assert t.loc["LA_D_1105538", ["label", "generator", "subset"]].tolist() == ["spoof", "A05", "dev"]
    assert t.loc["PA_T_0000002", ["label", "generator", "environment", "track"]].tolist() == \
        ["spoof", "AB", "bcc", "PA"]
    assert t.loc["PA_T_0000001", "environment"] == "aaa"
    assert (t["sample_rate"] == SR).all() and np.allclose(t["duration_s"], 0.3)
    assert [m[0] for m in result.missing] == ["LA_E_2834763"]
    assert "ASVspoof2019.LA.cm.eval.trl.txt" in result.missing[0][1]
    assert result.notes == ["ASVspoof2019.LA.cm.eval.trl.txt: 1 of 1 row(s) have no audio (partial download?) "
                            "and were left out"]


def test_asvspoof2019_short_protocol_line_names_file_and_line(tmp_path):
    root = make_asvspoof2019(tmp_path / "c")
    protocol = root / "LA/ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.train.trn.txt"
    protocol.write_text(protocol.read_text() + "LA_0081 LA_T_9999999 A02\n")
    with pytest.raises(LayoutError, match=r"ASVspoof2019\.LA\.cm\.train\.trn\.txt:3: expected at least 5 fields"):
        build_manifest(root, "asvspoof2019")


def test_asvspoof2021_la_and_df_keys(trees):
    result = build_both(trees["asvspoof2021"], "asvspoof2021")
    t = result.table.set_index("id")
    assert sorted(t.index) == ["DF_E_2000026", "DF_E_2000027", "LA_E_5932896", "LA_E_9332881"]
    assert t.loc["LA_E_9332881", "path"] == "ASVspoof2021_LA_eval/flac/LA_E_9332881.flac"
    assert t.loc["LA_E_9332881", ["label", "generator", "speaker", "subset", "codec", "transmission", "track"]] \
        .tolist() == ["spoof", "A07", "LA_0009", "eval", "alaw", "ita_tx", "LA"]
    assert t.loc["LA_E_5932896", ["label", "generator", "subset"]].tolist() == ["bonafide", "human", "progress"]
    assert t.loc["DF_E_2000026", ["label", "generator", "codec", "data_source", "vocoder", "track"]].tolist() == \
        ["spoof", "A09", "mp3m4a", "asvspoof", "traditional_vocoder", "DF"]
    assert t.loc["DF_E_2000027", ["label", "speaker", "data_source"]].tolist() == ["bonafide", "VCC2TF1", "vcc2020"]
    assert t.loc["DF_E_2000027", "path"].startswith("ASVspoof2021_DF_eval_part00/ASVspoof2021_DF_eval/flac/")
    assert result.missing == [] and result.notes == []


def test_asvspoof5_partial_download(trees):
    result = build_both(trees["asvspoof5"], "asvspoof5")
    t = result.table.set_index("id")
    assert sorted(t.index) == ["D_0000000190", "D_0000000211"]
    assert t.loc["D_0000000190", ["path", "label", "generator", "speaker", "subset", "gender"]].tolist() == \
        ["flac_D_ab/D_0000000190.flac", "bonafide", "human", "D_0461", "dev", "M"]
    assert t.loc["D_0000000211", ["label", "generator", "attack_tag", "codec"]].tolist() == \
        ["spoof", "A09", "AC1", "-"]
    assert sorted(m[0] for m in result.missing) == [
        "D_0000000169", "D_0000000232", "T_0000000000", "T_0000000011", "T_0000000022"]
    assert sorted(result.notes) == [
        "ASVspoof5.dev.track_1.tsv: 2 of 4 row(s) have no audio (partial download?) and were left out",
        "ASVspoof5.train.tsv: 3 of 3 row(s) have no audio (partial download?) and were left out"]
    assert "5 protocol row(s) without audio" in result.summary()


def test_fake_or_real_versions_and_splits(trees):
    result = build_both(trees["for"], "for")
    rows = by_path(result)
    assert len(rows) == 7
    base = "for-2sec/for-2seconds"
    name = "file{}.mp3_16k.wav_norm.wav_mono.wav_silence.wav_2sec.wav"
    expected = {f"{base}/training/fake/{name.format(0)}": ("spoof", "train"),
                f"{base}/training/real/{name.format(1)}": ("bonafide", "train"),
                f"{base}/validation/fake/{name.format(2)}": ("spoof", "val"),
                f"{base}/validation/real/{name.format(3)}": ("bonafide", "val"),
                f"{base}/testing/fake/{name.format(4)}": ("spoof", "test"),
                f"{base}/testing/real/{name.format(5)}": ("bonafide", "test")}
    for path, (label, subset) in expected.items():
        assert (rows[path]["label"], rows[path]["subset"], rows[path]["version"]) == (label, subset, "for-2sec")
        assert rows[path]["generator"] == ("human" if label == "bonafide" else "unknown")
    assert rows["for-norm/training/real/file9.wav"]["version"] == "for-norm"


def test_fake_or_real_root_can_be_the_version_folder(trees):
    result = build_manifest(trees["for"] / "for-2sec" / "for-2seconds", "auto")
    assert result.layout == "for" and len(result.table) == 6
    assert set(result.table["version"]) == {"for-2sec"}


def test_in_the_wild(trees):
    result = build_both(trees["itw"], "itw")
    rows = by_path(result)
    assert {p: (r["label"], r["speaker"], r["generator"]) for p, r in rows.items()} == {
        "release_in_the_wild/0.wav": ("spoof", "Alec Guinness", "unknown"),
        "release_in_the_wild/1.wav": ("bonafide", "Alec Guinness", "human"),
        "release_in_the_wild/2.wav": ("bonafide", "Barack Obama", "human"),
    }
    assert result.missing == [("release_in_the_wild/3.wav", "listed in meta.csv but not found on disk")]
    assert any("unknown label" in n and "4.wav" in n for n in result.notes)


def test_fakeavceleb_audio_of_mp4_videos(trees):
    result = build_both(trees["fakeavceleb"], "fakeavceleb")
    rows = {Path(p).parts[1]: r for p, r in by_path(result).items()}
    assert {c: (r["label"], r["generator"]) for c, r in rows.items()} == {
        "RealVideo-RealAudio": ("bonafide", "human"),
        "RealVideo-FakeAudio": ("spoof", "rtvc"),
        "FakeVideo-RealAudio": ("bonafide", "human"),
        "FakeVideo-FakeAudio": ("spoof", "faceswap-wav2lip"),
    }
    for r in rows.values():
        assert r["format"] == "mp4" and r["sample_rate"] == SR and r["speaker"] == "id00076"
        assert (r["race"], r["gender"]) == ("African", "men")
        assert 0.4 <= r["duration_s"] < 0.6  # AAC adds encoder priming/padding
    assert rows["FakeVideo-RealAudio"]["method"] == "wav2lip"
    assert rows["FakeVideo-FakeAudio"]["target"] == "id00476"
    assert result.missing == [("FakeAVCeleb_v1.2/RealVideo-RealAudio/African/men/id00077/00001.mp4",
                               "listed in meta_data.csv but not found on disk")]
    assert result.skipped == []


def test_fakeavceleb_without_metadata_credits_the_category(tmp_path):
    root = make_fakeavceleb(tmp_path / "favc", with_meta=False)
    listing = get_layout("fakeavceleb").list_entries(root / "FakeAVCeleb_v1.2")
    gens = {Path(e.path).parts[0]: (e.label, e.generator) for e in listing.entries}
    assert gens == {"RealVideo-RealAudio": ("bonafide", "human"),
                    "RealVideo-FakeAudio": ("spoof", "RealVideo-FakeAudio"),
                    "FakeVideo-RealAudio": ("bonafide", "human"),
                    "FakeVideo-FakeAudio": ("spoof", "FakeVideo-FakeAudio")}
    assert any("no meta_data.csv" in n for n in listing.notes)


def test_folders_mp3_and_nested_generators(trees):
    result = build_both(trees["folders"], "folders")
    rows = by_path(result)
    assert {p: (r["label"], r["generator"]) for p, r in rows.items()} == {
        "data/ai_full/gen_a/x.mp3": ("spoof", "gen_a"),
        "data/ai_full/elevenlabs/v2/z.wav": ("spoof", "elevenlabs/v2"),
        "data/human_full/y.mp3": ("bonafide", "human"),
        "data/human_full/podcasts/w.wav": ("bonafide", "human"),
    }
    assert rows["data/human_full/y.mp3"]["format"] == "mp3"
    assert rows["data/human_full/podcasts/w.wav"]["source"] == "podcasts"


def test_csv_table_with_unknown_label_and_missing_file(trees):
    result = build_both(trees["csv"], "csv")
    rows = by_path(result)
    assert {p: (r["label"], r["generator"], r["speaker"]) for p, r in rows.items()} == {
        "a.wav": ("bonafide", "human", "s1"), "b.flac": ("spoof", "tts-x", "s2")}
    assert any("1 row(s) with an unknown label" in n and "c.wav" in n for n in result.notes)
    assert [m[0] for m in result.missing] == ["d.wav"]


def test_corrupt_and_empty_files_are_skipped_with_a_reason(tmp_path):
    root = make_folders(tmp_path / "tree")
    (root / "data/ai_full/gen_a/corrupt.wav").write_bytes(np.random.default_rng(0).bytes(4096))
    (root / "data/human_full/empty.wav").write_bytes(b"")
    result = build_manifest(root, "auto", workers=1)
    assert result.layout == "folders"
    assert len(result.table) == 4
    skipped = dict(result.skipped)
    assert set(skipped) == {"data/ai_full/gen_a/corrupt.wav", "data/human_full/empty.wav"}
    assert all(reason.strip() for reason in skipped.values())
    assert skipped["data/ai_full/gen_a/corrupt.wav"].startswith(("unreadable", "unsupported-format"))
    assert "skipped 2 unreadable file(s)" in result.summary()


def test_corrupt_file_inside_a_protocol_corpus(tmp_path):
    root = make_asvspoof5(tmp_path / "asv5")
    (root / "flac_D_ab/D_0000000211.flac").write_bytes(b"fLaC" + np.random.default_rng(1).bytes(500))
    result = build_manifest(root, "auto")
    assert result.layout == "asvspoof5"
    assert list(result.table["id"]) == ["D_0000000190"]
    assert [s[0] for s in result.skipped] == ["flac_D_ab/D_0000000211.flac"]


def test_csv_layout_with_the_table_itself_as_root(tmp_path):
    from audios.manifest import build_manifest
    from tests.conftest import speechlike, write

    write(tmp_path / "a.wav", speechlike(0.5))
    write(tmp_path / "b.wav", speechlike(0.5, seed=1))
    (tmp_path / "labels.csv").write_text("path,label\na.wav,real\nb.wav,fake\n")
    result = build_manifest(tmp_path / "labels.csv", layout="csv")
    assert not result.skipped
    assert list(result.table["label"]) == ["bonafide", "spoof"]
    assert set(result.table["root"]) == {str(tmp_path.resolve())}


def test_bonafide_only_layout_is_explicit_and_never_auto(tmp_path):
    from audios.errors import LayoutError
    from audios.manifest import build_manifest
    from tests.conftest import speechlike, write

    write(tmp_path / "calls" / "a.wav", speechlike(0.6))
    write(tmp_path / "b.flac", speechlike(0.6, seed=2))
    result = build_manifest(tmp_path, layout="bonafide-only")
    assert set(result.table["label"]) == {"bonafide"} and len(result.table) == 2
    assert set(result.table["generator"]) == {"human"}
    with pytest.raises(LayoutError):
        build_manifest(tmp_path, layout="auto")  # no class folders: auto must not guess
