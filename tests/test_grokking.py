"""End to end: a small preset groks, and the run records the grokking signature."""

import numpy as np


def test_tiny_preset_groks(grokked_run):
    run = grokked_run
    metrics = run.metrics
    assert run.complete
    # grok_step is defined at test accuracy >= 0.99; the tiny preset reaches it well before its end
    assert run.grok_step is not None and run.grok_step < run.config.train.steps
    assert metrics["test_acc"][-1] >= 0.99
    # memorization comes first: train accuracy reaches 100% while test accuracy is still low
    # (below 50%: chance is 1/31, and a grokked net is at 100%, so 50% separates the two regimes)
    memorized = int(np.argmax(metrics["train_acc"] >= 1.0))
    assert metrics["train_acc"][memorized] == 1.0
    assert metrics["test_acc"][memorized] < 0.5
    assert memorized < run.grok_step
    # weight decay shrinks the weights once the circuit has formed (the clean-up phase)
    assert metrics["weight_norm"][-1] < metrics["weight_norm"][memorized]


def test_minibatch_sgd_and_mse_train(tmp_path):
    """Other training settings run and reduce the training loss."""
    from conftest import small_config

    import grokscope

    for i, overrides in enumerate(
        (
            {"train.batch_size": 50},
            {"optim.name": "sgd", "optim.lr": 0.1, "optim.momentum": 0.9, "optim.weight_decay": 0.0},
            {"model.kind": "mlp", "model.act": "square", "model.d_mlp": 128, "train.loss": "mse", "optim.lr": 1e-2},
        )
    ):
        run = grokscope.open_run(grokscope.train(small_config(**overrides), tmp_path / str(i), progress=False))
        loss = run.metrics["train_loss"]
        # 120 steps is short for some settings; a 10% drop is far outside step-to-step noise at init
        assert loss[-1] < 0.9 * loss[0], overrides
