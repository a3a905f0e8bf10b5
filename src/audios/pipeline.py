"""Pipelines: one YAML file declares the stages; ``run_pipeline`` executes them into one run folder.

Each stage calls the library function of its ``audios`` command and reads its predecessors' outputs
from the run folder. A stage is skipped, like ``make``, when its key is unchanged and its recorded
outputs are intact. The key is the SHA-256 of the stage's resolved options, the content hashes of the
files it reads (manifests, feature tables, model files: never mtimes), the pipeline seed and the audios
version. A stage that is killed midway leaves no record, so the next run redoes it, and the library
functions resume their own finished work (prepare's ``.done`` records, the feature cache, training
checkpoints).

Run folder layout::

    RUN/pipeline.resolved.yaml  the pipeline with every ${...} and default filled in
    RUN/config.yaml, run.json   the same config, versions, git commit, platform (``write_run_info``)
    RUN/inputs.json             corpus fingerprint and the content hash of every table each stage read
    RUN/summary.json            per stage: ran or skipped, seconds; headline metrics
    RUN/.stages/<name>.json     the stage record: key, inputs and outputs with their hashes
    RUN/<name>/...              each stage's outputs

Pipeline YAML::

    name: dev-demo
    seed: 0
    corpus: {name: dev corpus, path: ../../../shared/corpus/dev, published: "https://...", expect: [manifest.csv]}
    stages:
      - {stage: manifest, root: "${corpus.path}", layout: auto}
      - {stage: prepare, normalize: rms, trim_silence: true}
      - {stage: split, group_by: [speaker]}
      - {stage: features, extractor: spectral}
      - {stage: train-classic, model: logreg}
      - {stage: model-card}

Relative paths in the file are relative to the file's folder. ``${corpus.path}``, ``${seed}``,
``${run}`` and ``${pipeline_dir}`` are substituted in every string option.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import random
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from audios import __version__
from audios.config import apply_overrides, build_config, config_to_dict
from audios.errors import AudiosError, ConfigError
from audios.runs import write_run_info, write_text_atomic

log = logging.getLogger(__name__)

STAGES = ("manifest", "stats", "prepare", "synth", "split", "features", "train", "train-classic", "evaluate",
          "model-card", "detect")
STAGE_DIR = ".stages"
_VAR = re.compile(r"\$\{([a-z_.]+)\}")
# Options that name files or folders, per stage: resolved against the pipeline file's folder when relative.
# (``model`` is a path only for detect: elsewhere it names a registered model or a hub id.)
_PATH_OPTIONS = {"manifest": {"root"}, "prepare": {"noise_dir"}, "features": {"cache"}, "train": {"config"},
                 "train-classic": {"params"}, "detect": {"model"}}


class CorpusNotFoundError(ConfigError):
    """The corpus a pipeline needs is not where the pipeline says; the message says where it is published."""


class PipelineError(AudiosError):
    """A stage cannot run with what the earlier stages produced."""


# ------------------------------------------------------------------------------------------------ specs


@dataclass(frozen=True)
class CorpusSpec:
    """Where a pipeline's corpus must be, and where it is published (named when it is missing).

    ``expect``: paths under ``path`` that must exist too (a protocol file, an audio folder), so that a
    half-unpacked download fails before the first stage rather than in the middle of it.
    """

    path: str
    name: str = "corpus"
    published: str = ""
    expect: tuple[str, ...] = ()

    def check(self) -> Path:
        """The corpus folder, or CorpusNotFoundError naming the missing path and where to get the corpus."""
        root = Path(self.path)
        where = f"; where to get it: {self.published}" if self.published else ""
        hint = " (download it there, or point the pipeline at it with --corpus PATH)"
        if not root.exists():
            raise CorpusNotFoundError(f"{self.name}: {root} does not exist{where}{hint}")
        for rel in self.expect:
            if not (root / rel).exists():
                raise CorpusNotFoundError(f"{self.name}: {root / rel} is missing (is the download complete and "
                                          f"unpacked?){where}{hint}")
        return root


@dataclass(frozen=True)
class StageSpec:
    """One stage: its kind (``stage``), a unique ``name`` (default: the kind) and its options."""

    stage: str
    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ConfigError(f"stage {self.stage!r} is not one of {list(STAGES)}")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.name):
            raise ConfigError(f"stage name {self.name!r} must be letters, digits, '.', '_' or '-'")


@dataclass(frozen=True)
class Pipeline:
    """A parsed pipeline file with every variable substituted."""

    name: str
    seed: int
    stages: tuple[StageSpec, ...]
    corpus: CorpusSpec | None = None
    source: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not self.stages:
            raise ConfigError(f"pipeline {self.name!r} has no stages")
        names = [s.name for s in self.stages]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"pipeline {self.name!r}: stage name(s) {dup} repeat; give each a distinct `name:`")
        if self.seed < 0:
            raise ConfigError(f"seed={self.seed} must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "seed": self.seed, "source": self.source,
                "corpus": None if self.corpus is None else config_to_dict(self.corpus),
                "stages": [{"stage": s.stage, "name": s.name, **s.options} for s in self.stages]}

    def index(self, name: str) -> int:
        for i, s in enumerate(self.stages):
            if s.name == name or s.stage == name:
                return i
        raise ConfigError(f"no stage {name!r} in pipeline {self.name!r}; stages: {[s.name for s in self.stages]}")


def _substitute(value: Any, variables: dict[str, str], where: str) -> Any:
    if isinstance(value, str):
        def repl(m: re.Match) -> str:
            if m.group(1) not in variables:
                raise ConfigError(f"{where}: unknown variable ${{{m.group(1)}}}; known: {sorted(variables)}")
            return variables[m.group(1)]
        return _VAR.sub(repl, value)
    if isinstance(value, list):
        return [_substitute(v, variables, where) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, variables, f"{where}.{k}") for k, v in value.items()}
    return value


def _absolute(value: Any, base: Path) -> Any:
    """Resolve a relative path option against ``base``; spec strings like ``aasist=PATH`` keep their prefix."""
    if not isinstance(value, str) or not value:
        return value
    if "=" in value:
        kind, rest = value.split("=", 1)
        return f"{kind}={_absolute(rest, base)}"
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def parse_pipeline(data: dict[str, Any], base_dir: Path, run_dir: Path | None = None,
                   source: str | None = None) -> Pipeline:
    """A Pipeline from parsed YAML; relative paths start at ``base_dir``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source or 'pipeline'}: expected a mapping with name, seed, stages")
    known = {"name", "seed", "corpus", "stages", "description"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{source or 'pipeline'}: unknown key(s) {unknown}; known: {sorted(known)}")
    name = str(data.get("name") or (Path(source).stem if source else "pipeline"))
    try:
        seed = int(data.get("seed", 0))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source or 'pipeline'}: seed {data.get('seed')!r} is not an integer") from exc
    variables = {"seed": str(seed), "pipeline_dir": str(base_dir), "run": str(run_dir or "")}
    corpus = None
    if data.get("corpus") is not None:
        raw = dict(data["corpus"])
        if "path" not in raw:
            raise ConfigError(f"{source or 'pipeline'}: corpus needs a path")
        raw["path"] = _absolute(str(_substitute(raw["path"], variables, "corpus.path")), base_dir)
        corpus = build_config(CorpusSpec, raw)
        variables["corpus.path"] = corpus.path
    stages_raw = data.get("stages")
    if not isinstance(stages_raw, list):
        raise ConfigError(f"{source or 'pipeline'}: `stages` must be a list of {{stage: ..., options...}}")
    stages = []
    for i, raw in enumerate(stages_raw):
        if isinstance(raw, str):
            raw = {"stage": raw}
        if not isinstance(raw, dict) or "stage" not in raw:
            raise ConfigError(f"{source or 'pipeline'}: stages[{i}] needs a `stage:` key")
        opts = {k: v for k, v in raw.items() if k not in ("stage", "name")}
        opts = _substitute(opts, variables, f"stages[{i}]")
        for key in _PATH_OPTIONS.get(str(raw["stage"]), set()) & set(opts):
            opts[key] = _absolute(opts[key], base_dir) if isinstance(opts[key], str) else opts[key]
        if "paths" in opts:
            if not isinstance(opts["paths"], list):
                raise ConfigError(f"stages[{i}].paths must be a list")
            opts["paths"] = [_absolute(str(p), base_dir) for p in opts["paths"]]
        stages.append(StageSpec(str(raw["stage"]), str(raw.get("name") or raw["stage"]), opts))
    return Pipeline(name=name, seed=seed, stages=tuple(stages), corpus=corpus, source=source,
                    description=str(data.get("description", "")))


