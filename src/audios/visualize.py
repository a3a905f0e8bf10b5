"""2-D views of a feature table (PCA, t-SNE, UMAP) with a silhouette score per colouring.

A user should see at a glance whether classes separate, and whether generators or speakers do too
(which warns that a detector may be learning who or what rather than how).
"""

from __future__ import annotations

import html
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from audios.errors import ConfigError, ManifestError
from audios.runs import write_text_atomic

log = logging.getLogger(__name__)

METHODS = ("pca", "tsne", "umap")
COLOR_COLUMNS = ("label", "generator", "speaker", "split")
# Categorical palette (Okabe-Ito, colour-blind safe), then tab20-like extras for many generators.
_PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000",
            "#8c564b", "#7f7f7f", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896",
            "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d")


@dataclass(frozen=True)
class ViewConfig:
    method: str = "umap"
    color_by: tuple[str, ...] = ("label", "generator")
    seed: int = 0
    perplexity: float = 30.0
    n_neighbors: int = 15
    max_points: int = 20000
    # Colourings with more groups than this show the largest ones and lump the rest as "other".
    max_groups: int = 19

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method={self.method!r} must be one of {METHODS}")
        bad = [c for c in self.color_by if c not in COLOR_COLUMNS]
        if bad:
            raise ConfigError(f"color_by {bad} not among {COLOR_COLUMNS}")
        if self.perplexity <= 0 or self.n_neighbors < 2:
            raise ConfigError("perplexity must be > 0 and n_neighbors >= 2")


@dataclass
class View:
    """Projected points, the table's key columns, and the silhouette score of each colouring."""

    coords: np.ndarray
    table: pd.DataFrame
    method: str
    silhouettes: dict[str, float] = field(default_factory=dict)


def feature_matrix(table: pd.DataFrame, description: dict) -> np.ndarray:
    """(rows, dims) float matrix from a feature table; frame features are pooled to mean and std per recording."""
    extractor = description.get("extractor", {})
    if extractor.get("kind") == "frames":
        rows = []
        for p in table["features_path"]:
            m = np.load(p)
            rows.append(np.concatenate([m.mean(axis=0), m.std(axis=0)]))
        return np.asarray(rows, dtype=np.float64)
    columns = extractor.get("columns") or [c for c in table.columns if c.startswith(("emb_", "mfcc_"))]
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ManifestError(f"feature table lacks columns {missing[:5]}")
    return table[list(columns)].to_numpy(dtype=np.float64)


def silhouette(x: np.ndarray, groups: pd.Series) -> float:
    """Silhouette score of ``groups`` in the standardised feature space; NaN when undefined (one group)."""
    from sklearn.metrics import silhouette_score

    codes = pd.factorize(groups)[0]
    n = len(set(codes))
    if n < 2 or n >= len(codes):
        return float("nan")
    return float(silhouette_score(x, codes, sample_size=min(len(codes), 5000), random_state=0))


def project(x: np.ndarray, config: ViewConfig) -> np.ndarray:
    """Standardise, then project to 2-D with the configured method (seeded)."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    z = StandardScaler().fit_transform(x)
    z = np.nan_to_num(z)
    if config.method == "pca" or len(z) < 5:
        return PCA(n_components=2, random_state=config.seed).fit_transform(z)
    # Reduce very wide embeddings first: t-SNE and UMAP are faster and less noisy on ~50 PCA dims.
    if z.shape[1] > 50:
        z = PCA(n_components=50, random_state=config.seed).fit_transform(z)
    if config.method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = min(config.perplexity, (len(z) - 1) / 3)
        return TSNE(n_components=2, perplexity=perplexity, random_state=config.seed, init="pca").fit_transform(z)
    try:
        import umap
    except ImportError as exc:
        raise ConfigError("method=umap needs umap-learn (pip install 'audios[features]'), or use --method tsne|pca") from exc
    reducer = umap.UMAP(n_neighbors=min(config.n_neighbors, len(z) - 1), random_state=config.seed)
    return reducer.fit_transform(z)


def compute_view(table: pd.DataFrame, description: dict, config: ViewConfig = ViewConfig()) -> View:
    """Project a feature table and score each colouring's separation."""
    if len(table) > config.max_points:
        table = table.sample(config.max_points, random_state=config.seed)
    table = table.reset_index(drop=True)
    if len(table) < 3:
        raise ManifestError(f"need at least 3 rows to draw a view, got {len(table)}")
    x = feature_matrix(table, description)
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        log.warning("dropping %d rows with non-finite features", int((~finite).sum()))
        table, x = table[finite].reset_index(drop=True), x[finite]
    from sklearn.preprocessing import StandardScaler

    z = np.nan_to_num(StandardScaler().fit_transform(x))
    coords = project(x, config)
    sil = {c: silhouette(z, table[c]) for c in config.color_by if c in table.columns}
    return View(coords, table, config.method, sil)


