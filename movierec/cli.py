"""The `movierec` command line."""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import time
import warnings
from pathlib import Path
from typing import List, Optional

# Paddle warns about a missing compiler cache at import; it means nothing for users.
warnings.filterwarnings("ignore", message=".*ccache.*")
os.environ.setdefault("GLOG_minloglevel", "2")
logging.getLogger("faiss").setLevel(logging.WARNING)

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from movierec.errors import MovieRecError

app = typer.Typer(help="movierec: a two-stage movie recommendation engine.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
train_app = typer.Typer(help="Train a model.", no_args_is_help=True)
app.add_typer(train_app, name="train")
posters_app = typer.Typer(help="Poster vectors: extract them from images or import them.", no_args_is_help=True)
app.add_typer(posters_app, name="posters")

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

WORKDIR = Path("movierec-work")


class CLIError(MovieRecError):
    """An error the user can act on: printed as one line, exit status 2."""


def handles_errors(command):
    """Expected failures become a clear message and exit 2, never a traceback."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (MovieRecError, ValueError, OSError, RuntimeError, TimeoutError) as exc:
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


MODELS = ("sasrec", "ncf")


def _parse_range(text: Optional[str]) -> Optional[tuple[int, int]]:
    if not text:
        return None
    low, sep, high = text.partition("-")
    if not sep or not low.strip().isdigit() or not high.strip().isdigit() or int(low) > int(high):
        raise CLIError(f"--users takes a range of raw user ids like 1-2999, not {text!r}")
    return int(low), int(high)


def evaluate_run(data_dir: Path, run_dir: Path, stage: str, ks: List[int], seed: int,
                 model: str = "sasrec", users: Optional[tuple[int, int]] = None) -> dict:
    from movierec.dataset.evaluation import build_task, evaluate, popularity_scorer
    from movierec.device import use_paddle_device

    if model not in MODELS:
        raise CLIError(f"--model must be one of {', '.join(MODELS)}, not {model!r}")
    use_paddle_device()
    dataset, sequences, split = _load_split(data_dir)
    if model == "sasrec":
        from movierec.recall.sasrec import load_sasrec

        name, scorer = "SASRec", load_sasrec(run_dir, dataset.num_items).scorer()
    else:
        from movierec.rank.ncf import load_ncf, ncf_scorer_for_eval, read_run_config, run_features

        features = run_features(dataset, run_dir, read_run_config(run_dir))
        name = "NCF"
        scorer = ncf_scorer_for_eval(load_ncf(run_dir, features).export_scorer(), features)
    task = build_task(split, stage, sequences, dataset.num_items, seed=seed)
    if users is not None:
        raw = dataset.user_raw_ids()[task.users]
        task = task.subset((raw >= users[0]) & (raw <= users[1]))
        if not len(task.users):
            raise CLIError(f"no user with a {stage} target has a raw id in {users[0]}-{users[1]}")
    return {
        name: evaluate(scorer, task, ks),
        "popularity": evaluate(popularity_scorer(task.history, dataset.num_items), task, ks),
    }


def _prepare_run(data_dir: Path, run_dir: Path, resume: bool):
    """What every training command does first: start over unless resuming, pick the device,
    load the split and the validation task."""
    import shutil

    from movierec.dataset.evaluation import build_task
    from movierec.device import use_paddle_device

    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)
    device = use_paddle_device()
    dataset, sequences, split = _load_split(data_dir)
    return device, dataset, sequences, split, build_task(split, "valid", sequences, dataset.num_items)


def _call_command(command, **values):
    """Call a CLI command from another: parameters not given take their option's default."""
    for name, parameter in inspect.signature(command).parameters.items():
        if name not in values:
            default = parameter.default
            values[name] = default.default if isinstance(default, typer.models.OptionInfo) else default
    return command(**values)


def _default_run_dir(data_dir: Path, loss: str) -> Path:
    return WORKDIR / "runs" / f"sasrec-{data_dir.name}-{loss}"


LR_DECAY_HELP = ("Multiply the learning rate by this after --lr-patience validations without improvement "
                 "(reduce on plateau); 1 keeps it constant. May change when a run resumes.")
LR_PATIENCE_HELP = "Validations without improvement before each --lr-decay."


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
    window: str = typer.Option("last", help="Training window of histories longer than --maxlen: 'last' "
                               "(the paper) or 'random' (a window drawn anew each epoch)."),
    weighting: str = typer.Option("position", help="Loss of a batch (users of similar length): 'position' "
                                  "(every position weighs the same across the epoch, as in the paper's "
                                  "batches of mixed lengths) or 'batch' (the mean over its positions)."),
    eval_every: int = typer.Option(5, help="Validate every N epochs."),
    patience: int = typer.Option(10, help="Stop after N validations without improvement."),
    lr_decay: float = typer.Option(1.0, help=LR_DECAY_HELP),
    lr_patience: int = typer.Option(3, help=LR_PATIENCE_HELP),
    monitor: str = typer.Option("full.NDCG@10", help="Validation metric that picks the best checkpoint."),
    seed: int = typer.Option(42, help="Seed for initialisation, sampling and dropout."),
    resume: bool = typer.Option(True, help="Continue from the run directory's last checkpoint."),
):
    """Train SASRec with checkpoints (best on validation), resumable, on CPU or GPU."""
    from movierec.recall.sasrec import SASRecConfig, train_sasrec

    config = SASRecConfig(maxlen=maxlen, hidden=hidden, blocks=blocks, heads=heads, dropout=dropout,
                          lr=lr, batch_size=batch_size, epochs=epochs, loss=loss,
                          num_negatives=num_negatives, window=window, weighting=weighting,
                          patience=patience, lr_decay=lr_decay, lr_patience=lr_patience,
                          eval_every=eval_every, monitor=monitor, seed=seed)
    run_dir = run_dir or _default_run_dir(data_dir, loss)
    device, dataset, sequences, split, valid_task = _prepare_run(data_dir, run_dir, resume)
    console.print(f"training SASRec ({loss}) on [cyan]{dataset.name}[/] "
                  f"({dataset.num_users:,} users, {dataset.num_items:,} items), device [bold]{device}[/], "
                  f"run dir {run_dir}")

    started = time.perf_counter()
    _, state = train_sasrec(split.train, dataset.num_items, config, run_dir, valid_task,
                            progress=_progress, on_epoch=_report_epoch)
    _finish_run("sasrec", dataset, device, data_dir, run_dir, state, time.perf_counter() - started)


