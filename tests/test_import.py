"""`grokscope import`: a series of transformer state dicts with HookedTransformer's names read back as a run:
the same weights, the metrics training recorded, the same logits; refusals in one line."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import grokscope
from grokscope import analysis
from grokscope.cli import main
from grokscope.models import build_model, load_model


@pytest.fixture(scope="module")
def exported(small_run, tmp_path_factory):
    """small_run's checkpoints at six steps as state dict files, as a TransformerLens loop saves them (torch
    files with the attention buffers IGNORE and mask) and as safetensors, and its training inputs."""
    root = tmp_path_factory.mktemp("sources")
    steps = small_run.steps[np.linspace(0, len(small_run.steps) - 1, 6).astype(int)].tolist()
    for i, step in enumerate(steps):
        state = small_run.params(step)
        if i % 2:
            save_file(state, root / f"epoch_{step}.safetensors")
        else:
            state |= {"blocks.0.attn.IGNORE": torch.tensor(-1e5), "blocks.0.attn.mask": torch.ones(3, 3).tril()}
            torch.save(state, root / f"step{step}.pt")
    (root / "train.json").write_text(json.dumps(small_run.dataset.train_rows.tolist()))
    return root, steps


def test_an_imported_series_is_the_source_run_at_its_checkpoints(small_run, exported, tmp_path):
    root, steps = exported
    out = tmp_path / "imported"
    assert main(["import", str(root), "--out", str(out), "--train-rows", str(root / "train.json")]) == 0
    run = grokscope.open_run(out)
    assert run.complete and run.steps.tolist() == steps and run.config.model.d_mlp == small_run.config.model.d_mlp
    assert np.array_equal(run.dataset.test_rows, small_run.dataset.test_rows)
    assert run.config.task.n_train == len(small_run.dataset.train_rows)  # what run tables show
    for step in steps:
        for name, value in small_run.params(step).items():
            assert torch.equal(run.params(step)[name], value)
        for column in ("train_loss", "test_loss", "train_acc", "test_acc"):  # what training recorded at the step
            assert run.metrics[column][step] == pytest.approx(small_run.metrics[column][step], rel=1e-12)
        source, imported = load_model(small_run, step), load_model(run, step)
        inputs = source.task_inputs(small_run.task, small_run.dataset)
        assert torch.equal(imported(inputs), source(inputs))
    assert np.isnan(run.metrics["train_loss"][steps[0] + 1 : steps[1]]).all()
    assert run.measured_steps.tolist() == steps
    assert "trained elsewhere" in grokscope.figures.builders.training_label(run.config)
    computed = analysis.analyze(run, progress=False)
    assert {"key_frequencies", "progress", "phases"} <= set(computed)


def test_biases_are_read_and_the_logits_kept(tmp_path):
    """A transformer with HookedTransformer's biases (non-zero here): model.bias is inferred from the file and
    the imported model gives the source's logits."""
    config = grokscope.RunConfig().with_overrides(
        {"task.p": 7, "model.bias": True, "model.d_model": 16, "model.d_head": 4, "model.d_mlp": 16}
    )
    source = build_model(config)
    with torch.no_grad():
        for p in source.parameters():
            p.normal_(0, 0.3, generator=torch.Generator().manual_seed(3))
    for step in (0, 5):
        torch.save(source.state_dict(), tmp_path / f"ckpt_{step}.pt")
    (tmp_path / "train.json").write_text(json.dumps(list(range(0, 49, 2))))
    out = tmp_path / "run"
    assert main(["import", str(tmp_path / "ckpt_0.pt"), str(tmp_path / "ckpt_5.pt"), "--out", str(out),
                 "--train-rows", str(tmp_path / "train.json"), "--set", "task.op=sub"]) == 0  # fmt: skip
    run = grokscope.open_run(out)
    assert run.config.model.bias and run.config.task.op == "sub"
    model = load_model(run, 5)
    inputs = model.task_inputs(run.task, run.dataset)
    assert torch.equal(model(inputs), source(inputs))


@dataclasses.dataclass
class TrainingConfig:  # what a training script might save next to its weights
    lr: float = 1e-3


