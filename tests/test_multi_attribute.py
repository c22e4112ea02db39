"""Several sensitive attributes at once: a product of axes on the analytic Gaussian model and in
image folders, switching of one attribute while the others stay fixed, and epsilon and balance
per attribute beside the joint values."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from fairbench.cli import main
from fairbench.config import parse_method
from fairbench.datasets import load_dataset
from fairbench.errors import FairbenchError
from fairbench.methods import AttributeSwitching, Conditional, MethodContext, RandomCondition, assigned
from fairbench.metrics.suite import SuiteOptions, evaluate
from fairbench.models.base import AttributeAxes
from fairbench.models.gaussian import GaussianSpec, ddim_coefficients, ddim_output, exact_optimal_tau, switching_schedule
from fairbench.sampling import sample
from fairbench.tables import parse_table
from fixtures_folders import write_celeba, write_fairface

# sex moves the first coordinate, age the second: female/young, female/old, male/young, male/old
MEANS = [[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]]
AXES = [{"name": "sex", "values": ["female", "male"]}, {"name": "age", "values": ["young", "old"]}]
STEPS = 20


def product_setup(n_real: int = 400):
    spec = parse_table(GaussianSpec, {"kind": "gaussian", "means": MEANS, "std": 0.5, "attribute_axes": AXES,
                                      "n_real": n_real}, "model")
    return spec.build()


def switching(params: dict, model) -> AttributeSwitching:
    spec = parse_method({"name": "attribute_switching", **params}, "methods[0]")
    return spec.method_class.build(spec.options(), MethodContext(model=model))


def run(model, method, n: int, seed: int = 3):
    requested = torch.arange(n) % model.num_attributes
    conditions = assigned(method, requested, model.num_attributes, seed=seed, indices=range(n))
    out = sample(model, method, conditions, scheduler_name="ddim", steps=STEPS, seed=seed, batch_size=n)
    return out.samples, requested, method.final(conditions, model.num_attributes)


# ---------------------------------------------------------------------------------------------
# The product and the target map


def test_flat_index_is_row_major_and_names_join_the_tuple():
    axes = AttributeAxes(("a", "b", "c"), (("a0", "a1"), ("b0", "b1", "b2"), ("c0", "c1")))
    tuples = list(itertools.product(range(2), range(3), range(2)))  # the oracle: enumeration order
    assert axes.size == 12
    np.testing.assert_array_equal(axes.decode(np.arange(12)), np.array(tuples))
    np.testing.assert_array_equal(axes.encode(np.array(tuples)), np.arange(12))
    assert axes.flat_names()[7] == "a1/b0/c1" and tuples[7] == (1, 0, 1)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_switch_target_moves_only_that_axis(axis):
    sizes = (2, 3, 2)
    axes = AttributeAxes(("a", "b", "c"), tuple(tuple(f"v{i}" for i in range(k)) for k in sizes))
    tuples = list(itertools.product(*(range(k) for k in sizes)))
    target = axes.switch_target(axis)
    for flat, before in enumerate(tuples):
        after = tuples[target[flat]]
        for j in range(3):
            expected = (before[j] + 1) % sizes[j] if j == axis else before[j]
            assert after[j] == expected
    assert sorted(target) == list(range(12))  # a permutation: every tuple is some request's final value


def test_gaussian_product_model_names_and_axes():
    model = product_setup().model
    assert model.attribute_names == ("female/young", "female/old", "male/young", "male/old")
    assert model.capabilities.attribute_axes.names == ("sex", "age")
    assert parse_table(GaussianSpec, {"kind": "gaussian", "means": MEANS[:2]}, "model").build().model.capabilities.attribute_axes is None


# ---------------------------------------------------------------------------------------------
# Switching one attribute


@pytest.mark.parametrize("name,moved,kept", [("sex", 0, 1), ("age", 1, 0)])
def test_switching_one_axis_changes_only_that_axis(name, moved, kept):
    model = product_setup().model
    method = switching({"tau": 400, "switch_attribute": name}, model)
    samples, requested, final = run(model, method, 64)
    before, after = model.capabilities.attribute_axes.decode(requested), model.capabilities.attribute_axes.decode(final)
    np.testing.assert_array_equal(after[:, kept], before[:, kept])
    np.testing.assert_array_equal(after[:, moved], 1 - before[:, moved])
    # The kept axis's coordinate of every sample is exactly that of conditional sampling (same
    # noise; the Gaussian model's coordinates evolve independently), the moved one is not.
    conditional, _, _ = run(model, Conditional(), 64)
    np.testing.assert_allclose(samples[:, kept], conditional[:, kept], rtol=0, atol=1e-12)
    assert (samples[:, moved] - conditional[:, moved]).abs().min() > 1e-3
    # Closed form (DDIM is affine): the sample mean is that of the schedule requested -> target.
    timesteps, _, _ = ddim_coefficients(model, STEPS)
    for flat in range(4):
        law = ddim_output(model, STEPS, switching_schedule(timesteps, 400, flat, int(method.target[flat]), 4))
        group = samples[requested == flat]
        assert torch.linalg.vector_norm(group.mean(0) - law.mean) < 4 * abs(law.scale) / np.sqrt(len(group)) * 2


def test_switch_attribute_at_the_limits_is_conditional_sampling():
    model = product_setup().model
    never = switching({"tau": -1, "switch_attribute": "sex"}, model)
    always = switching({"tau": 999, "switch_attribute": "sex"}, model)
    samples, requested, _ = run(model, never, 16)
    assert torch.equal(samples, run(model, Conditional(), 16)[0])
    target = torch.as_tensor(always.target)[requested]
    out = sample(model, Conditional(), target, scheduler_name="ddim", steps=STEPS, seed=3, batch_size=16)
    assert torch.equal(run(model, always, 16)[0], out.samples)


def test_switch_attribute_omitted_is_the_whole_condition_switch_unchanged():
    model = product_setup().model
    spec = parse_method({"name": "attribute_switching", "tau": 224}, "methods[0]")
    assert spec.record() == {"name": "attribute_switching", "tau": 224}
    method = switching({"tau": 224}, model)
    assert method == AttributeSwitching(tau=224)
    assert method.params() == {"tau": 224, "search_batch_size": 256, "switch_attribute": None}
    assert method.final_rule == "target of the switch: (requested + 1) mod k"
    assert torch.equal(run(model, method, 16)[0], run(model, AttributeSwitching(tau=224), 16)[0])
    named = switching({"tau": 224, "switch_attribute": "age"}, model)
    assert parse_method({"name": "attribute_switching", "tau": 224, "switch_attribute": "age"}, "m").record() == {
        "name": "attribute_switching", "tau": 224, "switch_attribute": "age"}
    assert named.params()["switch_attribute"] == "age" and "'age'" in named.final_rule


# ---------------------------------------------------------------------------------------------
# Epsilon and balance per attribute

FAST = SuiteOptions(epsilon_folds=3, epsilon_repeats=1, epsilon_subsamples=0, epsilon_permutations=50,
                    bootstrap=100, kid_subsets=5, kid_subset_size=100)


@pytest.fixture(scope="module")
def measured():
    setup = product_setup()
    model = setup.model
    sex_tau = exact_optimal_tau(model, STEPS, 0, 2)[0]  # female/young vs male/young: the sex axis alone
    methods = {
        "conditional": Conditional(),
        "random": RandomCondition(),
        "switch sex": switching({"tau": sex_tau, "switch_attribute": "sex"}, model),
    }
    out = {}
    for name, method in methods.items():
        samples, requested, final = run(model, method, 800)
        out[name] = evaluate(samples, requested, setup, seed=0, config=FAST, final=final)
    return setup, out


def test_per_axis_epsilon_and_balance_rank_planted_controls(measured):
    _, metrics = measured
    cond, rand, sex = metrics["conditional"], metrics["random"], metrics["switch sex"]
    for axis in ("sex", "age"):  # conditional: unfair on both; random condition: fair on both
        assert cond["epsilon_by_attribute"][axis] > 0.5 and cond["fd_by_attribute"][axis] > 0.3
        assert rand["epsilon_by_attribute"][axis] < 0.1 and rand["fd_by_attribute"][axis] < 0.1
    # switching sex at its optimum: fair on sex, as unfair as conditional sampling on age
    assert sex["epsilon_by_attribute"]["sex"] < 0.1 and sex["fd_by_attribute"]["sex"] < 0.1
    assert sex["epsilon_by_attribute"]["age"] > 0.5 and sex["fd_by_attribute"]["age"] > 0.3
    assert abs(sex["epsilon_by_attribute"]["age"] - cond["epsilon_by_attribute"]["age"]) < 0.1
    assert sex["epsilon"] > 0.5  # the joint value sees the unfair axis


def test_every_per_axis_field_is_documented_and_the_worst_axis_is_the_max(measured):
    from fairbench.metrics import METRICS

    intervals = {m.interval for m in METRICS.values() if m.interval}
    for metrics in measured[1].values():
        assert set(metrics) - set(METRICS) - intervals == set()
        assert metrics["epsilon_max_by_attribute"] == max(metrics["epsilon_by_attribute"].values())
        assert metrics["fd_max_by_attribute"] == max(metrics["fd_by_attribute"].values())


def test_joint_epsilon_bounds_the_per_axis_values(measured):
    # TV is jointly convex: per-axis TV <= the largest TV between tuples (up to estimation noise)
    for metrics in measured[1].values():
        for value in metrics["epsilon_by_attribute"].values():
            assert value <= metrics["epsilon"] + 0.05
        lo, hi = metrics["epsilon_ci_by_attribute"]["sex"]
        assert lo <= metrics["epsilon_by_attribute"]["sex"] <= hi


def test_per_axis_balance_is_the_marginal_of_the_joint_judged_distributions(measured):
    setup, metrics = measured
    axes = setup.model.capabilities.attribute_axes
    tuples = axes.decode(np.arange(axes.size))
    for result in metrics.values():
        joint = result["judged_distribution"]
        for j, axis in enumerate(axes.names):
            for v, value in enumerate(axes.values[j]):
                members = [axes.marginal(joint[setup.model.attribute_names[t]], j) for t in range(4) if tuples[t, j] == v]
                np.testing.assert_allclose(result["judged_distribution_by_attribute"][axis][value],
                                           np.mean(members, axis=0), atol=1e-12)
            assert result["judged_distribution_corrected_by_attribute"][axis].keys() == set(axes.values[j])


def test_single_attribute_runs_have_no_per_axis_fields():
    spec = parse_table(GaussianSpec, {"kind": "gaussian", "means": MEANS[:2], "n_real": 200}, "model")
    setup = spec.build()
    samples, requested, _ = run(setup.model, Conditional(), 60)
    metrics = evaluate(samples, requested, setup, seed=0, config=FAST)
    assert not [key for key in metrics if key.endswith("_by_attribute")]


# ---------------------------------------------------------------------------------------------
# Folder datasets with several attribute columns


def test_fairface_gender_by_age_flat_labels(tmp_path):
    rows = write_fairface(tmp_path, n_train=9, n_val=5)
    data = load_dataset({"name": "fairface", "root": str(tmp_path), "attribute": ["gender", "age"], "resolution": 4})
    column = "gender x age"
    assert data.attributes.columns[0] == column
    ages = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70")
    expected = [("Female", "Male").index(g) * 9 + ages.index(a) for g, a in zip(rows["gender"], rows["age"])]
    np.testing.assert_array_equal(data.labels(column).numpy(), expected)
    names = data.attribute_values[column]
    assert len(names) == 18 and names[0] == "female/0-2" and names[9] == "male/0-2"
    axes = data.product_axes[column]
    assert axes.names == ("gender", "age") and axes.sizes == (2, 9)
    np.testing.assert_array_equal(data.labels("gender").numpy(), axes.decode(data.labels(column).numpy())[:, 0])
    assert data.subset("train").product_axes == data.product_axes


def test_celeba_two_columns_with_a_target(tmp_path):
    table = write_celeba(tmp_path, n=12)
    data = load_dataset({"name": "celeba", "root": str(tmp_path), "attribute": ["Male", "Young"], "target": "Smiling",
                         "resolution": 8})
    assert list(data.attributes.columns[:2]) == ["Male x Young", "Smiling"]
    expected = (table["Male"] == 1).astype(int) * 2 + (table["Young"] == 1).astype(int)
    np.testing.assert_array_equal(data.labels("Male x Young").numpy(), expected.to_numpy())
    assert data.attribute_values["Male x Young"] == ("female/no", "female/yes", "male/no", "male/yes")


@pytest.mark.parametrize("attribute,target,words", [
    (["gender", "agee"], None, ["'agee'", "age"]),
    (["gender", "gender"], None, ["'gender' twice"]),
    (["gender"], None, ["1 attribute"]),
    (["gender", "age"], "age", ["'age' is a sensitive attribute"]),
])
def test_folder_bad_attribute_lists(tmp_path, attribute, target, words):
    write_fairface(tmp_path, n_train=3, n_val=2)
    table = {"name": "fairface", "root": str(tmp_path), "attribute": attribute} | ({"target": target} if target else {})
    with pytest.raises(FairbenchError) as info:
        load_dataset(table)
    assert "\n" not in str(info.value)
    for word in words:
        assert word in str(info.value)


def test_celeba_unknown_column_in_a_list(tmp_path):
    write_celeba(tmp_path, n=6)
    with pytest.raises(FairbenchError, match="'Yung'.*Young"):
        load_dataset({"name": "celeba", "root": str(tmp_path), "attribute": ["Male", "Yung"]})


# ---------------------------------------------------------------------------------------------
# Bad configs: one line, exit 2, nothing written

BASE = """\
[benchmark]
name = "multi"
n_samples = 40
batch_size = 20