def load_pipeline(path: str | Path, overrides: list[str] | None = None, corpus_path: str | Path | None = None,
                  run_dir: str | Path | None = None) -> Pipeline:
    """Read a pipeline YAML; ``overrides`` are ``key=value`` (``seed=1``, ``corpus.path=...``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: pipeline file does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with name, seed, stages")
    data = apply_overrides(data, overrides or [])
    if corpus_path is not None:
        data.setdefault("corpus", {})
        data["corpus"]["path"] = str(Path(corpus_path).resolve())  # given on the command line: relative to cwd
    run = Path(run_dir).resolve() if run_dir else None
    return parse_pipeline(data, path.resolve().parent, run, source=str(path))


# ------------------------------------------------------------------------------------------------ hashing


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def corpus_fingerprint(root: str | Path) -> dict[str, Any]:
    """A cheap fingerprint of a corpus folder: relative path, size and mtime of every file.

    Hashing every recording's bytes would read the whole corpus (tens of GB for ASVspoof) on every run;
    the manifest stage measures each file's SHA-256 anyway, and later stages key on the manifest's content.
    """
    root = Path(root)
    if root.is_file():
        st = root.stat()
        return {"files": 1, "bytes": st.st_size, "sha256": file_sha256(root)}
    h = hashlib.sha256()
    n = size = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            try:
                st = p.stat()
            except OSError:
                continue  # dangling link or unreadable entry: the manifest stage reports it
            n += 1
            size += st.st_size
            h.update(f"{p.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return {"files": n, "bytes": size, "listing_sha256": h.hexdigest()}


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if dataclasses.is_dataclass(value):
        return config_to_dict(value)
    raise TypeError(f"cannot hash {type(value).__name__}")


def stage_key(stage: StageSpec, seed: int, inputs: dict[str, str]) -> str:
    """SHA-256 of what a stage's outputs depend on: kind, options, seed, input hashes and the audios version."""
    payload = {"stage": stage.stage, "options": stage.options, "seed": seed, "inputs": inputs,
               "audios": __version__}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=_json_default).encode()).hexdigest()


