import numpy as np
import pytest
import torch

from fairbench.shards import ShardedSamples, write_shard


@pytest.fixture
def sharded(tmp_path):
    full = torch.randn(23, 2, 3, generator=torch.Generator().manual_seed(0))
    paths, sizes = [], []
    for i, lo in enumerate(range(0, 23, 10)):
        path = tmp_path / f"{i}.safetensors"
        write_shard(path, full[lo : lo + 10], {"nfe": "0"})
        paths.append(path)
        sizes.append(len(full[lo : lo + 10]))
    return full, ShardedSamples(paths, sizes)


def test_slices_and_index_arrays_equal_the_tensor(sharded):
    full, lazy = sharded
    assert len(lazy) == 23 and lazy.shape == full.shape
    for sl in (slice(0, 23), slice(5, 17), slice(9, 11), slice(20, 40), slice(3, 3), slice(0, 23, 4)):
        assert torch.equal(lazy[sl], full[sl])
    picks = np.array([22, 0, 15, 10, 9, 15])
    assert torch.equal(lazy[picks], full[torch.as_tensor(picks)])
    assert torch.equal(lazy[torch.as_tensor(picks)], full[torch.as_tensor(picks)])
    mask = np.arange(23) % 3 == 0
    assert torch.equal(lazy[mask], full[torch.as_tensor(mask)])
    assert torch.equal(lazy[7], full[7]) and torch.equal(lazy[-1], full[-1])
    assert torch.equal(lazy.tensor(), full)
    with pytest.raises(IndexError):
        lazy[np.array([23])]


def test_holds_one_shard_at_a_time(sharded):
    _, lazy = sharded
    lazy[0:5]
    lazy[21:23]
    assert lazy._cached[0] == 2
