"""`movierec posters embed|import`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from movierec.workdir import WORKDIR

from .common import console, err_console, progress


def embed(
    images: Path = typer.Option(..., help="Directory of poster images named <MovieID>.jpg."),
    weights: Path = typer.Option(..., help="ResNet50 weights as .npz (parameter name -> array); nothing is downloaded."),
    out: Path = typer.Option(WORKDIR / "posters" / "resnet50.npz", help="Where to write the vectors (.npz)."),
    batch_size: int = typer.Option(32, help="Images per forward pass."),
):
    """Extract 2048-d vectors with ResNet50 minus its classifier (224x224, ImageNet normalisation)."""
    from movierec.device import use_paddle_device
    from movierec.models.posters import embed_images

    device = use_paddle_device()
    vectors, skipped = embed_images(images, weights, batch_size, progress)
    vectors.save(out)
    for line in skipped:
        err_console.print(f"[yellow]skipped[/] {line}")
    console.print(f"wrote {out}: {len(vectors.movie_id):,} vectors of dimension {vectors.dim} "
                  f"({len(skipped)} file(s) skipped), device {device}")


def import_vectors(
    file: Path = typer.Argument(..., help=".npz with 'movie_id' (N,) and 'vectors' (N, D), made elsewhere."),
    data_dir: Optional[Path] = typer.Option(None, "--data", help="Check that every movie id is in this dataset."),
    out: Optional[Path] = typer.Option(None, help="Where to write the checked copy (default: movierec-work/posters/<name>)."),
):
    """Validate poster vectors produced elsewhere (ids, NaN/inf, one dimension) and store them."""
    from movierec.dataset.posters import load_posters
    from movierec.dataset.store import load_dataset

    vectors = load_posters(file)
    coverage = ""
    if data_dir is not None:
        dataset = load_dataset(data_dir)
        vectors, unknown = vectors.restricted_to(dataset.items.raw_id.to_numpy())
        if len(unknown):
            err_console.print(f"[yellow]{len(unknown)} movie id(s) not in {data_dir} left out[/], "
                              f"e.g. {unknown[:5].tolist()}")
        coverage = f", {len(vectors.movie_id) / dataset.num_items:.1%} of the dataset's {dataset.num_items:,} movies"
    out = out or WORKDIR / "posters" / file.name
    vectors.save(out)
    console.print(f"wrote {out}: {len(vectors.movie_id):,} vectors of dimension {vectors.dim}{coverage}")
