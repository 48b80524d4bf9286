"""A recall channel written the way a plug-in is: this one module, plus one registry line
(`CHANNELS.register("newest", NewestChannel)`) where it is used. It recalls the newest movies
by release year, the same for every user."""

import numpy as np

from movierec.recall.channel import Candidates
from movierec.recall.component import BuildInputs, ComponentFiles
from movierec.recall.context import ItemMask, RequestContext


class NewestChannel:
    name = "newest"

    def __init__(self, order: np.ndarray):
        self.order = order  # item ids, newest first
        self.newness = np.zeros(len(order) + 1, dtype=np.float32)
        self.newness[order] = np.linspace(1.0, 0.0, len(order))

    def retrieve(self, context: RequestContext, k: int, allowed: ItemMask) -> Candidates:
        items = self.order[allowed.array[self.order]][:k]
        return Candidates(items, self.newness[items])

    def score(self, context: RequestContext, items: np.ndarray) -> np.ndarray:
        return self.newness[items]

    @classmethod
    def build(cls, inputs: BuildInputs, params: dict) -> "NewestChannel":
        items = inputs.dataset.items
        order = items.item.to_numpy()[np.argsort(-items.year.to_numpy(), kind="stable")]
        return cls(order.astype(np.int64))

    def export(self, files: ComponentFiles) -> dict:
        files.save_npy("order.npy", self.order)
        return {}

    @classmethod
    def load(cls, files: ComponentFiles, fragment: dict) -> "NewestChannel":
        return cls(files.load_npy("order.npy"))
