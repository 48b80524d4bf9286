"""`movierec train sasrec|ncf` and `movierec eval`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from movierec.models.content import ContentConfig
from movierec.models.ncf.config import NCFConfig
from movierec.models.ranker.config import RankerConfig
from movierec.models.runs import TEST_SEED, evaluate_run, train_run
from movierec.client.quality import QualityConfig
from movierec.models.sasrec.config import SASRecConfig
from movierec.models.two_tower.config import TwoTowerConfig
from movierec.training.distributed import Processes
from movierec.workdir import DEFAULT_DATA, run_dir as default_run_dir

from .common import CLIError, console, metrics_table, progress

DATA_OPTION = typer.Option(DEFAULT_DATA, "--data", help="Normalised dataset (from `movierec data`).")
RESUME_OPTION = typer.Option(True, help="Continue from the run directory's last checkpoint.")
LAUNCH_LOGS = "launch-logs"   # each training process' log, with --nproc


def report_epoch(state, record) -> None:
    valid = record.get("valid")
    text = f"epoch {record['epoch']:>3}  loss {record['loss']:.4f}  {record['train_seconds']:.0f}s"
    if valid:
        text += (f"  valid sampled NDCG@10 {valid['sampled']['NDCG@10']:.4f} HR@10 {valid['sampled']['HR@10']:.4f}"
                 f"  full NDCG@10 {valid['full']['NDCG@10']:.4f} HR@10 {valid['full']['HR@10']:.4f}")
    console.print(text)


def run(model: str, data_dir: Path, run_dir: Path, config, posters: Optional[Path] = None,
        resume: bool = True, content_run: Optional[Path] = None, processes: Processes = Processes()) -> dict:
    """Train (or resume) and print the test table, as `movierec train MODEL` does; with several
    processes, start them (each runs this again)."""
    if processes.launch_here(run_dir / LAUNCH_LOGS):
        return {}
    metrics = train_run(model, data_dir, run_dir, config, posters=posters, resume=resume, say=console.print,
                        progress=progress, on_epoch=report_epoch, content_run=content_run)
    if not metrics:   # one of several training processes: the first reports
        return metrics
    console.print(metrics_table(f"test ({metrics['dataset']}, best epoch {metrics['best_epoch']} of "
                                f"{metrics['epochs_run']})", metrics["test"], [10]))
    console.print(f"metrics: {run_dir / 'metrics.json'}   curves: {run_dir / 'curves.png'}")
    return metrics


def train_sasrec(
    config: SASRecConfig,
    processes: Processes,
    data_dir: Path = DATA_OPTION,
    run_dir: Optional[Path] = typer.Option(None, help="Checkpoints, metrics and curves go here "
                                           "(default: movierec-work/runs/sasrec-<data>-<loss>)."),
    resume: bool = RESUME_OPTION,
):
    """Train SASRec with checkpoints (best on validation), resumable, on CPU or GPU."""
    run("sasrec", data_dir, run_dir or default_run_dir("sasrec", data_dir, config.loss), config, resume=resume,
        processes=processes)


def train_ncf(
    config: NCFConfig,
    processes: Processes,
    data_dir: Path = DATA_OPTION,
    run_dir: Optional[Path] = typer.Option(None, help="Checkpoints, metrics and curves go here "
                                           "(default: movierec-work/runs/ncf-<data>)."),
    posters: Optional[Path] = typer.Option(None, help="Poster vectors (.npz from `movierec posters "
                                           "embed|import`); movies without one get the presence flag off."),
    use_posters: bool = typer.Option(True, "--use-posters/--no-posters",
                                     help="--no-posters trains without poster vectors even when --posters is given."),
    resume: bool = RESUME_OPTION,
):
    """Train the NCF ranker (NeuMF + side features + posters) with sampled negatives."""
    from dataclasses import replace

    posters = posters if use_posters else None
    run("ncf", data_dir, run_dir or default_run_dir("ncf", data_dir), replace(config, posters=posters is not None),
        posters=posters, resume=resume, processes=processes)


def train_two_tower(
    config: TwoTowerConfig,
    processes: Processes,
    data_dir: Path = DATA_OPTION,
    run_dir: Optional[Path] = typer.Option(None, help="Checkpoints, metrics and curves go here "
                                           "(default: movierec-work/runs/two_tower-<data>)."),
    content_run: Optional[Path] = typer.Option(None, help="A content run (`movierec train content`): the movie "
                                               "tower reads its content vectors, so it serves movies no one rated."),
    resume: bool = RESUME_OPTION,
):
    """Train the two-tower recall model (user tower: side features, id, recent items; movie
    tower: id, genres, year, content) with in-batch sampled softmax, logQ correction and hard
    negatives; it serves new users from side features alone."""
    run("two_tower", data_dir, run_dir or default_run_dir("two_tower", data_dir), config, resume=resume,
        content_run=content_run, processes=processes)


def train_content(
    config: ContentConfig,
    data_dir: Path = DATA_OPTION,
    sasrec_run: Optional[Path] = typer.Option(None, help="The SASRec run whose item space the content vectors are "
                                              "mapped into (default: movierec-work/runs/sasrec-<data>-ce)."),
    run_dir: Optional[Path] = typer.Option(None, help="Where the run goes (default: movierec-work/runs/content-<data>)."),
):
    """Fit the content encoder of the movies (title and plot TF-IDF + SVD, genres, year) and its
    map into the SASRec item space: the content channel, and vectors for movies no one rated."""
    from movierec.models.content import train_content as train

    run_dir = run_dir or default_run_dir("content", data_dir)
    train(data_dir, sasrec_run or default_run_dir("sasrec", data_dir, "ce"), run_dir, config, say=console.print)
    console.print(f"content run: {run_dir}")


def train_ranker(config: RankerConfig, processes: Processes):
    """Train a ranker on what a held-out bundle's recall hands it (one positive per user, the
    other candidates as hard negatives), and score it beside the recall order on validation
    users, its order and the lists served with it; `movierec build --ranker-run` serves the
    winner."""
    from movierec.client.quality import served_validation
    from movierec.models.ranker.train import train_ranker as train

    if config.ranker == "lgbm" and (processes.nproc > 1 or processes.nnodes > 1):
        raise CLIError("--nproc and --nnodes train the Paddle rankers (ncf, din); LightGBM trains in one process")
    if processes.launch_here(config.run_dir.parent / f"{config.run_dir.name}-{LAUNCH_LOGS}"):
        return
    train(config, served_validation, say=console.print, progress=progress)
    console.print(f"ranker run: {config.run_dir}")


def parse_range(text: Optional[str]) -> Optional[tuple[int, int]]:
    if not text:
        return None
    low, sep, high = text.partition("-")
    if not sep or not low.strip().isdigit() or not high.strip().isdigit() or int(low) > int(high):
        raise CLIError(f"--users takes a range of raw user ids like 1-2999, not {text!r}")
    return int(low), int(high)


def eval_run(
    served: QualityConfig,
    data_dir: Optional[Path] = typer.Option(None, "--data", help="Normalised dataset (default: with --run-dir, "
                                            "movierec-work/data/ml-100k; for a bundle, the one it was built from)."),
    run_dir: Optional[Path] = typer.Option(None, help="A run directory (from `movierec train sasrec|ncf`): evaluate "
                                           "the model alone. Without it, the served lists of --bundles are."),
    model: str = typer.Option("sasrec", help="What the run directory holds: 'sasrec' or 'ncf'."),
    stage: str = typer.Option("test", help="With --run-dir: 'valid' or 'test' targets of the leave-last-out split."),
    k: List[int] = typer.Option([10], "--k", help="Cut-offs for HR@K and NDCG@K (repeatable)."),
    seed: int = typer.Option(TEST_SEED, help="With --run-dir: seed for the 100 sampled negatives per user."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the metrics here as JSON."),
    plot: Optional[Path] = typer.Option(None, help="For a bundle: a PNG bar chart of the report."),
    users: Optional[str] = typer.Option(None, help="With --run-dir: only users whose raw MovieLens id is in this "
                                        "range, e.g. 1-2999."),
):
    """Quality on held-out data: of a trained model (--run-dir: HR@K / NDCG@K, sampled and full
    ranking, beside popularity), or of what a bundle serves (--bundles: the Recommend lists
    beside each recall channel alone, popularity and peers, by user segment)."""
    from movierec.files import write_json

    if any(value <= 0 for value in k):
        raise CLIError("--k must be positive")
    if run_dir is None:
        from dataclasses import replace

        from movierec.client.quality import served_quality, write_report

        report = served_quality(replace(served, data_dir=data_dir, k=tuple(k)), say=console.print, progress=progress)
        console.print(quality_table(report))
        write_report(report, json_out, plot)
        for path in filter(None, (json_out, plot)):
            console.print(f"wrote {path}")
        return
    if stage not in ("valid", "test"):
        raise CLIError(f"--stage must be 'valid' or 'test', not {stage!r}")
    data_dir = data_dir or DEFAULT_DATA
    results = evaluate_run(data_dir, run_dir, stage, k, seed, model, parse_range(users))
    console.print(metrics_table(f"{stage} metrics", results, k))
    if json_out:
        write_json(json_out, {"stage": stage, "data": str(data_dir), "run": str(run_dir), "users": users,
                              "metrics": results})
        console.print(f"wrote {json_out}")


def quality_table(report: dict):
    from rich.table import Table

    split = report["split"]
    how = (f"each user's last {split['hold_out_last']} item(s) held out" if split.get("hold_out_last")
           else f"everything after {split['hold_out_after']} held out")
    table = Table(title=f"served quality: {report['dataset']['name']}, {how}, {report['users']:,} users, bundle "
                        f"{report['bundle']} (ranker {report['ranker']}, slots {report['slot_order']}, pool "
                        f"{report['slot_pool']}, {report['served_from']})")
    table.add_column("list")
    segments = list(report["metrics"]["served"])
    first = report["k"][0]
    for k in report["k"]:
        for name in ("HR", "NDCG", "MRR"):
            table.add_column(f"{name}@{k}", justify="right")
    for segment in segments[1:]:
        table.add_column(f"NDCG@{first} {segment} ({report['metrics']['served'][segment]['users']:,})",
                         justify="right")
    table.add_column("coverage", justify="right")
    table.add_column("genre diversity", justify="right")
    for name, by_segment in report["metrics"].items():
        overall = by_segment["all users"]
        table.add_row(name, *[f"{overall[f'{m}@{k}']:.4f}" for k in report["k"] for m in ("HR", "NDCG", "MRR")],
                      *[f"{by_segment[s][f'NDCG@{first}']:.4f}" for s in segments[1:]],
                      f"{report['coverage'][name]:.1%}", f"{report['genre_diversity'][name]:.3f}")
    return table