def seed_everything(seed: int) -> dict[str, bool]:
    """Seed Python's ``random``, NumPy's global generator and torch (when importable); say which."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    seeded = {"random": True, "numpy": True, "torch": False}
    try:
        import torch
    except ImportError:
        return seeded
    torch.manual_seed(seed)
    seeded["torch"] = True
    return seeded


# ------------------------------------------------------------------------------------------------ stages


@dataclass
class StageContext:
    """What a stage sees: its folder, the pipeline seed, the artefacts so far, and run-wide settings."""

    run_dir: Path
    out_dir: Path
    seed: int
    artifacts: dict[str, Path]
    corpus: CorpusSpec | None
    workers: int = 1
    progress: bool = False

    def need(self, key: str, stage: str) -> Path:
        if key not in self.artifacts:
            raise PipelineError(f"stage {stage!r} needs a {key} from an earlier stage (none produced it); "
                                f"available: {sorted(self.artifacts) or 'nothing'}")
        return self.artifacts[key]


@dataclass
class StageResult:
    """Artefacts a stage produced (name -> file) plus a one-line summary and any numbers worth logging."""

    outputs: dict[str, Path]
    summary: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    extra_files: list[Path] = field(default_factory=list)


def _take(options: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: options[k] for k in names if k in options}


def _rest(options: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k not in names}


def _skipped_table(rows: list[tuple[str, str]], path: Path) -> None:
    import pandas as pd

    from audios.manifest import write_table

    write_table(pd.DataFrame(rows, columns=["path", "reason"]), path)


def _stage_manifest(ctx: StageContext, opts: dict[str, Any]) -> StageResult:
    from audios.manifest import build_manifest, write_table
    from audios.manifest.metadata import MetadataConfig

    root = opts.get("root") or (ctx.corpus.path if ctx.corpus else None)
    if root is None:
        raise ConfigError("manifest: give `root:` or a pipeline `corpus:`")
    if ctx.corpus is not None and Path(root) == Path(ctx.corpus.path):
        ctx.corpus.check()
    elif not Path(root).exists():
        raise CorpusNotFoundError(f"manifest: root {root} does not exist")
    cfg = build_config(MetadataConfig, opts.get("metadata") or {})
    result = build_manifest(root, layout=opts.get("layout", "auto"), workers=int(opts.get("workers", ctx.workers)),
                            progress=ctx.progress, config=cfg, limit=opts.get("limit"))
    out = write_table(result.table, ctx.out_dir / "manifest.csv")
    _skipped_table(result.skipped, ctx.out_dir / "skipped.csv")
    _skipped_table(result.missing, ctx.out_dir / "missing.csv")
    return StageResult({"manifest": out}, result.summary().replace("\n", "; "), {"manifest_rows": float(len(result.table)),
                                                           "manifest_skipped": float(len(result.skipped))})


def _stage_stats(ctx: StageContext, opts: dict[str, Any]) -> StageResult:
    from audios.manifest import read_manifest
    from audios.stats import StatsConfig, compute_stats, write_stats

    cfg = build_config(StatsConfig, opts)
    df = read_manifest(ctx.need("manifest", "stats"))
    stats = compute_stats(df, cfg)
    paths = write_stats(df, stats, ctx.out_dir, cfg)
    warn = [s.variable for s in stats.shortcuts.warnings]
    return StageResult({"stats": ctx.out_dir / "stats.json"},
                       f"{stats.n_files} files, {stats.hours:.2f} h; shortcut warnings: {warn or 'none'}",
                       extra_files=[p for p in paths if p.suffix == ".md"])


def _stage_prepare(ctx: StageContext, opts: dict[str, Any]) -> StageResult:
    from audios.manifest import read_manifest
    from audios.prepare import PrepareConfig, prepare

    run_opts = ("workers", "limit")
    cfg = build_config(PrepareConfig, {"seed": ctx.seed, **_rest(opts, *run_opts)})
    report = prepare(read_manifest(ctx.need("manifest", "prepare")), ctx.out_dir, cfg,
                     workers=int(opts.get("workers", ctx.workers)), limit=opts.get("limit"), progress=ctx.progress)
    return StageResult({"manifest": report.manifest_path}, report.summary().replace("\n", "; "),
                       {"prepare_rows": float(len(report.table)), "prepare_skipped": float(len(report.skipped))})


def _stage_synth(ctx: StageContext, opts: dict[str, Any]) -> StageResult:
    from audios.manifest import read_manifest
    from audios.synth import METHODS, SynthConfig, get_method, synthesize_manifest

    run_opts = ("workers", "limit")
    data = {"seed": ctx.seed, **_rest(opts, *run_opts)}
    per_method = {m: data.pop(m) or {} for m in list(data) if m in METHODS}
    cfg = build_config(SynthConfig, data)
    stray = sorted(set(per_method) - set(cfg.methods))
    if stray:
        raise ConfigError(f"synth: settings for method(s) {stray} given, but methods are {list(cfg.methods)}")
    settings = {m: build_config(get_method(m).config_cls, per_method.get(m, {})) for m in cfg.methods}
    report = synthesize_manifest(read_manifest(ctx.need("manifest", "synth")), ctx.out_dir, cfg, settings,
                                 workers=int(opts.get("workers", ctx.workers)), limit=opts.get("limit"),
                                 progress=ctx.progress)
    return StageResult({"manifest": ctx.out_dir / "paired.csv"}, report.summary().replace("\n", "; "))


def _stage_split(ctx: StageContext, opts: dict[str, Any]) -> StageResult:
    from audios.manifest import read_manifest, write_table
    from audios.split import BALANCE_METHODS, SplitConfig, balance_train, split_manifest

    cfg = build_config(SplitConfig, {"seed": ctx.seed, **_rest(opts, "balance")})
    balance = opts.get("balance")
    if balance is not None and balance not in BALANCE_METHODS:
        raise ConfigError(f"split.balance: {balance!r} is not one of {list(BALANCE_METHODS)}")
    result = split_manifest(read_manifest(ctx.need("manifest", "split")), cfg)
    table = balance_train(result.table, balance, cfg.seed) if balance else result.table
    out = write_table(table, ctx.out_dir / "manifest.csv")
    write_text_atomic(ctx.out_dir / "leakcheck.json", json.dumps(
        {**result.leak.to_dict(), "warnings": result.warnings, "notes": result.notes, "mode": result.mode}, indent=2))
    if not result.leak.ok:
        raise PipelineError(f"split: leak check failed: {'; '.join(result.leak.errors)}")
    return StageResult({"manifest": out}, result.summary().replace("\n", "; "))


def _stage_features(ctx: StageContext, opts: dict[str, Any]) -> StageResult:
    from audios.features import EXTRACTORS, get_extractor
    from audios.features.extract import extract_features
    from audios.manifest import read_manifest

    name = opts.get("extractor", "spectral")
    if name not in EXTRACTORS:
        get_extractor(name)  # raises, listing the known names
    run_opts = ("extractor", "cache", "workers", "batch_size", "part_size")
    ext = get_extractor(name, build_config(EXTRACTORS[name].Config, _rest(opts, *run_opts)))
    out = ctx.out_dir / f"{name}.parquet"
    report = extract_features(
        read_manifest(ctx.need("manifest", "features")), ext, out,
        cache_dir=Path(opts.get("cache") or ctx.out_dir / "cache"), workers=int(opts.get("workers", ctx.workers)),
        batch_size=int(opts.get("batch_size", 16)), part_size=int(opts.get("part_size", 256)), progress=ctx.progress,
    )
    return StageResult({"features": out}, report.summary().replace("\n", "; "),
                       {"features_rows": float(report.n_rows), "features_skipped": float(report.n_skipped)})


def _headline(metrics_path: Path, prefix: str) -> dict[str, float]:
    data = json.loads(metrics_path.read_text())
    return {f"{prefix}{k}": float(v) for k, v in data.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)}


def _stage_train_classic(ctx: StageContext, opts: dict[str, Any]) -> StageResult:
    from audios.classic.train import TrainConfig, train_classic

    data = {"seed": ctx.seed, **opts, "features": str(ctx.need("features", "train-classic")),
            "out": str(ctx.out_dir)}
    if isinstance(data.get("params"), str):  # a best_params.json from `audios hpo`
        params = json.loads(Path(data["params"]).read_text())
        data["params"] = params.get("params", params)
    cfg = build_config(TrainConfig, data)
    result = train_classic(cfg)
    outputs = {"model": ctx.out_dir / "model.joblib", "scores": ctx.out_dir / "scores_test.csv",
               "val_scores": ctx.out_dir / "scores_val.csv", "metrics": ctx.out_dir / "metrics.json"}
    return StageResult(outputs, result.summary(), _headline(outputs["metrics"], "test_"),
                       extra_files=[ctx.out_dir / "report.md", ctx.out_dir / "train.json"])


def _stage_train(ctx: StageContext, opts: dict[str, Any]) -> StageResult:
    from audios.train import load_train_config, resume, train
    from audios.train.trainer import _checkpoints

    settings = dict(opts.get("settings") or {})
    unknown = sorted(set(opts) - {"config", "settings"})
    if unknown:
        raise ConfigError(f"train: unknown option(s) {unknown}; use `config:` (a TrainConfig YAML) and "
                          "`settings:` (a mapping of TrainConfig fields)")
    overrides = [f"{k}={json.dumps(v)}" for k, v in settings.items()]
    cfg = load_train_config(opts.get("config"), overrides + ([] if "seed" in settings else [f"seed={ctx.seed}"]))
    manifest = ctx.need("manifest", "train")
    if _checkpoints(ctx.out_dir):  # a killed run of this very stage (same key): continue it
        log.info("train: resuming %s from its last checkpoint", ctx.out_dir)
        result = resume(ctx.out_dir, progress=ctx.progress)
    else:
        result = train(manifest, cfg, ctx.out_dir, progress=ctx.progress)
    if not result.finished:
        raise PipelineError(f"train: {ctx.out_dir} did not finish")
    outputs = {"model": ctx.out_dir / "best.pt", "metrics": ctx.out_dir / "metrics.json",
               "val_scores": ctx.out_dir / "val_scores.csv"}
    if (ctx.out_dir / "scores.csv").exists():
        outputs["scores"] = ctx.out_dir / "scores.csv"
    return StageResult(outputs, result.summary(), _headline(outputs["metrics"], ""))


def _stage_evaluate(ctx: StageContext, opts: dict[str, Any]) -> StageResult:
    from audios.evaluate import DcfCosts, evaluate_scores, read_scores, write_report

    known = {"per", "bootstrap", "far", "c_miss", "c_fa", "p_spoof", "use_val"}
    unknown = sorted(set(opts) - known)
    if unknown:
        raise ConfigError(f"evaluate: unknown option(s) {unknown}; known: {sorted(known)}")
    # The current manifest, when there is one, is the key: it adds duration_s, speaker and source per id.
    key = ctx.artifacts.get("manifest")
    test = read_scores(ctx.need("scores", "evaluate"), key=key)
    val = None
    if opts.get("use_val", True) and "val_scores" in ctx.artifacts:
        val = read_scores(ctx.artifacts["val_scores"], key=key)
    costs = DcfCosts(**_take(opts, "c_miss", "c_fa", "p_spoof"))
    result = evaluate_scores(test, val=val, per=list(opts.get("per", ["generator"])),
                             n_bootstrap=int(opts.get("bootstrap", 1000)), rng=np.random.default_rng(ctx.seed),
                             costs=costs, target_far=opts.get("far"))
    paths = write_report(result, ctx.out_dir)
    m = result.metrics
    return StageResult({"evaluation": paths["metrics"]},
                       f"EER {100 * m.eer:.2f} %, minDCF {m.min_dcf:.4f}, ROC-AUC {m.roc_auc:.4f}",
                       _headline(paths["metrics"], "eval_"), extra_files=[ctx.out_dir / "report.md"])


def _stage_model_card(ctx: StageContext, opts: dict[str, Any]) -> StageResult:
    from audios.modelcard import write_model_card

    if opts:
        raise ConfigError(f"model-card takes no options, got {sorted(opts)}")
    model_dir = ctx.need("model", "model-card").parent
    card = write_model_card(model_dir)
    return StageResult({"card": card}, f"wrote {card}")


def _stage_detect(ctx: StageContext, opts: dict[str, Any]) -> StageResult:
    import pandas as pd

    from audios.detect import DetectConfig, detect_path, expand_paths, load_detector
    from audios.errors import AudioError
    from audios.manifest import audio_paths, read_manifest, write_table

    spec = opts.get("model") or str(ctx.need("model", "detect").parent)
    cfg = build_config(DetectConfig, _rest(opts, "model", "paths", "limit", "split"))
    if opts.get("paths"):
        files = expand_paths([str(p) for p in opts["paths"]])
    else:
        df = read_manifest(ctx.need("manifest", "detect"))
        split = opts.get("split", "test")
        if "split" in df.columns and split:
            df = df[df["split"] == split]
        files = audio_paths(df)
    files = files[: int(opts["limit"])] if opts.get("limit") else files
    if not files:
        raise PipelineError("detect: no files to score (give `paths:` or a manifest with a test split)")
    detector = load_detector(spec)
    rows = []
    for path in files:
        try:
            r = detect_path(detector, path, cfg)
            rows.append({"path": str(path), "decision": r["decision"], "p_fake": r["p_fake"], "score": r["score"],
                         "duration_s": r["duration_s"], "error": ""})
        except AudioError as exc:
            rows.append({"path": str(path), "decision": "", "p_fake": np.nan, "score": np.nan, "duration_s": np.nan,
                         "error": f"{exc.kind}: {exc.reason}"})
    out = write_table(pd.DataFrame(rows), ctx.out_dir / "detections.csv")
    n_err = sum(1 for r in rows if r["error"])
    n_fake = sum(1 for r in rows if r["decision"] == "fake")
    return StageResult({"detections": out}, f"{len(rows)} file(s): {n_fake} judged fake, {n_err} unreadable",
                       {"detect_files": float(len(rows)), "detect_unreadable": float(n_err)})


STAGE_FUNCTIONS: dict[str, Callable[[StageContext, dict[str, Any]], StageResult]] = {
    "manifest": _stage_manifest, "stats": _stage_stats, "prepare": _stage_prepare, "synth": _stage_synth,
    "split": _stage_split, "features": _stage_features, "train": _stage_train,
    "train-classic": _stage_train_classic, "evaluate": _stage_evaluate, "model-card": _stage_model_card,
    "detect": _stage_detect,
}
# Which artefacts each stage reads (all optional ones included; absent ones are simply not hashed).
STAGE_INPUTS: dict[str, tuple[str, ...]] = {
    "manifest": (), "stats": ("manifest",), "prepare": ("manifest",), "synth": ("manifest",),
    "split": ("manifest",), "features": ("manifest",), "train": ("manifest",), "train-classic": ("features",),
    "evaluate": ("scores", "val_scores", "manifest"), "model-card": ("model", "metrics"), "detect": ("model", "manifest"),
}


def check_stage(spec: StageSpec, seed: int) -> None:
    """Build the stage's config from its options without running it: typos fail before hours of work."""
    o = dict(spec.options)
    if spec.stage == "manifest":
        from audios.manifest.layouts import get_layout
        from audios.manifest.metadata import MetadataConfig

        if o.get("layout", "auto") != "auto":
            get_layout(o["layout"])
        build_config(MetadataConfig, o.get("metadata") or {})
        unknown = sorted(set(o) - {"root", "layout", "limit", "workers", "metadata"})
    elif spec.stage == "stats":
        from audios.stats import StatsConfig

        build_config(StatsConfig, o)
        unknown = []
    elif spec.stage == "prepare":
        from audios.prepare import PrepareConfig

        build_config(PrepareConfig, {"seed": seed, **_rest(o, "workers", "limit")})
        unknown = []
    elif spec.stage == "split":
        from audios.split import SplitConfig

        build_config(SplitConfig, {"seed": seed, **_rest(o, "balance")})
        unknown = []
    elif spec.stage == "features":
        from audios.features import EXTRACTORS, get_extractor

        name = o.get("extractor", "spectral")
        if name not in EXTRACTORS:
            get_extractor(name)
        build_config(EXTRACTORS[name].Config, _rest(o, "extractor", "cache", "workers", "batch_size", "part_size"))
        unknown = []
    elif spec.stage == "train-classic":
        from audios.classic.train import TrainConfig

        build_config(TrainConfig, {"seed": seed, **_rest(o, "params"), "features": "-", "out": "-"})
        unknown = []
    elif spec.stage == "train":
        from audios.train import load_train_config

        settings = dict(o.get("settings") or {})
        load_train_config(o.get("config"), [f"{k}={json.dumps(v)}" for k, v in settings.items()])
        unknown = sorted(set(o) - {"config", "settings"})
    elif spec.stage == "evaluate":
        unknown = sorted(set(o) - {"per", "bootstrap", "far", "c_miss", "c_fa", "p_spoof", "use_val"})
    elif spec.stage == "detect":
        from audios.detect import DetectConfig

        build_config(DetectConfig, _rest(o, "model", "paths", "limit", "split"))
        unknown = []
    elif spec.stage == "model-card":
        unknown = sorted(o)
    else:  # synth: its method settings are checked when it runs
        unknown = []
    if unknown:
        raise ConfigError(f"stage {spec.name!r} ({spec.stage}): unknown option(s) {unknown}")


