"""Light install vs full install: size on disk, import time and time to the first verdict, side by side.

    python bench/bench_light.py [--light-venv /tmp/audios-light] [--full-venv .venv] [--repeats 5]

The light venv is built from this checkout with `pip install .` (no extras) unless it already exists. Both venvs
score the same file with the bundled detector in fresh processes:

* size: bytes of the venv's site-packages (what `pip install` put on disk);
* import: `import audios.cli` plus loading the bundled detector (`load_detector()`), in a fresh interpreter;
* first verdict: wall time of a whole `audios detect FILE` process, from exec to the printed verdict.

The full venv runs the same ONNX graph by default; its PyTorch path (`--backend torch`) is timed too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEV = Path(os.environ.get("AUDIOS_DEV_CORPUS", REPO.parent / "shared" / "corpus" / "dev"))


def site_packages_bytes(venv: Path) -> int:
    site = next((venv / "lib").glob("python3*/site-packages"))
    return sum(p.stat().st_size for p in site.rglob("*") if p.is_file() and not p.is_symlink())


def build_light(venv: Path) -> None:
    if (venv / "bin" / "audios").exists():
        return
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(REPO)], check=True)


def timed(cmd: list[str], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--light-venv", type=Path, default=Path("/tmp/audios-light"))
    ap.add_argument("--full-venv", type=Path, default=REPO / ".venv")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    build_light(args.light_venv)
    clip = DEV / "bonafide" / sorted(os.listdir(DEV / "bonafide"))[0]
    clip = next(clip.iterdir()) if clip.is_dir() else clip
    imp = "import time; t=time.perf_counter(); import audios.cli; from audios.detect import load_detector; " \
          "load_detector(backend='{b}'); print(time.perf_counter()-t)"
    rows = []
    for name, venv, backend in (("light (ONNX Runtime)", args.light_venv, "onnx"),
                                ("full (ONNX Runtime)", args.full_venv, "onnx"),
                                ("full (PyTorch)", args.full_venv, "torch")):
        py, cli = str(venv / "bin" / "python"), str(venv / "bin" / "audios")
        imports = []
        for _ in range(args.repeats):
            r = subprocess.run([py, "-c", imp.format(b=backend)], check=True, capture_output=True, text=True)
            imports.append(float(r.stdout.strip().splitlines()[-1]))
        first = timed([cli, "detect", "--no-progress", "--backend", backend, str(clip)], args.repeats)
        rows.append((name, site_packages_bytes(venv) / 2**20, statistics.median(imports), statistics.median(first)))
    light = rows[0]
    print(f"file: {clip.relative_to(DEV)} ({args.repeats} fresh processes each, medians)\n")
    print("| install | site-packages | import + load detector | first verdict (whole `audios detect`) |")
    print("|---|---:|---:|---:|")
    for name, mb, imp_s, first_s in rows:
        print(f"| {name} | {mb:.0f} MiB ({mb / light[1]:.1f}x) | {imp_s:.2f} s ({imp_s / light[2]:.1f}x) | "
              f"{first_s:.2f} s ({first_s / light[3]:.1f}x) |")


if __name__ == "__main__":
    main()
