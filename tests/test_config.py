import json

import pytest

from grokscope import GrokscopeError, RunConfig, load_preset
from grokscope.config import known_keys, parse_override


def test_json_round_trip_keeps_every_key():
    config = load_preset("canonical").with_overrides({"task.p": 59, "optim.betas": [0.8, 0.9]})
    again = RunConfig.from_dict(json.loads(config.to_json()))
    assert again == config
    assert again.optim.betas == (0.8, 0.9)


def test_canonical_preset_matches_the_paper():
    c = load_preset("canonical")
    assert (c.task.op, c.task.p, c.task.train_frac) == ("add", 113, 0.3)
    assert (c.model.n_layers, c.model.d_model, c.model.n_heads, c.model.d_head, c.model.d_mlp) == (1, 128, 4, 32, 512)
    assert (c.optim.name, c.optim.lr, c.optim.weight_decay, c.optim.betas) == ("adamw", 1e-3, 1.0, (0.9, 0.98))
    assert (c.train.batch_size, c.train.steps, c.train.loss) == (0, 25_000, "ce")


@pytest.mark.parametrize(
    "text, key, value",
    [
        ("task.p=59", "task.p", 59),
        ("optim.lr=3e-3", "optim.lr", 3e-3),
        ("task.op=mul", "task.op", "mul"),
        ("model.bias=true", "model.bias", True),
        ("optim.betas=[0.9, 0.99]", "optim.betas", [0.9, 0.99]),
    ],
)
def test_parse_override(text, key, value):
    assert parse_override(text) == (key, value)


def test_integer_valued_float_is_accepted_for_int_keys():
    assert load_preset("tiny").with_overrides({"train.steps": 200.0}).train.steps == 200


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"task.nope": 1}, "unknown config key 'task.nope'"),
        ({"nope": 1}, "unknown config key 'nope'"),
        ({"task": 1}, "unknown config key 'task'"),
        ({"optim.lr": "fast"}, "'optim.lr' expects a finite number"),
        ({"task.p": 3.5}, "'task.p' expects an integer"),
        ({"model.bias": 1}, "'model.bias' expects true or false"),
        ({"optim.betas": [0.9]}, "'optim.betas' expects a list of 2 numbers"),
        ({"task.op": "div", "task.p": 33}, "needs a prime task.p; 33 is not prime"),
        ({"task.op": "mul", "task.p": 32}, "needs a prime task.p"),
        ({"task.train_frac": 0.0}, "task.train_frac must be in (0, 1)"),
        ({"task.train_frac": 1.0}, "task.train_frac must be in (0, 1)"),
        ({"task.op": "pow"}, "task.op must be one of"),
        ({"model.kind": "rnn"}, "model.kind must be one of"),
        (
            {"model.kind": "moe", "model.bias": True},
            "model.bias applies to model.kind 'transformer', 'mlp' and 'deep_mlp' only",
        ),
        ({"train.steps": 0}, "train.steps must be in [1, 10,000,000]"),
        # sizes that cannot fit are refused by meaning, before any allocation fails with a traceback
        ({"train.steps": 10**20}, "train.steps must be in [1, 10,000,000]"),
        ({"task.p": 1_000_000_007}, "task.p must be in [3, 1024]"),
        ({"optim.lr": 1e308}, "optim.lr must be in (0, 1,000,000]"),
    ],
)
def test_bad_config_is_rejected_with_a_clear_message(overrides, message):
    with pytest.raises(GrokscopeError) as e:
        load_preset("tiny").with_overrides(overrides)
    assert message in str(e.value)


def test_composite_modulus_is_fine_for_addition():
    assert load_preset("tiny").with_overrides({"task.p": 30}).task.p == 30


def test_known_keys_are_dotted():
    keys = known_keys()
    assert "task.p" in keys and "optim.betas" in keys and "checkpoints.n_uniform" in keys


@pytest.mark.parametrize(
    "section, kwargs, message",
    [
        ("TaskConfig", {"kind": "images"}, "task.kind must be one of 'modular', 'digits'"),
        ("TaskConfig", {"kind": "digits", "p": 31}, "apply to task.kind 'modular' only"),
        ("TaskConfig", {"pixels": "unit"}, "task.pixels applies to task.kind 'digits' only"),
        ("TaskConfig", {"kind": "digits", "pixels": "raw"}, "task.pixels must be one of 'standard', 'unit'"),
        ("ModelConfig", {"kind": "cnn"}, "model.kind must be one of 'transformer', 'mlp', 'deep_mlp'"),
        ("ModelConfig", {"init_scale": 0.0}, "model.init_scale must be positive"),
        ("TrainConfig", {"loss": "hinge"}, "train.loss must be one of"),
        ("TrainConfig", {"eval_every": 0}, "train.eval_every must be >= 1"),
        ("TrainConfig", {"eval_every": 5, "batch_size": 64}, "train.eval_every > 1 needs full batches"),
    ],
)
def test_configs_validate_on_construction(section, kwargs, message):
    from grokscope import config

    with pytest.raises(GrokscopeError, match=message):
        getattr(config, section)(**kwargs)


def test_a_schema_1_config_is_upgraded_and_an_unknown_schema_refused():
    from grokscope.config import SCHEMA_VERSION, upgrade

    v1 = load_preset("tiny").to_dict()
    del v1["schema_version"], v1["task"]["kind"], v1["task"]["n_train"], v1["model"]["init_scale"], v1["grokfast"]
    config = RunConfig.from_dict(upgrade(v1), complete=True)
    assert config == load_preset("tiny") and config.schema_version == SCHEMA_VERSION
    with pytest.raises(GrokscopeError, match="missing keys .*task.kind"):
        RunConfig.from_dict({**v1, "schema_version": SCHEMA_VERSION}, complete=True)  # a v2 file must be whole
    with pytest.raises(GrokscopeError, match="schema_version 7"):
        upgrade({**v1, "schema_version": 7})
    v2 = load_preset("digits").to_dict()  # written before task.pixels existed: its pixels were standardised
    del v2["task"]["pixels"]
    assert RunConfig.from_dict(upgrade(v2), complete=True) == load_preset("digits")


def test_eval_every_does_not_apply_to_the_mixture_of_experts():
    with pytest.raises(GrokscopeError, match="train.eval_every > 1 does not apply to model.kind 'moe'"):
        load_preset("tiny").with_overrides({"model.kind": "moe", "train.eval_every": 10})