def check_pipeline(pipeline: Pipeline) -> None:
    """Check every stage's options and that each stage's inputs come from an earlier stage."""
    produced: set[str] = set()
    outputs = {"manifest": {"manifest"}, "prepare": {"manifest"}, "synth": {"manifest"}, "split": {"manifest"},
               "features": {"features"}, "train-classic": {"model", "scores", "val_scores", "metrics"},
               "train": {"model", "scores", "val_scores", "metrics"}, "evaluate": {"evaluation"},
               "stats": set(), "model-card": set(), "detect": set()}
    required = {"stats": "manifest", "prepare": "manifest", "synth": "manifest", "split": "manifest",
                "features": "manifest", "train": "manifest", "train-classic": "features", "evaluate": "scores",
                "model-card": "model"}
    for spec in pipeline.stages:
        check_stage(spec, pipeline.seed)
        need = required.get(spec.stage)
        if need and need not in produced:
            raise ConfigError(f"stage {spec.name!r} ({spec.stage}) needs a {need}, but no earlier stage makes one")
        if spec.stage == "detect" and "model" not in spec.options and "model" not in produced:
            raise ConfigError(f"stage {spec.name!r} (detect) needs `model:` or an earlier train stage")
        produced |= outputs[spec.stage]


# ------------------------------------------------------------------------------------------------ runner


