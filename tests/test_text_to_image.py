"""The text_to_image kind on tiny Stable Diffusion pipelines built locally from real classes.

Exact properties of the methods run through the pipeline's own ``__call__`` (switching with
tau = -1 / T-1 is the plain pipeline on s0 / s1, bitwise; the switch adds no UNet call;
mixing weight 0 and guidance scale 0 change nothing), agreement of the pipeline path with
the shared sampling loop on the kind's Denoiser, the tau searches on latents, the CLIP judge
against CLIP's own forward, and a full ``fairbench run``.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from fairbench.cli import main
from fairbench.errors import FairbenchError
from fairbench.methods import AttributeSwitching, ClassifierGuidance, Conditional, EmbeddingMixing
from fairbench.models import model_spec
from fairbench.models.base import one_hot
from fairbench.models.text_to_image import TextToImageModel, pixel_features
from fairbench.noise import StepNoise, initial_noise
from fairbench.sampling import bind_step_noise, sample
from fairbench.schedulers import make_scheduler, visited_timesteps
from fairbench.tau_search import candidate_taus, direct_mean_search, reference_search

from tiny_sd import build_tiny_clip, build_tiny_sd, build_tiny_sdxl

PROMPTS = ["a color photo of the man", "a color photo of the woman"]
STEPS_N = 3
KW = dict(scheduler_name="ddim", steps=STEPS_N, seed=0, batch_size=4)


@contextmanager
def single_thread():
    # Tiny networks on a shared CPU: one thread avoids OpenMP oversubscription (10-50x faster here).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="session")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("t2i")
    with single_thread():
        return {"sd": build_tiny_sd(root / "sd"), "clip": build_tiny_clip(root / "clip")}


def table(folders, **extra) -> dict:
    return {"kind": "text_to_image", "path": str(folders["sd"]), "prompts": PROMPTS,
            "judge_path": str(folders["clip"]), "guidance_scale": 5.0} | extra


@pytest.fixture(scope="session")
def t2i(folders):
    with single_thread():
        return model_spec(table(folders, guidance_train_samples=4, guidance_train_iters=20)).build(device="cpu")


def plain(model: TextToImageModel, prompt: str, n: int, *, output_type: str = "latent", scheduler: str = "ddim") -> torch.Tensor:
    """The unmodified pipeline on one prompt string, from the same initial and per-step noise."""
    pipe = model.pipe
    pipe.scheduler = bind_step_noise(make_scheduler(scheduler, **model.scheduler_config()), StepNoise(0, range(n)))
    out = pipe(
        prompt=[prompt] * n, latents=initial_noise(0, range(n), model.sample_shape),
        num_inference_steps=STEPS_N, guidance_scale=model.guidance_scale, height=model.height, width=model.width,
        output_type=output_type,
    ).images
    return out if output_type == "latent" else out * 2.0 - 1.0


def no_cfg(model: TextToImageModel) -> TextToImageModel:
    return TextToImageModel(model.pipe, prompts=PROMPTS, guidance_scale=1.0)


class UNetInputs:
    """Forward pre-hook recording every UNet call's timestep and conditional text embedding."""

    def __init__(self, model: TextToImageModel):
        self.model, self.calls, self.unconditional = model, [], []

    def __call__(self, module, args, kwargs):
        states = kwargs["encoder_hidden_states"]
        half = len(states) // 2 if self.model.cfg else 0
        self.calls.append((int(args[1]), states[half:].clone()))
        self.unconditional.append(states[:half].clone())

    def __enter__(self):
        self.handle = self.model.pipe.unet.register_forward_pre_hook(self, with_kwargs=True)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


@pytest.mark.parametrize("cfg", [True, False], ids=["cfg", "no_cfg"])
def test_switching_at_the_ends_is_the_plain_pipeline_bitwise(t2i, cfg):
    model = t2i.model if cfg else no_cfg(t2i.model)
    requested = torch.zeros(3, dtype=torch.long)
    T = model.num_train_timesteps
    never = t2i.sample(model, AttributeSwitching(tau=-1), requested, **KW).samples
    always = t2i.sample(model, AttributeSwitching(tau=T - 1), requested, **KW).samples
    assert torch.equal(never, plain(model, PROMPTS[0], 3, output_type="pt"))
    assert torch.equal(always, plain(model, PROMPTS[1], 3, output_type="pt"))
    assert not torch.equal(never, always)


