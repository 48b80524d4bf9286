"""`movierec train content`: the content encoder of a dataset's movies (`dataset.content`) and a
learned map from content vectors into the SASRec run's item space.

The map is ridge regression, fitted on the movies the SASRec run trained on often enough
(`min_count` interactions), its strength chosen on a tenth of them held out (mean cosine of the
mapped vector and the SASRec embedding). A movie no one has rated then gets a collaborative
vector from its content alone, which the `sasrec` channel searches like any other.

A run directory holds `config.json`, `encoder.npz` (vocabulary, IDF, SVD basis), `map.npz`
(`weight`, `bias`) and `metrics.json`; no pickle.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from movierec.dataset.content import ContentEncoder, document
from movierec.dataset.sequences import item_counts
from movierec.dataset.store import load_dataset
from movierec.errors import ConfigError
from movierec.files import load_npz, save_npz, sha256_file, write_json
from movierec.models.runs import load_split, trained_before
from movierec.options import option

ALPHAS = (0.1, 1.0, 10.0, 100.0)
ENCODER_FILE, MAP_FILE, CONFIG_FILE, METRICS_FILE = "encoder.npz", "map.npz", "config.json", "metrics.json"


@dataclass
class ContentConfig:
    dim: int = option(64, "Dimensions of the text part (SVD of the TF-IDF rows).")
    min_count: int = option(5, "Interactions a movie needs in the SASRec run's training data to teach the map.")
    seed: int = option(42, "Seed for the SVD and the held-out movies.")

    def __post_init__(self) -> None:
        if self.dim < 1 or self.min_count < 1:
            raise ConfigError("--dim and --min-count must be positive")


def catalogue_vectors(encoder: ContentEncoder, catalogue) -> np.ndarray:
    """(I+1, dim) content vectors of a catalogue's movies (an items table with item, title, year,
    genres and, where known, plot); row 0 (padding) is zero."""
    items = catalogue.sort_values("item")
    plots = items["plot"].tolist() if "plot" in items else [""] * len(items)
    vectors = np.zeros((len(items) + 1, encoder.dim), np.float32)
    vectors[items.item.to_numpy()] = encoder.encode(items.title.tolist(), plots, items.genres.tolist(),
                                                    items.year.tolist())
    return vectors


def fit_map(content: np.ndarray, target: np.ndarray, rows: np.ndarray, seed: int) -> tuple[dict, dict]:
    """Ridge from content to target vectors over `rows`; alpha chosen on a held-out tenth."""
    rng = np.random.default_rng(seed)
    held = rng.random(len(rows)) < 0.1
    def solve(fit_rows, alpha):
        x, y = content[fit_rows], target[fit_rows]
        x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
        weight = np.linalg.solve((x - x_mean).T @ (x - x_mean) + alpha * np.eye(x.shape[1]), (x - x_mean).T @ (y - y_mean))
        return weight.astype(np.float32), (y_mean - x_mean @ weight).astype(np.float32)

    def cosine(weight, bias, eval_rows):
        mapped, true = content[eval_rows] @ weight + bias, target[eval_rows]
        return float(np.mean(np.sum(mapped * true, axis=1) / np.maximum(
            np.linalg.norm(mapped, axis=1) * np.linalg.norm(true, axis=1), 1e-12)))

    scores = {alpha: cosine(*solve(rows[~held], alpha), rows[held]) for alpha in ALPHAS}
    alpha = max(scores, key=scores.get)
    weight, bias = solve(rows, alpha)
    return {"weight": weight, "bias": bias}, {"alpha": alpha, "held_out_cosine": scores, "movies": int(len(rows)),
                                              "held_out_movies": int(held.sum())}


def train_content(data_dir: Path, sasrec_run: Path, run_dir: Path, config: ContentConfig, say=print) -> dict:
    from movierec.models.sasrec.training import load_sasrec
    from movierec.training.checkpoints import RunDir

    started = time.perf_counter()
    dataset = load_dataset(data_dir)
    items = dataset.items.sort_values("item")
    plots = items["plot"].tolist() if "plot" in items else [""] * len(items)
    encoder = ContentEncoder.fit([document(t, p) for t, p in zip(items.title, plots)], config.dim, config.seed)
    vectors = catalogue_vectors(encoder, dataset.items)
    split = load_split(data_dir, trained_before(sasrec_run))
    counts = item_counts(split.split.train.items, dataset.num_items)
    rows = np.flatnonzero(counts >= config.min_count)
    rows = rows[rows > 0]
    if len(rows) < 20:
        raise ConfigError(f"only {len(rows)} movies have {config.min_count}+ interactions to fit the map on")
    target = load_sasrec(sasrec_run, dataset.num_items).item_vectors()
    mapping, metrics = fit_map(vectors, target, rows, config.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_npz(run_dir / ENCODER_FILE, encoder.arrays())
    save_npz(run_dir / MAP_FILE, mapping)
    write_json(run_dir / CONFIG_FILE, {**asdict(config), "data": str(data_dir), "sasrec_run": str(sasrec_run),
                                       "sasrec_weights_sha256": sha256_file(RunDir(sasrec_run).best_model)})
    with_plot = int(sum(bool(p) for p in plots))
    metrics = {"map": metrics, "terms": len(encoder.terms), "dim": encoder.dim, "movies": dataset.num_items,
               "movies_with_plot": with_plot, "seconds": round(time.perf_counter() - started, 1)}
    write_json(run_dir / METRICS_FILE, metrics)
    say(f"content encoder: {len(encoder.terms):,} terms, {encoder.dim} dimensions, plots for {with_plot:,} of "
        f"{dataset.num_items:,} movies; map into {sasrec_run.name}: alpha {metrics['map']['alpha']}, held-out "
        f"cosine {metrics['map']['held_out_cosine'][metrics['map']['alpha']]:.3f} over "
        f"{metrics['map']['held_out_movies']} movies")
    return metrics


@dataclass
class ContentRun:
    encoder: ContentEncoder
    weight: np.ndarray   # (content dim, SASRec hidden)
    bias: np.ndarray

    @classmethod
    def load(cls, run_dir: Path) -> "ContentRun":
        run_dir = Path(run_dir)
        if not (run_dir / ENCODER_FILE).is_file() or not (run_dir / MAP_FILE).is_file():
            raise ConfigError(f"{run_dir} is not a content run (train one with `movierec train content`)")
        mapping = load_npz(run_dir / MAP_FILE)
        return cls(ContentEncoder.from_arrays(load_npz(run_dir / ENCODER_FILE)), mapping["weight"], mapping["bias"])

    def arrays(self) -> dict:
        return {**self.encoder.arrays(), "map_weight": self.weight, "map_bias": self.bias}

    @classmethod
    def from_arrays(cls, arrays: dict) -> "ContentRun":
        return cls(ContentEncoder.from_arrays(arrays), arrays["map_weight"], arrays["map_bias"])

    def collaborative(self, vectors: np.ndarray) -> np.ndarray:
        return (vectors @ self.weight + self.bias).astype(np.float32)
