"""`lgbm`: LightGBM LambdaMART over the candidates' features (`rank.features`), the standard
strong baseline of learning to rank; trained by `movierec train ranker --model lgbm`, kept
as LightGBM's own text model format."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from movierec.files import write_bytes
from movierec.rank.learned import LearnedRanker
from movierec.recall.component import ComponentFiles

MODEL_FILE = "model.txt"


def _booster(text: str):
    import lightgbm

    return lightgbm.Booster(model_str=text)


class LightGBMRanker(LearnedRanker):
    name = "lgbm"

    def logits(self, matrix, context, merged) -> np.ndarray:
        return self.model.predict(matrix, num_threads=1).astype(np.float32)

    @classmethod
    def model_from_run(cls, run_dir: Path, spec):
        return _booster((run_dir / MODEL_FILE).read_text())

    def export_model(self, files: ComponentFiles) -> None:
        write_bytes(files.path(MODEL_FILE), self.model.model_to_string().encode())

    @classmethod
    def load_model(cls, files: ComponentFiles, spec):
        return _booster(files.path(MODEL_FILE).read_text())