def test_bad_sources_are_refused_in_one_line(small_run, exported, tmp_path, capsys):
    root, steps = exported
    train = str(root / "train.json")
    state = small_run.params(steps[0])
    torch.save({"state_dict": state, "config": TrainingConfig()}, tmp_path / "pickled_1.pt")
    save_file({**state, "blocks.0.ln1.w": torch.ones(4)}, tmp_path / "layernorm_1.safetensors")
    save_file({k: v for k, v in state.items() if k != "unembed.W_U"}, tmp_path / "partial_1.safetensors")
    save_file(
        {**state, "blocks.0.mlp.W_in": state["blocks.0.mlp.W_in"][:, :-1].contiguous()}, tmp_path / "w_2.safetensors"
    )
    save_file({**state, "blocks.0.attn.W_extra": torch.ones(2)}, tmp_path / "extra_1.safetensors")
    (tmp_path / "rows.json").write_text("[0, 0]")
    torch.save({"checkpoints": [state]}, tmp_path / "list_1.pt")
    torch.save({"checkpoints": [state, state], "steps": [0]}, tmp_path / "uneven_1.pt")
    cases = [
        ([str(tmp_path / "pickled_1.pt")], "holds Python objects that only arbitrary unpickling would load"),
        ([str(tmp_path / "layernorm_1.safetensors")], "has LayerNorm"),
        ([str(tmp_path / "list_1.pt")], "a list of checkpoints needs their steps"),
        ([str(tmp_path / "uneven_1.pt")], "2 checkpoints but 1 steps for them"),
        ([str(tmp_path / "partial_1.safetensors")], "not a transformer state dict with HookedTransformer's names"),
        ([str(root / f"step{steps[0]}.pt"), str(tmp_path / "w_2.safetensors")], "blocks.0.mlp.W_in has shape"),
        ([str(tmp_path / "extra_1.safetensors")], "blocks.0.attn.W_extra is not a parameter of the transformer"),
        ([str(root), "--set", "task.p=7"], "task.p comes from the checkpoints"),
        ([str(root), "--set", "model.kind=mlp"], "model.kind comes from the checkpoints"),
        ([str(root), "--steps", "1,2"], "2 steps for 6 checkpoints"),
        ([str(tmp_path / "missing")], "no such file or directory"),
    ]
    for args, message in cases:
        assert main(["import", *args, "--out", str(tmp_path / "out"), "--train-rows", train]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert main(["import", str(root), "--out", str(tmp_path / "out"), "--train-rows", str(tmp_path / "rows.json")]) == 2
    assert "must be distinct integers" in capsys.readouterr().err
    (tmp_path / "rows.json").write_text("[1, 2, 31]")  # b = 0 in row 31 (a = 1): not an input of division
    args = ["import", str(root), "--out", str(tmp_path / "out"), "--train-rows", str(tmp_path / "rows.json")]
    assert main([*args, "--set", "task.op=div"]) == 2
    assert "training input 31 (a = 1, b = 0) is not an input" in capsys.readouterr().err
    variant = tmp_path / "variant"
    (variant / "checkpoints").mkdir(parents=True)
    save_file(state, variant / "checkpoints" / "checkpoint_epoch_00003.safetensors")
    for metadata, message in (
        ({"train_indices": [1, 1, 2]}, "train_indices: training inputs must be distinct integers"),
        ({"train_indices": [1.5, 2.2]}, "train_indices: training inputs must be distinct integers"),
        ({"train_indices": [1, 2], "train_losses": "abc"}, "the recorded train loss curve is not a list of numbers"),
    ):
        (variant / "metadata.json").write_text(json.dumps(metadata))
        assert main(["import", str(variant), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))
    assert main(["import", str(root), "--out", ".", "--train-rows", train]) == 2
    assert "is the current directory" in capsys.readouterr().err
    # a negative step is the import's to refuse, not read by argparse as an option
    six = ",".join(["-1", *map(str, steps[1:])])
    assert main(["import", str(root), "--out", str(tmp_path / "out"), "--train-rows", train, "--steps", six]) == 2
    assert "steps must be distinct, ≥ 0" in capsys.readouterr().err


TL3 = Path(__file__).resolve().parent.parent / ".tl3"  # TransformerLens 3, installed by the README's test command


def test_a_transformerlens_3_series_imports_with_its_own_logits(tmp_path):
    """TransformerLens 3's own HookedTransformer (in a subprocess: this environment has TransformerLens 4)
    trains and saves a series; the imported run's logits at every step are TransformerLens 3's, to float32
    precision (the same maths summed in another order: a few ulps of the logits' scale)."""
    if not (TL3 / "transformer_lens").is_dir():
        pytest.skip(f"no TransformerLens 3 in {TL3}: the README's test command installs it there")
    series = tmp_path / "series"
    env = {**os.environ, "PYTHONPATH": str(TL3)}
    script = Path(__file__).resolve().parent / "tl3_series.py"
    subprocess.run([sys.executable, str(script), str(series)], env=env, check=True, capture_output=True)
    out = tmp_path / "run"
    args = ["import", str(series), "--out", str(out), "--train-rows", str(series / "train.json")]
    assert main([*args, "--set", "task.op=sub"]) == 0
    run = grokscope.open_run(out)
    assert run.steps.tolist() == [0, 5, 10] and run.config.model.bias
    for step in (0, 5, 10):
        model = load_model(run, step)
        ours = model.all_logits(model.task_inputs(run.task, run.dataset)).detach().numpy()
        theirs = np.load(series / f"logits_{step}.npy")
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5 * np.abs(theirs).max())
    assert run.metrics["train_loss"][10] < run.metrics["train_loss"][0]
    assert analysis.analyze(run, progress=False)

    # the same run as the grokking demo saves it, one file with TransformerLens 3's config object in it (read
    # with weights_only=True: the config's fields only): checkpoints after epochs 4 and 9 (steps 5 and 10),
    # the final model after 11 updates, the split and both loss curves
    bundle = tmp_path / "bundle_run"
    assert main(["import", str(series / "bundle" / "full_run.pth"), "--out", str(bundle), "--set", "task.op=sub"]) == 0
    run = grokscope.open_run(bundle)
    assert run.steps.tolist() == [5, 10, 11] and run.config.model.act == "relu"
    assert run.dataset.train_rows.tolist() == json.loads((series / "train.json").read_text())
    for step in (5, 10, 11):
        model = load_model(run, step)
        ours = model.all_logits(model.task_inputs(run.task, run.dataset)).detach().numpy()
        theirs = np.load(series / f"logits_{step}.npy")
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5 * np.abs(theirs).max())
    # the demo's train loss at epoch e is taken before its update (step e), its test loss after it (e + 1);
    # grokscope's own test loss at step 5 is the same quantity
    recorded = run.source_metrics
    assert np.isfinite(recorded["train_loss"][:11]).all() and np.isnan(recorded["test_loss"][0])
    assert recorded["test_loss"][5] == pytest.approx(run.metrics["test_loss"][5], rel=1e-4)
    assert recorded["train_loss"][5] == pytest.approx(run.metrics["train_loss"][5], rel=1e-4)


