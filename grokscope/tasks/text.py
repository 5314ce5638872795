"""Token sequences read from files (`grokscope import-hf`): the samples a Hugging Face series is run on.

The inputs are data, not generated: the run stores them (`Dataset.inputs`, int64 (n_inputs, seq_len) token
ids), the `n_train` training samples first, then the `n_test` held-out ones. A sample's label is its last
token (what the model predicts at the position before it); losses and accuracies are the causal language
model's, over every position of a sample (see grokscope.importers.hf).
"""

from __future__ import annotations

import numpy as np

from grokscope.errors import GrokscopeError
from grokscope.tasks.base import Dataset, Task


class TextTask(Task):
    kind = "text"
    offers = ("token_ids",)
    # next-token accuracy on text has no plateau to pass: only a perfect score would count as grokked
    grok_accuracy = 1.0

    @property
    def n_inputs(self) -> int:
        return self.config.n_train + self.config.n_test

    @property
    def n_classes(self) -> int:
        return self.config.vocab

    def dataset(self) -> Dataset:
        raise GrokscopeError("task.kind 'text' holds samples read from files: `grokscope import-hf` makes such runs")

    def describe(self, has_split: bool = True) -> str:
        c = self.config
        return f"text, {c.n_train} train + {c.n_test} held-out samples × {c.seq_len} tokens"


def text_dataset(train: np.ndarray, test: np.ndarray, vocab: int) -> Dataset:
    """The Dataset of training and held-out samples, int64 (n, seq_len) token ids each."""
    inputs = np.concatenate([train, test]).astype(np.int64)
    n_train = len(train)
    return Dataset(
        n_classes=vocab,
        train_rows=np.arange(n_train, dtype=np.int64),
        test_rows=np.arange(n_train, len(inputs), dtype=np.int64),
        train_labels=inputs[:n_train, -1].copy(),
        true_labels=inputs[:, -1].copy(),
        corrupted=np.zeros(n_train, dtype=bool),
        inputs=inputs,
    )
