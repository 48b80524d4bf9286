"""`sasrec`: the SASRec state after the user's sequence -> SASRec item embeddings.

The state after each stored history is computed offline; a request with recent items gets a
state recomputed in numpy from the history plus those items (`models.sasrec.inference`).
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from movierec.files import sha256_file
from movierec.models.sasrec.config import SASRecConfig
from movierec.models.sasrec.inference import SASRecInference

from ..channel import Candidates
from ..component import BuildInputs, ComponentFiles, open_index, save_index
from ..context import ItemMask, RequestContext
from ..index import IndexConfig, VectorIndex, build_index, top_k


class SASRecChannel:
    name = "sasrec"

    def __init__(self, index: VectorIndex, user_states: np.ndarray, inference: SASRecInference,
                 index_config: IndexConfig, source: dict | None = None):
        self.index = index
        self.user_states = user_states        # (num_users + 1, d): the state after each stored history
        self.inference = inference
        self.index_config = index_config
        self.source = source or {}

    def query(self, context: RequestContext) -> np.ndarray | None:
        """The stored state, or one recomputed from the history plus the recent items."""
        if len(context.recent) == 0:
            return self.user_states[context.user] if context.user > 0 else None
        return self.inference.user_vector(context.sequence)

    def retrieve(self, context: RequestContext, k: int, allowed: ItemMask) -> Candidates | None:
        query = self.query(context)
        return None if query is None else Candidates(*top_k(self.index, query, k, allowed))

    @classmethod
    def build(cls, inputs: BuildInputs, params: dict) -> "SASRecChannel":
        from movierec.models.sasrec.training import load_sasrec
        from movierec.training.checkpoints import RunDir

        run = inputs.run("sasrec")
        dataset, sequences = inputs.dataset, inputs.histories.sequences
        model = load_sasrec(run, dataset.num_items)
        states = model.user_vectors([sequences.of(u) for u in range(dataset.num_users + 1)])
        states[0] = 0.0
        index = build_index(model.item_vectors()[1:], np.arange(1, dataset.num_items + 1), inputs.index)
        source = {"run": str(run), "weights_sha256": sha256_file(RunDir(run).best_model)}
        return cls(index, states, SASRecInference.from_model(model), inputs.index, source)

    def export(self, files: ComponentFiles) -> dict:
        files.save_npz("model.npz", self.inference.w)
        files.write_json("config.json", asdict(self.inference.config))
        files.save_npy("users.npy", self.user_states)
        return {**save_index(files, self.index, self.index_config), "source": self.source}

    @classmethod
    def load(cls, files: ComponentFiles, fragment: dict) -> "SASRecChannel":
        config = SASRecConfig.from_saved(files.read_json("config.json"))
        index, index_config = open_index(files, fragment)
        return cls(index, files.load_npy("users.npy"), SASRecInference(files.load_npz("model.npz"), config),
                   index_config, fragment.get("source"))
