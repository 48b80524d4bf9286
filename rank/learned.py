"""What every ranker trained on recall's candidates shares (`movierec train ranker`): its run
directory, its features (`rank.features`) built into the bundle, and the choice between runs.

A ranker run directory holds:

    config.json        the ranker's name, its feature spec, and the bundle and split it was trained on
    validation.json    NDCG@10 / HR@10 on the validating users: of its order and of the recall
                       order over their candidates, and of the served lists with it and with
                       the bundle's own ranker (`served`)
    poster_basis.npz   the projection of poster vectors to the `side` group's few dimensions
    <model files>      what the ranker's own module reads (`from_run`)

At build time the ranker's item table is made from the new bundle's own ratings, and, with
the `ncf` group, the NCF run's scorer is exported beside it. Each model kind is a subclass
that turns the feature matrix into logits (`logits`) and moves its model between a run, a
bundle and memory (`model_from_run`, `export_model`, `load_model`; by default through a numpy
scorer class, `scorer`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from movierec.dataset.posters import catalogue_posters, load_posters
from movierec.errors import ConfigError
from movierec.files import load_npz
from movierec.models.ncf.scorer import NCFScorer
from movierec.recall.component import AddedItems, BuildInputs, ComponentError, ComponentFiles
from movierec.recall.context import RequestContext
from movierec.recall.merge import Merged

from .features import FeatureSpec, ItemTable, RankFeatures
from .ranker import cascade

SCORER_FILE = "scorer.npz"   # a numpy scorer's arrays, in a run and in a bundle
RUN_CONFIG = "config.json"
VALIDATION = "validation.json"
POSTER_BASIS = "poster_basis.npz"
MONITOR = "NDCG@10"
RECALL_ORDER = "recall order"
SERVED = "served"   # the served lists' figures on the validating users
AGAINST_BUNDLE = "against the bundle's"   # the served lists' paired NDCG@10 difference to the bundle's own


def read_ranker_run(run_dir: str | Path) -> tuple[dict, dict]:
    """(config, validation) of a ranker run; a clear error for a directory that is not one."""
    run_dir = Path(run_dir)
    try:
        config = json.loads((run_dir / RUN_CONFIG).read_text())
        validation = json.loads((run_dir / VALIDATION).read_text())
        config["ranker"], config["features"], validation[MONITOR]
        validation[SERVED][MONITOR], validation[RECALL_ORDER][SERVED][MONITOR]
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"{run_dir} is not a finished ranker run (train one with `movierec train ranker`)") from None
    return config, validation


def run_head(config: dict) -> tuple[int, bool]:
    """The head a ranker run was trained on (`train ranker --head`; 0: every candidate), and
    whether every channel scored each candidate of it (`--scores-head`)."""
    knobs = config.get("config", {})
    return int(knobs.get("head", 0)), bool(knobs.get("scores_head", False))


def project_posters(poster_file: Path | None, item_raw_ids: np.ndarray, basis: np.ndarray | None):
    """(I+1, P) projected poster vectors and presence flags, or (None, None)."""
    if poster_file is None or basis is None or not basis.size:
        return None, None
    vectors, has_poster = catalogue_posters(load_posters(poster_file), item_raw_ids)
    if vectors.shape[1] != basis.shape[0]:
        raise ComponentError(f"poster vectors of {vectors.shape[1]} dimensions; the ranker was trained on "
                             f"{basis.shape[0]}")
    return (vectors @ basis) * has_poster[:, None], has_poster


def item_table(inputs: BuildInputs, basis: np.ndarray | None) -> ItemTable:
    posters, has_poster = project_posters(inputs.posters, inputs.dataset.item_raw_ids()[1:], basis)
    return ItemTable.build(inputs.dataset.items, inputs.histories, inputs.encoder, posters, has_poster)


class LearnedRanker:
    """Base of the trained rankers; a subclass sets `name` and implements the model methods."""

    name: str
    signals = None  # reads every channel's score

    def __init__(self, features: RankFeatures, model, source: dict, head: int = 0, scores_head: bool = False):
        self.features, self.model, self.source, self.head = features, model, source, head
        self.scores_head = scores_head
        self.prepare()

    def prepare(self) -> None:
        """Serving-time work derived from the features and the model together; made again when
        the catalogue grows."""

    def score(self, context: RequestContext, merged: Merged) -> np.ndarray:
        """The logits of the candidates; with a head (`train ranker --head`), of the first
        `head` in the recall order only, the rest following them in that order (`cascade`)."""
        if not len(merged.items):
            return np.zeros(0, np.float32)
        return cascade(lambda head: self.score_all(context, head), merged, self.head)

    def score_all(self, context: RequestContext, merged: Merged) -> np.ndarray:
        return self.logits(self.features.matrix(context, merged), context, merged)

    def logits(self, matrix: np.ndarray, context: RequestContext, merged: Merged) -> np.ndarray:
        raise NotImplementedError

    # How the model moves between a run, a bundle and memory; by default a numpy scorer class
    # (`scorer`, with `load(path)` and `save(path)`) kept as SCORER_FILE.
    scorer = None

    @classmethod
    def model_from_run(cls, run_dir: Path, spec: FeatureSpec):
        return cls.scorer.load(run_dir / SCORER_FILE)

    def export_model(self, files: ComponentFiles) -> None:
        self.model.save(files.path(SCORER_FILE))

    @classmethod
    def load_model(cls, files: ComponentFiles, spec: FeatureSpec):
        return cls.scorer.load(files.path(SCORER_FILE))

    def grow(self, added: AddedItems) -> None:
        """Room for movies added while serving: their item features (no interactions yet),
        and average rows in the model's own per-movie tables."""
        features = self.features
        if features.ncf is not None:
            features.ncf.grow(len(added))
        self.features = RankFeatures(features.spec, features.table.grown(added), features.ncf)
        if hasattr(self.model, "grow"):
            self.model.grow(len(added))
        self.prepare()

    @classmethod
    def build(cls, inputs: BuildInputs, params: dict) -> "LearnedRanker":
        unknown = sorted(set(params) - {"run"})
        if unknown:
            raise ConfigError(f"the {cls.name} ranker takes one parameter, run=DIR (a ranker run), not "
                              f"{', '.join(unknown)}")
        run_dir = Path(params["run"]) if "run" in params else inputs.run("ranker")
        config, validation = read_ranker_run(run_dir)
        if config["ranker"] != cls.name:
            raise ComponentError(f"{run_dir} is a {config['ranker']} ranker run, not {cls.name}")
        spec = FeatureSpec.from_dict(config["features"])
        missing = [c for c in spec.channels if c not in inputs.channels]
        if missing:
            raise ComponentError(f"the ranker of {run_dir} reads the recall channels {', '.join(missing)}, "
                                 "which this build does not have")
        basis_file = Path(run_dir) / POSTER_BASIS
        basis = load_npz(basis_file)["basis"] if basis_file.is_file() else None
        ncf = None
        if "ncf" in spec.groups:
            from movierec.models.ncf.training import exported_scorer

            ncf, _ = inputs.shared("ncf", lambda: exported_scorer(inputs.dataset, inputs.run("ncf")))
        features = RankFeatures(spec, item_table(inputs, basis), ncf)
        source = {"run": str(run_dir), "trained_on": config.get("trained_on", {}), "validation": validation}
        return cls(features, cls.model_from_run(Path(run_dir), spec), source, *run_head(config))

    def export(self, files: ComponentFiles) -> dict:
        files.save_npz("items.npz", self.features.table.arrays())
        if self.features.ncf is not None:
            self.features.ncf.save(files.path("ncf.npz"))
        self.export_model(files)
        return {"features": self.features.spec.to_dict(), "source": self.source, "head": self.head,
                "scores_head": self.scores_head}

    @classmethod
    def load(cls, files: ComponentFiles, fragment: dict) -> "LearnedRanker":
        spec = FeatureSpec.from_dict(fragment["features"])
        ncf = NCFScorer.load(files.path("ncf.npz")) if "ncf" in spec.groups else None
        features = RankFeatures(spec, ItemTable.from_arrays(files.load_npz("items.npz")), ncf)
        return cls(features, cls.load_model(files, spec), fragment.get("source", {}), int(fragment.get("head", 0)),
                   bool(fragment.get("scores_head", False)))


