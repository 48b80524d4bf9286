"""`movierec build` (the index-rebuild command) and `movierec recall`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.table import Table

from movierec.bundle.builder import BuildOptions, build_bundle
from movierec.models.ncf.config import NCFConfig
from movierec.models.sasrec.config import SASRecConfig
from movierec.workdir import BUNDLES

from . import train
from .common import CLIError, console, err_console, parse_ids, progress
from .data import AS_OF_OPTION, STORE_OPTION, dataset_from_store

TRAIN_SASREC_EPOCHS = 40
TRAIN_NCF_EPOCHS = 10


def train_and_build(options: BuildOptions, sasrec_epochs: int, ncf_epochs: int) -> None:
    """Train (or resume) both models with their defaults, SASRec with the full-softmax loss, as
    `movierec train sasrec --loss ce` and `movierec train ncf [--posters]` would."""
    train.run("sasrec", options.data_dir, options.sasrec_run, SASRecConfig(loss="ce", epochs=sasrec_epochs))
    train.run("ncf", options.data_dir, options.ncf_run,
              NCFConfig(epochs=ncf_epochs, posters=options.posters is not None), posters=options.posters)


def build_and_report(options: BuildOptions, timings: dict | None = None) -> None:
    started = time.perf_counter()
    report = build_bundle(options, progress=progress)
    timings = {**(timings or {}), **report.timings, "build_total_seconds": time.perf_counter() - started}
    manifest = report.manifest
    index = manifest["index"]
    console.print(f"bundle [green]{report.version}[/] at {report.path} is now current "
                  f"({manifest['counts']['items']:,} items, {manifest['counts']['users']:,} users, "
                  f"index {index['factory']} on {index['device']}; channels "
                  + ", ".join(f"{c['name']} {c['quota']}" for c in manifest["recall"]["channels"])
                  + f"; ranker {manifest['rank']['name']})")
    if manifest["recall"]["left_out"]:
        console.print(f"left out (nothing to build them from): {', '.join(manifest['recall']['left_out'])}")
    console.print("timings: " + ", ".join(f"{k.removesuffix('_seconds')} {v:.2f}s" for k, v in timings.items()))
    if manifest["pruned"]:
        console.print(f"removed old versions: {', '.join(manifest['pruned'])}")
    if manifest["cleaned_leftovers"]:
        console.print(f"cleaned leftovers of interrupted builds: {', '.join(manifest['cleaned_leftovers'])}")


def build(
    options: BuildOptions,
    train_first: bool = typer.Option(False, "--train", help="Train (or resume) SASRec and NCF first."),
    sasrec_epochs: int = typer.Option(TRAIN_SASREC_EPOCHS, help="With --train: SASRec epochs (full-softmax loss)."),
    ncf_epochs: int = typer.Option(TRAIN_NCF_EPOCHS, help="With --train: NCF epochs (with --posters, if given)."),
    from_store: bool = typer.Option(False, "--from-store", help="First write --data from a snapshot of the event "
                                    "store (what was recorded since the release was imported); with --train the "
                                    "models are trained on it, and the bundle records the snapshot."),
    store: str = STORE_OPTION,
    as_of: Optional[str] = AS_OF_OPTION,
):
    """Rebuild the serving bundle: export models, build indexes, switch `current` atomically."""
    timings = {}
    if from_store:
        started = time.perf_counter()
        dataset_from_store(store, options.data_dir, as_of)
        timings["snapshot_seconds"] = time.perf_counter() - started
    elif as_of:
        raise CLIError("--as-of goes with --from-store")
    if train_first:
        started = time.perf_counter()
        train_and_build(options, sasrec_epochs, ncf_epochs)
        timings["train_seconds"] = time.perf_counter() - started
    build_and_report(options, timings)


def recall(
    user: int = typer.Option(0, help="Raw MovieLens user id (0 or unknown = a new user)."),
    recent: Optional[str] = typer.Option(None, help="Comma-separated raw movie ids watched after the bundle was built."),
    exclude: Optional[str] = typer.Option(None, help="Comma-separated raw movie ids never to return."),
    bundles: Path = typer.Option(BUNDLES, help="Bundle root or one bundle directory."),
    top: int = typer.Option(10, help="Candidates to print per channel."),
):
    """Print the recall candidates of each channel, with titles, and the merged count."""
    from movierec.bundle.loader import load_bundle

    bundle = load_bundle(bundles)
    user_id = bundle.user_id(user)
    recent_ids = bundle.item_ids(parse_ids(recent, "--recent"))
    exclude_ids = bundle.item_ids(parse_ids(exclude, "--exclude"))
    if (recent_ids == 0).any():
        err_console.print(f"[yellow]{int((recent_ids == 0).sum())} unknown movie id(s) in --recent ignored[/]")
    context = bundle.context(user_id, recent=recent_ids[recent_ids > 0], exclude=exclude_ids[exclude_ids > 0])
    merged, results = bundle.recaller.recall(context)
    raw = bundle.item_raw_ids()
    titles = np.concatenate([[""], bundle.items.title.to_numpy()])
    who = f"user {user}" if user_id else "a new user"
    console.print(f"bundle {bundle.version}: recall for {who}, {len(context.history)} items of history")
    for name, result in zip(bundle.recaller.names, results):
        if result is None:
            console.print(f"{name}: nothing to start from for this request")
            continue
        table = Table(title=f"{name}: {len(result.items)} candidates")
        table.add_column("#", justify="right")
        table.add_column("movie id", justify="right")
        table.add_column("title")
        table.add_column("score", justify="right")
        for rank, (item, score) in enumerate(zip(result.items[:top], result.scores[:top]), start=1):
            table.add_row(str(rank), str(raw[item]), titles[item], f"{score:.4f}")
        console.print(table)
    by_channel = {name: int((merged.primary == i).sum()) for i, name in enumerate(merged.channels)}
    console.print(f"merged: {len(merged.items)} candidates " + ", ".join(f"{k} {v}" for k, v in by_channel.items() if v))