def test_switch_replaces_the_conditional_embedding_from_the_first_step_with_t_le_tau(t2i):
    model = t2i.model
    timesteps = visited_timesteps(make_scheduler("ddim", **model.scheduler_config()), STEPS_N)
    tau = timesteps[1]  # steps 1.. have t <= tau
    requested = torch.tensor([0, 1])
    with UNetInputs(model) as seen:
        t2i.sample(model, AttributeSwitching(tau=tau), requested, **KW)
    E = model.conditions["prompt_embeds"]
    assert [t for t, _ in seen.calls] == timesteps
    for t, states in seen.calls:
        expected = E[[1, 0]] if t <= tau else E[[0, 1]]
        assert torch.equal(states, expected), t
    negative = model.negative["prompt_embeds"].expand(2, -1, -1)
    assert model.cfg and all(torch.equal(states, negative) for states in seen.unconditional)


def test_the_switch_costs_no_extra_model_evaluations(t2i):
    model = t2i.model
    calls = []
    handle = model.pipe.unet.register_forward_pre_hook(lambda module, args: calls.append(1))
    counts = {}
    try:
        requested = torch.tensor([0, 1, 0, 1])
        for name, method in [("conditional", Conditional()), ("switching", AttributeSwitching(tau=500)),
                             ("mixing", EmbeddingMixing(0.5))]:
            calls.clear()
            out = t2i.sample(model, method, requested, **KW)
            counts[name] = (len(calls), out.nfe)
        calls.clear()
        plain(model, PROMPTS[0], 4)
        counts["plain pipeline"] = (len(calls), STEPS_N * 4)
    finally:
        handle.remove()
    assert set(counts.values()) == {(STEPS_N, STEPS_N * 4)}, counts


def test_mixing_weight_zero_is_conditional_and_half_mixes_the_embeddings(t2i):
    model = t2i.model
    requested = torch.tensor([0, 1, 1, 0])
    conditional = t2i.sample(model, Conditional(), requested, **KW).samples
    assert torch.equal(t2i.sample(model, EmbeddingMixing(0.0), requested, **KW).samples, conditional)
    with UNetInputs(model) as seen:
        mixed = t2i.sample(model, EmbeddingMixing(0.5), requested, **KW).samples
    E = model.conditions["prompt_embeds"]
    half = 0.5 * E[0] + 0.5 * E[1]
    assert all(torch.allclose(states, half.expand_as(states), atol=1e-6) for _, states in seen.calls)
    assert not torch.allclose(mixed, conditional)


def test_classifier_guidance_scale_zero_is_unguided_and_a_positive_scale_matches_the_shared_loop(t2i):
    model = t2i.model
    requested = torch.tensor([0, 1, 0, 1])
    unguided = t2i.sample(model, Conditional(), requested, **KW)
    zero = t2i.sample(model, ClassifierGuidance(scale=0.0, classifier=t2i.guidance), requested, **KW)
    assert torch.equal(zero.samples, unguided.samples)
    assert zero.classifier_evals == STEPS_N * 4
    method = ClassifierGuidance(scale=50.0, classifier=t2i.guidance)
    guided = t2i.sample(model, method, requested, output="latent", **KW).samples
    loop = sample(model, method, requested, **KW).samples
    plain_latents = t2i.sample(model, Conditional(), requested, output="latent", **KW).samples
    # The hook adds the correction to both CFG halves: equal to the loop's correction up to rounding.
    assert torch.allclose(guided, loop, atol=1e-5, rtol=1e-5)
    assert (guided - plain_latents).abs().max() > 100 * (guided - loop).abs().max()


@pytest.mark.parametrize("method", [AttributeSwitching(tau=500), EmbeddingMixing(0.3), Conditional()], ids=lambda m: m.name)
@pytest.mark.parametrize("scheduler", ["ddim", "ddpm"])
def test_the_pipeline_path_equals_the_shared_loop_on_the_denoiser(t2i, method, scheduler):
    model = t2i.model
    requested = torch.tensor([0, 1, 1])
    kw = KW | {"scheduler_name": scheduler}
    through_pipeline = t2i.sample(model, method, requested, output="latent", **kw).samples
    assert torch.equal(through_pipeline, sample(model, method, requested, **kw).samples)


def test_samples_do_not_depend_on_the_batch_size(t2i):
    model = t2i.model
    requested = torch.tensor([0, 1, 0, 1])
    method = AttributeSwitching(tau=500)
    whole = t2i.sample(model, method, requested, **KW).samples
    halves = t2i.sample(model, method, requested, **(KW | {"batch_size": 2})).samples
    assert torch.allclose(whole, halves, atol=1e-5)
    assert whole.shape == (4, 3, model.height, model.width) and whole.min() >= -1 and whole.max() <= 1