@dataclass
class StageOutcome:
    name: str
    stage: str
    status: str  # "ran" or "skipped"
    seconds: float
    key: str
    summary: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class PipelineResult:
    """What ``run_pipeline`` did, stage by stage, and where."""

    run_dir: Path
    outcomes: list[StageOutcome]
    metrics: dict[str, float]

    @property
    def ran(self) -> list[str]:
        return [o.name for o in self.outcomes if o.status == "ran"]

    @property
    def skipped(self) -> list[str]:
        return [o.name for o in self.outcomes if o.status == "skipped"]

    def summary(self) -> str:
        lines = [f"{o.name:<14} {o.status:<8} {o.seconds:7.1f} s  {o.summary}" for o in self.outcomes]
        lines.append(f"run folder: {self.run_dir} ({len(self.ran)} ran, {len(self.skipped)} skipped)")
        return "\n".join(lines)


def _record_path(run_dir: Path, name: str) -> Path:
    return run_dir / STAGE_DIR / f"{name}.json"


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # absent, or (never, with atomic writes) unreadable: the stage is redone


def _intact(record: dict[str, Any], run_dir: Path) -> bool:
    """Every recorded output still exists with the recorded content hash."""
    for entry in record.get("outputs", {}).values():
        p = run_dir / entry["path"]
        if not p.is_file() or file_sha256(p) != entry["sha256"]:
            return False
    return True


