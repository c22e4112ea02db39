"""No code runs from files: pickled checkpoints are refused, and nothing in them executes."""

import pickle
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DModel

from fairbench.cli import main


class _RunsCode:
    """Unpickling this object would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def _unet_folder(tmp_path: Path) -> Path:
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4, num_class_embeds=2)
    folder = tmp_path / "unet"
    unet.save_pretrained(folder)
    return folder


def _config(tmp_path: Path, folder: Path) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(f"""
[benchmark]
name = "unsafe"
n_samples = 8
[model]
kind = "unet"
path = "{folder}"
[sampler]
steps = 2
[[methods]]
name = "conditional"
""")
    return path


def test_a_pickled_checkpoint_that_would_run_code_is_refused(tmp_path, capsys):
    folder = _unet_folder(tmp_path)
    (folder / "diffusion_pytorch_model.safetensors").unlink()
    marker = tmp_path / "marker"
    with open(folder / "diffusion_pytorch_model.bin", "wb") as handle:
        pickle.dump({"weight": _RunsCode(marker)}, handle)
    out = tmp_path / "out"
    assert main(["run", str(_config(tmp_path, folder)), "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fairbench: error: cannot load a UNet2DModel"), err
    assert not marker.exists()
    assert not out.exists()


def test_a_truncated_safetensors_checkpoint_is_one_clear_error(tmp_path, capsys):
    folder = _unet_folder(tmp_path)
    weights = folder / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert main(["run", str(_config(tmp_path, folder)), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fairbench: error:") and "unet" in err[0], err


def test_weights_only_loading_refuses_the_same_pickle(tmp_path):
    """What fairbench's own torch.load calls rely on (Inception weights): weights_only=True."""
    marker = tmp_path / "marker"
    path = tmp_path / "state.pt"
    with open(path, "wb") as handle:
        pickle.dump({"weight": _RunsCode(marker)}, handle)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    assert not marker.exists()


def test_a_model_whose_class_count_does_not_match_the_attribute(tmp_path, capsys):
    folder = _unet_folder(tmp_path)
    config = _config(tmp_path, folder)
    config.write_text(config.read_text().replace('kind = "unet"', 'kind = "unet"\nattribute_names = ["a", "b", "c"]'))
    assert main(["run", str(config), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 class embeddings" in err[0] and "'c'" in err[0], err
    assert not (tmp_path / "out").exists()


def test_a_unet_that_is_not_class_conditional(tmp_path, capsys):
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4)
    unet.save_pretrained(tmp_path / "plain")
    assert main(["run", str(_config(tmp_path, tmp_path / "plain")), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not class-conditional" in err[0], err


def test_a_model_folder_that_does_not_exist(tmp_path, capsys):
    assert main(["run", str(_config(tmp_path, tmp_path / "missing")), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing" in err[0] and "does not exist" in err[0], err