def test_tau_searches_return_a_curve_over_the_visited_timesteps(t2i):
    model = t2i.model
    timesteps = visited_timesteps(make_scheduler("ddim", **model.scheduler_config()), STEPS_N)
    candidates = candidate_taus(timesteps)
    reference = reference_search(model, scheduler_name="ddim", steps=STEPS_N, seed=0, batch_size=2)
    assert [tau for tau, _ in reference.curve] == candidates
    assert reference.tau == min(reference.curve, key=lambda pair: pair[1])[0]
    assert reference.nfe == 2 * 2 * STEPS_N
    direct = direct_mean_search(model, scheduler_name="ddim", steps=STEPS_N, seed=0, batch_size=2,
                           features=t2i.balance_features)
    taus = [tau for tau, _ in direct.curve]
    assert taus == sorted(taus) and set(taus) <= set(candidates) and {-1, timesteps[0]} <= set(taus)
    assert dict(direct.curve)[-1] == pytest.approx(1.0) and direct.tau in candidates


def test_clip_judge_matches_clip_forward(t2i, folders):
    from transformers import CLIPModel, CLIPProcessor

    images = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    clip = CLIPModel.from_pretrained(str(folders["clip"]))
    processor = CLIPProcessor.from_pretrained(str(folders["clip"]))
    inputs = processor(text=PROMPTS, images=list((images + 1) / 2), do_rescale=False, padding=True, return_tensors="pt")
    with torch.no_grad():
        oracle = clip(**inputs).logits_per_image.log_softmax(dim=1)
    assert torch.allclose(t2i.judge(images), oracle, atol=1e-5)
    features = t2i.features(images)
    assert features.shape == (5, clip.config.projection_dim)
    assert torch.allclose(features.norm(dim=1), torch.ones(5), atol=1e-6)
    assert "clip" in t2i.feature_name


def test_without_a_judge_epsilon_uses_pooled_pixels(folders):
    t2i = model_spec(table(folders, judge="none")).build(device="cpu")
    assert t2i.judge is None and t2i.balance_features is None
    images = torch.rand(2, 3, 16, 16)
    assert torch.equal(t2i.features(images), pixel_features(images))
    assert torch.equal(pixel_features(images), images.reshape(2, -1))  # 16 x 16 is kept as is


def test_neutral_prompt_is_an_extra_condition_row(t2i):
    pipe = t2i.model.pipe
    model = TextToImageModel(pipe, prompts=PROMPTS, neutral_prompt="a color photo of the person", guidance_scale=5.0)
    assert model.num_attributes == 2
    neutral = model.condition(one_hot(torch.tensor([2]), 3))["prompt_embeds"]
    with torch.no_grad():
        direct, _ = pipe.encode_prompt(["a color photo of the person"], pipe.device, 1, False)
    assert torch.allclose(neutral, direct, atol=1e-6)
    with pytest.raises(FairbenchError, match="at most 2 columns"):
        t2i.model.condition(one_hot(torch.tensor([2]), 3))


def test_sdxl_fits_the_same_design(tmp_path):
    folder = build_tiny_sdxl(tmp_path)
    t2i = model_spec({"kind": "text_to_image", "path": str(folder), "prompts": PROMPTS, "judge": "none",
                        "guidance_scale": 5.0, "height": 16, "width": 16}).build(device="cpu")
    model = t2i.model
    requested = torch.zeros(2, dtype=torch.long)
    T = model.num_train_timesteps
    kw = KW | {"batch_size": 2}
    assert torch.equal(t2i.sample(model, AttributeSwitching(tau=-1), requested, output="latent", **kw).samples, plain(model, PROMPTS[0], 2))
    assert torch.equal(t2i.sample(model, AttributeSwitching(tau=T - 1), requested, output="latent", **kw).samples, plain(model, PROMPTS[1], 2))
    switched = t2i.sample(model, AttributeSwitching(tau=500), torch.tensor([0, 1]), output="latent", **kw).samples
    assert torch.equal(switched, sample(model, AttributeSwitching(tau=500), torch.tensor([0, 1]), **kw).samples)


