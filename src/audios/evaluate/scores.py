"""Score files: ours and the ASVspoof 2019 LA / 2021 / 5 formats, read and written, with labels joined from keys.

Formats (``format=`` names):

* ``ours``: CSV with header ``id,score,label`` (label ``bonafide|spoof``), optional ``generator``, ``speaker``,
  ``source``, ``duration_s`` and any other columns, kept as they are.
* ``asvspoof2019``: LA CM scores, whitespace separated, no header: ``FILE_ID SCORE`` as submitted, or
  ``FILE_ID ATTACK KEY SCORE`` as the 2019 organisers' CM score files (``ATTACK`` is ``-`` for bona fide).
  Key: the CM protocol, ``SPEAKER FILE_ID - ATTACK KEY``.
* ``asvspoof2021``: ``FILE_ID SCORE`` per line. Key: ``trial_metadata.txt``,
  ``SPEAKER FILE_ID CODEC TRANSMISSION ATTACK KEY TRIM SUBSET [...]``.
* ``asvspoof5``: tab-separated with header ``filename	cm-score``. Key: the evaluation package's
  ``filename	cm-label`` TSV (optionally with ``attack_anon``/``spk``/``codec`` columns), or the protocol
  ``SPEAKER FILE_ID GENDER CODEC CODEC_Q CODEC_SEED ATTACK_TAG ATTACK_LABEL KEY -`` without header.

Every reader returns a DataFrame with at least ``id`` (str), ``score`` (float) and, once labels are known,
``label`` (``bonafide|spoof``); ``generator`` and ``speaker`` come along whenever the file or the key has them.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audios.errors import AudiosError
from audios.manifest.base import default_id
from audios.runs import write_text_atomic

log = logging.getLogger(__name__)

FORMATS = ("ours", "asvspoof2019", "asvspoof2021", "asvspoof5")
LABELS = ("bonafide", "spoof")
#: Generator name given to bona fide clips, as in the manifest (``generator=human``).
BONAFIDE_GENERATOR = "human"
#: Attack fields that mean "no attack" in ASVspoof keys.
_NO_ATTACK = {"-", "bonafide", ""}


class ScoreFileError(AudiosError, ValueError):
    """A score or key file cannot be read or joined; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


