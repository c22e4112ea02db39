import pytest
import torch
from diffusers import UNet2DModel

from fairbench.models.gaussian import GaussianModel
from fairbench.models.unet import UNetDenoiser

SCHEDULE = {"num_train_timesteps": 1000, "beta_schedule": "linear"}


@pytest.fixture(scope="session", autouse=True)
def _threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def unet() -> UNet2DModel:
    torch.manual_seed(0)
    return UNet2DModel(
        sample_size=16, in_channels=1, out_channels=1, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8, num_class_embeds=2,
    ).eval()


@pytest.fixture(scope="session")
def denoiser(unet) -> UNetDenoiser:
    return UNetDenoiser(unet, SCHEDULE, ("a", "b"))


@pytest.fixture(scope="session")
def gaussian() -> GaussianModel:
    return GaussianModel([[-0.5, 0.0], [0.5, 0.0]], 0.5)