class PaperLayout(torch.nn.Module):
    """A one-layer transformer laid out as the progress-measures paper's code lays out its own (W_E as
    (d_model, d_vocab), W_Q/W_K/W_V as (heads, d_head, d_model), W_O as (d_model, heads·d_head), W_in as
    (d_mlp, d_model), MLP biases only, W_U with a logit for `=`), computing what that code computes."""

    def __init__(self, p: int, d: int = 16, heads: int = 2, d_mlp: int = 32):
        super().__init__()
        g = torch.Generator().manual_seed(0)

        def param(*shape):
            return torch.nn.Parameter(torch.randn(*shape, generator=g) / shape[-1] ** 0.5)

        self.embed, self.pos_embed = torch.nn.Module(), torch.nn.Module()
        self.embed.W_E, self.pos_embed.W_pos = param(d, p + 1), param(3, d)
        self.blocks = torch.nn.ModuleList([torch.nn.Module()])
        attn, mlp = torch.nn.Module(), torch.nn.Module()
        attn.W_K, attn.W_Q, attn.W_V = (
            param(heads, d // heads, d),
            param(heads, d // heads, d),
            param(heads, d // heads, d),
        )
        attn.W_O = param(d, d)
        attn.register_buffer("mask", torch.ones(3, 3).tril())
        mlp.W_in, mlp.b_in, mlp.W_out, mlp.b_out = param(d_mlp, d), param(d_mlp), param(d, d_mlp), param(d)
        self.blocks[0].attn, self.blocks[0].mlp = attn, mlp
        self.unembed = torch.nn.Module()
        self.unembed.W_U = param(d, p + 1)

    def forward(self, x):
        attn, mlp = self.blocks[0].attn, self.blocks[0].mlp
        resid = self.embed.W_E[:, x].permute(1, 2, 0) + self.pos_embed.W_pos
        k, q, v = (torch.einsum("ihd,bpd->biph", W, resid) for W in (attn.W_K, attn.W_Q, attn.W_V))
        scores = torch.einsum("biph,biqh->biqp", k, q)
        scores = torch.tril(scores) - 1e10 * (1 - attn.mask)
        pattern = torch.softmax(scores / k.shape[-1] ** 0.5, dim=-1)
        z = torch.einsum("biph,biqp->biqh", v, pattern)
        resid = resid + torch.einsum("df,bqf->bqd", attn.W_O, z.permute(0, 2, 1, 3).flatten(2))
        post = torch.relu(torch.einsum("md,bpd->bpm", mlp.W_in, resid) + mlp.b_in)
        resid = resid + torch.einsum("dm,bpm->bpd", mlp.W_out, post) + mlp.b_out
        return resid @ self.unembed.W_U


def test_the_progress_measures_layout_and_its_saved_files(tmp_path):
    """A run saved as the progress-measures code saves one (init.pth with the split as (a, b, =) triples,
    {epoch}.pth after each saved step's update, final.pth with the loss curves): its steps (init 0, epoch e
    → e + 1 updates, final N), its split and its logits over the p answers, to float32 precision."""
    p = 11
    model = PaperLayout(p)
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    data = torch.stack([a.flatten(), b.flatten(), torch.full((p * p,), p)], 1)
    labels = (a.flatten() + b.flatten()) % p
    train = torch.randperm(p * p, generator=torch.Generator().manual_seed(1))[:60]
    triples = [tuple(row) for row in data[train].tolist()]
    torch.save({"model": model.state_dict(), "train_data": triples, "test_data": []}, tmp_path / "init.pth")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1.0, betas=(0.9, 0.98))
    logits, losses = {0: model(data)[:, -1, :-1].detach()}, []
    for epoch in range(8):
        loss = torch.nn.functional.cross_entropy(model(data[train])[:, -1], labels[train])
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if epoch % 3 == 0:
            torch.save({"model": model.state_dict(), "train_loss": losses[-1], "test_loss": 0.0, "epoch": epoch},
                       tmp_path / f"{epoch}.pth")  # fmt: skip
            logits[epoch + 1] = model(data)[:, -1, :-1].detach()
    torch.save({"model": model.state_dict(), "train_losses": losses, "test_losses": losses, "epoch": 8,
                "optimizer": optimizer.state_dict()}, tmp_path / "final.pth")  # fmt: skip
    logits[8] = model(data)[:, -1, :-1].detach()
    out = tmp_path / "run"
    assert main(["import", str(tmp_path), "--out", str(out)]) == 0
    run = grokscope.open_run(out)
    assert run.steps.tolist() == sorted(logits) == [0, 1, 4, 7, 8]
    assert run.dataset.train_rows.tolist() == sorted(train.tolist())
    recorded = run.source_metrics["train_loss"]  # final.pth's curve: epoch e's loss is taken before its update
    assert np.allclose(recorded[:8], losses) and np.isnan(recorded[8])
    for step, theirs in logits.items():
        net = load_model(run, step)
        ours = net.all_logits(net.task_inputs(run.task, run.dataset)).detach()
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5 * theirs.abs().max().item())


def test_a_miscope_variant_directory(small_run, tmp_path):
    """MIScope's layout: checkpoints/checkpoint_epoch_NNNNN.safetensors (each saved after that epoch's update:
    step epoch + 1) and metadata.json with the split as grid rows (train_indices)."""
    variant = tmp_path / "p31_seed999"
    (variant / "checkpoints").mkdir(parents=True)
    epochs = [int(s) - 1 for s in small_run.steps[1:][::20]]
    for epoch in epochs:
        save_file(small_run.params(epoch + 1), variant / "checkpoints" / f"checkpoint_epoch_{epoch:05d}.safetensors")
    train = small_run.dataset.train_rows[::-1].tolist()  # in MIScope's shuffled order
    curves = {"train_losses": [1.0, 0.5, 0.25], "test_losses": [2.0, 1.0, 0.5]}  # test: after the epoch's update
    metadata = {"train_indices": train, "test_indices": small_run.dataset.test_rows.tolist(), **curves}
    (variant / "metadata.json").write_text(json.dumps(metadata))
    out = tmp_path / "run"
    assert main(["import", str(variant), "--out", str(out)]) == 0
    run = grokscope.open_run(out)
    assert run.steps.tolist() == [e + 1 for e in epochs]
    assert np.array_equal(run.dataset.train_rows, small_run.dataset.train_rows)
    assert run.source_metrics["train_loss"][:3].tolist() == [1.0, 0.5, 0.25]
    assert run.source_metrics["test_loss"][:4].tolist()[1:] == [2.0, 1.0, 0.5]
    figure = grokscope.figures.builders.training_curves(run).figure
    assert [t.name for t in figure.data if "source" in t.name] == [
        "train loss as the source recorded it",
        "test loss as the source recorded it",
    ]
    for step in run.steps.tolist():
        assert run.metrics["test_acc"][step] == pytest.approx(small_run.metrics["test_acc"][step], rel=1e-12)


def test_export_to_transformerlens_3_and_back(small_run, tmp_path):
    """`export --to tl3` → TransformerLens 3's HookedTransformer (in a subprocess) loads it as the README says
    and gives grokscope's logits to float32 precision; its own state dict, saved and imported again, is the
    run's parameters exactly (plus the zero biases the export adds). `--to safetensors` imports back too."""
    if not (TL3 / "transformer_lens").is_dir():
        pytest.skip(f"no TransformerLens 3 in {TL3}: the README's test command installs it there")
    step = int(small_run.steps[-1])
    folder = tmp_path / "tl3"
    assert main(["export", str(small_run.path), "--to", "tl3", "--out", str(folder)]) == 0
    script = Path(__file__).resolve().parent / "tl3_load.py"
    env = {**os.environ, "PYTHONPATH": str(TL3)}
    subprocess.run([sys.executable, str(script), str(folder), str(step)], env=env, check=True, capture_output=True)
    model = load_model(small_run, step)
    ours = model.all_logits(model.task_inputs(small_run.task, small_run.dataset)).detach().numpy()
    theirs = np.load(folder / "tl3_logits.npy")
    np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-5 * np.abs(ours).max())
    train = tmp_path / "train.json"
    train.write_text(json.dumps(small_run.dataset.train_rows.tolist()))
    back = tmp_path / "back"
    assert main(["import", str(folder / "resaved"), "--out", str(back), "--train-rows", str(train)]) == 0
    for name, value in small_run.params(step).items():
        assert torch.equal(grokscope.open_run(back).params(step)[name], value)
    assert (
        main(["export", str(small_run.path), "--step", "0", "--to", "safetensors", "--out", str(tmp_path / "st")]) == 0
    )
    again = tmp_path / "again"
    assert main(["import", str(tmp_path / "st" / "step0.safetensors"), "--steps", "1", "--out", str(again),
                 "--train-rows", str(train)]) == 0  # fmt: skip
    assert torch.equal(grokscope.open_run(again).params(1)["embed.W_E"], small_run.params(0)["embed.W_E"])