def _rel(path: Path, run_dir: Path) -> str:
    try:
        return path.resolve().relative_to(run_dir.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


def _clear(out_dir: Path, run_dir: Path) -> None:
    if out_dir.exists() and out_dir.resolve() != run_dir.resolve():
        shutil.rmtree(out_dir)


def run_pipeline(
    pipeline: Pipeline,
    run_dir: str | Path,
    *,
    from_stage: str | None = None,
    force: bool = False,
    until: str | None = None,
    workers: int = 1,
    progress: bool = False,
    on_stage: Callable[[StageOutcome], None] | None = None,
) -> PipelineResult:
    """Run ``pipeline``'s stages in order into ``run_dir``, skipping those whose key and outputs are unchanged.

    ``from_stage`` reruns that stage and every later one; ``force`` reruns all; ``until`` stops after that stage.
    """
    run_dir = Path(run_dir).resolve()
    check_pipeline(pipeline)
    run_dir.mkdir(parents=True, exist_ok=True)
    if pipeline.corpus is not None and any(s.stage == "manifest" for s in pipeline.stages):
        pipeline.corpus.check()  # fail before any work, naming the missing path
    start = pipeline.index(from_stage) if from_stage else (0 if force else None)
    stop = pipeline.index(until) if until else len(pipeline.stages) - 1
    resolved = pipeline.to_dict()
    write_text_atomic(run_dir / "pipeline.resolved.yaml", yaml.safe_dump(resolved, sort_keys=False))
    write_run_info(run_dir, "run", resolved, seed=pipeline.seed)
    seeded = seed_everything(pipeline.seed)

    artifacts: dict[str, Path] = {}
    outcomes: list[StageOutcome] = []
    inputs_log: dict[str, Any] = {}
    if pipeline.corpus is not None and Path(pipeline.corpus.path).exists():
        inputs_log["corpus"] = {"path": pipeline.corpus.path, **corpus_fingerprint(pipeline.corpus.path)}
    for i, spec in enumerate(pipeline.stages[: stop + 1]):
        out_dir = run_dir / spec.name
        input_hashes = {k: file_sha256(artifacts[k]) for k in STAGE_INPUTS[spec.stage] if k in artifacts}
        if spec.stage == "manifest" and pipeline.corpus is not None:
            input_hashes["corpus"] = inputs_log.get("corpus", {}).get("listing_sha256", "")
        key = stage_key(spec, pipeline.seed, input_hashes)
        inputs_log[spec.name] = {k: {"path": _rel(artifacts[k], run_dir), "sha256": v}
                                 for k, v in input_hashes.items() if k in artifacts}
        record_path = _record_path(run_dir, spec.name)
        started_path = record_path.with_suffix(".started.json")
        record = _read_record(record_path)
        rerun = start is not None and i >= start
        if not rerun and record is not None and record.get("key") == key and _intact(record, run_dir):
            outcome = StageOutcome(spec.name, spec.stage, "skipped", 0.0, key, record.get("summary", ""),
                                   record.get("metrics", {}))
            for k, entry in record["outputs"].items():
                artifacts[k] = run_dir / entry["path"]
            log.info("%s: unchanged, skipped", spec.name)
        else:
            started = _read_record(started_path)
            # Keep a folder only when it holds an interrupted attempt at this very key (resumable work);
            # anything else (a finished run under another key, a forced rerun) is stale.
            if record is not None or rerun or started is None or started.get("key") != key:
                _clear(out_dir, run_dir)
            record_path.unlink(missing_ok=True)
            out_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(started_path, json.dumps({"key": key}))
            seed_everything(pipeline.seed)  # each stage starts from the same global state, skipped or not
            t0 = time.perf_counter()
            ctx = StageContext(run_dir, out_dir, pipeline.seed, dict(artifacts), pipeline.corpus, workers, progress)
            log.info("%s: running", spec.name)
            result = STAGE_FUNCTIONS[spec.stage](ctx, dict(spec.options))
            seconds = time.perf_counter() - t0
            outputs = {k: {"path": _rel(p, run_dir), "sha256": file_sha256(p)} for k, p in result.outputs.items()}
            record = {"stage": spec.stage, "name": spec.name, "key": key, "options": spec.options,
                      "inputs": inputs_log[spec.name], "outputs": outputs, "summary": result.summary,
                      "metrics": result.metrics, "seconds": round(seconds, 3),
                      "extra_files": [_rel(p, run_dir) for p in result.extra_files if p.exists()]}
            write_text_atomic(record_path, json.dumps(record, indent=2, default=_json_default))
            started_path.unlink(missing_ok=True)
            artifacts.update({k: run_dir / v["path"] for k, v in outputs.items()})
            outcome = StageOutcome(spec.name, spec.stage, "ran", seconds, key, result.summary, result.metrics)
        outcomes.append(outcome)
        if on_stage is not None:
            on_stage(outcome)

    metrics: dict[str, float] = {}
    for o in outcomes:
        metrics.update(o.metrics)
    write_text_atomic(run_dir / "inputs.json", json.dumps(inputs_log, indent=2))
    write_text_atomic(run_dir / "summary.json", json.dumps({
        "pipeline": pipeline.name, "seed": pipeline.seed, "seeded": seeded,
        "stages": [{"name": o.name, "stage": o.stage, "status": o.status, "seconds": round(o.seconds, 3),
                    "key": o.key, "summary": o.summary} for o in outcomes],
        "metrics": metrics}, indent=2))
    return PipelineResult(run_dir, outcomes, metrics)


# ------------------------------------------------------------------------------------------------ MLflow


def _flatten(data: Any, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}{k}."))
    elif isinstance(data, list) and data and all(isinstance(v, dict) for v in data):
        for i, v in enumerate(data):
            out.update(_flatten(v, f"{prefix}{i}."))
    else:
        out[prefix.rstrip(".")] = json.dumps(data) if not isinstance(data, str) else data
    return out


def default_tracking_uri(run_dir: str | Path) -> str:
    """SQLite store beside the run folder (``<parent>/mlflow.db``), shared by every run there."""
    return f"sqlite:///{Path(run_dir).resolve().parent / 'mlflow.db'}"


def log_to_mlflow(result: PipelineResult, pipeline: Pipeline, tracking_uri: str,
                  experiment: str | None = None) -> str:
    """Log params (the resolved pipeline, flattened), metrics and the run folder's reports; returns the run id."""
    try:
        import mlflow
    except ImportError as exc:
        raise ConfigError("--mlflow needs MLflow: pip install mlflow-skinny (or mlflow)") from exc
    run_dir = result.run_dir
    mlflow.set_tracking_uri(tracking_uri)
    name = experiment or pipeline.name
    client = mlflow.tracking.MlflowClient()
    exp = client.get_experiment_by_name(name)
    if exp is None:
        location = None
        if tracking_uri.startswith("sqlite:///"):
            location = (Path(tracking_uri[len("sqlite:///"):]).parent / "mlartifacts").resolve().as_uri()
        exp_id = client.create_experiment(name, artifact_location=location)
    else:
        exp_id = exp.experiment_id
    params = _flatten(pipeline.to_dict())
    artefacts = [run_dir / n for n in ("pipeline.resolved.yaml", "run.json", "inputs.json", "summary.json")]
    for rec in sorted((run_dir / STAGE_DIR).glob("*.json")):
        data = _read_record(rec) or {}
        for entry in data.get("outputs", {}).values():
            p = run_dir / entry["path"]
            if p.suffix in (".json", ".md", ".csv") and p.stat().st_size < 5_000_000:
                artefacts.append(p)
        artefacts += [run_dir / p for p in data.get("extra_files", [])]
    with mlflow.start_run(experiment_id=exp_id, run_name=run_dir.name) as run:
        # MLflow caps a param value at 6000 characters (older servers 500); long lists are cut, not dropped.
        mlflow.log_params({k[:250]: v[:500] for k, v in params.items()})
        mlflow.log_metrics({k: float(v) for k, v in result.metrics.items()})
        mlflow.set_tags({"audios.version": __version__, "audios.run_dir": str(run_dir)})
        for p in dict.fromkeys(artefacts):
            if p.is_file():
                mlflow.log_artifact(str(p), artifact_path=_rel(p.parent, run_dir) if p.parent != run_dir else None)
        return run.info.run_id


__all__ = [
    "CorpusNotFoundError", "CorpusSpec", "check_pipeline", "check_stage", "Pipeline", "PipelineError", "PipelineResult", "STAGES", "StageSpec",
    "corpus_fingerprint", "default_tracking_uri", "file_sha256", "load_pipeline", "log_to_mlflow", "parse_pipeline",
    "run_pipeline", "seed_everything", "stage_key",
]
