"""Run folders: every command that writes results records its resolved config, versions and git commit."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from audios import __version__

TRACKED_PACKAGES = (
    "numpy", "scipy", "soundfile", "soxr", "av", "pandas", "pyarrow", "typer", "librosa",
    "scikit-learn", "torch", "transformers", "optuna", "ray", "onnxruntime", "matplotlib",
)


def package_versions() -> dict[str, str]:
    """Installed versions of the packages results depend on (absent ones are left out)."""
    out = {"python": sys.version.split()[0], "audios": __version__}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit(cwd: Path | None = None) -> str | None:
    """The current commit of the audios source tree (with ``-dirty`` when modified), or None."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def write_text_atomic(path: Path, text: str) -> Path:
    """Write text through a temporary file and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; results should be readable like any other
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_run_info(run_dir: str | Path, command: str, config: dict[str, Any], seed: int | None = None) -> Path:
    """Write ``config.yaml`` and ``run.json`` (command, versions, commit, platform, time) into ``run_dir``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    info = {
        "command": command,
        "argv": sys.argv,
        "seed": seed,
        "audios_version": __version__,
        "git_commit": git_commit(),
        "versions": package_versions(),
        "platform": platform.platform(),
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_text_atomic(run_dir / "run.json", json.dumps(info, indent=2))
    return run_dir