def test_export_refuses_what_transformerlens_cannot_hold(coexistence_run, tmp_path, capsys):
    assert main(["export", str(coexistence_run.path), "--to", "tl3", "--out", str(tmp_path / "x")]) == 2
    assert "needs model.kind 'transformer'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # refused before anything is made
    assert main(["export", str(coexistence_run.path), "--to", "onnx", "--out", str(tmp_path / "x")]) == 2
    assert "--to must be one of safetensors, tl3" in capsys.readouterr().err


def test_export_to_transformerlens_4_and_back(small_run, tmp_path):
    """`export --to tl4` → TransformerLens 4's native TransformerBridge loads it as the README says: its
    logits are grokscope's to float32 precision and its cache holds the run's MLP activations under
    HookedTransformer's hook name; the file imported back is the run's parameters exactly."""
    import warnings

    from safetensors.torch import load_file
    from transformer_lens.model_bridge import TransformerBridge

    step = int(small_run.steps[-1])
    folder = tmp_path / "tl4"
    assert main(["export", str(small_run.path), "--to", "tl4", "--out", str(folder)]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the bridge warns about features a native model does not use
        bridge = TransformerBridge.boot_native(json.loads((folder / "transformer_bridge_config.json").read_text()))
    bridge.load_state_dict(load_file(folder / f"step{step}.safetensors"))
    model = load_model(small_run, step)
    inputs = model.task_inputs(small_run.task, small_run.dataset)
    with torch.no_grad():
        ours, theirs = model(inputs)[:, -1], bridge(inputs)[:, -1]
        _, cache = bridge.run_with_cache(inputs[:7])
        _, own = model.run_with_cache(inputs[:7])
    torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=1e-5 * ours.abs().max().item())
    torch.testing.assert_close(cache["blocks.0.mlp.hook_post"], own["blocks.0.mlp.hook_post"], rtol=1e-5, atol=1e-5)
    train = tmp_path / "train.json"
    train.write_text(json.dumps(small_run.dataset.train_rows.tolist()))
    back = tmp_path / "back"
    assert main(["import", str(folder), "--out", str(back), "--train-rows", str(train)]) == 0
    for name, value in small_run.params(step).items():
        assert torch.equal(grokscope.open_run(back).params(step)[name], value)