def _groups(values: pd.Series, max_groups: int) -> pd.Series:
    top = values.value_counts().index[:max_groups]
    return values.where(values.isin(top), "other")


def plot_view(view: View, color_by: str, out_png: str | Path, max_groups: int = 19) -> Path:
    """Scatter plot of the projection coloured by one column, its silhouette in the title."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    groups = _groups(view.table[color_by].astype(str), max_groups)
    fig = Figure(figsize=(8, 6.5), dpi=110)
    ax = fig.add_subplot()
    for i, g in enumerate(sorted(groups.unique(), key=lambda s: (s == "other", s))):
        m = (groups == g).to_numpy()
        ax.scatter(view.coords[m, 0], view.coords[m, 1], s=14, alpha=0.75, color=_PALETTE[i % len(_PALETTE)],
                   label=f"{g} ({m.sum()})", linewidths=0)
    s = view.silhouettes.get(color_by, float("nan"))
    ax.set_title(f"{view.method.upper()} coloured by {color_by}  (silhouette in feature space: {s:.3f})")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png)
    return out_png


def write_view_html(view: View, out_html: str | Path, max_groups: int = 19) -> Path:
    """One self-contained HTML page (inline SVG, no external scripts): hover a point for its id and labels,
    switch the colouring with the buttons."""
    x, y = view.coords[:, 0], view.coords[:, 1]
    w, h, pad = 760, 560, 20
    sx = (x - x.min()) / (np.ptp(x) or 1) * (w - 2 * pad) + pad
    sy = (1 - (y - y.min()) / (np.ptp(y) or 1)) * (h - 2 * pad) + pad
    colourings = {}
    for c in view.silhouettes:
        groups = _groups(view.table[c].astype(str), max_groups)
        names = sorted(groups.unique(), key=lambda s: (s == "other", s))
        colour = {g: _PALETTE[i % len(_PALETTE)] for i, g in enumerate(names)}
        colourings[c] = {"colors": [colour[g] for g in groups], "legend": [[g, colour[g]] for g in names],
                         "silhouette": None if np.isnan(view.silhouettes[c]) else round(view.silhouettes[c], 4)}
    cols = [c for c in ("id", "label", "generator", "speaker", "split") if c in view.table.columns]
    circles = "\n".join(
        f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3.5"><title>{html.escape(" | ".join(str(r[c]) for c in cols))}</title></circle>'
        for a, b, (_, r) in zip(sx, sy, view.table[cols].iterrows(), strict=True)
    )
    first = next(iter(colourings), None)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>audios feature view ({view.method})</title>
<style>body{{font-family:sans-serif;margin:20px}} svg{{border:1px solid #ccc}} circle{{fill-opacity:.8}}
#legend span{{display:inline-block;margin:2px 8px 2px 0;font-size:12px}} #legend i{{display:inline-block;width:10px;height:10px;margin-right:4px}}
button{{margin-right:6px}}</style></head><body>
<h2>{view.method.upper()} view of {len(view.table)} recordings</h2>
<div id="buttons"></div><p id="sil"></p>
<svg width="{w}" height="{h}" id="plot">{circles}</svg><div id="legend"></div>
<script>
const C = {json.dumps(colourings)};
function show(name) {{
  const c = C[name]; const pts = document.querySelectorAll('#plot circle');
  pts.forEach((p, i) => p.setAttribute('fill', c.colors[i]));
  document.getElementById('legend').innerHTML = c.legend.map(([g, col]) => `<span><i style="background:${{col}}"></i>${{g}}</span>`).join('');
  document.getElementById('sil').textContent = `coloured by ${{name}}; silhouette in feature space: ${{c.silhouette}}`;
}}
const b = document.getElementById('buttons');
Object.keys(C).forEach(n => {{ const e = document.createElement('button'); e.textContent = n; e.onclick = () => show(n); b.appendChild(e); }});
{f"show({json.dumps(first)});" if first else ""}
</script></body></html>"""
    return write_text_atomic(Path(out_html), page)


def visualize_features(table: pd.DataFrame, description: dict, out_dir: str | Path,
                       config: ViewConfig = ViewConfig()) -> tuple[View, list[Path]]:
    """Compute the view and write one PNG per colouring, an HTML page and ``silhouette.json``."""
    out_dir = Path(out_dir)
    view = compute_view(table, description, config)
    written = [plot_view(view, c, out_dir / f"{config.method}_{c}.png", config.max_groups) for c in view.silhouettes]
    written.append(write_view_html(view, out_dir / f"{config.method}.html", config.max_groups))
    written.append(write_text_atomic(out_dir / f"{config.method}_silhouette.json",
                                     json.dumps({k: (None if np.isnan(v) else v) for k, v in view.silhouettes.items()},
                                                indent=2)))
    return view, written
