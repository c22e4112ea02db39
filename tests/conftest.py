import pytest
import torch

from fairbench.models.gaussian import GaussianModel


@pytest.fixture(scope="session")
def gaussian() -> GaussianModel:
    return GaussianModel([[-0.5, 0.0], [0.5, 0.0]], 0.5, beta_schedule="linear")


@pytest.fixture(autouse=True)
def _single_thread_determinism():
    # Two cores shared by the suite: keep torch from oversubscribing them.
    torch.set_num_threads(1)
    yield