@pytest.mark.parametrize("to", ["safetensors", "tl3", "tl4"])
def test_the_activation_comes_back_from_what_export_writes(tmp_path, to):
    """A gelu transformer exported in each format imports back as gelu (from the config file beside the
    weights), with its logits."""
    config = grokscope.RunConfig().with_overrides(
        {"task.p": 7, "task.train_frac": 0.5, "model.act": "gelu", "model.d_model": 16, "model.d_head": 4}
        | {"model.d_mlp": 16, "train.steps": 3, "checkpoints.dense_until": 3}
    )
    run = grokscope.open_run(grokscope.train(config, tmp_path / "gelu", progress=False))
    assert main(["export", str(run.path), "--to", to, "--out", str(tmp_path / "x")]) == 0
    train = tmp_path / "train.json"
    train.write_text(json.dumps(run.dataset.train_rows.tolist()))
    assert main(["import", str(tmp_path / "x"), "--out", str(tmp_path / "back"), "--train-rows", str(train)]) == 0
    back = grokscope.open_run(tmp_path / "back")
    assert back.config.model.act == "gelu"
    ours, theirs = load_model(run, 3), load_model(back, 3)
    inputs = ours.task_inputs(run.task, run.dataset)
    torch.testing.assert_close(theirs(inputs), ours(inputs), rtol=1e-5, atol=1e-5)


