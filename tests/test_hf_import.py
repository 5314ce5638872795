"""`grokscope import-hf`: a series of Hugging Face MoE checkpoints read as a run. Routing against the
routers' own outputs (a forward hook on each router), the losses against transformers' own loss, the
pathway distance against a plain Levenshtein on routes taken from those hooks, and bad input."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch
from conftest import levenshtein, tiny_moe_lm

import grokscope
from grokscope import analysis
from grokscope.analysis.pathways import every_position, sample_pairs
from grokscope.cli import main
from grokscope.config import ModelConfig, TaskConfig
from grokscope.errors import GrokscopeError
from grokscope.importers.hf import import_hf, step_of
from grokscope.models import HFMoE, load_model
from grokscope.tasks import TextTask


def router_outputs(model, input_ids: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, the experts each token's router chose and their weights, as transformers' routers return
    them (n, seq_len, k) each, highest first."""
    seen = []
    hooks = [
        layer.mlp.gate.register_forward_hook(lambda _m, _i, out: seen.append((out[2], out[1])))
        for layer in model.model.layers
    ]
    with torch.no_grad():
        model(input_ids=input_ids)
    for h in hooks:
        h.remove()
    return [(ids.view(*input_ids.shape, -1), w.view(*input_ids.shape, -1)) for ids, w in seen]


@pytest.mark.parametrize("architecture", ["olmoe", "mixtral"])
def test_routing_is_the_routers_own(tmp_path, architecture):
    """The weights grokscope reads from the router logits are, token by token, the top-k and weights the
    routers computed (OLMoE leaves them unnormalised, Mixtral renormalises them)."""
    hf = tiny_moe_lm(architecture, seed=1)
    hf.save_pretrained(tmp_path / "step0")
    task = TextTask(TaskConfig(kind="text", n_train=4, seq_len=6, vocab=32))
    model = HFMoE(ModelConfig(kind="hf"), task, [str(tmp_path / "step0")])
    inputs = torch.randint(0, 32, (40, 6), generator=torch.Generator().manual_seed(2))  # more than a batch
    values = model.units_values(inputs, every_position)
    for (ids, weights), value in zip(router_outputs(model.hf, inputs), values, strict=True):
        expected = torch.zeros_like(value).scatter_(-1, ids, weights.float())
        assert torch.allclose(value, expected, atol=1e-6)
        assert (value > 0).sum(-1).eq(2).all()
    if architecture == "mixtral":
        assert torch.allclose(values[0].sum(-1), torch.ones(40, 6))


@pytest.fixture(scope="module")
def imported(hf_series, tmp_path_factory):
    out = tmp_path_factory.mktemp("imported") / "olmoe"
    dirs = sorted(str(d) for d in (hf_series / "series").iterdir())
    assert main(["import-hf", *dirs, "--out", str(out), "--data", str(hf_series / "train.jsonl"),
                 "--test", str(hf_series / "test.jsonl")]) == 0  # fmt: skip
    return grokscope.open_run(out)


def samples(path) -> torch.Tensor:
    return torch.tensor([json.loads(line)["input_ids"] for line in path.read_text().splitlines()])


def test_the_import_is_a_run_with_the_series_losses(imported, hf_series):
    """Steps from the directories' names; at each, the train and test loss are transformers' causal LM loss
    on the samples (its own mean over every next token: the samples are of one length), NaN between."""
    from transformers import AutoModelForCausalLM

    run = imported
    assert run.complete and run.steps.tolist() == [0, 10, 20]
    assert run.config.task.kind == "text" and (run.config.task.n_train, run.config.task.n_test) == (16, 8)
    train, test = samples(hf_series / "train.jsonl"), samples(hf_series / "test.jsonl")
    assert np.array_equal(run.dataset.inputs, torch.cat([train, test]).numpy())
    for step in (0, 10, 20):
        hf = AutoModelForCausalLM.from_pretrained(hf_series / "series" / f"step{step}").eval()
        with torch.no_grad():
            for split, ids in (("train", train), ("test", test)):
                expected = hf(input_ids=ids, labels=ids).loss.item()
                assert run.metrics[f"{split}_loss"][step] == pytest.approx(expected, rel=1e-5)  # float32 logits
    assert np.isnan(run.metrics["train_loss"][1:10]).all()
    assert run.metrics["train_loss"][20] < run.metrics["train_loss"][0]  # it learnt the pattern
    assert run.diverged_step is None  # the steps between checkpoints are not measured, not diverged


def test_the_pathway_distance_is_the_routes_edit_distance(imported, hf_series):
    """The cached whole-pathway distance at each checkpoint equals the mean normalised Levenshtein distance,
    computed here in plain Python, between the routes the routers' hooks report at the last position."""
    from transformers import AutoModelForCausalLM

    result = analysis.load(imported, "pathways")
    train = samples(hf_series / "train.jsonl")
    pairs = sample_pairs(len(train), 2000, 0)  # the analysis' default pairs and seed
    for row, step in enumerate((0, 10, 20)):
        hf = AutoModelForCausalLM.from_pretrained(hf_series / "series" / f"step{step}").eval()
        routes = torch.cat([ids[:, -1] for ids, _ in router_outputs(hf, train)], 1).tolist()  # (n, L·k)
        expected = np.mean([levenshtein(routes[i], routes[j]) / len(routes[i]) for i, j in pairs])
        assert result["distance"][row, -1] == pytest.approx(expected, abs=1e-6)


