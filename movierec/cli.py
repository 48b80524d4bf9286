"""The `movierec` command line."""

from __future__ import annotations

import functools
import json
import os
import time
import warnings
from pathlib import Path
from typing import List, Optional

# Paddle warns about a missing compiler cache at import; it means nothing for users.
warnings.filterwarnings("ignore", message=".*ccache.*")
os.environ.setdefault("GLOG_minloglevel", "2")

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="movierec: a two-stage movie recommendation engine.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
train_app = typer.Typer(help="Train a model.", no_args_is_help=True)
app.add_typer(train_app, name="train")

console = Console()
err_console = Console(stderr=True)

WORKDIR = Path("movierec-work")


class CLIError(Exception):
    """An error the user can act on: printed as one line, exit status 2."""


def handles_errors(command):
    """Expected failures become a clear message and exit 2, never a traceback."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from movierec.dataset.readers import DataError
        from movierec.training import CheckpointError

        try:
            return command(*args, **kwargs)
        except (CLIError, DataError, CheckpointError, ValueError, OSError) as exc:
            err_console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]; a resumable run continues from its last checkpoint")
            raise typer.Exit(130) from None
    return wrapper


def _progress(total: int, description: str):
    """A tqdm bar as a callable `advance(n=1)`; closes itself once full."""
    from tqdm import tqdm

    bar = tqdm(total=total or None, desc=description, leave=False, unit_scale=True, dynamic_ncols=True)

    def advance(n: int = 1) -> None:
        bar.update(n)
        if total and bar.n >= total:
            bar.close()
    return advance


# ---------------------------------------------------------------------------- data


def prepare_data(source: str, out: Optional[Path], strict: bool) -> Path:
    from movierec.dataset.fetch import resolve_source
    from movierec.dataset.readers import read_release
    from movierec.dataset.store import write_dataset, sha256_file

    path = resolve_source(source, WORKDIR / "downloads", _progress)
    console.print(f"reading MovieLens from [cyan]{path}[/]")
    release = read_release(path)
    malformed = sum(r.malformed for r in release.reports)
    for report in release.reports:
        if report.malformed:
            err_console.print(f"[yellow]{report.file}: {report.malformed} malformed line(s) skipped[/]")
            for issue in report.issues[:10]:
                err_console.print(f"  line {issue.line}: {issue.reason}: {issue.text!r}")
            if report.malformed > 10:
                err_console.print(f"  ... all {report.malformed} are listed in the dataset manifest")
    if strict and malformed:
        raise CLIError(f"{malformed} malformed line(s) and --strict was given; nothing written")
    out = out or WORKDIR / "data" / release.name
    files = {role: str(path / name) if path.is_dir() else f"{path}!{name}"
             for role, name in release.files.items()}
    source_files = {role: {"path": where, "sha256": sha256_file(path / release.files[role])}
                    if path.is_dir() else {"path": where} for role, where in files.items()}
    write_dataset(release, out, source=str(source), source_files=source_files)
    console.print(f"wrote [green]{out}[/]: {release.ratings.shape[0]:,} ratings, "
                  f"{release.ratings.user_raw.nunique():,} users, {release.ratings.movie_raw.nunique():,} "
                  f"movies (ratings from {files['ratings']}; {malformed} malformed line(s))")
    return out


@app.command()
@handles_errors
def data(
    source: str = typer.Option("ml-100k", help="A directory or zip of a MovieLens release, a URL, "
                               "or 'ml-1m'/'ml-100k' (found under shared/data or MOVIEREC_DATA_DIR, "
                               "else downloaded from GroupLens)."),
    out: Optional[Path] = typer.Option(None, help="Where to write the normalised dataset "
                                       "[default: movierec-work/data/<release>]."),
    strict: bool = typer.Option(False, help="Fail instead of skipping malformed lines."),
):
    """Normalise a MovieLens release (ML-1M or ML-100K) into movierec's parquet format."""
    prepare_data(source, out, strict)


# ---------------------------------------------------------------------------- train / eval


