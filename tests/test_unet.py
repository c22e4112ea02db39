"""The ``unet`` model kind on tiny real diffusers UNets: conditioning, methods, tau searches, loading."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import UNet2DModel

from fairbench.classifiers import NoiseAwareClassifier
from fairbench.config import parse_config
from fairbench.errors import FairbenchError
from fairbench.methods import AttributeSwitching, ClassifierGuidance, Conditional, EmbeddingMixing
from fairbench.models.unet import UNetDenoiser, load_unet, read_schedule
from fairbench.sampling import sample
from fairbench.schedulers import make_scheduler, visited_timesteps
from fairbench.tau_search import candidate_taus, direct_mean_search, reference_search

SCHEDULE = {"num_train_timesteps": 1000, "beta_schedule": "linear"}
STEPS = 6


def tiny_unet(num_class_embeds: int = 2, seed: int = 0) -> UNet2DModel:
    torch.manual_seed(seed)
    unet = UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        num_class_embeds=num_class_embeds, norm_num_groups=8,
    )
    # A freshly built class embedding is random already; make the two classes clearly apart.
    with torch.no_grad():
        unet.class_embedding.weight.mul_(3.0)
    return unet.eval()


@pytest.fixture(scope="module")
def model() -> UNetDenoiser:
    return UNetDenoiser(tiny_unet(), SCHEDULE, ("light", "heavy"))


def run(model, method, requested, batch_size=8, scheduler="ddim"):
    return sample(model, method, torch.as_tensor(requested), scheduler_name=scheduler, steps=STEPS, seed=3,
                  batch_size=batch_size).samples


REQUESTED = [0, 1, 0, 1, 0, 1, 1, 0]


def test_switching_at_minus_one_is_conditional_bitwise(model):
    assert torch.equal(run(model, AttributeSwitching(tau=-1), REQUESTED), run(model, Conditional(), REQUESTED))


def test_switching_at_last_timestep_is_conditional_on_the_target_bitwise(model):
    switched = run(model, AttributeSwitching(tau=999), REQUESTED)
    target = [1 - a for a in REQUESTED]
    assert torch.equal(switched, run(model, Conditional(), target))


def test_switching_in_the_middle_differs_from_both_ends(model):
    middle = run(model, AttributeSwitching(tau=500), REQUESTED)
    assert not torch.equal(middle, run(model, Conditional(), REQUESTED))
    assert not torch.equal(middle, run(model, Conditional(), [1 - a for a in REQUESTED]))


def test_mixing_weight_zero_is_conditional_bitwise(model):
    assert torch.equal(run(model, EmbeddingMixing(weight=0.0), REQUESTED), run(model, Conditional(), REQUESTED))


def test_mixed_embedding_equals_a_unet_with_that_embedding_as_a_class():
    """Oracle: w @ E through the hook == a copy of the UNet whose extra class row is w @ E."""
    unet = tiny_unet()
    denoiser = UNetDenoiser(unet, SCHEDULE, ("a", "b"))
    oracle = tiny_unet(num_class_embeds=3)
    state = unet.state_dict()
    weights = torch.tensor([[0.3, 0.7], [0.5, 0.5]])
    table = state["class_embedding.weight"]
    state["class_embedding.weight"] = torch.cat([table, (weights[:1] @ table)])
    oracle.load_state_dict(state)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        mixed = denoiser.eps(x, 400, weights[:1].expand(2, 2))
        expected = oracle(x, torch.full((2,), 400), class_labels=torch.tensor([2, 2])).sample
    torch.testing.assert_close(mixed, expected, rtol=1e-5, atol=1e-6)
    assert not unet.class_embedding._forward_hooks  # the hook is removed after the call


def test_mixing_at_one_half_is_symmetric_in_the_request(model):
    """w = 0.5 conditions both groups on (E0 + E1) / 2: paired samples coincide."""
    paired = sample(model, EmbeddingMixing(weight=0.5), torch.tensor([0, 1]), scheduler_name="ddim", steps=STEPS,
                    seed=3, batch_size=2, indices=[0, 0]).samples
    assert torch.equal(paired[0], paired[1])
    unmixed = sample(model, Conditional(), torch.tensor([0, 1]), scheduler_name="ddim", steps=STEPS,
                     seed=3, batch_size=2, indices=[0, 0]).samples
    assert not torch.equal(unmixed[0], unmixed[1])


def guidance_classifier() -> NoiseAwareClassifier:
    torch.manual_seed(1)
    return NoiseAwareClassifier(1, 2, width=8).eval().requires_grad_(False)


def test_guidance_scale_zero_is_unguided_bitwise(model):
    guided = run(model, ClassifierGuidance(scale=0.0, classifier=guidance_classifier()), REQUESTED)
    assert torch.equal(guided, run(model, Conditional(), REQUESTED))


def test_guidance_moves_samples(model):
    guided = run(model, ClassifierGuidance(scale=5.0, classifier=guidance_classifier()), REQUESTED)
    assert not torch.allclose(guided, run(model, Conditional(), REQUESTED))


@pytest.mark.parametrize("method", [Conditional(), AttributeSwitching(tau=500), EmbeddingMixing(weight=0.5)],
                         ids=lambda m: m.name)
@pytest.mark.parametrize("scheduler", ["ddim", "ddpm"])
def test_batch_of_eight_equals_two_batches_of_four(model, method, scheduler):
    # Per-sample noise makes the batches the same computation; CPU kernels may still pick a
    # different blocking per batch shape, hence float32 rounding (seen: <= 6e-5 for batch 1)
    # rather than bitwise equality. A noise mix-up would differ by O(1).
    whole = run(model, method, REQUESTED, batch_size=8, scheduler=scheduler)
    halves = run(model, method, REQUESTED, batch_size=4, scheduler=scheduler)
    torch.testing.assert_close(whole, halves, rtol=0, atol=1e-4)


def test_guided_batch_of_eight_equals_two_batches_of_four(model):
    method = ClassifierGuidance(scale=2.0, classifier=guidance_classifier())
    torch.testing.assert_close(run(model, method, REQUESTED, 8), run(model, method, REQUESTED, 4), rtol=0, atol=1e-4)


def test_reference_search_returns_the_whole_curve(model):
    result = reference_search(model, scheduler_name="ddim", steps=STEPS, seed=0, batch_size=4)
    visited = visited_timesteps(make_scheduler("ddim", **SCHEDULE), STEPS)
    assert [t for t, _ in result.curve] == candidate_taus(visited)
    assert result.tau == min(result.curve, key=lambda pair: pair[1])[0]
    assert result.nfe == 2 * 4 * STEPS


def test_direct_search_on_judge_probabilities_returns_a_curve(model):
    torch.manual_seed(2)
    judge = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2)).requires_grad_(False)
    result = direct_mean_search(model, scheduler_name="ddim", steps=STEPS, seed=0, batch_size=4,
                           features=lambda x: torch.softmax(judge(x), dim=1))
    taus = [t for t, _ in result.curve]
    assert taus[0] == -1 and taus == sorted(taus) and result.tau in taus
    assert dict(result.curve)[-1] == pytest.approx(1.0)


def test_unconditional_unet_is_refused():
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=8)
    with pytest.raises(FairbenchError, match="not class-conditional"):
        UNetDenoiser(unet, SCHEDULE, ("a", "b"))
    with pytest.raises(FairbenchError, match="cannot condition on 3"):
        UNetDenoiser(tiny_unet(), SCHEDULE, ("a", "b", "c"))


def test_saved_unet_folder_loads_with_its_schedule(tmp_path):
    from fairbench.train import save_unet

    unet = tiny_unet()
    schedule = {"num_train_timesteps": 200, "beta_schedule": "squaredcos_cap_v2"}
    save_unet(unet, schedule, tmp_path / "digits-unet")
    loaded, read, source = load_unet(str(tmp_path / "digits-unet"), "cpu")
    assert read["num_train_timesteps"] == 200 and read["beta_schedule"] == "squaredcos_cap_v2"
    for name, tensor in unet.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    assert not list(tmp_path.rglob("*.bin")) and list(tmp_path.rglob("*.safetensors"))
    # A pipeline layout (unet/ + scheduler/) loads too.
    save_unet(unet, schedule, tmp_path / "pipe" / "unet")
    (tmp_path / "pipe" / "scheduler").mkdir()
    (tmp_path / "pipe" / "unet" / "scheduler_config.json").rename(tmp_path / "pipe" / "scheduler" / "scheduler_config.json")
    _, read, source = load_unet(str(tmp_path / "pipe"), "cpu")
    assert read["beta_schedule"] == "squaredcos_cap_v2" and source.endswith("unet")


def test_schedule_defaults_and_refusals(tmp_path):
    assert read_schedule(str(tmp_path)) == {"num_train_timesteps": 1000, "beta_schedule": "linear"}
    (tmp_path / "scheduler_config.json").write_text(json.dumps({"_class_name": "DDPMScheduler", "prediction_type": "v_prediction"}))
    with pytest.raises(FairbenchError, match="'v_prediction'"):
        read_schedule(str(tmp_path))


def test_missing_local_path_is_one_clear_error(tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(FairbenchError, match="does not exist"):
        parse_config({"benchmark": {"name": "x"}, "model": {"kind": "unet", "path": missing},
                      "methods": [{"name": "conditional"}]})
    with pytest.raises(FairbenchError, match="does not exist"):
        load_unet(missing, "cpu")


def test_hub_id_that_cannot_be_served_is_one_clear_error(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # as on a machine without network
    with pytest.raises(FairbenchError, match="hf download someorg/no-such-unet --local-dir DIR"):
        load_unet("someorg/no-such-unet", "cpu")


def test_unet_kind_without_path_or_dataset_says_what_to_give():
    config = parse_config({"benchmark": {"name": "x"}, "model": {"kind": "unet"}, "methods": [{"name": "conditional"}]})
    with pytest.raises(FairbenchError, match="model.path"):
        config.model_spec().build(device="cpu", dataset=None)


def test_unknown_training_key_is_refused_with_a_suggestion():
    with pytest.raises(FairbenchError, match="Did you mean: steps"):
        parse_config({"benchmark": {"name": "x"}, "model": {"kind": "unet", "unet": {"stepz": 3}},
                      "methods": [{"name": "conditional"}]})