def _report_epoch(state, record) -> None:
    valid = record.get("valid")
    text = f"epoch {record['epoch']:>3}  loss {record['loss']:.4f}  {record['train_seconds']:.0f}s"
    if valid:
        text += (f"  valid sampled NDCG@10 {valid['sampled']['NDCG@10']:.4f} HR@10 {valid['sampled']['HR@10']:.4f}"
                 f"  full NDCG@10 {valid['full']['NDCG@10']:.4f} HR@10 {valid['full']['HR@10']:.4f}")
    console.print(text)


def _finish_run(model: str, dataset, device: str, data_dir: Path, run_dir: Path, state, wall: float) -> None:
    """Test metrics of the best checkpoint next to popularity: printed and in metrics.json."""
    test = evaluate_run(data_dir, run_dir, "test", [10], seed=2018, model=model)
    metrics = {
        "model": model,
        "dataset": dataset.name,
        "ratings_file": dataset.manifest["source_files"]["ratings"],
        "device": device,
        "config": json.loads((run_dir / "config.json").read_text()),
        "epochs_run": state.epoch,
        "best_epoch": state.best_epoch,
        "train_seconds": round(state.train_seconds, 1),
        "wall_seconds_this_call": round(wall, 1),
        "valid_best": next((h["valid"] for h in state.history if h["epoch"] == state.best_epoch), None),
        "test": test,
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    console.print(_metrics_table(f"test ({dataset.name}, best epoch {state.best_epoch} of {state.epoch})", test, [10]))
    console.print(f"metrics: {run_dir / 'metrics.json'}   curves: {run_dir / 'curves.png'}")


@train_app.command("ncf")
@handles_errors
def train_ncf_command(
    data_dir: Path = typer.Option(WORKDIR / "data" / "ml-100k", "--data", help="Normalised dataset (from `movierec data`)."),
    run_dir: Optional[Path] = typer.Option(None, help="Checkpoints, metrics and curves go here "
                                           "[default: movierec-work/runs/ncf-<data>]."),
    posters: Optional[Path] = typer.Option(None, help="Poster vectors (.npz from `movierec posters "
                                           "embed|import`); movies without one get the presence flag off."),
    use_posters: bool = typer.Option(True, "--use-posters/--no-posters",
                                     help="--no-posters trains without poster vectors even when --posters is given."),
    side_features: bool = typer.Option(True, help="Fuse user (gender, age, occupation, zip prefix) and "
                                       "movie (year, genres) side features."),
    mlp: bool = typer.Option(True, help="Use the MLP path; --no-mlp leaves GMF only."),
    loss: str = typer.Option("bce", help="'bce' (pointwise) or 'bpr' (pairwise)."),
    sampler: str = typer.Option("uniform", help="Negative sampler: 'uniform' or 'popularity' (count^0.75)."),
    num_negatives: int = typer.Option(4, help="Negatives per positive."),
    epochs: int = typer.Option(30, help="Maximum number of epochs."),
    gmf_dim: int = typer.Option(32, help="GMF embedding size."),
    mlp_layers: str = typer.Option("64,32,16", help="MLP tower widths; the first is split between user and item."),
    side_dim: int = typer.Option(8, help="Embedding size of each side feature."),
    poster_dim: int = typer.Option(16, help="Size the poster vector is projected to."),
    dropout: float = typer.Option(0.2, help="Dropout rate."),
    lr: float = typer.Option(1e-3, help="Adam learning rate."),
    batch_size: int = typer.Option(1024, help="Positives per batch (each with its negatives)."),
    eval_every: int = typer.Option(1, help="Validate every N epochs."),
    patience: int = typer.Option(5, help="Stop after N validations without improvement."),
    lr_decay: float = typer.Option(1.0, help=LR_DECAY_HELP),
    lr_patience: int = typer.Option(3, help=LR_PATIENCE_HELP),
    monitor: str = typer.Option("sampled.HR@10", help="Validation metric that picks the best checkpoint."),
    seed: int = typer.Option(42, help="Seed for initialisation, sampling and dropout."),
    resume: bool = typer.Option(True, help="Continue from the run directory's last checkpoint."),
):
    """Train the NCF ranker (NeuMF + side features + posters) with sampled negatives."""
    if not use_posters:
        posters = None
    from movierec.rank.ncf import POSTERS_FILE, Features, NCFConfig, train_ncf
    from movierec.recall.posters import load_posters

    try:
        layers = tuple(int(x) for x in mlp_layers.split(","))
    except ValueError:
        raise CLIError(f"--mlp-layers must be comma-separated integers, not {mlp_layers!r}") from None
    config = NCFConfig(gmf_dim=gmf_dim, mlp_layers=layers, side_dim=side_dim, poster_dim=poster_dim,
                       dropout=dropout, mlp=mlp, side_features=side_features, posters=posters is not None,
                       lr=lr, batch_size=batch_size, epochs=epochs, num_negatives=num_negatives,
                       sampler=sampler, loss=loss, patience=patience, lr_decay=lr_decay,
                       lr_patience=lr_patience, eval_every=eval_every,
                       monitor=monitor, seed=seed)
    run_dir = run_dir or WORKDIR / "runs" / f"ncf-{data_dir.name}"
    device, dataset, sequences, split, valid_task = _prepare_run(data_dir, run_dir, resume)
    vectors = None
    if posters is not None:
        vectors, unknown = load_posters(posters).restricted_to(dataset.items.raw_id.to_numpy())
        if len(unknown):
            console.print(f"{len(unknown)} poster(s) of movies outside the dataset are not used")
        run_dir.mkdir(parents=True, exist_ok=True)
        vectors.save(run_dir / POSTERS_FILE)
    features = Features.from_dataset(dataset, vectors)
    with_posters = f", posters for {int(features.has_poster.sum()):,} movies" if vectors else ""
    console.print(f"training NCF on [cyan]{dataset.name}[/] ({dataset.num_users:,} users, "
                  f"{dataset.num_items:,} items{with_posters}), device [bold]{device}[/], run dir {run_dir}")
    started = time.perf_counter()
    _, state = train_ncf(split.train, features, config, run_dir, valid_task,
                         progress=_progress, on_epoch=_report_epoch)
    _finish_run("ncf", dataset, device, data_dir, run_dir, state, time.perf_counter() - started)


@posters_app.command("embed")
@handles_errors
def posters_embed(
    images: Path = typer.Option(..., help="Directory of poster images named <MovieID>.jpg."),
    weights: Path = typer.Option(..., help="ResNet50 weights as .npz (parameter name -> array); nothing is downloaded."),
    out: Path = typer.Option(WORKDIR / "posters" / "resnet50.npz", help="Where to write the vectors (.npz)."),
    batch_size: int = typer.Option(32, help="Images per forward pass."),
):
    """Extract 2048-d vectors with ResNet50 minus its classifier (224x224, ImageNet normalisation)."""
    from movierec.device import use_paddle_device
    from movierec.recall.posters import embed_images

    device = use_paddle_device()
    vectors, skipped = embed_images(images, weights, batch_size, _progress)
    vectors.save(out)
    for line in skipped:
        err_console.print(f"[yellow]skipped[/] {line}")
    console.print(f"wrote {out}: {len(vectors.movie_id):,} vectors of dimension {vectors.dim} "
                  f"({len(skipped)} file(s) skipped), device {device}")


@posters_app.command("import")
@handles_errors
def posters_import(
    file: Path = typer.Argument(..., help=".npz with 'movie_id' (N,) and 'vectors' (N, D), made elsewhere."),
    data_dir: Optional[Path] = typer.Option(None, "--data", help="Check that every movie id is in this dataset."),
    out: Optional[Path] = typer.Option(None, help="Where to write the checked copy [default: movierec-work/posters/<name>]."),
):
    """Validate poster vectors produced elsewhere (ids, NaN/inf, one dimension) and store them."""
    from movierec.dataset.store import load_dataset
    from movierec.recall.posters import load_posters

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


@app.command()
@handles_errors
def build(
    data_dir: Path = typer.Option(WORKDIR / "data" / "ml-100k", "--data", help="Normalised dataset (from `movierec data`)."),
    sasrec_run: Path = typer.Option(None, help="SASRec run directory [default: movierec-work/runs/sasrec-<data>-ce]."),
    ncf_run: Path = typer.Option(None, help="NCF run directory [default: movierec-work/runs/ncf-<data>]."),
    bundles: Path = typer.Option(WORKDIR / "bundles", help="Bundle root: versions and the `current` pointer live here."),
    train: bool = typer.Option(False, "--train", help="Train (or resume) SASRec and NCF first."),
    sasrec_epochs: int = typer.Option(40, help="With --train: SASRec epochs (full-softmax loss)."),
    ncf_epochs: int = typer.Option(10, help="With --train: NCF epochs."),
    posters: Optional[Path] = typer.Option(None, help="With --train: poster vectors for NCF and the poster channel."),
    index: str = typer.Option("flat", help="FAISS index: 'flat' (exact), 'ivf,nlist=256,nprobe=16' or 'hnsw,m=32,ef=64'."),
    keep: int = typer.Option(3, help="Bundle versions to keep (the current one always stays)."),
    hold_out_last: bool = typer.Option(False, help="Leave each user's last item out of the bundle (for recall benchmarks)."),
    popular_half_life_days: float = typer.Option(0.0, help="Time-decay the popular list with this half-life (0 = plain counts)."),
    precompute_rankings: bool = typer.Option(
        True, help="Rank every known user's candidates offline, so requests without context skip "
                   "recall and rank (about 1 ms per user at build time, ~2.4 KB per user on disk)."),
):
    """Rebuild the serving bundle: export models, build FAISS indexes, switch `current` atomically."""
    from movierec.bundle import BuildOptions, build_bundle

    sasrec_run = sasrec_run or _default_run_dir(data_dir, "ce")
    ncf_run = ncf_run or WORKDIR / "runs" / f"ncf-{data_dir.name}"
    timings = {}
    if train:
        started = time.perf_counter()
        # as `movierec train sasrec --loss ce` and `movierec train ncf` would, with their defaults
        _call_command(train_sasrec_command, data_dir=data_dir, run_dir=sasrec_run, loss="ce", epochs=sasrec_epochs)
        _call_command(train_ncf_command, data_dir=data_dir, run_dir=ncf_run, posters=posters, epochs=ncf_epochs)
        timings["train_seconds"] = time.perf_counter() - started
    options = BuildOptions(data_dir=data_dir, sasrec_run=sasrec_run, ncf_run=ncf_run, bundles=bundles,
                           index=index, keep=keep, hold_out_last=hold_out_last,
                           popular_half_life_days=popular_half_life_days,
                           precompute_rankings=precompute_rankings)
    started = time.perf_counter()
    report = build_bundle(options, progress=_progress)
    timings.update(report.timings)
    timings["build_total_seconds"] = time.perf_counter() - started
    manifest = report.manifest
    console.print(f"bundle [green]{report.version}[/] at {report.path} is now current "
                  f"({manifest['counts']['items']:,} items, {manifest['counts']['users']:,} users, "
                  f"index {manifest['index']['spec']} on {manifest['index']['device']})")
    console.print("timings: " + ", ".join(f"{k.removesuffix('_seconds')} {v:.2f}s" for k, v in timings.items()))
    if manifest["pruned"]:
        console.print(f"removed old versions: {', '.join(manifest['pruned'])}")
    if manifest["cleaned_leftovers"]:
        console.print(f"cleaned leftovers of interrupted builds: {', '.join(manifest['cleaned_leftovers'])}")


def _parse_ids(text: Optional[str], option: str, what: str = "movie ids") -> list[int]:
    if not text:
        return []
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CLIError(f"{option} takes comma-separated {what}, not {text!r}") from None


@app.command()
@handles_errors
def recall(
    user: int = typer.Option(0, help="Raw MovieLens user id (0 or unknown = a new user)."),
    recent: Optional[str] = typer.Option(None, help="Comma-separated raw movie ids watched after the bundle was built."),
    exclude: Optional[str] = typer.Option(None, help="Comma-separated raw movie ids never to return."),
    bundles: Path = typer.Option(WORKDIR / "bundles", help="Bundle root or one bundle directory."),
    top: int = typer.Option(10, help="Candidates to print per channel."),
):
    """Print the recall candidates of each channel, with titles, and the merged count."""
    from movierec.bundle import load_bundle
    from movierec.recall.channels import CHANNELS

    bundle = load_bundle(bundles)
    user_id = bundle.user_id(user)
    recent_ids = bundle.item_ids(_parse_ids(recent, "--recent"))
    exclude_ids = bundle.item_ids(_parse_ids(exclude, "--exclude"))
    if (recent_ids == 0).any():
        err_console.print(f"[yellow]{int((recent_ids == 0).sum())} unknown movie id(s) in --recent ignored[/]")
    merged, results = bundle.recaller.recall(user_id, recent_ids[recent_ids > 0], exclude_ids[exclude_ids > 0])
    raw = bundle.item_raw_ids()
    titles = np.concatenate([[""], bundle.items.title.to_numpy()])
    who = f"user {user}" if user_id else "a new user"
    console.print(f"bundle {bundle.version}: recall for {who}, {len(bundle.recaller.history(user_id))} items of history")
    for result in results:
        table = Table(title=f"{result.channel}: {len(result.items)} candidates")
        table.add_column("#", justify="right")
        table.add_column("movie id", justify="right")
        table.add_column("title")
        table.add_column("score", justify="right")
        for rank, (item, score) in enumerate(zip(result.items[:top], result.scores[:top]), start=1):
            table.add_row(str(rank), str(raw[item]), titles[item], f"{score:.4f}")
        console.print(table)
    by_channel = {name: int((merged.primary == i).sum()) for i, name in enumerate(CHANNELS)}
    console.print(f"merged: {len(merged.items)} candidates " + ", ".join(f"{k} {v}" for k, v in by_channel.items() if v))


@app.command()
@handles_errors
def serve(
    bundles: Path = typer.Option(WORKDIR / "bundles", help="Bundle root; the server loads its `current` bundle."),
    address: str = typer.Option("127.0.0.1:50051", help="host:port to listen on. Loopback by default; "
                                "give 0.0.0.0:PORT to serve other machines."),
    metrics_port: int = typer.Option(9100, help="Prometheus metrics on 127.0.0.1:PORT/metrics (0 = off)."),
    watch_interval: float = typer.Option(2.0, help="Seconds between checks of `current` for a new bundle (0 = off)."),
    grace: float = typer.Option(10.0, help="Seconds to drain in-flight calls on SIGTERM/SIGINT."),
    popular: float = typer.Option(0.2, help="Share of the popular slot."),
    new: float = typer.Option(0.3, help="Share of the new slot."),
    personalized: float = typer.Option(0.5, help="Share of the personalized slot."),
    tls_cert: Optional[Path] = typer.Option(None, help="PEM certificate chain: serve TLS (with --tls-key)."),
    tls_key: Optional[Path] = typer.Option(None, help="PEM private key of --tls-cert."),
    tls_client_ca: Optional[Path] = typer.Option(None, help="PEM CA: require client certificates it signed (mutual TLS)."),
    workers: int = typer.Option(1, help="Server processes sharing the port (SO_REUSEPORT); each follows `current` "
                                "on its own, metrics on consecutive ports."),
    log_format: str = typer.Option("text", help="'text' or 'json' (one JSON object per line)."),
    precomputed: bool = typer.Option(True, help="Answer known users' requests without context from the bundle's "
                                                "offline rankings (--no-precomputed: recall and rank every request)."),
):
    """Serve Recommend over gRPC (health checking, reflection, metrics, hot reload)."""
    import asyncio

    from movierec.server.app import ServerConfig, configure_logging, serve_forever, serve_workers

    if log_format not in ("text", "json"):
        raise CLIError("--log-format must be 'text' or 'json'")
    if min(popular, new, personalized) < 0 or popular + new + personalized <= 0:
        raise CLIError("slot shares must be non-negative and not all zero")
    configure_logging(log_format)
    config = ServerConfig(bundles=bundles, address=address, metrics_port=metrics_port,
                          watch_interval=watch_interval, grace_seconds=grace,
                          shares={"popular": popular, "new": new, "personalized": personalized},
                          tls_cert=tls_cert, tls_key=tls_key, tls_client_ca=tls_client_ca, log_format=log_format,
                          use_precomputed=precomputed)

    def ready(running):
        info = running.holder.served.pipeline.bundle
        host = address.rsplit(":", 1)[0]
        target = f"{host}:{running.port}"
        console.print(f"serving bundle [green]{info.version}[/] on [bold]{target}[/]"
                      + (f", metrics on http://127.0.0.1:{metrics_port}/metrics" if metrics_port else ""))
        console.print(f"call it:  movierec recommend --user 1 --target {target}")
        console.print(f"   or:    grpcurl -plaintext -d '{{\"user_id\": 1, \"n\": 10}}' {target} movierec.v1.Recommender/Recommend")
        console.print("stop with Ctrl-C (in-flight calls are drained)")

    if workers < 1:
        raise CLIError("--workers must be at least 1")
    if workers == 1:
        asyncio.run(serve_forever(config, ready))
        return
    console.print(f"starting {workers} workers on {address} (bundles {bundles}); stop with Ctrl-C")
    status = serve_workers(config, workers)
    if status:
        raise CLIError("a worker exited with an error; see the log above")


@app.command()
@handles_errors
def recommend(
    user: int = typer.Option(0, help="Raw MovieLens user id (0 = a new user)."),
    n: int = typer.Option(10, help="How many movies."),
    recent: Optional[str] = typer.Option(None, help="Comma-separated raw movie ids watched since the bundle was built."),
    exclude: Optional[str] = typer.Option(None, help="Comma-separated raw movie ids never to return."),
    gender: str = typer.Option("", help="New user: M or F."),
    age: int = typer.Option(0, help="New user: age in years."),
    occupation: str = typer.Option("", help="New user: occupation as in the dataset."),
    genres: Optional[str] = typer.Option(None, help="Only these genres (comma-separated)."),
    not_genres: Optional[str] = typer.Option(None, help="None of these genres (comma-separated)."),
    min_year: int = typer.Option(0, help="Earliest release year."),
    max_year: int = typer.Option(0, help="Latest release year."),
    explain: bool = typer.Option(False, help="Show recall channels and rank scores."),
    target: str = typer.Option("127.0.0.1:50051", help="host:port of a `movierec serve`."),
    timeout: float = typer.Option(10.0, help="Deadline in seconds."),
    tls_ca: Optional[Path] = typer.Option(None, help="PEM CA that signed the server's certificate: connect with TLS."),
    tls_cert: Optional[Path] = typer.Option(None, help="PEM client certificate, for a server that requires mutual TLS."),
    tls_key: Optional[Path] = typer.Option(None, help="PEM private key of --tls-cert."),
):
    """Ask a running server for recommendations and print them as a table."""
    import grpc

    from movierec.server.v1 import recommender_pb2 as pb
    from movierec.server.v1 import recommender_pb2_grpc as pb_grpc

    gender_value = {"": pb.GENDER_UNSPECIFIED, "M": pb.GENDER_MALE, "F": pb.GENDER_FEMALE}.get(gender.upper())
    if gender_value is None:
        raise CLIError("--gender must be M or F")
    if user < 0:
        raise CLIError("--user must be a raw MovieLens user id (>= 0)")
    request = pb.RecommendRequest(
        user_id=user, n=n, recent_item_ids=_parse_ids(recent, "--recent"),
        exclude_item_ids=_parse_ids(exclude, "--exclude"), explain=explain,
        side_features=pb.SideFeatures(gender=gender_value, age=age, occupation=occupation),
        filters=pb.Filters(include_genres=[g for g in (genres or "").split(",") if g],
                           exclude_genres=[g for g in (not_genres or "").split(",") if g],
                           min_year=min_year, max_year=max_year))
    if n <= 0:
        raise CLIError("--n must be positive")
    if any(i < 0 for i in list(request.recent_item_ids) + list(request.exclude_item_ids)):
        raise CLIError("movie ids must be positive")
    if tls_ca or tls_cert:
        if bool(tls_cert) != bool(tls_key):
            raise CLIError("--tls-cert and --tls-key go together")
        credentials = grpc.ssl_channel_credentials(
            root_certificates=tls_ca.read_bytes() if tls_ca else None,
            private_key=tls_key.read_bytes() if tls_key else None,
            certificate_chain=tls_cert.read_bytes() if tls_cert else None)
        channel = grpc.secure_channel(target, credentials)
    else:
        channel = grpc.insecure_channel(target)
    with channel:
        try:
            response = pb_grpc.RecommenderStub(channel).Recommend(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise CLIError(f"{target}: {exc.code().name}: {exc.details()}") from None
    who = f"user {user}" if response.known_user else "a new user"
    table = Table(title=f"{len(response.items)} movies for {who} (bundle {response.bundle_version})")
    for column, justify in (("#", "right"), ("movie id", "right"), ("title", "left"), ("slot", "left"),
                            ("score", "right")):
        table.add_column(column, justify=justify)
    if explain:
        table.add_column("channels")
        table.add_column("rank score", justify="right")
    for rank, item in enumerate(response.items, start=1):
        row = [str(rank), str(item.item_id), item.title, pb.Slot.Name(item.slot).removeprefix("SLOT_").lower(),
               f"{item.score:.4f}"]
        if explain:
            row += [",".join(item.channels), f"{item.rank_score:.4f}" if item.slot == pb.SLOT_PERSONALIZED else ""]
        table.add_row(*row)
    console.print(table)
    t = response.timings
    console.print(f"server time: recall {t.recall_ms:.2f} ms, rank {t.rank_ms:.2f} ms, blend {t.blend_ms:.2f} ms, "
                  f"total {t.total_ms:.2f} ms" + (" (personalized list precomputed in the bundle)" if t.precomputed else ""))
    if response.ignored_item_ids:
        err_console.print(f"[yellow]unknown movie ids ignored: {list(response.ignored_item_ids)}[/]")


@app.command("bench")
@handles_errors
def bench_command(
    target: Optional[str] = typer.Option(None, help="host:port of a running `movierec serve`."),
    spawn: bool = typer.Option(False, "--spawn", help="Start a server on --bundles for the run, and stop it after."),
    server_workers: int = typer.Option(1, help="With --spawn: server processes (see `serve --workers`)."),
    precomputed: bool = typer.Option(True, help="With --spawn: serve the bundle's offline rankings "
                                                "(--no-precomputed: recall and rank every request)."),
    bundles: Path = typer.Option(WORKDIR / "bundles", help="Bundle root: the request mix draws users and movies from its current bundle."),
    concurrency: int = typer.Option(8, help="Closed loop: calls in flight (over all client processes)."),
    rate: float = typer.Option(0.0, help="Open loop: calls per second (0 = closed loop at --concurrency)."),
    duration: float = typer.Option(10.0, help="Seconds measured."),
    warmup: float = typer.Option(2.0, help="Seconds of load before measuring."),
    processes: int = typer.Option(2, help="Client processes generating the load."),
    new_users: float = typer.Option(0.1, help="Share of requests from new users (side features only)."),
    with_recent: float = typer.Option(0.1, help="Share of requests from known users with 3 recent items."),
    n: int = typer.Option(10, help="Items per request."),
    floor: bool = typer.Option(True, help="Also run the same load against the health check (the gRPC floor)."),
    sweep: Optional[str] = typer.Option(None, help="Closed loop at each of these concurrencies too (e.g. 1,2,4,8,16), "
                                                   "Recommend and floor, to find the one that maximises throughput."),
    in_process_requests: int = typer.Option(2000, help="Requests for the in-process recall/rank/blend timing (0 = skip)."),
    out: Path = typer.Option(WORKDIR / "bench", help="Where to write bench.json and latency.png."),
):
    """Latency benchmark: percentiles, throughput, errors, server stages, the gRPC floor, in-process timings."""
    import pandas as pd

    from movierec import loadtest
    from movierec.bundle import current_version

    mix = loadtest.Mix(new_users=new_users, with_recent=with_recent, n=n)
    mix.validate()
    if (target is None) == (not spawn):
        raise CLIError("give exactly one of --target HOST:PORT or --spawn")
    if concurrency < 1 or processes < 1 or duration <= 0 or warmup < 0 or rate < 0:
        raise CLIError("--concurrency and --processes must be >= 1, --duration > 0, --warmup and --rate >= 0")
    levels = _parse_levels(sweep)
    bundle_path = current_version(bundles)
    if bundle_path is None or not bundle_path.is_dir():
        raise CLIError(f"{bundles} has no current bundle; run `movierec build`")
    users = pd.read_parquet(bundle_path / "users.parquet").raw_id.to_numpy().tolist()
    items = pd.read_parquet(bundle_path / "items.parquet").raw_id.to_numpy().tolist()
    out.mkdir(parents=True, exist_ok=True)
    server = None
    if spawn:
        console.print(f"starting a server on {bundle_path.name} ...")
        server, target = loadtest.spawn_server(bundles, out / "server.log", workers=server_workers,
                                               precomputed=precomputed)
    report = {"target": target, "bundle": bundle_path.name, "mix": vars(mix), "machine": loadtest.machine(),
              "server_workers": server_workers if spawn else None,
              "server_precomputed": precomputed if spawn else None,
              "date": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
              "load": {"concurrency": concurrency if not rate else None, "rate": rate or None,
                       "duration": duration, "warmup": warmup, "processes": processes}}
    try:
        spec = loadtest.LoadSpec(target=target, duration=duration, warmup=warmup, concurrency=concurrency,
                                 rate=rate, processes=processes, mix=mix, users=users, items=items)
        mode = f"open loop {rate:g}/s" if rate else f"closed loop, {concurrency} in flight"
        console.print(f"Recommend: {mode}, {duration:g}s after {warmup:g}s warm-up, {processes} client processes")
        report["recommend"], latencies = loadtest.run_load(spec)
        floor_latencies = np.zeros(0)
        if floor:
            console.print("floor: the same load against grpc.health.v1.Health/Check")
            report["floor"], floor_latencies = loadtest.run_load(spec, floor=True)
        if levels:
            report["sweep"] = loadtest.concurrency_sweep(
                spec, levels, on_level=lambda level: console.print(f"sweep: {level} in flight"))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    if in_process_requests:
        console.print(f"in-process: {in_process_requests} requests through recall, rank and blend")
        report["in_process"] = loadtest.in_process(bundle_path, mix, in_process_requests)

    table = Table(title=f"latency (ms), {mode}")
    columns = ["p50", "p90", "p95", "p99", "p99.9", "max"]
    table.add_column("call")
    for column in columns:
        table.add_column(column, justify="right")
    table.add_column("req/s", justify="right")
    table.add_column("errors", justify="right")
    rows = [("Recommend", report["recommend"])] + ([("health (floor)", report["floor"])] if floor else [])
    for name, summary in rows:
        if not summary["count"]:
            table.add_row(name, *["-"] * len(columns), "0", str(summary["errors"]))
            continue
        table.add_row(name, *[f"{summary[f'{c}_ms']:.2f}" for c in columns],
                      f"{summary['throughput']:.0f}", str(summary["errors"]) + (f" {summary['codes']}" if summary["errors"] else ""))
    console.print(table)
    if floor and report["floor"]["count"] and report["recommend"]["count"]:
        report["p50_ratio_to_floor"] = report["recommend"]["p50_ms"] / report["floor"]["p50_ms"]
        console.print(f"Recommend p50 / floor p50 = {report['p50_ratio_to_floor']:.2f}")
    if levels:
        console.print(_sweep_table(report["sweep"]))
    stages = report["recommend"].get("server_stages_ms")
    if stages:
        console.print("server stages (ms, p50 / p99): " + ", ".join(
            f"{k} {v['p50']:.3f} / {v['p99']:.3f}" for k, v in stages.items()))
    console.print(f"client CPU: {report['recommend']['client_cpu_share_of_a_core']:.0%} of a core over {processes} processes")
    if "precomputed_share" in report["recommend"]:
        console.print(f"answered from the offline rankings: {report['recommend']['precomputed_share']:.0%} of requests")
    if "in_process" in report:
        ip = report["in_process"]
        for name in ("served", "online"):
            if name in ip:
                console.print(f"in-process {name} (µs, p50 / p99; {ip[name]['precomputed_share']:.0%} precomputed, "
                              f"~{ip['mean_candidates_known_users']:.0f} candidates online): " + ", ".join(
                                  f"{k} {v['p50']:.0f} / {v['p99']:.0f}" for k, v in ip[name]["stages_us"].items()))
    loadtest.write_json(out / "bench.json", report)
    loadtest.plot(latencies, floor_latencies, out / "latency.png", f"movierec bench: {mode}, bundle {bundle_path.name}")
    console.print(f"wrote {out / 'bench.json'} and {out / 'latency.png'}")


def _parse_levels(text: Optional[str]) -> list[int]:
    levels = _parse_ids(text, "--sweep", "concurrencies")
    if text and (not levels or min(levels) < 1):
        raise CLIError("--sweep concurrencies must be >= 1")
    return sorted(set(levels))


def _sweep_table(rows: list[dict]) -> Table:
    best = max(rows, key=lambda row: row["recommend"]["throughput"])["concurrency"]
    table = Table(title="closed-loop sweep (ms); * = the most Recommend throughput")
    for column in ("in flight", "Recommend p50", "p99", "req/s", "floor p50", "floor req/s", "p50 / floor"):
        table.add_column(column, justify="right")
    for row in rows:
        rec, flo = row["recommend"], row["floor"]
        if not rec["count"] or not flo["count"]:
            table.add_row(str(row["concurrency"]), *["-"] * 6)
            continue
        table.add_row(f"{row['concurrency']}{' *' if row['concurrency'] == best else ''}",
                      f"{rec['p50_ms']:.2f}", f"{rec['p99_ms']:.2f}", f"{rec['throughput']:.0f}",
                      f"{flo['p50_ms']:.2f}", f"{flo['throughput']:.0f}", f"{row['p50_ratio_to_floor']:.2f}")
    return table


@app.command("eval")
@handles_errors
def eval_command(
    data_dir: Path = typer.Option(WORKDIR / "data" / "ml-100k", "--data", help="Normalised dataset."),
    run_dir: Path = typer.Option(..., help="A run directory (from `movierec train sasrec|ncf`)."),
    model: str = typer.Option("sasrec", help="What the run directory holds: 'sasrec' or 'ncf'."),
    stage: str = typer.Option("test", help="'valid' or 'test' targets of the leave-last-out split."),
    k: List[int] = typer.Option([10], "--k", help="Cut-offs for HR@K and NDCG@K (repeatable)."),
    seed: int = typer.Option(2018, help="Seed for the 100 sampled negatives per user."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the metrics here as JSON."),
    users: Optional[str] = typer.Option(None, help="Only users whose raw MovieLens id is in this range, e.g. 1-2999."),
):
    """HR@K / NDCG@K of a trained model and the popularity baseline, sampled and full ranking."""
    if stage not in ("valid", "test"):
        raise CLIError(f"--stage must be 'valid' or 'test', not {stage!r}")
    if any(value <= 0 for value in k):
        raise CLIError("--k must be positive")
    user_range = _parse_range(users)
    results = evaluate_run(data_dir, run_dir, stage, k, seed, model, user_range)
    console.print(_metrics_table(f"{stage} metrics", results, k))
    if json_out:
        json_out.write_text(json.dumps({"stage": stage, "data": str(data_dir), "run": str(run_dir), "users": users,
                                        "metrics": results}, indent=2))
        console.print(f"wrote {json_out}")


@app.command()
@handles_errors
def quickstart(
    source: str = typer.Option("ml-100k", help="Release to start from (see `movierec data --source`)."),
    sasrec_epochs: int = typer.Option(30, help="SASRec training epochs."),
    ncf_epochs: int = typer.Option(5, help="NCF training epochs."),
    address: str = typer.Option("127.0.0.1:50051", help="Where to serve."),
    metrics_port: int = typer.Option(9100, help="Prometheus metrics port (0 = off)."),
    no_serve: bool = typer.Option(False, "--no-serve", help="Stop after building the bundle."),
):
    """The main job on the embedded default: ML-100K -> normalise -> train SASRec and NCF ->
    build a bundle -> serve it over gRPC (Ctrl-C stops)."""
    data_dir = prepare_data(source, None, strict=False)
    _call_command(build, data_dir=data_dir, train=True, sasrec_epochs=sasrec_epochs, ncf_epochs=ncf_epochs)
    if no_serve:
        return
    _call_command(serve, address=address, metrics_port=metrics_port)


if __name__ == "__main__":
    app()
