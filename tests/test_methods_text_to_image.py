"""Training-free methods through the tiny Stable Diffusion pipeline's own ``__call__``.

Null-prefix switching and prompt queuing (FairQueue) start from the neutral prompt; semantic
guidance (Fair Diffusion) calls the UNet again inside the step; classifier guidance toward
the unconditional model removes the request through the latent classifier. Exact limits
against the plain pipeline, agreement with the shared loop, counted UNet calls, and the
attention amplification against its closed form at one layer.
"""

from __future__ import annotations

import pytest
import torch

from fairbench.errors import FairbenchError
from fairbench.methods import (
    check_method,
    ClassifierGuidance,
    Conditional,
    MethodContext,
    NullPrefixSwitching,
    PromptQueuing,
    SemanticGuidance,
    assigned,
)
from fairbench.models.text_to_image import TextToImageModel
from fairbench.models.text_to_image.attention import TokenAmplification, amplified_cross_attention
from fairbench.sampling import sample

from test_text_to_image import KW, PROMPTS, STEPS_N, folders, one_thread, plain, t2i  # noqa: F401 (fixtures)

NEUTRAL = "a color photo of the person"


@pytest.fixture(scope="module")
def neutral(t2i):  # noqa: F811
    return TextToImageModel(t2i.model.pipe, prompts=PROMPTS, neutral_prompt=NEUTRAL, guidance_scale=5.0)


def through_pipeline(t2i, model, method, requested, **kw):  # noqa: F811
    conditions = assigned(method, requested, model.num_attributes, seed=KW["seed"], indices=range(len(requested)))
    return t2i.sample(model, method, conditions, **(KW | kw))


def test_null_prefix_at_the_ends_is_the_plain_pipeline_on_the_neutral_and_the_requested_prompt(t2i, neutral):  # noqa: F811
    requested = torch.zeros(3, dtype=torch.long)
    T = neutral.num_train_timesteps
    never = through_pipeline(t2i, neutral, NullPrefixSwitching(-1), requested).samples
    always = through_pipeline(t2i, neutral, NullPrefixSwitching(T - 1), requested).samples
    assert torch.equal(never, plain(neutral, NEUTRAL, 3, output_type="pt"))
    assert torch.equal(always, plain(neutral, PROMPTS[0], 3, output_type="pt"))
    middle = through_pipeline(t2i, neutral, NullPrefixSwitching(500), requested)
    assert not torch.equal(middle.samples, never) and not torch.equal(middle.samples, always)
    assert middle.nfe == STEPS_N * 3 and middle.classifier_evals == 0


def test_a_pipeline_without_a_neutral_prompt_is_refused_with_one_line(t2i):  # noqa: F811
    for method in (NullPrefixSwitching, PromptQueuing):
        with pytest.raises(FairbenchError, match="neutral_prompt") as caught:
            check_method(method, method.Params(tau=500), MethodContext(model=t2i.model), "methods[0]")
        assert "\n" not in str(caught.value)


def test_prompt_queuing_without_amplification_is_null_prefix_switching_bitwise(t2i, neutral):  # noqa: F811
    requested = torch.tensor([0, 1, 1, 0])
    queued = through_pipeline(t2i, neutral, PromptQueuing(tau=500), requested).samples
    assert torch.equal(queued, through_pipeline(t2i, neutral, NullPrefixSwitching(500), requested).samples)


def test_amplification_acts_only_after_the_switch(t2i, neutral):  # noqa: F811
    requested = torch.tensor([0, 1, 1, 0])
    T = neutral.num_train_timesteps
    # tau = -1: the neutral prompt throughout, which has no attribute tokens: nothing is amplified.
    assert torch.equal(through_pipeline(t2i, neutral, PromptQueuing(tau=-1, amplification=10.0), requested).samples,
                       through_pipeline(t2i, neutral, NullPrefixSwitching(-1), requested).samples)
    amplified = through_pipeline(t2i, neutral, PromptQueuing(tau=T - 1, amplification=10.0), requested)
    conditional = through_pipeline(t2i, neutral, Conditional(), requested)
    assert (amplified.samples - conditional.samples).abs().max() > 1e-3
    assert amplified.nfe == conditional.nfe == STEPS_N * 4
    # The original processors are back after the call.
    assert not any(isinstance(p, TokenAmplification) for p in neutral.pipe.unet.attn_processors.values())


def test_amplification_needs_prompt_tokens(gaussian):
    with pytest.raises(FairbenchError, match="amplification") as caught:
        check_method(PromptQueuing, PromptQueuing.Params(tau=500, amplification=2.0), MethodContext(model=gaussian), "m")
    assert str(caught.value).startswith("m.amplification = 2.0 needs prompt tokens") and "\n" not in str(caught.value)
    check_method(PromptQueuing, PromptQueuing.Params(tau=500), MethodContext(model=gaussian), "m")
    assert PromptQueuing.build(PromptQueuing.Params(tau=500), MethodContext(model=gaussian)) == PromptQueuing(tau=500)


def test_the_attribute_tokens_are_the_words_the_neutral_prompt_lacks(neutral):
    tokens = neutral.attribute_tokens()
    ids = neutral.pipe.tokenizer(PROMPTS, padding="max_length", max_length=tokens.shape[1], return_tensors="pt").input_ids
    words = [neutral.pipe.tokenizer.convert_ids_to_tokens(row[mask].tolist()) for row, mask in zip(ids, tokens)]
    assert words == [["man</w>"], ["wo", "man</w>"]]  # the tiny vocabulary spells "woman" in two tokens
    scale = neutral.token_scale(torch.eye(3)[[0, 2, 1]], 4.0)  # requests man, neutral, woman
    assert scale[1].eq(1.0).all() and scale[0].max() == 4.0 and scale[0].eq(4.0).sum() == 1
    assert torch.equal(scale[0] == 4.0, tokens[0]) and torch.equal(scale[2] == 4.0, tokens[1])
    assert neutral.token_scale(torch.eye(3)[[2, 2]], 4.0) is None and neutral.token_scale(torch.eye(3), 1.0) is None


