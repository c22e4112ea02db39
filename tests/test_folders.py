"""CelebA, FairFace and UTKFace folders: parsing, splits, value names, images, bad input.

Every fixture is written here in the dataset's exact layout (tests/fixtures_folders.py);
expected values are recomputed from the written tables, independently of the loader.
"""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from fairbench.datasets import DATASETS, dataset_spec, load_dataset
from fairbench.datasets.folders import CELEBA_ATTRIBUTES, read_image
from fairbench.errors import FairbenchError
from fixtures_folders import (
    FAIRFACE_AGES,
    FAIRFACE_RACES,
    IMAGE_SIZE,
    image_color,
    utkface_name,
    write_celeba,
    write_fairface,
    write_image,
    write_utkface,
)

JPEG_TOLERANCE = 4 / 127.5  # a few grey levels of JPEG rounding on block-aligned colour bands


def expected_image(index: int, resolution: int) -> torch.Tensor:
    color = torch.tensor(image_color(index), dtype=torch.float32) / 127.5 - 1
    return color[:, None, None].expand(3, resolution, resolution)


def celeba(root, **keys):
    return load_dataset({"name": "celeba", "root": str(root), "attribute": "Male", **keys})


def error_of(call) -> str:
    with pytest.raises(FairbenchError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------------------------------------
# CelebA


def test_registered_names():
    dataset_spec({"name": "utkface", "root": "x", "attribute": "race"})  # loads the module
    assert {"celeba", "fairface", "utkface"} <= set(DATASETS)


def test_celeba_attributes_splits_and_value_names(tmp_path):
    table = write_celeba(tmp_path, n=12)
    data = celeba(tmp_path, target="Smiling", resolution=8)
    assert len(data) == 12
    assert list(data.attributes.columns[:2]) == ["Male", "Smiling"]
    assert sorted(data.attributes.columns) == sorted(CELEBA_ATTRIBUTES)
    for name in CELEBA_ATTRIBUTES:
        np.testing.assert_array_equal(data.labels(name).numpy(), (table[name] == 1).astype(int).to_numpy())
    assert data.attribute_values["Male"] == ("female", "male")
    assert data.attribute_values["Smiling"] == ("no", "yes")
    assert data.num_values("Male") == 2
    expected_split = table["partition"].map({0: "train", 1: "val", 2: "test"}).to_numpy()
    np.testing.assert_array_equal(data.split, expected_split)
    assert data.image_shape == (3, 8, 8)


def test_celeba_images_are_centre_crops_in_range(tmp_path):
    write_celeba(tmp_path, n=6)
    data = celeba(tmp_path, resolution=8)
    images = data.images()
    assert images.shape == (6, 3, 8, 8) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1
    for i in range(6):
        torch.testing.assert_close(images[i], expected_image(i, 8), atol=JPEG_TOLERANCE, rtol=0)


def test_read_image_exact_on_png(tmp_path):
    """Lossless file: the centre square is exactly pixel / 127.5 - 1, at any resolution."""
    path = tmp_path / "a.png"
    write_image(path, 5)
    for resolution in (16, 8, 3, 40):
        image = read_image(path, resolution=resolution)
        assert image.shape == (3, resolution, resolution)
        torch.testing.assert_close(image, expected_image(5, resolution), atol=0, rtol=0)
    # A 4-pixel crop of the 16-pixel centre square is still that colour; the full height is not.
    torch.testing.assert_close(read_image(path, resolution=4, crop=4), expected_image(5, 4), atol=0, rtol=0)
    Image.fromarray(np.full((4, 4), 255, dtype=np.uint8), "L").save(tmp_path / "grey.png")
    assert torch.equal(read_image(tmp_path / "grey.png", resolution=2), torch.ones(3, 2, 2))


def test_read_image_resizes_with_an_antialiasing_filter(tmp_path):
    """A one-pixel checkerboard halved in size averages to mid-grey (a point sampler keeps 0 or 255),
    and a noise image matches PIL's bicubic resize of the centred crop box."""
    board = (np.indices((8, 8)).sum(axis=0) % 2 * 255).astype(np.uint8)
    Image.fromarray(board, "L").save(tmp_path / "board.png")
    assert read_image(tmp_path / "board.png", resolution=4).abs().max() < 0.05
    noise = np.random.default_rng(0).integers(0, 256, size=(30, 20, 3), dtype=np.uint8)
    Image.fromarray(noise, "RGB").save(tmp_path / "noise.png")
    box = Image.fromarray(noise[6:24, 1:19], "RGB")  # crop 18 of width 20, height 30: offsets 1, 6
    expected = np.asarray(box.resize((7, 7), Image.Resampling.BICUBIC), dtype=np.float32) / 127.5 - 1
    actual = read_image(tmp_path / "noise.png", resolution=7, crop=18)
    torch.testing.assert_close(actual, torch.from_numpy(expected).permute(2, 0, 1), atol=0, rtol=0)


def test_celeba_kaggle_csv_with_nested_folder(tmp_path):
    table = write_celeba(tmp_path, n=7, csv_format=True, nested_images=True)
    data = celeba(tmp_path, attribute="Young", resolution=4)
    np.testing.assert_array_equal(data.labels("Young").numpy(), (table["Young"] == 1).astype(int).to_numpy())
    assert data.attribute_values["Young"] == ("no", "yes")
    torch.testing.assert_close(data[3], expected_image(3, 4), atol=JPEG_TOLERANCE, rtol=0)
    _rewrite_line(tmp_path / "list_attr_celeba.csv", 4, lambda line: line.rsplit(",", 1)[0] + ",yes")
    message = error_of(lambda: celeba(tmp_path))
    assert "line 4" in message and "Young = 'yes'" in message and "000003.jpg" in message


def test_celeba_torchvision_layout(tmp_path):
    table = write_celeba(tmp_path / "celeba", n=4)
    data = celeba(tmp_path, resolution=4)
    np.testing.assert_array_equal(data.labels("Male").numpy(), (table["Male"] == 1).astype(int).to_numpy())


def test_subset_by_split_and_indices(tmp_path):
    table = write_celeba(tmp_path, n=12)
    data = celeba(tmp_path, resolution=4)
    test = data.subset("test")
    rows = np.flatnonzero(table["partition"].to_numpy() == 2)
    assert len(test) == len(rows) and set(test.split) == {"test"}
    pd.testing.assert_frame_equal(test.attributes, data.attributes.iloc[rows].reset_index(drop=True))
    torch.testing.assert_close(test.images(), data.images(rows.tolist()), atol=0, rtol=0)
    picked = data.subset([5, 1])
    torch.testing.assert_close(picked[0], expected_image(5, 4), atol=JPEG_TOLERANCE, rtol=0)
    assert picked.labels("Male").tolist() == [int(table["Male"][5] == 1), int(table["Male"][1] == 1)]


def test_images_load_lazily_and_bad_files_are_named(tmp_path):
    write_celeba(tmp_path, n=5)
    bad = tmp_path / "img_align_celeba" / "000003.jpg"
    bad.write_bytes(b"this is not a jpeg")
    data = celeba(tmp_path, resolution=4)  # nothing is decoded at load
    torch.testing.assert_close(data[1], expected_image(1, 4), atol=JPEG_TOLERANCE, rtol=0)
    assert "000003.jpg" in error_of(lambda: data[2])
    assert "000003.jpg" in error_of(lambda: celeba(tmp_path, resolution=4, check_images=True))
    # A file that was listed at load and removed since is named too.
    (tmp_path / "img_align_celeba" / "000005.jpg").unlink()
    assert "000005.jpg" in error_of(lambda: data[4])


def test_truncated_image_is_named_when_read(tmp_path):
    write_celeba(tmp_path, n=2)
    path = tmp_path / "img_align_celeba" / "000002.jpg"
    path.write_bytes(path.read_bytes()[:200])
    data = celeba(tmp_path, resolution=4)
    assert "000002.jpg" in error_of(lambda: data[1])


def test_loader_pickles_for_dataloader_workers(tmp_path):
    write_celeba(tmp_path, n=3)
    data = celeba(tmp_path, resolution=4)
    loader = pickle.loads(pickle.dumps(data.loader))
    assert torch.equal(loader(2), data[2])


def test_max_images_is_a_seeded_subset_in_table_order(tmp_path):
    table = write_celeba(tmp_path, n=12)
    full = celeba(tmp_path, resolution=4)
    a = celeba(tmp_path, resolution=4, max_images=5)
    b = celeba(tmp_path, resolution=4, max_images=5)
    assert len(a) == 5
    # Identify each kept image by its colour, then check labels and split against the table.
    kept = [int(np.argmin([(a[i] - expected_image(j, 4)).abs().max() for j in range(12)])) for i in range(5)]
    assert kept == sorted(kept) and len(set(kept)) == 5
    np.testing.assert_array_equal(a.labels("Male").numpy(), (table["Male"][kept] == 1).astype(int).to_numpy())
    np.testing.assert_array_equal(a.split, full.split[kept])
    pd.testing.assert_frame_equal(a.attributes, b.attributes)
    assert len(celeba(tmp_path, resolution=4, max_images=50)) == 12


@pytest.mark.parametrize(
    "keys, named",
    [
        ({"resolution": 0}, "resolution"),
        ({"resolution": -3}, "-3"),
        ({"max_images": 0}, "max_images"),
        ({"crop": 0}, "crop"),
        ({"seed": -1}, "seed"),
        ({"target": "Male"}, "target"),
        ({"root": " "}, "root"),
        ({"resolutin": 8}, "Did you mean: resolution?"),
    ],
)
def test_celeba_bad_keys(tmp_path, keys, named):
    write_celeba(tmp_path, n=2)
    table = {"name": "celeba", "root": str(tmp_path), "attribute": "Male"} | keys
    assert named in error_of(lambda: load_dataset(table))


def test_bad_roots(tmp_path):
    missing = tmp_path / "nowhere"
    message = error_of(lambda: celeba(missing))
    assert str(missing) in message and "does not exist" in message
    (tmp_path / "empty").mkdir()
    assert "is empty" in error_of(lambda: celeba(tmp_path / "empty"))
    (tmp_path / "file.txt").write_text("x")
    assert "not a folder" in error_of(lambda: celeba(tmp_path / "file.txt"))
    for name in ("fairface", "utkface"):
        keys = {"name": name, "root": str(missing), "attribute": "gender"}
        assert str(missing) in error_of(lambda: load_dataset(keys))


def test_celeba_missing_tables_and_folder(tmp_path):
    write_celeba(tmp_path, n=2)
    shutil.move(tmp_path / "list_eval_partition.txt", tmp_path / "partition.bak")
    assert "list_eval_partition.txt" in error_of(lambda: celeba(tmp_path))
    shutil.move(tmp_path / "partition.bak", tmp_path / "list_eval_partition.txt")
    shutil.move(tmp_path / "list_attr_celeba.txt", tmp_path / "attr.bak")
    assert "list_attr_celeba.txt" in error_of(lambda: celeba(tmp_path))
    shutil.move(tmp_path / "attr.bak", tmp_path / "list_attr_celeba.txt")
    shutil.rmtree(tmp_path / "img_align_celeba")
    assert "img_align_celeba" in error_of(lambda: celeba(tmp_path))


def test_celeba_unknown_attribute_suggests(tmp_path):
    write_celeba(tmp_path, n=2)
    message = error_of(lambda: celeba(tmp_path, attribute="male"))
    assert "'male'" in message and "Did you mean: Male?" in message
    assert "'Smiles'" in error_of(lambda: celeba(tmp_path, target="Smiles"))


def _rewrite_line(path, number, edit):
    lines = path.read_text().splitlines()
    lines[number - 1] = edit(lines[number - 1])
    path.write_text("\n".join(lines) + "\n")


def test_celeba_malformed_rows_are_named(tmp_path):
    write_celeba(tmp_path, n=4)
    attr = tmp_path / "list_attr_celeba.txt"
    original = attr.read_text()

    _rewrite_line(attr, 5, lambda line: line.replace(" 1", " 0", 1) if " 1" in line else line.replace("-1", "0", 1))
    message = error_of(lambda: celeba(tmp_path))
    assert "line 5" in message and "'0'" in message and "000003.jpg" in message

    attr.write_text(original)
    _rewrite_line(attr, 4, lambda line: line.rsplit(" ", 1)[0])
    message = error_of(lambda: celeba(tmp_path))
    assert "line 4" in message and "40 values" in message

    attr.write_text(original)
    _rewrite_line(attr, 1, lambda line: "5")
    assert "5 images" in error_of(lambda: celeba(tmp_path))
    _rewrite_line(attr, 1, lambda line: "many")
    assert "'many'" in error_of(lambda: celeba(tmp_path))

    attr.write_text(original)
    _rewrite_line(attr, 6, lambda line: line.replace("000004.jpg", "000001.jpg"))
    _rewrite_line(attr, 1, lambda line: "4")
    assert "'000001.jpg' is listed twice" in error_of(lambda: celeba(tmp_path))

    attr.write_text(original)
    part = tmp_path / "list_eval_partition.txt"
    _rewrite_line(part, 2, lambda line: line.replace(" 1", " 7"))
    message = error_of(lambda: celeba(tmp_path))
    assert "line 2" in message and "000002.jpg 7" in message


def test_celeba_rows_need_their_files_and_partition_rows(tmp_path):
    write_celeba(tmp_path, n=6)
    (tmp_path / "img_align_celeba" / "000004.jpg").unlink()
    (tmp_path / "img_align_celeba" / "000006.jpg").unlink()
    message = error_of(lambda: celeba(tmp_path))
    assert "2 of 6" in message and "000004.jpg" in message
    write_celeba(tmp_path, n=6)
    write_image(tmp_path / "img_align_celeba" / "999999.jpg", 0)  # no row: ignored, counted
    data = celeba(tmp_path, resolution=4)
    assert len(data) == 6 and "1 files in the image folder have no attribute row" in data.description
    _rewrite_line(tmp_path / "list_eval_partition.txt", 3, lambda line: "")
    assert "'000003.jpg'" in error_of(lambda: celeba(tmp_path))


def test_crop_larger_than_image_is_named(tmp_path):
    write_celeba(tmp_path, n=2)
    data = celeba(tmp_path, resolution=4, crop=IMAGE_SIZE[0] + 1)
    message = error_of(lambda: data[0])
    assert "crop = 17" in message and "000001.jpg" in message and "16x32" in message


# ---------------------------------------------------------------------------------------------
# FairFace


def fairface(root, **keys):
    return load_dataset({"name": "fairface", "root": str(root), "attribute": "gender", **keys})


def test_fairface_codes_value_names_and_splits(tmp_path):
    rows = write_fairface(tmp_path, n_train=9, n_val=5)
    data = fairface(tmp_path, target="race", resolution=4)
    assert list(data.attributes.columns) == ["gender", "race", "age"]
    assert data.attribute_values["gender"] == ("female", "male")
    assert data.attribute_values["race"] == FAIRFACE_RACES
    assert data.attribute_values["age"] == FAIRFACE_AGES
    assert data.labels("gender").tolist() == [int(g == "Male") for g in rows["gender"]]
    assert data.labels("race").tolist() == [FAIRFACE_RACES.index(r) for r in rows["race"]]
    assert data.labels("age").tolist() == [FAIRFACE_AGES.index(a) for a in rows["age"]]
    assert data.split.tolist() == ["train"] * 9 + ["test"] * 5
    assert len(data.subset("val")) == 0
    torch.testing.assert_close(data.subset("test")[0], expected_image(9, 4), atol=JPEG_TOLERANCE, rtol=0)


def test_fairface_bad_inputs(tmp_path):
    write_fairface(tmp_path, n_train=3, n_val=2)
    message = error_of(lambda: fairface(tmp_path, attribute="gendre"))
    assert "'gendre'" in message and "Did you mean: gender?" in message

    val = tmp_path / "fairface_label_val.csv"
    original = val.read_text()
    _rewrite_line(val, 3, lambda line: line.replace("Male", "Mal").replace("Female", "Femal"))
    message = error_of(lambda: fairface(tmp_path))
    assert "fairface_label_val.csv" in message and "line 3" in message and "gender" in message

    val.write_text(original)
    _rewrite_line(val, 2, lambda line: line.rsplit(",", 1)[0])
    assert "line 2" in error_of(lambda: fairface(tmp_path))

    val.write_text(original.replace("file,", "path,", 1))
    assert "'file'" in error_of(lambda: fairface(tmp_path))

    val.write_text(original)
    (tmp_path / "val" / "2.jpg").unlink()
    assert "val/2.jpg" in error_of(lambda: fairface(tmp_path))

    val.unlink()
    assert "fairface_label_val.csv" in error_of(lambda: fairface(tmp_path))


def test_fairface_race_typo_suggests(tmp_path):
    write_fairface(tmp_path, n_train=2, n_val=1)
    train = tmp_path / "fairface_label_train.csv"
    train.write_text(train.read_text().replace(",White,", ",Whit,"))
    message = error_of(lambda: fairface(tmp_path))
    assert "'Whit'" in message and "Did you mean: White?" in message


# ---------------------------------------------------------------------------------------------
# UTKFace

UTK_LABELS = [(age, i % 2, i % 5) for i, age in enumerate([1, 2, 3, 9, 10, 19, 20, 29, 35, 45, 55, 65, 69, 70, 71, 116, 26, 27, 28, 30])]


def utkface(root, **keys):
    return load_dataset({"name": "utkface", "root": str(root), "attribute": "gender", **keys})


def age_bucket(age: int) -> int:
    """The FairFace bucket of an age, written out by hand as the oracle."""
    for code, (low, high) in enumerate([(0, 2), (3, 9), (10, 19), (20, 29), (30, 39), (40, 49), (50, 59), (60, 69)]):
        if low <= age <= high:
            return code
    return 8


def test_utkface_codes_from_file_names(tmp_path):
    rows = write_utkface(tmp_path, UTK_LABELS)
    data = utkface(tmp_path, target="age", resolution=4, val_fraction=0.0, test_fraction=0.0)
    order = np.argsort(rows["file"].to_numpy())  # the loader reads the sorted names
    assert list(data.attributes.columns) == ["gender", "age", "race"]
    assert data.labels("gender").tolist() == [1 - rows["gender"][i] for i in order]  # file 0 = male
    assert data.labels("race").tolist() == [rows["race"][i] for i in order]
    assert data.labels("age").tolist() == [age_bucket(rows["age"][i]) for i in order]
    assert data.attribute_values["race"] == ("White", "Black", "Asian", "Indian", "Others")
    assert data.attribute_values["gender"] == ("female", "male")
    assert set(data.split) == {"train"}
    for position, i in enumerate(order[:3]):
        torch.testing.assert_close(data[position], expected_image(int(rows["index"][i]), 4), atol=JPEG_TOLERANCE, rtol=0)


def test_utkface_split_is_seeded_and_independent_of_creation_order(tmp_path):
    write_utkface(tmp_path / "a", UTK_LABELS)
    write_utkface(tmp_path / "b", UTK_LABELS, order=list(reversed(range(len(UTK_LABELS)))))
    a = utkface(tmp_path / "a", val_fraction=0.2, test_fraction=0.25)
    b = utkface(tmp_path / "b", val_fraction=0.2, test_fraction=0.25)
    counts = {s: int((a.split == s).sum()) for s in ("train", "val", "test")}
    assert counts == {"train": 11, "val": 4, "test": 5}
    np.testing.assert_array_equal(a.split, b.split)
    other = utkface(tmp_path / "a", val_fraction=0.2, test_fraction=0.25, seed=1)
    assert not np.array_equal(a.split, other.split)
    assert {s: int((other.split == s).sum()) for s in ("train", "val", "test")} == counts


def test_utkface_skips_other_names_with_a_warning(tmp_path):
    write_utkface(tmp_path, UTK_LABELS[:4])
    write_image(tmp_path / "39_1_20170116174525125.jpg.chip.jpg", 0)  # no race, as in UTKFace
    write_image(tmp_path / "25_2_0_20170116174525125.jpg", 0)  # gender 2
    (tmp_path / ".DS_Store").write_bytes(b"\0")
    with pytest.warns(UserWarning, match=r"skipped 2 files .*'25_2_0_20170116174525125\.jpg'"):
        data = utkface(tmp_path)
    assert len(data) == 4 and "skipped 2 files" in data.description


def test_utkface_without_matching_files(tmp_path):
    (tmp_path / "UTKFace").mkdir()
    write_image(tmp_path / "UTKFace" / utkface_name(20, 0, 0, 1), 0)
    write_image(tmp_path / "photo.jpg", 0)
    message = error_of(lambda: utkface(tmp_path))
    assert "'photo.jpg'" in message and "UTKFace" in message
    assert len(utkface(tmp_path / "UTKFace")) == 1


def test_utkface_png_is_exact_and_bad_keys(tmp_path):
    write_utkface(tmp_path, UTK_LABELS[:3], suffix=".png")
    data = utkface(tmp_path, resolution=5, val_fraction=0.0, test_fraction=0.0)
    torch.testing.assert_close(data.images(), torch.stack([expected_image(i, 5) for i in range(3)]), atol=0, rtol=0)
    assert "test_fraction" in error_of(lambda: utkface(tmp_path, test_fraction=1.5))
    assert "val_fraction + test_fraction" in error_of(lambda: utkface(tmp_path, val_fraction=0.5, test_fraction=0.5))
    assert "Did you mean: race?" in error_of(lambda: utkface(tmp_path, attribute="rase"))


# ---------------------------------------------------------------------------------------------
# The config boundary. No model kind consumes [dataset] yet, so the CLI cannot reach a dataset;
# `load_dataset` is the boundary the runner will call with the [dataset] table.


def test_load_dataset_from_a_config_table(tmp_path):
    import tomllib

    root = tmp_path / "celeba"
    write_celeba(root, n=3)
    text = f'[dataset]\nname = "celeba"\nroot = "{root}"\nattribute = "Male"\nresolution = 4\n'
    table = tomllib.loads(text)["dataset"]
    assert len(load_dataset(table)) == 3
    table["root"] = str(tmp_path / "celebA")
    assert str(tmp_path / "celebA") in error_of(lambda: load_dataset(table))
    assert "Did you mean: celeba?" in error_of(lambda: load_dataset({**table, "name": "celebA"}))
