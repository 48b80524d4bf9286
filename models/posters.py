"""Poster vectors from images: ResNet50 minus its classifier, in Paddle (`movierec posters embed`)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from movierec.dataset.posters import PosterError, PosterVectors

IMAGE_SIZE = 224
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


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

    from movierec.training.checkpoints import CheckpointError, load_model_weights

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
