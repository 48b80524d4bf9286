"""Poster vectors: one float32 vector per movie, keyed by raw MovieLens movie id.

File format (`.npz`, no pickled objects, read with `allow_pickle=False`):

    movie_id  int64 (N,)    raw MovieLens ids, unique, ascending
    vectors   float32 (N, D) one row per movie id, all finite

The dimension D is whatever produced them: 2048 for `movierec posters embed` (ResNet50 minus
its classifier), 1280 for the pretrained EfficientNet-Lite0 vectors of the ML-1M posters.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from movierec.errors import MovieRecError

IMAGE_SIZE = 224
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class PosterError(MovieRecError):
    """Poster vectors or images that cannot be used."""


@dataclass
class PosterVectors:
    movie_id: np.ndarray
    vectors: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def validate(self) -> None:
        if self.vectors.ndim != 2 or self.movie_id.ndim != 1 or len(self.movie_id) != len(self.vectors):
            raise PosterError(f"expected movie_id (N,) and vectors (N, D), got {self.movie_id.shape} "
                              f"and {self.vectors.shape}")
        if len(self.movie_id) == 0 or self.dim == 0:
            raise PosterError("no poster vectors")
        if len(np.unique(self.movie_id)) != len(self.movie_id):
            raise PosterError("movie ids are not unique")
        bad = ~np.isfinite(self.vectors).all(axis=1)
        if bad.any():
            raise PosterError(f"{int(bad.sum())} vector(s) hold NaN or inf, e.g. movie {int(self.movie_id[bad][0])}")

    def restricted_to(self, known_movie_ids: np.ndarray) -> tuple["PosterVectors", np.ndarray]:
        """The vectors of known movies, and the ids that are not known (for the caller to report)."""
        known = np.isin(self.movie_id, known_movie_ids)
        if not known.any():
            raise PosterError("none of the poster movie ids is in the dataset; wrong file or dataset?")
        return PosterVectors(self.movie_id[known], self.vectors[known]), self.movie_id[~known]

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        order = np.argsort(self.movie_id)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as handle:
            np.savez(handle, movie_id=self.movie_id[order].astype(np.int64),
                     vectors=self.vectors[order].astype(np.float32))
        os.replace(tmp, path)
        return path

    def aligned(self, item_raw_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(len(item_raw_ids), D) vectors in catalogue order and a presence flag per row."""
        index = {int(m): row for row, m in enumerate(self.movie_id)}
        rows = np.array([index.get(int(m), -1) for m in item_raw_ids])
        present = rows >= 0
        out = np.zeros((len(item_raw_ids), self.dim), dtype=np.float32)
        out[present] = self.vectors[rows[present]]
        return out, present


def load_posters(path: str | Path) -> PosterVectors:
    path = Path(path)
    if not path.is_file():
        raise PosterError(f"poster vectors not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            if not {"movie_id", "vectors"} <= set(data.files):
                raise PosterError(f"{path}: needs arrays 'movie_id' and 'vectors', has {data.files}")
            posters = PosterVectors(data["movie_id"].astype(np.int64), data["vectors"].astype(np.float32))
    except (OSError, ValueError) as exc:
        raise PosterError(f"{path}: not a readable .npz of poster vectors ({exc})") from exc
    posters.validate()
    return posters


def preprocess(path: Path) -> np.ndarray:
    """Resize the shorter side to 256, centre-crop 224, ImageNet-normalise: (3, 224, 224)."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        width, height = image.size
        scale = 256 / min(width, height)
        image = image.resize((max(IMAGE_SIZE, round(width * scale)), max(IMAGE_SIZE, round(height * scale))),
                             Image.BILINEAR)
        left = (image.width - IMAGE_SIZE) // 2
        top = (image.height - IMAGE_SIZE) // 2
        image = image.crop((left, top, left + IMAGE_SIZE, top + IMAGE_SIZE))
        array = np.asarray(image, dtype=np.float32) / 255.0
    return ((array - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)


def resnet50_backbone(weights: str | Path):
    """ResNet50 minus its classifier (2048-d pooled features) with weights from a local `.npz`
    (parameter name -> array; nothing is downloaded and nothing is unpickled)."""
    from paddle.vision.models import resnet50

    from movierec.training import CheckpointError, load_model_weights

    weights = Path(weights)
    if not weights.is_file():
        raise PosterError(f"ResNet50 weights file not found: {weights} (nothing is downloaded; "
                          "pass the path of ResNet50 weights as .npz)")
    if weights.suffix != ".npz":
        raise PosterError(f"{weights}: weights must be an .npz of parameter arrays (pickle-based formats such "
                          "as .pdparams are not read); see the README to convert them once")
    model = resnet50(pretrained=False, num_classes=0, with_pool=True)
    try:
        load_model_weights(model, weights)
    except CheckpointError as exc:
        raise PosterError(str(exc)) from exc
    model.eval()
    return model


def list_images(images_dir: Path) -> tuple[list[tuple[int, Path]], list[str]]:
    """Images named <movie_id>.<ext>; other names are returned as skipped."""
    found, skipped = [], []
    for path in sorted(images_dir.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.stem.isdigit():
            found.append((int(path.stem), path))
        elif path.is_file():
            skipped.append(f"{path.name}: not named <movie_id>.jpg")
    return sorted(found), skipped


def embed_images(images_dir: str | Path, weights: str | Path, batch_size: int = 32,
                 progress: Callable | None = None) -> tuple[PosterVectors, list[str]]:
    """Vectors for every readable image; corrupt or unreadable ones are skipped and listed."""
    import paddle

    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise PosterError(f"image directory not found: {images_dir}")
    model = resnet50_backbone(weights)
    found, skipped = list_images(images_dir)
    if not found:
        raise PosterError(f"{images_dir} holds no images named <movie_id>.jpg")
    advance = progress(len(found), "posters") if progress else None
    ids, vectors = [], []
    batch_ids, batch = [], []

    def flush():
        with paddle.no_grad():
            out = model(paddle.to_tensor(np.stack(batch)))
        vectors.append(out.reshape([len(batch), -1]).numpy())
        ids.extend(batch_ids)
        batch_ids.clear()
        batch.clear()

    for movie_id, path in found:
        try:
            batch.append(preprocess(path))
            batch_ids.append(movie_id)
        except Exception as exc:  # PIL raises many types for broken files
            skipped.append(f"{path.name}: unreadable ({type(exc).__name__}: {exc})")
        if len(batch) == batch_size:
            flush()
        if advance:
            advance()
    if batch:
        flush()
    if not ids:
        raise PosterError(f"no readable image in {images_dir}")
    return PosterVectors(np.array(ids, dtype=np.int64), np.concatenate(vectors).astype(np.float32)), skipped