# ---------------------------------------------------------------------------------------------------------------
# Reading


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScoreFileError(path, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScoreFileError(path, f"cannot read ({exc})") from None


def _data_lines(text: str) -> list[tuple[int, str]]:
    """(1-based line number, stripped line) for non-blank lines that are not ``#`` comments."""
    return [(i, ln.strip()) for i, ln in enumerate(text.splitlines(), 1)
            if ln.strip() and not ln.lstrip().startswith("#")]


def _parse_score(path: Path, lineno: int, token: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise ScoreFileError(path, f"line {lineno}: score {token!r} is not a number") from None
    if not math.isfinite(value):
        raise ScoreFileError(path, f"line {lineno}: score {token!r} is not finite")
    return value


def _check_label(path: Path, where: str, value: Any) -> str:
    text = str(value).strip().lower()
    if text not in LABELS:
        raise ScoreFileError(path, f"{where}: label {value!r} is not 'bonafide' or 'spoof'")
    return text


def detect_format(path: str | Path) -> str:
    """Guess a score file's format from its first data line."""
    path = Path(path)
    lines = _data_lines(_read_text(path))
    if not lines:
        raise ScoreFileError(path, "empty score file")
    first = lines[0][1]
    if "," in first and "score" in [c.strip().lower() for c in first.split(",")]:
        return "ours"
    if "\t" in first and "cm-score" in first.split("\t"):
        return "asvspoof5"
    n = len(first.split())
    if n == 4:
        return "asvspoof2019"
    if n == 2:
        return "asvspoof2021"
    raise ScoreFileError(path, f"line {lines[0][0]}: cannot tell the score-file format from {first!r}")


def _read_ours(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ScoreFileError(path, "file not found")
    try:
        df = pd.read_csv(path, dtype={"id": str, "label": str, "generator": str, "speaker": str},
                         keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ScoreFileError(path, f"not a readable CSV ({exc})") from None
    for column in ("id", "score"):
        if column not in df.columns:
            raise ScoreFileError(path, f"missing column {column!r} (have {', '.join(map(str, df.columns))})")
    scores = pd.to_numeric(df["score"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(scores)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ScoreFileError(path, f"row {i + 2} (id {df['id'].iloc[i]!r}): score {df['score'].iloc[i]!r} is not a "
                                   "finite number")
    df["score"] = scores
    if "label" in df.columns:
        df["label"] = [_check_label(path, f"row {i + 2}", v) for i, v in enumerate(df["label"])]
    return df


def _read_asvspoof2019(path: Path) -> pd.DataFrame:
    rows = []
    for lineno, line in _data_lines(_read_text(path)):
        tokens = line.split()
        if len(tokens) == 2:
            rows.append({"id": tokens[0], "score": _parse_score(path, lineno, tokens[1])})
        elif len(tokens) == 4:
            label = _check_label(path, f"line {lineno}", tokens[2])
            attack = tokens[1]
            generator = BONAFIDE_GENERATOR if label == "bonafide" or attack in _NO_ATTACK else attack
            rows.append({"id": tokens[0], "score": _parse_score(path, lineno, tokens[3]), "label": label,
                         "generator": generator})
        else:
            raise ScoreFileError(path, f"line {lineno}: expected 'FILE_ID SCORE' or 'FILE_ID ATTACK KEY SCORE', "
                                       f"got {len(tokens)} fields")
    return _frame(path, rows)


def _read_asvspoof2021(path: Path) -> pd.DataFrame:
    rows = []
    for lineno, line in _data_lines(_read_text(path)):
        tokens = line.split()
        if len(tokens) != 2:
            raise ScoreFileError(path, f"line {lineno}: expected 'FILE_ID SCORE', got {len(tokens)} fields")
        rows.append({"id": tokens[0], "score": _parse_score(path, lineno, tokens[1])})
    return _frame(path, rows)


def _read_asvspoof5(path: Path) -> pd.DataFrame:
    lines = _data_lines(_read_text(path))
    if not lines:
        raise ScoreFileError(path, "empty score file")
    header = lines[0][1].split("\t")
    if "filename" not in header or "cm-score" not in header:
        raise ScoreFileError(path, f"line {lines[0][0]}: expected a header with 'filename' and 'cm-score', got "
                                   f"{lines[0][1]!r}")
    i_id, i_score = header.index("filename"), header.index("cm-score")
    rows = []
    for lineno, line in lines[1:]:
        tokens = line.split("\t")
        if len(tokens) != len(header):
            raise ScoreFileError(path, f"line {lineno}: {len(tokens)} fields, header has {len(header)}")
        rows.append({"id": tokens[i_id], "score": _parse_score(path, lineno, tokens[i_score])})
    return _frame(path, rows)


def _frame(path: Path, rows: list[dict[str, Any]]) -> pd.DataFrame:
    if not rows:
        raise ScoreFileError(path, "no scores in file")
    return pd.DataFrame(rows)


_READERS = {"ours": _read_ours, "asvspoof2019": _read_asvspoof2019, "asvspoof2021": _read_asvspoof2021,
            "asvspoof5": _read_asvspoof5}


def read_key(path: str | Path) -> pd.DataFrame:
    """Labels (and attack/speaker where present) from a key, protocol or manifest; columns id, label, ...

    Accepted: our CSV (a manifest or score file with ``id`` and ``label``), the ASVspoof 5 key TSV with a
    ``filename`` header, or header-less ASVspoof protocol lines. In protocol lines the key is the first
    ``bonafide``/``spoof`` field; the file id is the second field (the first is the speaker) unless the key is
    the second field; the attack is the field just before the key.
    """
    path = Path(path)
    text = _read_text(path)
    lines = _data_lines(text)
    if not lines:
        raise ScoreFileError(path, "empty key file")
    first = lines[0][1]
    if path.suffix.lower() == ".parquet":
        df = pd.read_parquet(path)
        return _normalise_key(path, df)
    if "," in first and "label" in [c.strip().lower() for c in first.split(",")]:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        return _normalise_key(path, df)
    if "\t" in first and "filename" in first.split("\t"):
        df = pd.read_csv(io.StringIO(text), sep="\t", dtype=str, keep_default_na=False)
        df = df.rename(columns={"filename": "id", "cm-label": "label", "attack_anon": "generator",
                                "attack": "generator", "spk": "speaker"})
        return _normalise_key(path, df)
    rows = []
    for lineno, line in lines:
        tokens = line.split()
        key_col = next((i for i, t in enumerate(tokens) if t.lower() in LABELS), None)
        if key_col is None:
            raise ScoreFileError(path, f"line {lineno}: no 'bonafide' or 'spoof' field in {line!r}")
        if key_col == 0:
            raise ScoreFileError(path, f"line {lineno}: the key comes before any file id in {line!r}")
        row: dict[str, Any] = {"label": tokens[key_col].lower()}
        if key_col == 1:
            row["id"] = tokens[0]
        else:
            row["speaker"], row["id"] = tokens[0], tokens[1]
            if key_col >= 3:
                attack = tokens[key_col - 1]
                row["generator"] = BONAFIDE_GENERATOR if row["label"] == "bonafide" or attack in _NO_ATTACK else attack
        rows.append(row)
    return _normalise_key(path, pd.DataFrame(rows))


def _normalise_key(path: Path, df: pd.DataFrame) -> pd.DataFrame:
    if "id" not in df.columns and "path" in df.columns:
        # A manifest without ids: the manifest builder's id is the relative path without extension.
        df = df.assign(id=[default_id(p) for p in df["path"].astype(str)])
    for column in ("id", "label"):
        if column not in df.columns:
            raise ScoreFileError(path, f"key has no {column!r} column (have {', '.join(map(str, df.columns))})")
    df = df.copy()
    df["id"] = df["id"].astype(str)
    df["label"] = [_check_label(path, f"row {i + 1}", v) for i, v in enumerate(df["label"])]
    if "generator" in df.columns:
        df["generator"] = [BONAFIDE_GENERATOR if lab == "bonafide" else g
                           for g, lab in zip(df["generator"].astype(str), df["label"])]
    duplicated = df["id"].duplicated()
    if duplicated.any():
        raise ScoreFileError(path, f"id {df['id'][duplicated].iloc[0]!r} appears more than once")
    return df


def read_scores(path: str | Path, format: str = "auto", key: str | Path | None = None) -> pd.DataFrame:
    """Read a score file (``format`` one of :data:`FORMATS` or ``auto``) and join labels from ``key`` if given.

    Columns the score file already has win over the key's; every scored id must be in the key.
    """
    path = Path(path)
    if format == "auto":
        format = detect_format(path)
    if format not in _READERS:
        raise ScoreFileError(path, f"unknown score format {format!r} (known: auto, {', '.join(FORMATS)})")
    df = _READERS[format](path)
    df["id"] = df["id"].astype(str)
    duplicated = df["id"].duplicated()
    if duplicated.any():
        raise ScoreFileError(path, f"id {df['id'][duplicated].iloc[0]!r} is scored more than once")
    if key is not None:
        key_df = read_key(key)
        missing = ~df["id"].isin(key_df["id"])
        if missing.any():
            examples = ", ".join(df["id"][missing].head(3))
            raise ScoreFileError(key, f"{int(missing.sum())} scored ids are not in the key (e.g. {examples})")
        extra = [c for c in key_df.columns if c == "id" or c not in df.columns]
        df = df.merge(key_df[extra], on="id", how="left", validate="one_to_one")
    if "label" not in df.columns:
        raise ScoreFileError(path, "the score file has no labels; pass a key (protocol or manifest) to join them")
    log.info("read %d scores from %s (%s)", len(df), path, format)
    return df


# ---------------------------------------------------------------------------------------------------------------
# Writing


def _require(df: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ScoreFileError(what, f"missing column(s) {', '.join(missing)}")


def _score_text(x: float) -> str:
    return repr(float(x))  # shortest text that reads back to the same float


def write_scores(df: pd.DataFrame, path: str | Path, format: str = "ours") -> Path:
    """Write ``df`` (``id``, ``score`` and, for ``ours``/``asvspoof2019`` with keys, ``label``) in ``format``.

    ``asvspoof2019`` writes ``FILE_ID ATTACK KEY SCORE`` when labels are present, else ``FILE_ID SCORE``.
    """
    path = Path(path)
    _require(df, ("id", "score"), str(path))
    if format == "ours":
        _require(df, ("label",), str(path))
        out = df.copy()
        out["score"] = [_score_text(v) for v in out["score"]]
        buf = io.StringIO()
        out.to_csv(buf, index=False)
        return write_text_atomic(path, buf.getvalue())
    if format == "asvspoof2019":
        if "label" in df.columns:
            gens = df["generator"] if "generator" in df.columns else pd.Series(["-"] * len(df), index=df.index)
            lines = [f"{i} {'-' if lab == 'bonafide' else (g or '-')} {lab} {_score_text(s)}"
                     for i, g, lab, s in zip(df["id"], gens.astype(str), df["label"], df["score"])]
        else:
            lines = [f"{i} {_score_text(s)}" for i, s in zip(df["id"], df["score"])]
        return write_text_atomic(path, "\n".join(lines) + "\n")
    if format == "asvspoof2021":
        lines = [f"{i} {_score_text(s)}" for i, s in zip(df["id"], df["score"])]
        return write_text_atomic(path, "\n".join(lines) + "\n")
    if format == "asvspoof5":
        buf = io.StringIO()
        writer = csv.writer(buf, delimiter="\t", lineterminator="\n")
        writer.writerow(["filename", "cm-score"])
        writer.writerows((i, _score_text(s)) for i, s in zip(df["id"], df["score"]))
        return write_text_atomic(path, buf.getvalue())
    raise ScoreFileError(path, f"unknown score format {format!r} (known: {', '.join(FORMATS)})")


def write_key(df: pd.DataFrame, path: str | Path, format: str) -> Path:
    """Write the labels of ``df`` as an ASVspoof key/protocol (``asvspoof2019|2021|5``) or our CSV (``ours``).

    Missing speakers are written as ``-``; so are attacks of bona fide clips.
    """
    path = Path(path)
    _require(df, ("id", "label"), str(path))
    n = len(df)
    speakers = df["speaker"].astype(str) if "speaker" in df.columns else pd.Series(["-"] * n, index=df.index)
    gens = df["generator"].astype(str) if "generator" in df.columns else pd.Series(["-"] * n, index=df.index)
    attacks = ["-" if lab == "bonafide" else (g or "-") for g, lab in zip(gens, df["label"])]
    if format == "ours":
        columns = [c for c in ("id", "label", "generator", "speaker") if c in df.columns]
        buf = io.StringIO()
        df[columns].to_csv(buf, index=False)
        return write_text_atomic(path, buf.getvalue())
    if format == "asvspoof2019":
        lines = [f"{spk} {i} - {att} {lab}" for spk, i, att, lab in zip(speakers, df["id"], attacks, df["label"])]
    elif format == "asvspoof2021":
        lines = [f"{spk} {i} - - {att} {lab} notrim eval"
                 for spk, i, att, lab in zip(speakers, df["id"], attacks, df["label"])]
    elif format == "asvspoof5":
        lines = [f"{spk} {i} - - - - {att} {att} {lab} -"
                 for spk, i, att, lab in zip(speakers, df["id"], attacks, df["label"])]
    else:
        raise ScoreFileError(path, f"unknown key format {format!r} (known: {', '.join(FORMATS)})")
    return write_text_atomic(path, "\n".join(lines) + "\n")