def test_only_the_progress_measures_files_take_their_step_from_their_contents(small_run, tmp_path):
    """A file of another loop holding an "epoch" keeps the step its name gives."""
    for step in (10, 20):
        torch.save({"model": small_run.params(step), "epoch": step}, tmp_path / f"step_{step}.pt")
    (tmp_path / "train.json").write_text(json.dumps(small_run.dataset.train_rows.tolist()))
    out = tmp_path / "run"
    assert main(["import", str(tmp_path), "--out", str(out), "--train-rows", str(tmp_path / "train.json")]) == 0
    assert grokscope.open_run(out).steps.tolist() == [10, 20]


def test_phases_of_an_imported_run_by_the_rule_its_curves_allow(small_run, tmp_path):
    """An imported run has grokscope's metrics at its checkpoints only. Where the source recorded its loss
    curves step by step, the phases come from them (the training cross-entropy's fit at ln 2 × 0.01, which
    guarantees 99% accuracy), at the step the curve crosses, between checkpoints; without curves, from the
    accuracy at the checkpoints. Each result names its rule."""
    from grokscope.analysis.progress import FIT_LOSS
    from grokscope.importers import write_series

    config, dataset = small_run.config, small_run.dataset
    steps = [0, 100, 200, 300]
    states = [
        {n: t.clone() for n, t in load_model(small_run, int(s)).state_dict().items()} for s in small_run.steps[:4]
    ]
    t = np.arange(301, dtype=np.float64)
    train = np.where(t < 37, 1.0, FIT_LOSS / 2)  # fitted from step 37
    test = np.where(t < 125, 5.0, 5.0 * np.exp(-(t - 125) / 10))  # clean-up from step 125
    curves = {"train_loss": train, "test_loss": test}
    quiet = {"say": lambda _: None}
    with_curves = write_series(tmp_path / "curves", config, dataset, steps, states, {}, curves, **quiet)
    bounds = analysis.load(grokscope.open_run(with_curves), "phases")
    assert str(bounds["rule"]) == "source losses"
    found = analysis.phase_steps(grokscope.open_run(with_curves))
    assert found["memorization_end"] == 37
    # log test loss falls 1/10 per step from step 125 to 300: 10% of its fall, 1.75, is 17.5 steps in
    assert found["cleanup_start"] == 125 + math.ceil(0.1 * 175)
    # a curve with one value per checkpoint (a per-epoch file's) is not step by step: the checkpoints' rule
    sparse = {name: np.where(np.isin(t, steps), values, np.nan) for name, values in curves.items()}
    per_checkpoint = write_series(tmp_path / "sparse", config, dataset, steps, states, {}, sparse, **quiet)
    assert str(analysis.load(grokscope.open_run(per_checkpoint), "phases")["rule"]) == "accuracy at checkpoints"
    assert str(analysis.load(small_run, "phases")["rule"]) == "accuracy"


