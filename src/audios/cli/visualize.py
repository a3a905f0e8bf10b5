"""CLI: 2-D views of feature tables."""

from __future__ import annotations

from pathlib import Path

import typer

from audios.cli.app import app, console, friendly_errors
from audios.config import config_to_dict
from audios.runs import write_run_info


@app.command()
@friendly_errors
def visualize(
    features: Path = typer.Argument(..., help="Feature table written by `audios features`."),
    method: str = typer.Option("umap", help="Projection: umap, tsne or pca."),
    color_by: list[str] = typer.Option(["label", "generator"], "--color-by",
                                       help="Colour by label, generator, speaker or split (repeatable)."),
    out: Path = typer.Option(Path("views"), "-o", "--out", help="Output folder for PNGs and the HTML page."),
    seed: int = typer.Option(0, help="Random seed of the projection."),
) -> None:
    """Project a feature table to 2-D and report how well labels, generators and speakers separate.

    The silhouette score (-1..1, computed in the standardised feature space, not on the 2-D picture) says how
    distinct the groups are: near 0 means mixed. A high score for `speaker` or `generator` with a low one for
    `label` warns that the features encode who/what more than real vs fake.

    Example: audios visualize runs/demo/features_spectral.parquet --method umap --color-by label --color-by generator
    """
    from audios.features.extract import read_feature_table
    from audios.visualize import ViewConfig, visualize_features

    config = ViewConfig(method=method, color_by=tuple(color_by), seed=seed)
    table, description = read_feature_table(features)
    view, written = visualize_features(table, description, out, config)
    write_run_info(out, "visualize", {"features": str(features), **config_to_dict(config)}, seed=seed)
    for name, s in view.silhouettes.items():
        console.print(f"silhouette by {name:<10} {s:+.3f}")
    for p in written:
        console.print(f"wrote {p}")
