import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from movierec.cli import app
from movierec.dataset.posters import PosterError, PosterVectors, load_posters
from movierec.models.posters import embed_images

runner = CliRunner()


@pytest.fixture(scope="module")
def resnet_weights(tmp_path_factory):
    """Weights saved from a freshly initialised ResNet50: plumbing, not quality."""
    import paddle
    from paddle.vision.models import resnet50

    from movierec.training.checkpoints import save_tensors

    paddle.seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet50.npz"
    save_tensors(path, resnet50(pretrained=False, num_classes=0, with_pool=True).state_dict())
    return path


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    for movie_id, size in ((1, (300, 445)), (2, (182, 268)), (10, (300, 300))):
        Image.fromarray(rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)).save(folder / f"{movie_id}.jpg")
    Image.fromarray(rng.integers(0, 255, size=(50, 40), dtype=np.uint8)).save(folder / "7.jpg")  # greyscale
    (folder / "3.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (folder / "notes.txt").write_text("not a poster")
    return folder


def test_embed_skips_and_reports_corrupt_images(images, resnet_weights):
    vectors, skipped = embed_images(images, resnet_weights, batch_size=2)
    assert list(vectors.movie_id) == [1, 2, 7, 10]
    assert vectors.vectors.shape == (4, 2048) and np.isfinite(vectors.vectors).all()
    assert any(s.startswith("3.jpg") and "unreadable" in s for s in skipped)
    assert any(s.startswith("notes.txt") for s in skipped)
    # different images give different vectors
    assert not np.allclose(vectors.vectors[0], vectors.vectors[1])


def test_embed_cli_end_to_end(images, resnet_weights, tmp_path):
    out = tmp_path / "posters.npz"
    result = runner.invoke(app, ["posters", "embed", "--images", str(images), "--weights", str(resnet_weights),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "3.jpg" in result.output
    loaded = load_posters(out)
    assert loaded.dim == 2048 and list(loaded.movie_id) == [1, 2, 7, 10]


def test_missing_weights_is_a_clear_error(images, tmp_path):
    result = runner.invoke(app, ["posters", "embed", "--images", str(images), "--weights", str(tmp_path / "none.pdparams")])
    assert result.exit_code == 2 and "weights file not found" in result.output
    assert "nothing is downloaded" in result.output


def test_import_validates(tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, movie_id=np.array([3, 1]), vectors=np.ones((2, 5), dtype=np.float32))
    loaded = load_posters(good)
    assert loaded.dim == 5
    out = tmp_path / "stored.npz"
    result = runner.invoke(app, ["posters", "import", str(good), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert list(load_posters(out).movie_id) == [1, 3]  # stored sorted by movie id

    nan = tmp_path / "nan.npz"
    np.savez(nan, movie_id=np.array([1, 2]), vectors=np.array([[0.0, np.nan], [1.0, 1.0]], dtype=np.float32))
    result = runner.invoke(app, ["posters", "import", str(nan)])
    assert result.exit_code == 2 and "NaN or inf" in result.output

    dup = tmp_path / "dup.npz"
    np.savez(dup, movie_id=np.array([1, 1]), vectors=np.ones((2, 3), dtype=np.float32))
    with pytest.raises(PosterError, match="not unique"):
        load_posters(dup)

    ragged = tmp_path / "ragged.npz"
    np.savez(ragged, movie_id=np.array([1, 2, 3]), vectors=np.ones((2, 3), dtype=np.float32))
    with pytest.raises(PosterError, match="expected movie_id"):
        load_posters(ragged)

    pickled = tmp_path / "objects.npz"
    np.savez(pickled, movie_id=np.array([1], dtype=object), vectors=np.ones((1, 3), dtype=np.float32))
    with pytest.raises(PosterError, match="not a readable"):
        load_posters(pickled)


def test_import_against_a_dataset_leaves_out_unknown_movies(tmp_path, ml1m_dir):
    assert runner.invoke(app, ["data", "--source", str(ml1m_dir), "--out", str(tmp_path / "d")]).exit_code == 0
    path = tmp_path / "p.npz"
    np.savez(path, movie_id=np.array([1, 2, 999]), vectors=np.ones((3, 4), dtype=np.float32))
    result = runner.invoke(app, ["posters", "import", str(path), "--data", str(tmp_path / "d"),
                                 "--out", str(tmp_path / "o.npz")])
    assert result.exit_code == 0, result.output
    assert "999" in result.output
    assert list(load_posters(tmp_path / "o.npz").movie_id) == [1, 2]
    alien = tmp_path / "alien.npz"
    np.savez(alien, movie_id=np.array([500, 501]), vectors=np.ones((2, 4), dtype=np.float32))
    result = runner.invoke(app, ["posters", "import", str(alien), "--data", str(tmp_path / "d")])
    assert result.exit_code == 2 and "none of the poster movie ids" in result.output


def test_aligned_sets_presence_flags():
    vectors = PosterVectors(np.array([5, 9]), np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32))
    aligned, present = vectors.aligned(np.array([9, 7, 5]))
    assert list(present) == [True, False, True]
    assert np.array_equal(aligned, [[3.0, 4.0], [0.0, 0.0], [1.0, 2.0]])