def paired_difference(gains: np.ndarray, baseline: np.ndarray) -> dict:
    """Mean and standard error of the per-user difference of two rankers' NDCG on the same users."""
    difference = np.asarray(gains, np.float64) - np.asarray(baseline, np.float64)
    error = difference.std(ddof=1) / np.sqrt(len(difference)) if len(difference) > 1 else float("inf")
    return {"difference": float(difference.mean()) if len(difference) else 0.0, "standard error": float(error)}


def choose_ranker(runs: list[Path], margin: float = 1.0) -> tuple[Path | None, dict]:
    """Among the runs whose order beats the recall order on their validating users, the one
    whose served lists score best there, provided they beat what the bundle serves without it
    (None when no run does); and what each scored, with the paired difference of the served
    lists and its standard error where the run recorded them. The served lists, not the order
    alone, decide: under a time cut most validating users are new, and what a ranker does for
    them shows only in how it orders the popular and new slots. Where the run recorded the
    paired difference, it must be at least `margin` standard errors: a gain within the noise of
    the validating users does not replace the recall order."""
    scored = {}
    for run in runs:
        config, validation = read_ranker_run(run)
        scored[str(run)] = {"ranker": config["ranker"], MONITOR: validation[MONITOR],
                            RECALL_ORDER: validation[RECALL_ORDER][MONITOR], SERVED: validation[SERVED][MONITOR],
                            f"{SERVED}, {RECALL_ORDER}": validation[RECALL_ORDER][SERVED][MONITOR],
                            **({f"{SERVED}, {AGAINST_BUNDLE}": validation[SERVED][AGAINST_BUNDLE]}
                               if AGAINST_BUNDLE in validation[SERVED] else {})}

    def wins(run: Path) -> bool:
        score = scored[str(run)]
        paired = score.get(f"{SERVED}, {AGAINST_BUNDLE}")
        return score[MONITOR] > score[RECALL_ORDER] and score[SERVED] > score[f"{SERVED}, {RECALL_ORDER}"] and (
            paired is None or paired["difference"] >= margin * paired["standard error"])

    best = max(filter(wins, runs), key=lambda run: scored[str(run)][SERVED], default=None)
    return best, scored