def test_fairbench_run_writes_records_and_a_leaderboard(folders, tmp_path):
    model = table(folders, guidance_train_samples=4, guidance_train_iters=20)
    lines = ["[benchmark]", 'name = "tiny-sd"', "n_samples = 12", "seeds = [0]", "batch_size = 12", "", "[model]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in model.items()]
    lines += ["", "[sampler]", 'scheduler = "ddim"', f"steps = {STEPS_N}", "", "[metrics]", "epsilon_folds = 3", "bootstrap = 50"]
    methods = [("conditional", {}), ("attribute_switching", {"tau": 500}), ("attribute_switching", {"tau": "reference"}),
               ("attribute_switching", {"tau": "direct"}), ("embedding_mixing", {"weight": 0.5}),
               ("classifier_guidance", {"scale": 2.0})]
    for index, (name, params) in enumerate(methods):
        lines += ["", "[[methods]]", f'name = "{name}"', f'label = "m{index}"']
        if isinstance(params.get("tau"), str):
            lines += ["search_batch_size = 2"]
        lines += [f"{key} = {json.dumps(value)}" for key, value in params.items()]
    config = tmp_path / "tiny.toml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out), "--device", "cpu"]) == 0
    records = [json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))]
    assert sorted(r["label"] for r in records) == [f"m{i}" for i in range(len(methods))]
    assert {r["metrics"]["nfe_per_sample"] for r in records} == {STEPS_N}
    assert all(0.0 <= r["metrics"]["epsilon"] <= 1.0 for r in records)
    assert all("clip" in r["spec"]["epsilon_features"] for r in records)
    board = (out / "leaderboard.md").read_text()
    assert all(f"| m{i} |" in board for i in range(len(methods))) and (out / "leaderboard.csv").is_file()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"path": "/nonexistent/sd-folder"}, "save_pretrained"),
        ({"path": "no-such-owner/no-such-model"}, "without the network"),
        ({"dtype": "float16"}, "needs a CUDA device"),
        ({"judge_path": "/nonexistent/clip"}, "judge = 'none'"),
        ({"height": 15}, "multiple of the VAE's scale factor 2"),
    ],
)
def test_unusable_models_fail_with_one_clear_line(folders, change, message):
    with pytest.raises(FairbenchError, match=message):
        model_spec(table(folders, **change)).build(device="cpu")


def test_a_folder_that_is_not_a_pipeline_is_refused(folders, tmp_path):
    with pytest.raises(FairbenchError, match="no model_index.json"):
        model_spec(table(folders, path=str(tmp_path))).build(device="cpu")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"prompts": ["a color photo of the man"]}, "at least 2 distinct"),
        ({"judge": "clipp"}, "Did you mean: clip"),
        ({"guidance_scal": 5.0}, "Did you mean: guidance_scale"),
        ({"dtype": "fp16"}, "is not allowed"),
        ({"attribute_names": ["male"]}, "one entry per prompt"),
    ],
)
def test_bad_model_tables_are_refused_before_loading(folders, change, message):
    with pytest.raises(FairbenchError, match=message):
        model_spec(table(folders, **change))


def test_the_sd15_baseline_is_the_papers_setting():
    from fairbench.config import load_config

    config = load_config(Path(__file__).resolve().parents[1] / "baselines" / "sd15-gender.toml")
    spec = config.model_spec()
    assert spec.kind == "text_to_image" and spec.prompts == PROMPTS
    taus = [m.params["tau"] for m in config.methods if m.name == "attribute_switching" and isinstance(m.params["tau"], int)]
    assert taus == list(range(650, 901, 50))
    assert {m.name for m in config.methods} == {
        "conditional", "attribute_switching", "embedding_mixing", "classifier_guidance",
        "null_prefix_switching", "prompt_queuing", "semantic_guidance",
    }
    assert spec.neutral_prompt is not None  # the null condition of null-prefix switching and prompt queuing


def test_the_latent_guidance_classifier_learns_a_separable_attribute():
    from fairbench.models.text_to_image import train_latent_classifier

    abar = make_scheduler("ddim", beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).alphas_cumprod
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(64) % 2
    latents = (2.0 * labels - 1.0).view(-1, 1, 1, 1) + 0.5 * torch.randn(64, 4, 8, 8, generator=generator)
    classifier = train_latent_classifier(latents, labels, k=2, alphas_cumprod=abar, iters=150, seed=0)
    test_labels = torch.arange(32) % 2
    x0 = (2.0 * test_labels - 1.0).view(-1, 1, 1, 1) + 0.5 * torch.randn(32, 4, 8, 8, generator=generator)
    t = 100
    x_t = abar[t].sqrt() * x0 + (1 - abar[t]).sqrt() * torch.randn(x0.shape, generator=generator)
    log_prob = classifier.log_prob(x_t, t)
    assert torch.allclose(log_prob.exp().sum(1), torch.ones(32), atol=1e-5)
    assert (log_prob.argmax(1) == test_labels).float().mean() > 0.9
    assert not any(p.requires_grad for p in classifier.parameters())