def test_one_file_holding_a_list_of_checkpoints_with_their_steps(small_run, exported, tmp_path):
    root, steps = exported
    states = [small_run.params(s) for s in steps[:3]]
    torch.save({"checkpoints": states, "steps": list(steps[:3])}, tmp_path / "series.pt")
    out = tmp_path / "run"
    assert (
        main(["import", str(tmp_path / "series.pt"), "--out", str(out), "--train-rows", str(root / "train.json")]) == 0
    )
    run = grokscope.open_run(out)
    assert run.steps.tolist() == list(steps[:3])
    for step, state in zip(steps[:3], states):
        assert all(torch.equal(run.params(step)[name], tensor) for name, tensor in state.items())


def test_a_series_without_a_split_is_measured_on_all_inputs(small_run, exported, tmp_path, capsys):
    """Without a split (none in the files, no --train-rows) the run has loss and accuracy on all inputs and no
    train or test metrics; what needs the split says so; the rest is computed on all inputs."""
    from grokscope.analysis.probes import ablate
    from grokscope.store.verify import verify

    root, steps = exported
    out = tmp_path / "unsplit"
    assert main(["import", str(root), "--out", str(out)]) == 0
    assert "no split recorded or given" in capsys.readouterr().out
    run = grokscope.open_run(out)
    assert not run.has_split and set(run.metrics) == {"step", "all_loss", "all_acc", "weight_norm"}
    data = small_run.dataset
    n_train, n_test = len(data.train_rows), len(data.test_rows)
    for step in steps:
        # independent: the all-inputs loss is the mean of training's own train and test losses, weighted by
        # their sizes (small_run has no corrupted labels: its training labels are the true ones)
        mixed = (n_train * small_run.metrics["train_loss"][step] + n_test * small_run.metrics["test_loss"][step]) / (
            n_train + n_test
        )
        assert run.metrics["all_loss"][step] == pytest.approx(mixed, rel=1e-9)
        hits = n_train * small_run.metrics["train_acc"][step] + n_test * small_run.metrics["test_acc"][step]
        assert run.metrics["all_acc"][step] == pytest.approx(hits / (n_train + n_test), rel=1e-12)
    assert run.grok_step is None and run.summary()["has_split"] is False and verify(run) == []
    computed = analysis.analyze(run, progress=False)
    skipped = analysis.not_applicable(run)
    assert {"spectra", "key_frequencies", "neurons", "progress"} <= set(computed)
    for name in ("phases", "pathways", "local_complexity", "robustness"):  # phases: no curves from the source
        assert "needs the train/test split" in skipped[name], name
    assert "memorization" in computed  # IPR and magnitude read the weights only
    kf = analysis.load(run, "key_frequencies")
    # the ablation rule on all inputs: its base loss is the all-inputs loss, computed apart
    assert float(kf["test_loss"]) == pytest.approx(run.metrics["all_loss"][steps[-1]], rel=1e-6)
    progress = analysis.load(run, "progress")
    assert np.isfinite(progress["restricted_loss"]).all() and np.isnan(progress["excluded_loss"]).all()
    assert analysis.summary(run)["ablation_inputs"] == "all inputs"
    probe = ablate(load_model(run, steps[-1]), run.config, run.dataset, heads=[0])
    assert set(probe) == {"all_loss", "all_acc"}
    for name in grokscope.figures.standard(run):
        plot = grokscope.figures.FIGURES[name][0](run, None)
        assert plot.figure.data, name
    names = [trace.name for trace in grokscope.figures.FIGURES["training_curves"][0](run, None).figure.data]
    assert "all inputs loss" in names and not any("test" in n or "train" in n for n in names), names
    compared = grokscope.figures.builders.compare([small_run, run]).figure.data
    drawn = {trace.name: np.isfinite(np.asarray(trace.y, dtype=float)).sum() for trace in compared}
    assert drawn["unsplit all inputs loss"] == drawn["unsplit all inputs acc"] == len(steps)  # its checkpoints
    assert main(["info", str(out)]) == 0
    assert "no split (imported without one)" in capsys.readouterr().out
    assert run.task.describe(run.has_split).endswith("no split")
    assert main(["ticket", str(out), "--keep", "0.5"]) == 2
    assert "was trained elsewhere" in capsys.readouterr().err
    assert main(["prune", str(out), "--by", "ipr", "--fraction", "0.5"]) == 2
    assert "pruning needs the train/test split" in capsys.readouterr().err
    (tmp_path / "none.json").write_text("[]")
    assert main(["import", str(root), "--out", str(tmp_path / "x"), "--train-rows", str(tmp_path / "none.json")]) == 2
    assert "no training inputs (leave the split out" in capsys.readouterr().err