def test_uniform_amplification_scales_one_layers_attention_output(neutral):
    # sum_j (c A_j) v_j = c sum_j A_j v_j: before to_out's bias, the layer's output scales by c.
    unet = neutral.pipe.unet
    name = next(n for n in unet.attn_processors if n.endswith("attn2.processor"))
    attn = unet.get_submodule(name[: -len(".processor")])
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 16, attn.to_q.in_features, generator=generator)
    text = neutral.conditions["prompt_embeds"][:2]
    processor = TokenAmplification(unet.attn_processors[name])
    with torch.no_grad():
        original = processor(attn, hidden, text)
        processor.scale = torch.full((2, text.shape[1]), 3.0)
        scaled = processor(attn, hidden, text)
    bias = attn.to_out[0].bias
    assert torch.allclose(scaled - bias, 3.0 * (original - bias), atol=1e-5)
    with amplified_cross_attention(unet) as set_scale:
        set_scale(None)
        assert all(isinstance(p, TokenAmplification) for n, p in unet.attn_processors.items() if n.endswith("attn2.processor"))


def test_semantic_guidance_at_scale_zero_is_conditional_and_matches_the_shared_loop(t2i, neutral):  # noqa: F811
    model = t2i.model
    requested = torch.tensor([0, 1, 0, 1])
    zero = SemanticGuidance.build(SemanticGuidance.Params(edit_scale=0.0, warmup_steps=0), MethodContext(model=model))
    out = through_pipeline(t2i, model, zero, requested)
    assert torch.equal(out.samples, through_pipeline(t2i, model, Conditional(), requested).samples)
    assert out.nfe == 2 * STEPS_N * 4 and out.classifier_evals == 0  # one extra UNet call per step
    method = SemanticGuidance.build(SemanticGuidance.Params(edit_scale=3.0, warmup_steps=1, threshold=0.5), MethodContext(model=model))
    codes = assigned(method, requested, 2, seed=KW["seed"], indices=range(4))
    assert (codes // 2 != requested).any()
    edited = t2i.sample(model, method, codes, output="latent", **KW).samples
    loop = sample(model, method, codes, **KW).samples
    unedited = t2i.sample(model, Conditional(), requested, output="latent", **KW).samples
    assert torch.allclose(edited, loop, atol=1e-5, rtol=1e-5)
    assert (edited - unedited).abs().max() > 100 * (edited - loop).abs().max()


def test_bayes_rule_guidance_through_the_pipeline(t2i):  # noqa: F811
    model = t2i.model
    requested = torch.tensor([0, 1, 0, 1])
    zero = ClassifierGuidance(scale=0.0, classifier=t2i.guidance, target="unconditional")
    assert torch.equal(through_pipeline(t2i, model, zero, requested).samples,
                       through_pipeline(t2i, model, Conditional(), requested).samples)
    method = ClassifierGuidance(scale=50.0, classifier=t2i.guidance, target="unconditional")
    guided = t2i.sample(model, method, requested, output="latent", **KW)
    loop = sample(model, method, requested, **KW).samples
    assert torch.allclose(guided.samples, loop, atol=1e-5, rtol=1e-5)
    assert guided.classifier_evals == STEPS_N * 4 and guided.nfe == STEPS_N * 4
    toward_uniform = t2i.sample(model, ClassifierGuidance(scale=50.0, classifier=t2i.guidance), requested, output="latent", **KW)
    assert not torch.allclose(guided.samples, toward_uniform.samples)


def test_fairbench_run_records_every_text_to_image_method(folders, tmp_path):  # noqa: F811
    import json

    from fairbench.cli import main
    from test_text_to_image import table

    model = table(folders, guidance_train_samples=4, guidance_train_iters=20, neutral_prompt=NEUTRAL)
    lines = ["[benchmark]", 'name = "tiny-sd"', "n_samples = 12", "seeds = [0]", "batch_size = 12", "", "[model]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in model.items()]
    lines += ["", "[sampler]", 'scheduler = "ddim"', f"steps = {STEPS_N}", "", "[metrics]", "epsilon_folds = 3", "bootstrap = 20"]
    methods = [("null_prefix_switching", {"tau": 500}), ("prompt_queuing", {"tau": 500, "amplification": 5.0}),
               ("classifier_guidance", {"target": "unconditional"}), ("semantic_guidance", {"edit_scale": 0.5, "warmup_steps": 1})]
    for name, params in methods:
        lines += ["", "[[methods]]", f'name = "{name}"'] + [f"{key} = {json.dumps(value)}" for key, value in params.items()]
    config = tmp_path / "tiny.toml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["run", str(config), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    records = {r["spec"]["method"]["name"]: r for r in (json.loads(p.read_text()) for p in (tmp_path / "out" / "records").glob("*.json"))}
    assert sorted(records) == sorted(name for name, _ in methods)
    nfe = {name: record["metrics"]["nfe_per_sample"] for name, record in records.items()}
    assert nfe == {"null_prefix_switching": STEPS_N, "prompt_queuing": STEPS_N, "classifier_guidance": STEPS_N,
                   "semantic_guidance": 2 * STEPS_N}
    assert records["prompt_queuing"]["spec"]["method"] == {"name": "prompt_queuing", "tau": 500, "amplification": 5.0}