def test_an_imported_series_opens_everywhere_and_says_what_does_not_apply(imported, tmp_path, capsys):
    """analyze names what does not apply in one line; the pathways recompute with other options; a model
    loads at a step; verify checks that the checkpoint directories are still there."""
    run_dir = tmp_path / "run"
    shutil.copytree(imported.path, run_dir)
    assert main(["analyze", str(run_dir), "--only", "weight_norms"]) == 2
    assert "an imported Hugging Face series" in capsys.readouterr().err
    assert main(["analyze", str(run_dir), "--only", "pathways", "--option", "pathways.position=mean"]) == 0
    result = analysis.load(grokscope.open_run(run_dir), "pathways")
    assert json.loads(str(result["options"]))["position"] == "mean"
    model = load_model(run_dir, 10)
    assert model.row == 1 and model.hf.config.model_type == "olmoe"
    assert main(["verify", str(run_dir)]) == 0
    assert main(["analyze", str(run_dir), "--summary"]) == 0
    assert "phases: not applicable" in capsys.readouterr().out
    assert main(["import-hf", *imported.checkpoint_dirs, "--out", str(run_dir), "--data", "x"]) == 2
    assert "already exists: --force replaces it" in capsys.readouterr().err
    assert main(["figures", str(run_dir), "--out", str(tmp_path / "figures"), "--format", "svg"]) == 0
    written = {p.name for p in (tmp_path / "figures").iterdir()}
    assert {"pathways.svg", "pathway_grid.svg", "training_curves.svg"} <= written


def test_checkpoints_changed_or_moved_after_the_import_are_found(hf_series, tmp_path, capsys):
    """Each checkpoint directory's fingerprint is the run's checksum for that row: verify finds one gone and
    one changed; a changed last checkpoint stops the run from opening (its caches are never served)."""
    series = tmp_path / "series"
    shutil.copytree(hf_series / "series", series)
    out = tmp_path / "run"
    import_hf(sorted(series.iterdir()), out, hf_series / "train.jsonl", progress=False, say=lambda _: None)
    shutil.rmtree(series / "step10")
    weights = series / "step0" / "model.safetensors"
    weights.write_bytes((series / "step20" / "model.safetensors").read_bytes())
    assert main(["verify", str(out)]) == 1
    err = capsys.readouterr().err
    assert "1 of 3 checkpoints cannot be read" in err and "step10: checkpoint directory gone" in err
    assert "1 of 3 checkpoints changed since they were imported (steps 0)" in err
    os.utime(series / "step20" / "model.safetensors", ns=(1, 1))
    assert main(["analyze", str(out), "--only", "pathways"]) == 2
    assert "the checkpoint at step 20 changed since it was imported" in capsys.readouterr().err


def test_a_series_of_mixed_architectures_is_refused_before_any_work(hf_series, tmp_path, capsys):
    other = tmp_path / "step30"
    tiny_moe_lm("mixtral").save_pretrained(other)
    dirs = [*sorted(str(d) for d in (hf_series / "series").iterdir()), str(other)]
    assert main(["import-hf", *dirs, "--out", str(tmp_path / "out"), "--data", str(hf_series / "train.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "step30: not of the series' architecture (model_type mixtral, the first checkpoint's olmoe)" in err
    assert err.count("\n") == 1 and not (tmp_path / "out").exists()


def test_steps_come_from_the_names_or_the_flag():
    from pathlib import Path

    assert step_of(Path("step1000-tokens4B")) == 1000  # OLMoE's revision names
    assert step_of(Path("checkpoint-250")) == 250
    with pytest.raises(GrokscopeError, match="no step in its name"):
        step_of(Path("final"))


def test_bad_input_is_one_line_and_writes_nothing(hf_series, tmp_path, capsys):
    from transformers import LlamaConfig, LlamaForCausalLM

    dirs = sorted(str(d) for d in (hf_series / "series").iterdir())
    data = str(hf_series / "train.jsonl")
    out = tmp_path / "out"
    bad = tmp_path / "bad.jsonl"
    cases = {
        "a sample is": '{"tokens": [1, 2]}\n',
        "not a JSON object": "{1, 2\n",
        "has none; give input_ids": '{"text": "no tokenizer was saved"}\n',
        "outside the checkpoints' vocabulary": '{"input_ids": [1, 2, 99]}\n{"input_ids": [3, 4, 5]}\n',
    }
    for message, text in cases.items():
        bad.write_text(text)
        assert main(["import-hf", *dirs, "--out", str(out), "--data", str(bad)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    dense = tmp_path / "dense"
    LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=8, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=2)).save_pretrained(dense)  # fmt: skip
    assert main(["import-hf", str(dense), "--steps", "5", "--out", str(out), "--data", data]) == 2
    assert "not an MoE architecture grokscope reads" in capsys.readouterr().err
    assert main(["import-hf", *dirs, "--steps", "1,2", "--out", str(out), "--data", data]) == 2
    assert "2 steps for 3 checkpoint directories" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["import-hf", *dirs, "--out", str(out), "--data", data, "--force"]) == 2
    assert "not a grokscope run" in capsys.readouterr().err and (out / "notes.txt").read_text() == "mine"


def test_text_samples_are_tokenized_with_the_checkpoints_tokenizer(hf_series, tmp_path):
    """A checkpoint saved with its tokenizer (a word-level one built here over the 32 tokens): text samples
    become its token ids; the longer sample is cut to the shorter one's length."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    series = tmp_path / "series"
    shutil.copytree(hf_series / "series", series)
    words = Tokenizer(models.WordLevel({f"w{i}": i for i in range(32)}, unk_token="w0"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=words).save_pretrained(series / "step0")
    data = tmp_path / "text.jsonl"
    data.write_text('{"text": "w3 w4 w5 w6 w7"}\n{"text": "w9 w8 w7 w6"}\n')
    run = grokscope.open_run(import_hf(sorted(series.iterdir()), tmp_path / "run", data, progress=False, say=print))
    assert run.dataset.inputs.tolist() == [[3, 4, 5, 6], [9, 8, 7, 6]]
