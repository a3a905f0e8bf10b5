"""The detector in the browser: where its files are, and ``audios export-web`` (a static site that needs no server).

The in-browser detector (``web/src/detector.js``, bundled by ``npm --prefix web run build``) runs the bundled
ONNX graph with ONNX Runtime Web, decoding, resampling and windowing the audio as ``audios.detect`` does, so the
recording never leaves the browser. Three kinds of file make it work:

- the runtime, built from ``web/`` into ``serve/static/ondevice/``: ``audios-ondevice.js`` (the detector and
  ONNX Runtime Web, one ES module) and ``ort-wasm-simd-threaded.wasm`` (ONNX Runtime's WebAssembly build);
- the model, from a portable detector folder (the bundled one by default): ``model.onnx`` and ``detector.json``;
- the page (``serve/static/``: ``index.html``, ``app.js``, ``style.css``, ``favicon.svg``) and ``ondevice.json``,
  which tells the page where the other files are and whether a detection server is behind it.

``audios serve`` serves ``ondevice.json`` and the model from routes of its own; ``export_web`` writes all of it
into one folder for any static host.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audios.errors import AudiosError, ConfigError

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "serve" / "static"
RUNTIME_DIR = STATIC_DIR / "ondevice"
SCRIPT_FILE = "audios-ondevice.js"
WASM_FILE = "ort-wasm-simd-threaded.wasm"
RUNTIME_FILES = (SCRIPT_FILE, WASM_FILE)
MODEL_FILES = ("model.onnx", "detector.json")
PAGE_FILES = ("app.js", "style.css", "favicon.svg")
BUILD_HINT = "run `npm --prefix web ci && npm --prefix web run build` (or `make web`) in the source checkout"
# detector.json fields the browser needs (web/src/detector.js checks them again when it loads).
REQUIRED_FIELDS = {"sample_rate": int, "window_s": (int, float), "hop_s": (int, float), "threshold": (int, float)}


class WebExportError(AudiosError):
    """The in-browser detector cannot be served or exported: runtime not built, model files missing."""


def bundled_model_dir() -> Path:
    """The folder of the bundled default detector (``model.onnx`` + ``detector.json``)."""
    from audios.detect import BUNDLED_DIR

    return BUNDLED_DIR


def missing_runtime(runtime_dir: Path | None = None) -> list[str]:
    """Names of the built runtime files absent from ``runtime_dir`` (default: the package's); empty when built."""
    folder = runtime_dir or RUNTIME_DIR
    return [name for name in RUNTIME_FILES if not (folder / name).is_file()]


def read_detector_json(model_dir: Path) -> dict[str, Any]:
    """``model_dir/detector.json`` after checking that model.onnx is there too and the fields the browser needs."""
    missing = [name for name in MODEL_FILES if not (model_dir / name).is_file()]
    if missing:
        raise WebExportError(f"{model_dir}: no {' or '.join(missing)} (a portable detector folder holds "
                             f"{' and '.join(MODEL_FILES)})")
    path = model_dir / "detector.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    for key, kind in REQUIRED_FIELDS.items():
        value = config.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) or (key != "threshold" and value <= 0):
            raise ConfigError(f"{path}: field {key!r} must be a positive number"
                              f"{'' if key != 'threshold' else ' or any finite number'}, got {value!r}")
    return config


def ondevice_status(model_dir: Path | None = None, runtime_dir: Path | None = None,
                    ) -> tuple[dict[str, Any] | None, str]:
    """(detector.json, "") when the browser can run the detector in ``model_dir``, else (None, the reason)."""
    missing = missing_runtime(runtime_dir)
    if missing:
        return None, f"the in-browser runtime is not built ({', '.join(missing)} missing): {BUILD_HINT}"
    try:
        return read_detector_json(model_dir or bundled_model_dir()), ""
    except AudiosError as exc:
        return None, f"no in-browser model: {exc}"


def ondevice_manifest(config: dict[str, Any] | None, reason: str, *, server: bool, model_base: str,
                      runtime_base: str) -> dict[str, Any]:
    """The ``ondevice.json`` the page reads: availability, the model's name and the URLs (relative to the page)."""
    return {
        "available": config is not None,
        "reason": reason or None,
        "server": server,
        "name": (config or {}).get("name"),
        "model_url": f"{model_base}model.onnx",
        "config_url": f"{model_base}detector.json",
        "script_url": f"{runtime_base}{SCRIPT_FILE}",
        "wasm_url": f"{runtime_base}{WASM_FILE}",
    }


@dataclass(frozen=True)
class WebExport:
    """What ``export_web`` wrote: the folder and each file's size in bytes (paths relative to the folder)."""

    out_dir: Path
    files: dict[str, int]

    @property
    def total_bytes(self) -> int:
        return sum(self.files.values())

    def summary(self) -> str:
        lines = [f"{size / 1e6:8.2f} MB  {name}" for name, size in sorted(self.files.items())]
        return "\n".join([*lines, f"{self.total_bytes / 1e6:8.2f} MB  in {len(self.files)} files under {self.out_dir}"])


def export_web(out_dir: str | Path, model_dir: str | Path | None = None, overwrite: bool = False,
               runtime_dir: Path | None = None) -> WebExport:
    """Write a static site (page, runtime, model) that runs the detector in the browser to ``out_dir``.

    Layout: ``index.html``, ``ondevice.json``, ``model.onnx``, ``detector.json``, ``static/`` (page script and
    style) and ``static/ondevice/`` (runtime). ``out_dir`` must be absent or empty, or with ``overwrite`` an earlier
    export (it holds ``ondevice.json``), which is replaced whole. The site
    is assembled in a temporary sibling folder and moved into place, so a failed export leaves nothing half-written.
    """
    out = Path(out_dir)
    runtime_dir = runtime_dir or RUNTIME_DIR
    missing = missing_runtime(runtime_dir)
    if missing:
        raise WebExportError(f"{runtime_dir}: the in-browser runtime is not built ({', '.join(missing)} missing); "
                             f"{BUILD_HINT}")
    model = Path(model_dir) if model_dir is not None else bundled_model_dir()
    config = read_detector_json(model)
    if out.exists() and not out.is_dir():
        raise WebExportError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise WebExportError(f"{out}: the folder is not empty (pass --force to replace an earlier export)")
        if not (out / "ondevice.json").is_file():
            # --force replaces earlier exports only, never an unrelated folder given by mistake.
            raise WebExportError(f"{out}: not empty and not an earlier export (no ondevice.json); "
                                 "choose another folder")

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent))
    try:
        (staging / "static" / "ondevice").mkdir(parents=True)
        shutil.copyfile(STATIC_DIR / "index.html", staging / "index.html")
        for name in PAGE_FILES:
            shutil.copyfile(STATIC_DIR / name, staging / "static" / name)
        for name in RUNTIME_FILES:
            shutil.copyfile(runtime_dir / name, staging / "static" / "ondevice" / name)
        for name in MODEL_FILES:
            shutil.copyfile(model / name, staging / name)
        manifest = ondevice_manifest(config, "", server=False, model_base="", runtime_base="static/ondevice/")
        (staging / "ondevice.json").write_text(json.dumps(manifest, indent=2) + "\n")
        for path in staging.rglob("*"):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)  # mkdtemp makes 0700: a web server must read it
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    files = {p.relative_to(out).as_posix(): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
    log.info("exported the in-browser detector %s to %s (%d files)", config.get("name"), out, len(files))
    return WebExport(out, files)
