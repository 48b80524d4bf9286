"""`sasrec`: the SASRec state after the user's sequence -> SASRec item embeddings.

The state after each stored history is computed offline; a request with recent items gets a
state recomputed in numpy from the history plus those items (`models.sasrec.inference`).

`sasrec2`, `sasrec3`: a second and a third SASRec run (`run=DIR`: another seed or configuration
of the model), each a channel of its own beside `sasrec`. A learned ranker then reads every
model's score of each candidate: sequential models that disagree where each alone is unsure.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from movierec.errors import ConfigError
from movierec.files import sha256_file
from movierec.models.sasrec.config import SASRecConfig
from movierec.models.sasrec.inference import SASRecInference, SASRecUsers
from movierec.options import option
from movierec.tables import grown

from ..channel import Candidates
from ..component import AddedItems, BuildInputs, ComponentError, ComponentFiles, open_index, parse_params, save_index
from ..context import ItemMask, RequestContext
from ..index import IndexConfig, VectorIndex, build_index, top_k


@dataclass
class SASRecParams:
    run: str = option("", "SASRec run directory (default: the build's --sasrec-run).")


def trained_users(inputs: BuildInputs, run: Path) -> tuple[SASRecUsers, np.ndarray, dict]:
    """A SASRec run's users (states after every stored history), item vectors and source,
    computed once per build for every component that uses them."""
    def compute():
        from movierec.models.sasrec.states import user_states
        from movierec.models.sasrec.training import load_sasrec
        from movierec.training.checkpoints import RunDir

        dataset, sequences = inputs.dataset, inputs.histories.sequences
        model = load_sasrec(run, dataset.num_items)
        source = {"run": str(run), "weights_sha256": sha256_file(RunDir(run).best_model)}
        if "content" in inputs.runs and maps_content(inputs, run):
            source["mapped_from_content"] = map_untrained_items(model, inputs, run)
        states = user_states(model, [sequences.of(u) for u in range(dataset.num_users + 1)], inputs.cluster)
        states[0] = 0.0
        return SASRecUsers(states, SASRecInference.from_model(model)), model.item_vectors(), source
    return inputs.shared(f"sasrec:{run}", compute)


def maps_content(inputs: BuildInputs, run: Path) -> bool:
    """Whether the content run's map leads into this run's item space: it is fitted on the
    build's own SASRec run, and any other run's embeddings lie elsewhere."""
    return Path(run) == Path(inputs.run("sasrec"))


def map_untrained_items(model, inputs: BuildInputs, run: Path) -> int:
    """Give the movies the SASRec run never trained on (no interaction in its training split:
    they came after its time cut, or were held out) the embedding the content run maps their
    content to, so that they are recalled, scored and read in histories like the others;
    returns how many."""
    import paddle

    from movierec.dataset.sequences import chronological, item_counts, leave_last_out
    from movierec.models.content import ContentRun, catalogue_vectors
    from movierec.models.runs import trained_before

    content = inputs.shared("content.run", lambda: ContentRun.load(inputs.run("content")))
    trained = inputs.dataset.before(trained_before(run))
    counts = item_counts(leave_last_out(chronological(trained.ratings, trained.num_users)).train.items,
                         trained.num_items)
    untrained = np.flatnonzero(counts == 0)
    untrained = untrained[untrained > 0]
    if len(untrained):
        vectors = catalogue_vectors(content.encoder, inputs.dataset.items)[untrained]
        weight = model.item_emb.weight.numpy()
        weight[untrained] = content.collaborative(vectors)
        model.item_emb.weight.set_value(paddle.to_tensor(weight))
    return int(len(untrained))


def save_users(files: ComponentFiles, users: SASRecUsers) -> None:
    files.save_npz("model.npz", users.inference.w)
    files.write_json("config.json", asdict(users.inference.config))
    files.save_npy("users.npy", users.states)


def open_users(files: ComponentFiles) -> SASRecUsers:
    config = SASRecConfig.from_saved(files.read_json("config.json"))
    return SASRecUsers(files.load_npy("users.npy"), SASRecInference(files.load_npz("model.npz"), config))


def context_query(users: SASRecUsers, context: RequestContext, channel: str = "sasrec") -> np.ndarray | None:
    return context.once(f"{channel}.query", lambda: users.query(context.user, context.sequence, len(context.recent)))


class SASRecChannel:
    name = "sasrec"
    needs_run = False   # whether `run=DIR` must be given (else the build's SASRec run)

    def __init__(self, index: VectorIndex, users: SASRecUsers, index_config: IndexConfig, source: dict | None = None):
        self.index = index
        self.users = users
        self.index_config = index_config
        self.source = source or {}

    def score(self, context: RequestContext, items: np.ndarray) -> np.ndarray | None:
        query = context_query(self.users, context, self.name)
        return None if query is None else self.users.scores(query, items)

    def retrieve(self, context: RequestContext, k: int, allowed: ItemMask) -> Candidates | None:
        query = context_query(self.users, context, self.name)
        return None if query is None else Candidates(*top_k(self.index, query, k, allowed))

    @classmethod
    def build(cls, inputs: BuildInputs, params: dict) -> "SASRecChannel":
        settings = parse_params(SASRecParams, params, cls.name)
        if cls.needs_run and not settings.run:
            raise ConfigError(f"the {cls.name} channel needs run=DIR, a SASRec run other than the build's")
        if settings.run and not Path(settings.run).is_dir():
            raise ComponentError(f"{cls.name}: no SASRec run at {settings.run}")
        run = Path(settings.run) if settings.run else inputs.run("sasrec")
        users, item_vectors, source = trained_users(inputs, run)
        index = build_index(item_vectors[1:], np.arange(1, len(item_vectors)), inputs.index)
        return cls(index, users, inputs.index, source)

    def grow(self, added: AddedItems) -> None:
        """Added movies get their SASRec vectors from the content map (then they are recalled
        and read in histories like any other), else zero vectors (never recalled). The map
        leads into the space of the run the build mapped content for (`maps_content`) only."""
        mapped = added.mapped if "mapped_from_content" in self.source else None
        weights = self.users.inference.w
        weights["item_emb.weight"] = grown(weights["item_emb.weight"], mapped if mapped is not None else len(added))
        if mapped is not None:
            self.index = self.index.with_added(mapped, added.ids)

    def export(self, files: ComponentFiles) -> dict:
        save_users(files, self.users)
        return {**save_index(files, self.index, self.index_config), "source": self.source}

    @classmethod
    def load(cls, files: ComponentFiles, fragment: dict) -> "SASRecChannel":
        index, index_config = open_index(files, fragment)
        return cls(index, open_users(files), index_config, fragment.get("source"))


class SecondSASRecChannel(SASRecChannel):
    name = "sasrec2"
    needs_run = True


class ThirdSASRecChannel(SASRecChannel):
    name = "sasrec3"
    needs_run = True