def _load_split(data_dir: Path):
    from movierec.dataset.sequences import chronological, leave_last_out
    from movierec.dataset.store import load_dataset

    dataset = load_dataset(data_dir)
    if not dataset.manifest.get("has_timestamps"):
        raise CLIError(f"{data_dir} has no timestamps, so no chronological split can be made")
    sequences = chronological(dataset.ratings, dataset.num_users)
    return dataset, sequences, leave_last_out(sequences)


def _metrics_table(title: str, rows: dict[str, dict], ks: List[int]) -> Table:
    table = Table(title=title)
    table.add_column("model")
    for protocol in ("sampled", "full"):
        for k in ks:
            table.add_column(f"{protocol} HR@{k}", justify="right")
            table.add_column(f"{protocol} NDCG@{k}", justify="right")
    for name, metrics in rows.items():
        cells = [f"{metrics[p][f'{m}@{k}']:.4f}" for p in ("sampled", "full") for k in ks for m in ("HR", "NDCG")]
        table.add_row(name, *cells)
    return table


def evaluate_run(data_dir: Path, run_dir: Path, stage: str, ks: List[int], seed: int) -> dict:
    from movierec.dataset.evaluation import build_task, evaluate, popularity_scorer
    from movierec.device import use_paddle_device
    from movierec.recall.sasrec import load_sasrec

    use_paddle_device()
    dataset, sequences, split = _load_split(data_dir)
    model = load_sasrec(run_dir, dataset.num_items)
    task = build_task(split, stage, sequences, dataset.num_items, seed=seed)
    return {
        "SASRec": evaluate(model.scorer(), task, ks),
        "popularity": evaluate(popularity_scorer(task.history, dataset.num_items), task, ks),
    }


def _default_run_dir(data_dir: Path, loss: str) -> Path:
    return WORKDIR / "runs" / f"sasrec-{data_dir.name}-{loss}"


