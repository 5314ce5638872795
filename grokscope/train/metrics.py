"""The metrics of a run at one step, from the logits of every input: the columns of `store.layout.METRIC_COLUMNS`
(a run without a split: NO_SPLIT_COLUMNS), less `weight_norm`, which reads the parameters. One source for the
training loop, imports and pruning."""

from __future__ import annotations

import numpy as np
import torch

from grokscope.tasks import Dataset
from grokscope.train.losses import accuracy, predicted, softmax_collapse


class StepMetrics:
    """For one dataset and loss, on one device: `metrics(logits)` → column → 0-dim float64 tensor.

    Accuracies: train_acc against the labels trained on; the four-way split of Doshi et al. (corrupted training
    examples against their noisy and their true labels, clean training examples) as hit counts through a 0/1
    indicator divided by the split's size (exact; a boolean-mask index would sync with the host on CUDA); a
    split with no examples is NaN (0 / 0). Stability (Prieto et
    al. 2025), over the training examples: the share in Softmax Collapse, the share with a loss of exactly 0
    (the run's own loss, in its own precision), the mean logit norm. A dataset without a split: all_loss and
    all_acc, over every input against its true label.
    """

    def __init__(self, dataset: Dataset, loss_fn, device: torch.device | str = "cpu"):
        def on_device(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(a, device=device)

        self.loss_fn = loss_fn
        self.has_split = dataset.has_split
        self.all_rows, self.all_labels = on_device(dataset.all_rows), on_device(dataset.true_labels[dataset.all_rows])
        self.train_rows, self.train_labels = on_device(dataset.train_rows), on_device(dataset.train_labels)
        self.test_rows, self.test_labels = on_device(dataset.test_rows), on_device(dataset.test_labels)
        self.true_train_labels = on_device(dataset.true_labels[dataset.train_rows])
        corrupted = dataset.corrupted.astype(np.float64)
        self.corrupted, self.clean = on_device(corrupted), on_device(1 - corrupted)
        self.n_corrupted, self.n_clean = on_device(corrupted.sum()), on_device((1 - corrupted).sum())

    @torch.no_grad()
    def __call__(
        self, logits: torch.Tensor, train_losses: torch.Tensor | None = None, train_logits: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """logits: (n_inputs, n_classes) of every input; train_losses and train_logits: the training inputs'
        per-example losses (n_train,) and logits (n_train, n_classes) when already computed (a full-batch
        step's)."""
        if not self.has_split:
            all_logits = logits[self.all_rows]
            return {
                "all_loss": self.loss_fn(all_logits, self.all_labels),
                "all_acc": accuracy(all_logits, self.all_labels),
            }
        test_logits = logits[self.test_rows]
        return {
            **self.training(logits[self.train_rows] if train_logits is None else train_logits, train_losses),
            "test_loss": self.loss_fn(test_logits, self.test_labels),
            "test_acc": accuracy(test_logits, self.test_labels),
        }

    @torch.no_grad()
    def training(self, train_logits: torch.Tensor, train_losses: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The columns read from the training inputs alone (all but test_loss and test_acc), from their logits
        (n_train, n_classes) in the dataset's order."""
        if train_losses is None:
            train_losses = self.loss_fn(train_logits, self.train_labels, per_example=True)
        classes = predicted(train_logits)
        hits = (classes == self.train_labels).double()
        true_hits = (classes == self.true_train_labels).double()
        return {
            "train_loss": train_losses.mean(),
            "train_acc": hits.mean(),
            "corrupted_noisy_acc": (hits @ self.corrupted) / self.n_corrupted,
            "corrupted_true_acc": (true_hits @ self.corrupted) / self.n_corrupted,
            "clean_train_acc": (hits @ self.clean) / self.n_clean,
            "sc_fraction": softmax_collapse(train_logits).double().mean(),
            "zero_loss_fraction": (train_losses == 0).double().mean(),
            "logit_norm": train_logits.double().norm(dim=-1).mean(),
        }
