"""The IDX loader and the Fashion-MNIST / MNIST benchmark datasets, on small IDX files built here
(gzipped and raw), plus a slow check of the real files when the system package is installed."""

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from fairbench.cli import main
from fairbench.datasets import dataset_spec, load_dataset
from fairbench.datasets.fashion import FASHION_CATEGORIES, FashionMNISTSpec
from fairbench.datasets.idx import IDX_FILES, IMAGE_MAGIC, LABEL_MAGIC
from fairbench.errors import FairbenchError

N_TRAIN, N_TEST = 400, 100  # 40 and 10 per class


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def synthetic(seed: int = 0, side: int = 28):
    """Images whose ink varies within every class, labels cycling through 0..9."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        images = rng.integers(0, 256, size=(n, side, side)) * (rng.random((n, 1, 1)) < 0.5 + 0.5 * rng.random((n, 1, 1)))
        out[split] = (images.astype(np.uint8), np.arange(n, dtype=np.uint8) % 10)
    return out


def write_files(folder: Path, data, *, gz: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for (split, kind), name in IDX_FILES.items():
        images, labels = data[split]
        payload = idx_bytes(images, IMAGE_MAGIC) if kind == "images" else idx_bytes(labels, LABEL_MAGIC)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(payload))
        else:
            (folder / name).write_bytes(payload)
    return folder


@pytest.fixture(scope="module")
def data():
    return synthetic()


@pytest.fixture
def root(tmp_path, data):
    return write_files(tmp_path / "fashion", data, gz=True)


def oracle(data) -> tuple[np.ndarray, np.ndarray]:
    """Labels and shade of the training file then the test file, recomputed image by image."""
    pixels = np.concatenate([data["train"][0], data["test"][0]])
    labels = np.concatenate([data["train"][1], data["test"][1]]).astype(np.int64)
    ink = pixels.reshape(len(pixels), -1).mean(1)
    dark = np.array([ink[i] > np.median(ink[labels == labels[i]]) for i in range(len(labels))], dtype=np.int64)
    return labels, dark


def load(root, **keys):
    return load_dataset({"name": "fashion_mnist", "root": str(root)} | keys)


def test_gzipped_raw_and_torchvision_layouts_load_the_same_images(tmp_path, data):
    gz = load(write_files(tmp_path / "gz", data, gz=True))
    raw = load(write_files(tmp_path / "raw", data, gz=False))
    write_files(tmp_path / "tv" / "FashionMNIST" / "raw", data, gz=False)
    torchvision = load(tmp_path / "tv")
    for other in (raw, torchvision):
        assert torch.equal(gz.tensor, other.tensor)
        assert gz.attributes.equals(other.attributes)
        assert (gz.split == other.split).all()


def test_images_labels_and_shade_follow_the_definitions(root, data):
    dataset = load(root, bias=0.5)
    labels, dark = oracle(data)
    test = dataset.split == "test"
    # the test split is the test file, in order, pixel for pixel
    assert test.sum() == N_TEST
    expected = torch.from_numpy(data["test"][0].astype(np.float32) / 127.5 - 1.0)[:, None]
    assert torch.equal(dataset.tensor[torch.from_numpy(test)], expected)
    assert (dataset.attributes["category"][test].to_numpy() == labels[N_TRAIN:]).all()
    assert (dataset.attributes["shade"][test].to_numpy() == dark[N_TRAIN:]).all()
    assert dataset.attribute_values == {"shade": ("light", "dark"), "category": FASHION_CATEGORIES}
    assert dataset.image_shape == (1, 28, 28)


def test_resolution_14_is_2x2_average_pooling(root):
    full, half = load(root), load(root, resolution=14)
    assert half.image_shape == (1, 14, 14)
    assert torch.allclose(half.tensor, full.tensor.reshape(-1, 1, 14, 2, 14, 2).mean((3, 5)), atol=1e-6)
    assert half.attributes.equals(full.attributes)


@pytest.mark.parametrize("bias", [0.8, 0.5, 0.3])
def test_train_split_is_biased_by_category_and_val_is_not(root, data, bias):
    dataset = load(root, bias=bias)
    frame = dataset.attributes.assign(split=dataset.split)
    train = frame[frame.split == "train"]
    for category, rows in train.groupby("category"):
        wanted = bias if category >= 5 else 1.0 - bias
        # the largest subset with that fraction: one side kept whole, the other rounded
        n_dark = rows.shade.sum()
        assert abs(n_dark - wanted * len(rows)) <= 1.0, (category, n_dark, len(rows))
    # val: round(0.1 n) of each (category, shade) stratum of the training file, whatever the bias
    labels, dark = oracle(data)
    val = frame[frame.split == "val"]
    for (category, shade), rows in val.groupby(["category", "shade"]):
        n = ((labels[:N_TRAIN] == category) & (dark[:N_TRAIN] == shade)).sum()
        assert len(rows) == round(0.1 * n)


def test_same_spec_same_dataset_and_seed_changes_the_draw(root):
    a, b, c = load(root), load(root), load(root, seed=1)
    assert torch.equal(a.tensor, b.tensor) and (a.split == b.split).all()
    assert not (len(a.split) == len(c.split) and (a.split == c.split).all() and torch.equal(a.tensor, c.tensor))


def test_mnist_reads_the_same_format_with_stroke_and_digit(root):
    dataset = load_dataset({"name": "mnist", "root": str(root)})
    assert set(dataset.attributes.columns) == {"stroke", "digit"}
    assert dataset.attribute_values["stroke"] == ("light", "heavy")
    assert torch.equal(dataset.tensor, load(root).tensor)


# --- bad input: one line naming the file or value, exit status 2 -----------------------------


def _error(table: dict) -> str:
    with pytest.raises(FairbenchError) as info:
        load_dataset(table)
    message = str(info.value)
    assert "\n" not in message
    return message


def _rewrite(root: Path, name: str, payload: bytes) -> Path:
    path = root / f"{name}.gz"
    path.write_bytes(gzip.compress(payload))
    return path


def test_truncated_file_is_named(root, data):
    images, _ = data["train"]
    _rewrite(root, "train-images-idx3-ubyte", idx_bytes(images, IMAGE_MAGIC)[:-100])
    message = _error({"name": "fashion_mnist", "root": str(root)})
    assert "train-images-idx3-ubyte.gz" in message and "truncated" in message


def test_truncated_gzip_stream_is_named(root):
    path = root / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    message = _error({"name": "fashion_mnist", "root": str(root)})
    assert "t10k-labels-idx1-ubyte.gz" in message and "cannot read" in message


def test_labels_file_in_place_of_images_is_named_by_its_magic_number(root, data):
    _, labels = data["test"]
    _rewrite(root, "t10k-images-idx3-ubyte", idx_bytes(labels, LABEL_MAGIC))
    message = _error({"name": "fashion_mnist", "root": str(root)})
    assert "t10k-images-idx3-ubyte.gz" in message and "0x00000801" in message and "0x00000803" in message


def test_label_count_mismatch_is_named(root, data):
    _, labels = data["train"]
    _rewrite(root, "train-labels-idx1-ubyte", idx_bytes(labels[:-3], LABEL_MAGIC))
    message = _error({"name": "fashion_mnist", "root": str(root)})
    assert "train-labels-idx1-ubyte.gz" in message and "397 labels" in message and "400 images" in message


def test_wrong_image_size_and_label_value_are_named(root, data):
    _rewrite(root, "t10k-images-idx3-ubyte", idx_bytes(np.zeros((N_TEST, 14, 14)), IMAGE_MAGIC))
    assert "14x14" in _error({"name": "fashion_mnist", "root": str(root)})
    write_files(root, data, gz=True)
    labels = data["test"][1].copy()
    labels[3] = 10
    _rewrite(root, "t10k-labels-idx1-ubyte", idx_bytes(labels, LABEL_MAGIC))
    assert "label 10" in _error({"name": "fashion_mnist", "root": str(root)})


def test_missing_files_and_roots(tmp_path, root):
    (root / "train-labels-idx1-ubyte.gz").unlink()
    assert "lacks train-labels-idx1-ubyte[.gz]" in _error({"name": "fashion_mnist", "root": str(root)})
    empty = tmp_path / "empty"
    empty.mkdir()
    message = _error({"name": "fashion_mnist", "root": str(empty)})
    assert "holds none of the IDX files" in message and "FashionMNIST/raw" in message
    assert "is not a folder" in _error({"name": "fashion_mnist", "root": str(tmp_path / "nope")})


def test_no_root_and_no_system_package_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setattr(FashionMNISTSpec, "default_root", str(tmp_path / "not-installed"))
    message = _error({"name": "fashion_mnist"})
    assert "apt-get install dataset-fashion-mnist" in message and "FashionMNIST/raw" in message


@pytest.mark.parametrize("key, value, words", [
    ("resolution", 16, ["resolution", "7, 14, 28", "16"]),
    ("bias", 1.0, ["bias", "1.0"]),
    ("val_fraction", 0.0, ["val_fraction"]),
    ("attribute", "stroke", ["stroke", "shade"]),
])
def test_bad_keys_are_named(key, value, words):
    with pytest.raises(FairbenchError) as info:
        dataset_spec({"name": "fashion_mnist", key: value})
    assert all(word in str(info.value) for word in words), str(info.value)


def test_cli_reports_a_bad_file_in_one_line_and_exits_2(tmp_path, root, capsys):
    (root / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03\x00\x00"))
    config = tmp_path / "fashion.toml"
    config.write_text(
        (Path(__file__).parents[1] / "baselines" / "fashion.toml").read_text(encoding="utf-8").replace(
            'name = "fashion_mnist"', f'name = "fashion_mnist"\nroot = "{root}"'),
        encoding="utf-8",
    )
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fairbench: error:") and "t10k-images-idx3-ubyte.gz" in err[0]
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.skipif(not Path(FashionMNISTSpec.default_root).is_dir(), reason="dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_files():
    dataset = load_dataset({"name": "fashion_mnist"})
    counts = {split: int((dataset.split == split).sum()) for split in ("train", "val", "test")}
    assert counts["test"] == 10_000 and counts["val"] == 6_000
    frame = dataset.attributes.assign(split=dataset.split)
    train = frame[frame.split == "train"]
    dark = train.groupby("category").shade.mean()
    assert np.allclose(dark[:5], 0.2, atol=0.005) and np.allclose(dark[5:], 0.8, atol=0.005)
    test = frame[frame.split == "test"]
    assert np.allclose(test.groupby("category").shade.mean(), 0.5, atol=0.05)
    assert (test.category.value_counts() == 1000).all()
