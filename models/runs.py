"""Training runs end to end, as `movierec train` and `movierec eval` do them: the split, the
device, training (or resuming), test metrics beside popularity, and the run's metrics.json."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from movierec.dataset.evaluation import EvalTask, build_task, evaluate, popularity_scorer
from movierec.dataset.readers import DataError
from movierec.dataset.sequences import LeaveLastOut, Sequences, chronological, leave_last_out
from movierec.dataset.store import Dataset, load_dataset
from movierec.errors import ConfigError
from movierec.files import save_npy, write_json

MODELS = ("sasrec", "ncf", "two_tower")
DISPLAY = {"sasrec": "SASRec", "ncf": "NCF", "two_tower": "two-tower"}
TEST_SEED = 2018
DATASET_FILE = "dataset.json"
SPLIT_FILE = "split.json"   # how many of each user's last ratings the run's dataset left out


@dataclass
class Split:
    dataset: Dataset
    sequences: Sequences       # every user's full history, chronological
    split: LeaveLastOut


def load_split(data_dir: Path, hold_out_after: str = "") -> Split:
    """The leave-last-out split of the dataset's ratings (those before `hold_out_after`, if given)."""
    dataset = load_dataset(data_dir).before(hold_out_after)
    if not dataset.manifest.get("has_timestamps"):
        raise DataError(f"{data_dir} has no timestamps, so no chronological split can be made")
    sequences = chronological(dataset.ratings, dataset.num_users)
    return Split(dataset, sequences, leave_last_out(sequences))


def run_scorer(model: str, dataset: Dataset, run_dir: Path):
    """The evaluation scorer of a trained run's best weights."""
    if model == "sasrec":
        from movierec.models.sasrec.training import load_sasrec

        return load_sasrec(run_dir, dataset.num_items).scorer()
    if model == "ncf":
        from movierec.models.ncf.training import load_ncf, ncf_scorer_for_eval, read_ncf_config, run_features

        features = run_features(dataset, run_dir, read_ncf_config(run_dir))
        return ncf_scorer_for_eval(load_ncf(run_dir, features).export_scorer(), features)
    if model == "two_tower":
        from movierec.models.two_tower.training import exported_scorer, load_two_tower, user_vectors

        tower, inputs = load_two_tower(run_dir, dataset)
        trained = leave_last_out(chronological(dataset.ratings, dataset.num_users)).train
        items = exported_scorer(dataset, run_dir, trained).item_vectors

        def score(users, histories):
            return user_vectors(tower, inputs, users, histories) @ items.T
        return score
    raise ConfigError(f"--model must be one of {', '.join(MODELS)}, not {model!r}")


def evaluate_run(data_dir: Path, run_dir: Path, stage: str, ks: list[int], seed: int = TEST_SEED,
                 model: str = "sasrec", users: tuple[int, int] | None = None) -> dict:
    """HR@K / NDCG@K of a run and of popularity on the `stage` targets, sampled and full;
    `users` limits them to raw user ids in an inclusive range."""
    from movierec.device import use_paddle_device

    if model not in MODELS:
        raise ConfigError(f"--model must be one of {', '.join(MODELS)}, not {model!r}")
    use_paddle_device()
    data = load_split(data_dir, trained_before(run_dir))
    scorer = run_scorer(model, data.dataset, run_dir)
    task = build_task(data.split, stage, data.sequences, data.dataset.num_items, seed=seed)
    if users is not None:
        raw = data.dataset.user_raw_ids()[task.users]
        task = task.subset((raw >= users[0]) & (raw <= users[1]))
        if not len(task.users):
            raise DataError(f"no user with a {stage} target has a raw id in {users[0]}-{users[1]}")
    return {
        DISPLAY[model]: evaluate(scorer, task, ks),
        "popularity": evaluate(popularity_scorer(task.history, data.dataset.num_items), task, ks),
    }


@dataclass
class Prepared:
    device: str
    data: Split
    valid_task: EvalTask


def trained_before(run_dir: Path) -> str:
    """The time cut a run was trained with ("" for all ratings)."""
    from movierec.training.checkpoints import RunDir

    run = RunDir(run_dir)
    return run.read_config().get("hold_out_after", "") if run.config.is_file() else ""


def prepare_run(data_dir: Path, run_dir: Path, resume: bool, hold_out_after: str = "") -> Prepared:
    """What every training run does first: start over unless resuming, pick the device, load
    the split and the validation task."""
    from movierec.device import use_paddle_device
    from movierec.training.distributed import barrier, is_main, start

    start()   # joins the other processes when launched with --nproc
    if not resume and run_dir.exists() and is_main():
        shutil.rmtree(run_dir)
    barrier()
    device = use_paddle_device()
    data = load_split(data_dir, hold_out_after)
    signature = data.dataset.signature()
    recorded = run_dataset(run_dir)
    if recorded is not None and recorded != signature:
        raise ConfigError(f"{run_dir} was trained on another catalogue ({recorded['users']['count']:,} users, "
                          f"{recorded['items']['count']:,} items); train a new run, or give --no-resume")
    if is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / DATASET_FILE, signature)
        write_json(run_dir / SPLIT_FILE, {"without_last": int(data.dataset.manifest.get("without_last", 0))})
    barrier()
    task = build_task(data.split, "valid", data.sequences, data.dataset.num_items)
    return Prepared(device, data, task)