def test_phases_without_a_split_come_from_the_source_curves(small_run, tmp_path):
    """A run without a split has no accuracies; where its source recorded train and test losses step by
    step, the phases still come from them."""
    from grokscope.importers import write_series
    from grokscope.tasks import Dataset

    data = small_run.dataset
    none = np.zeros(0, dtype=np.int64)
    unsplit = Dataset(data.n_classes, none, none, none, data.true_labels, np.zeros(0, dtype=bool))
    steps = [0, 100, 200, 300]
    states = [small_run.params(int(s)) for s in small_run.steps[:4]]
    t = np.arange(301, dtype=np.float64)
    curves = {
        "train_loss": np.where(t < 37, 1.0, 1e-4),
        "test_loss": np.where(t < 125, 5.0, 5 * np.exp(-(t - 125) / 10)),
    }
    out = write_series(tmp_path / "run", small_run.config, unsplit, steps, states, {}, curves, say=lambda _: None)
    run = grokscope.open_run(out)
    assert str(analysis.load(run, "phases")["rule"]) == "source losses"
    assert analysis.phase_steps(run)["memorization_end"] == 37


def test_an_import_over_a_run_another_writer_holds_is_refused(small_run, exported, tmp_path, capsys):
    """Replacing a run that is being trained would pull it from under its trainer: one line, exit 2, the run as
    it was."""
    from grokscope.store.writer import writing

    root, _ = exported
    args = ["import", str(root), "--out", str(tmp_path / "run"), "--train-rows", str(root / "train.json")]
    assert main(args) == 0
    files = {f: f.read_bytes() for f in sorted((tmp_path / "run").rglob("*")) if f.is_file()}
    capsys.readouterr()
    with writing(tmp_path / "run"):
        assert main([*args, "--force"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"grokscope: error: {tmp_path / 'run'} is being written by another writer in this process: "
        "wait for it to end, or stop it"
    )
    assert {f: f.read_bytes() for f in sorted((tmp_path / "run").rglob("*")) if f.is_file()} == files