@train_app.command("sasrec")
@handles_errors
def train_sasrec_command(
    data_dir: Path = typer.Option(WORKDIR / "data" / "ml-100k", "--data", help="Normalised dataset (from `movierec data`)."),
    run_dir: Optional[Path] = typer.Option(None, help="Checkpoints, metrics and curves go here "
                                           "[default: movierec-work/runs/sasrec-<data>-<loss>]."),
    loss: str = typer.Option("bce", help="'bce' (paper: one sampled negative per position), "
                             "'ce' (full softmax) or 'sampled-ce' (softmax over --num-negatives)."),
    epochs: int = typer.Option(200, help="Maximum number of epochs."),
    maxlen: int = typer.Option(200, help="Most recent items of a sequence the model reads."),
    hidden: int = typer.Option(50, help="Embedding and hidden size."),
    blocks: int = typer.Option(2, help="Self-attention blocks."),
    heads: int = typer.Option(1, help="Attention heads."),
    dropout: float = typer.Option(0.2, help="Dropout rate."),
    lr: float = typer.Option(1e-3, help="Adam learning rate."),
    batch_size: int = typer.Option(128, help="Users per batch."),
    num_negatives: int = typer.Option(256, help="Shared negatives per batch for --loss sampled-ce."),
    eval_every: int = typer.Option(5, help="Validate every N epochs."),
    patience: int = typer.Option(10, help="Stop after N validations without improvement."),
    monitor: str = typer.Option("full.NDCG@10", help="Validation metric that picks the best checkpoint."),
    seed: int = typer.Option(42, help="Seed for initialisation, sampling and dropout."),
    resume: bool = typer.Option(True, help="Continue from the run directory's last checkpoint."),
):
    """Train SASRec with checkpoints (best on validation), resumable, on CPU or GPU."""
    import shutil

    from movierec.dataset.evaluation import build_task
    from movierec.device import use_paddle_device
    from movierec.recall.sasrec import SASRecConfig, train_sasrec

    config = SASRecConfig(maxlen=maxlen, hidden=hidden, blocks=blocks, heads=heads, dropout=dropout,
                          lr=lr, batch_size=batch_size, epochs=epochs, loss=loss,
                          num_negatives=num_negatives, patience=patience, eval_every=eval_every,
                          monitor=monitor, seed=seed)
    run_dir = run_dir or _default_run_dir(data_dir, loss)
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)
    device = use_paddle_device()
    dataset, sequences, split = _load_split(data_dir)
    valid_task = build_task(split, "valid", sequences, dataset.num_items)
    console.print(f"training SASRec ({loss}) on [cyan]{dataset.name}[/] "
                  f"({dataset.num_users:,} users, {dataset.num_items:,} items), device [bold]{device}[/], "
                  f"run dir {run_dir}")

    def report(state, record):
        valid = record.get("valid")
        text = f"epoch {record['epoch']:>3}  loss {record['loss']:.4f}  {record['train_seconds']:.0f}s"
        if valid:
            text += (f"  valid sampled NDCG@10 {valid['sampled']['NDCG@10']:.4f}"
                     f"  full NDCG@10 {valid['full']['NDCG@10']:.4f}  HR@10 {valid['full']['HR@10']:.4f}")
        console.print(text)

    started = time.perf_counter()
    _, state = train_sasrec(split.train, dataset.num_items, config, run_dir, valid_task,
                            progress=_progress, on_epoch=report)
    wall = time.perf_counter() - started
    test = evaluate_run(data_dir, run_dir, "test", [10], seed=2018)
    valid_best = next((h["valid"] for h in state.history if h["epoch"] == state.best_epoch), None)
    metrics = {
        "model": "SASRec",
        "dataset": dataset.name,
        "ratings_file": dataset.manifest["source_files"]["ratings"],
        "device": device,
        "config": json.loads((run_dir / "config.json").read_text()),
        "epochs_run": state.epoch,
        "best_epoch": state.best_epoch,
        "train_seconds": round(state.train_seconds, 1),
        "wall_seconds_this_call": round(wall, 1),
        "valid_best": valid_best,
        "test": test,
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    console.print(_metrics_table(f"test ({dataset.name}, best epoch {state.best_epoch} of {state.epoch})", test, [10]))
    console.print(f"metrics: {run_dir / 'metrics.json'}   curves: {run_dir / 'curves.png'}")


@app.command("eval")
@handles_errors
def eval_command(
    data_dir: Path = typer.Option(WORKDIR / "data" / "ml-100k", "--data", help="Normalised dataset."),
    run_dir: Path = typer.Option(..., help="A SASRec run directory (from `movierec train sasrec`)."),
    stage: str = typer.Option("test", help="'valid' or 'test' targets of the leave-last-out split."),
    k: List[int] = typer.Option([10], "--k", help="Cut-offs for HR@K and NDCG@K (repeatable)."),
    seed: int = typer.Option(2018, help="Seed for the 100 sampled negatives per user."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the metrics here as JSON."),
):
    """HR@K / NDCG@K of a trained model and the popularity baseline, sampled and full ranking."""
    if stage not in ("valid", "test"):
        raise CLIError(f"--stage must be 'valid' or 'test', not {stage!r}")
    if any(value <= 0 for value in k):
        raise CLIError("--k must be positive")
    results = evaluate_run(data_dir, run_dir, stage, k, seed)
    console.print(_metrics_table(f"{stage} metrics", results, k))
    if json_out:
        json_out.write_text(json.dumps({"stage": stage, "data": str(data_dir), "run": str(run_dir),
                                        "metrics": results}, indent=2))
        console.print(f"wrote {json_out}")


@app.command()
@handles_errors
def quickstart(
    source: str = typer.Option("ml-100k", help="Release to start from (see `movierec data --source`)."),
    epochs: int = typer.Option(40, help="Training epochs."),
):
    """The main job on the embedded default: ML-100K -> normalise -> train SASRec -> evaluate."""
    data_dir = prepare_data(source, None, strict=False)
    train_sasrec_command(data_dir=data_dir, run_dir=None, loss="ce", epochs=epochs, maxlen=200,
                         hidden=50, blocks=2, heads=1, dropout=0.2, lr=1e-3, batch_size=128,
                         num_negatives=256, eval_every=5, patience=10, monitor="full.NDCG@10",
                         seed=42, resume=False)


if __name__ == "__main__":
    app()