def trained_without_last(run_dir: Path) -> int:
    """How many of each user's last ratings the run's dataset left out (`movierec data
    --without-last`), beyond the two its own split holds out; 0 for a run that records none."""
    path = Path(run_dir) / SPLIT_FILE
    return int(json.loads(path.read_text()).get("without_last", 0)) if path.is_file() else 0


def run_dataset(run_dir: Path) -> dict | None:
    """The users and items a run was trained on (`Dataset.signature`), if it records them."""
    path = Path(run_dir) / DATASET_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def finish_run(model: str, prepared: Prepared, data_dir: Path, run_dir: Path, state, wall: float) -> dict:
    """Test metrics of the best checkpoint next to popularity, written to the run's metrics.json."""
    dataset = prepared.data.dataset
    test = evaluate_run(data_dir, run_dir, "test", [10], model=model)
    metrics = {
        "model": model,
        "dataset": dataset.name,
        "ratings_file": dataset.manifest["source_files"]["ratings"],
        "device": prepared.device,
        "config": json.loads((run_dir / "config.json").read_text()),
        "epochs_run": state.epoch,
        "best_epoch": state.best_epoch,
        "train_seconds": round(state.train_seconds, 1),
        "wall_seconds_this_call": round(wall, 1),
        "valid_best": next((h["valid"] for h in state.history if h["epoch"] == state.best_epoch), None),
        "test": test,
    }
    write_json(run_dir / "metrics.json", metrics)
    return metrics


def train_run(model: str, data_dir: Path, run_dir: Path, config, posters: Path | None = None, resume: bool = True,
              say: Callable[[str], None] = print, progress: Callable | None = None,
              on_epoch: Callable | None = None, content_run: Path | None = None) -> dict:
    """`movierec train sasrec|ncf|two-tower`: train or resume a run, then write its test metrics.
    NCF's poster vectors and the two-tower model's content vectors are copied into the run
    directory, so the run is self-contained."""
    prepared = prepare_run(data_dir, run_dir, resume, config.hold_out_after)
    dataset, train_sequences = prepared.data.dataset, prepared.data.split.train
    details = posters_note = ""
    if model == "sasrec":
        from movierec.models.sasrec.training import train_sasrec

        details = f" ({config.loss})"

        def fit():
            return train_sasrec(train_sequences, dataset.num_items, config, run_dir, prepared.valid_task,
                                progress=progress, on_epoch=on_epoch)
    elif model == "ncf":
        from movierec.dataset.posters import load_posters
        from movierec.models.ncf.model import Features
        from movierec.models.ncf.training import POSTERS_FILE, train_ncf

        vectors = None
        if posters is not None:
            vectors, unknown = load_posters(posters).restricted_to(dataset.items.raw_id.to_numpy())
            if len(unknown):
                say(f"{len(unknown)} poster(s) of movies outside the dataset are not used")
            run_dir.mkdir(parents=True, exist_ok=True)
            vectors.save(run_dir / POSTERS_FILE)
        features = Features.from_dataset(dataset, vectors)
        posters_note = f", posters for {int(features.has_poster.sum()):,} movies" if vectors else ""

        def fit():
            return train_ncf(train_sequences, features, config, run_dir, prepared.valid_task,
                             progress=progress, on_epoch=on_epoch)
    elif model == "two_tower":
        from movierec.models.two_tower.training import CONTENT_FILE, TowerInputs, train_two_tower

        content = None
        if content_run is not None:
            from movierec.models.content import ContentRun, catalogue_vectors

            content = catalogue_vectors(ContentRun.load(content_run).encoder, dataset.items)
            save_npy(run_dir / CONTENT_FILE, content)
            details = f" (content vectors from {content_run})"
        config = replace(config, content=content is not None)
        inputs = TowerInputs.from_dataset(dataset, content)

        def fit():
            return train_two_tower(train_sequences, inputs, config, run_dir, prepared.valid_task,
                                   progress=progress, on_epoch=on_epoch)
    else:
        raise ConfigError(f"no such model to train: {model!r}")
    from movierec.training.distributed import is_main, parameters_digest, world

    rank, size = world()
    say(f"training {DISPLAY[model]}{details} on {dataset.name} ({dataset.num_users:,} users, "
        f"{dataset.num_items:,} items{posters_note}), device {prepared.device}, run dir {run_dir}"
        + (f", process {rank + 1} of {size}" if size > 1 else ""))
    started = time.perf_counter()
    trained, state = fit()
    if size > 1:
        say(f"process {rank} of {size}: parameters sha256 {parameters_digest(trained)}")
    if not is_main():
        return {}
    return finish_run(model, prepared, data_dir, run_dir, state, time.perf_counter() - started)
