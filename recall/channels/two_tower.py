"""`two_tower`: the user tower's vector -> the movie tower's vectors (`models.two_tower`).

The user tower reads the side features, the user id when the run knows the user, and the
user's latest items (the history and the request's recent items), so the channel serves a
known user as one more channel and a new user from side features alone, before any event.
Built from a run of `movierec train two-tower` on the bundle's dataset (`run=DIR`, default
`movierec-work/runs/two_tower-<data>`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from movierec.models.two_tower.scorer import TwoTowerScorer
from movierec.options import option

from ..channel import Candidates
from ..component import AddedItems, BuildInputs, ComponentError, ComponentFiles, open_index, parse_params, save_index
from ..context import ItemMask, RequestContext
from ..index import IndexConfig, VectorIndex, build_index, top_k


@dataclass
class TwoTowerParams:
    run: str = option("", "The two-tower run (default: movierec-work/runs/two_tower-<data>).")


class TwoTowerChannel:
    name = "two_tower"

    def __init__(self, index: VectorIndex, scorer: TwoTowerScorer, params: TwoTowerParams, index_config: IndexConfig,
                 source: dict | None = None):
        self.index = index
        self.scorer = scorer
        self.params = params
        self.index_config = index_config
        self.source = source or {}

    def query(self, context: RequestContext) -> np.ndarray:
        return context.once("two_tower.query", lambda: self.scorer.user_vector(
            context.user, context.user_features, context.sequence))

    def score(self, context: RequestContext, items: np.ndarray) -> np.ndarray:
        return (self.scorer.item_vectors[items] @ self.query(context)).astype(np.float32)

    def retrieve(self, context: RequestContext, k: int, allowed: ItemMask) -> Candidates:
        return Candidates(*top_k(self.index, self.query(context), k, allowed))

    def grow(self, added: AddedItems) -> None:
        """The movie tower gives added movies their vectors from genres, year and content."""
        vectors = self.scorer.grow(added.genres, added.years, added.content)
        self.index = self.index.with_added(vectors, added.ids)

    @classmethod
    def build(cls, inputs: BuildInputs, params: dict) -> "TwoTowerChannel":
        from movierec.dataset.sequences import chronological, leave_last_out
        from movierec.files import sha256_file
        from movierec.models.runs import run_dataset, trained_before
        from movierec.models.two_tower.training import exported_scorer
        from movierec.training.checkpoints import RunDir
        from movierec.workdir import run_dir

        settings = parse_params(TwoTowerParams, params, cls.name)
        dataset = inputs.dataset
        run = Path(settings.run) if settings.run else run_dir("two_tower", dataset.path)
        if not RunDir(run).best_model.is_file():
            raise ComponentError(f"{run} holds no trained two-tower run (train one with `movierec train two-tower`)")
        if run_dataset(run) not in (None, dataset.signature()):
            raise ComponentError(f"the two-tower run {run} was trained on another catalogue; train it on this dataset")
        trained = dataset.before(trained_before(run))
        scorer = exported_scorer(dataset, run, leave_last_out(chronological(trained.ratings, trained.num_users)).train)
        vectors = scorer.item_vectors
        index = build_index(vectors[1:], np.arange(1, len(vectors)), inputs.index)
        return cls(index, scorer, settings, inputs.index,
                   {"run": str(run), "weights_sha256": sha256_file(RunDir(run).best_model)})

    def export(self, files: ComponentFiles) -> dict:
        self.scorer.save(files.path("model.npz"))
        return {"params": asdict(self.params), **save_index(files, self.index, self.index_config),
                "source": self.source}

    @classmethod
    def load(cls, files: ComponentFiles, fragment: dict) -> "TwoTowerChannel":
        index, index_config = open_index(files, fragment)
        return cls(index, TwoTowerScorer.load(files.path("model.npz")),
                   parse_params(TwoTowerParams, fragment["params"], cls.name), index_config, fragment.get("source"))