[model]
kind = "gaussian"
means = [[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]]
attribute_axes = [{name = "sex", values = ["female", "male"]}, {name = "age", values = ["young", "old"]}]

[sampler]
steps = 4

[[methods]]
name = "attribute_switching"
tau = 224
switch_attribute = "sex"
"""

AXES_LINE = 'attribute_axes = [{name = "sex", values = ["female", "male"]}, {name = "age", values = ["young", "old"]}]'
BAD = [
    ("unknown-axis", 'switch_attribute = "sex"', 'switch_attribute = "gender"', ["'gender'", "sex"]),
    ("one-axis-model", AXES_LINE, "", ["switch_attribute = 'sex'", "several axes", "leave switch_attribute out"]),
    ("duplicate-axis", '{name = "age"', '{name = "sex"', ["'sex' twice"]),
    ("size-mismatch", "[0.5, 0.5]]", "[0.5, 0.5], [0.0, 0.0]]", ["4 values", "5 rows"]),
    ("one-axis-listed", AXES_LINE, 'attribute_axes = [{name = "sex", values = ["female", "male"]}]', ["at least 2 axes"]),
    ("names-and-axes", AXES_LINE, AXES_LINE + '\nattribute_names = ["a", "b", "c", "d"]', ["not both"]),
]


@pytest.mark.parametrize("case,old,new,words", BAD, ids=[b[0] for b in BAD])
def test_bad_multi_attribute_config(tmp_path, capsys, case, old, new, words):
    assert old in BASE, case
    path = tmp_path / "bad.toml"
    path.write_text(BASE.replace(old, new, 1))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fairbench: error: "), err
    for word in words:
        assert word in err[0], (word, err[0])
    assert not out.exists()


def test_unet_training_data_of_a_product_dataset_is_labelled_by_the_tuple(tmp_path):
    from fairbench.models.unet import labelled_splits

    rows = write_fairface(tmp_path, n_train=9, n_val=5)
    splits = labelled_splits({"name": "fairface", "root": str(tmp_path), "attribute": ["gender", "race"],
                              "resolution": 4})
    train = rows[rows["csv_split"] == "train"]
    races = list(dict.fromkeys(["White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian",
                                "Middle Eastern"]))
    expected = [("Female", "Male").index(g) * 7 + races.index(r) for g, r in zip(train["gender"], train["race"])]
    np.testing.assert_array_equal(splits.train.sensitive.numpy(), expected)
    assert splits.train.k == 14 and splits.train.sensitive_values[7] == "male/White"
    assert splits.info["attribute"] == ("gender", "race")


@pytest.mark.parametrize("axis,pair", [("sex", (0, 2)), ("age", (0, 1))])
def test_a_searched_tau_balances_the_switched_axis(tmp_path, axis, pair):
    """The search compares the first tuple with the one that differs from it in the switched axis."""
    from fairbench.config import load_config
    from fairbench.runner import run_benchmark
    from fairbench.tau_search import direct_search

    path = tmp_path / "search.toml"
    path.write_text(BASE.replace("tau = 224", 'tau = "direct"\nsearch_batch_size = 16').replace(
        'switch_attribute = "sex"', f'switch_attribute = "{axis}"'))
    config = load_config(path)
    (record,) = run_benchmark(config, tmp_path / "out", log=lambda line: None)
    model = config.model_spec().build(device="cpu", dataset=None).model
    expected = direct_search(model, scheduler_name="ddim", steps=4, seed=0, batch_size=16, s0=pair[0], s1=pair[1])
    assert record["metrics"]["tau"] == expected.tau
    assert record["tau_search"]["curve"] == [list(point) for point in expected.curve]
