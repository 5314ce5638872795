"""The Task interface: a classification task over a fixed, finite set of inputs.

A task's inputs are numbered 0..n_inputs-1 (a modular task's are its grid rows `a * p + b`, the digits'
are the images in scikit-learn's order); a run's split, labels and corruption are arrays of those numbers,
so one (n_inputs, ...) array holds a quantity for every input and every analysis indexes it the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from grokscope.config import TaskConfig
from grokscope.errors import GrokscopeError

if TYPE_CHECKING:
    import torch


@dataclass
class Dataset:
    """A run's inputs split into train and test, with their labels. A run imported without its split has
    neither (both empty: `has_split` False): it is measured on all inputs.

    train_rows, test_rows: int64 (n_train,), (n_test,) disjoint, sorted input numbers
    train_labels: int64 (n_train,) the labels trained on (corrupted where `corrupted`)
    true_labels: int64 (n_inputs,) the correct label of every input (-1 where a number is not an input)
    corrupted: bool (n_train,) which training labels were replaced by a random one
    inputs: the inputs themselves where they are data read from files, not generated from the config (text:
        int64 (n_inputs, seq_len) token ids), else None
    """

    n_classes: int
    train_rows: np.ndarray
    test_rows: np.ndarray
    train_labels: np.ndarray
    true_labels: np.ndarray
    corrupted: np.ndarray
    inputs: np.ndarray | None = None

    @property
    def test_labels(self) -> np.ndarray:
        return self.true_labels[self.test_rows]

    @property
    def has_split(self) -> bool:
        return len(self.train_rows) > 0

    @property
    def all_rows(self) -> np.ndarray:
        """int64 (n,) every input of the task, sorted."""
        return np.flatnonzero(self.true_labels >= 0)

    def held_out(self) -> tuple[np.ndarray, np.ndarray]:
        """The inputs a model is judged on, with their true labels: the test inputs, or every input where the
        run has no split."""
        rows = self.test_rows if self.has_split else self.all_rows
        return rows, self.true_labels[rows]

    def arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for saving with the run."""
        return {
            "train_rows": self.train_rows,
            "test_rows": self.test_rows,
            "train_labels": self.train_labels,
            "true_labels": self.true_labels,
            "corrupted": self.corrupted,
            **({} if self.inputs is None else {"inputs": self.inputs}),
        }

    def check(self, n_inputs: int) -> None:
        """GrokscopeError unless the arrays describe a split of `n_inputs` inputs into `n_classes` classes."""
        arrays = (self.train_rows, self.test_rows, self.train_labels, self.true_labels, self.corrupted)
        if not all(isinstance(a, np.ndarray) and a.ndim == 1 for a in arrays):
            raise GrokscopeError("the split's arrays must be one-dimensional")
        rows = np.concatenate([self.train_rows, self.test_rows])
        ok = (
            self.true_labels.shape == (n_inputs,)
            and self.train_labels.shape == self.corrupted.shape == self.train_rows.shape
            and self.corrupted.dtype == bool
            and all(a.dtype.kind == "i" for a in (rows, self.train_labels, self.true_labels))
            and len(rows) == len(np.unique(rows))
            and (len(rows) == 0 or (rows.min() >= 0 and rows.max() < n_inputs))
            and (self.true_labels < self.n_classes).all()
            and (len(rows) == 0 or (self.true_labels[rows] >= 0).all())
            and ((self.train_labels >= 0) & (self.train_labels < self.n_classes)).all()
            and (
                self.inputs is None
                or (
                    self.inputs.dtype.kind == "i"
                    and len(self.inputs) == n_inputs
                    and ((self.inputs >= 0) & (self.inputs < self.n_classes)).all()
                )
            )
        )
        if not ok:
            raise GrokscopeError("the split does not match the task (rows or labels out of range)")


class Task:
    """What a run learns. Subclasses set `kind` (a TaskKind) and `offers` (the input forms models may read:
    "tokens" for `a b =`, "pairs" for one-hot(a)‖one-hot(b) on a p × p grid, "vectors" for any model on
    continuous inputs) and implement `n_classes`, `d_vector`, `true_labels`, `vectors` and `describe`."""

    kind: ClassVar[str]
    offers: ClassVar[tuple[str, ...]]
    grok_accuracy: ClassVar[float]  # a run has grokked at the first step with test accuracy at least this
    linf_eps: ClassVar[float]  # the default ℓ∞ radius of adversarial attacks on `vectors`, in their units

    def __init__(self, config: TaskConfig):
        self.config = config

    @property
    def n_inputs(self) -> int:
        return len(self.true_labels())

    @property
    def n_classes(self) -> int:
        raise NotImplementedError

    @property
    def d_vector(self) -> int:
        """The width of `vectors`' rows."""
        raise NotImplementedError

    def true_labels(self) -> np.ndarray:
        """int64 (n_inputs,): the label of every input, -1 where a number is not an input."""
        raise NotImplementedError

    def vectors(self, dataset: Dataset) -> torch.Tensor:
        """Every input as a float32 vector (n_inputs, d_vector), for models on continuous inputs."""
        raise NotImplementedError

    def describe(self, has_split: bool = True) -> str:
        """One line for run tables, e.g. 'add mod 59, 40% train' (has_split False: a run imported without
        a split, 'add mod 59, no split')."""
        raise NotImplementedError

    def split_description(self, has_split: bool = True) -> str:
        """The split and corruption in words, e.g. '40% train, 35% corrupted', or 'no split'."""
        c = self.config
        if not has_split:
            return "no split"
        split = f"{c.n_train} train" if c.n_train else f"{c.train_frac:.0%} train"
        return split + (f", {c.corrupt_frac:.0%} corrupted" if c.corrupt_frac else "")

    def named(self) -> str:
        """How messages name the task: its kind (a modular task: its operation)."""
        return f"task.kind '{self.kind}'"

    def group(self):
        """The coordinates in which the task's operation is addition on Z_n (a `Group`), or None: the
        Fourier analyses apply only where there is one."""
        return

    def dataset(self) -> Dataset:
        """Split the inputs into train/test with `seed` (train_frac of them, or n_train), then replace a share
        corrupt_frac of the training labels by uniformly random ones (Doshi et al.: about 1 in n_classes of
        them equals the true label by chance)."""
        cfg = self.config
        true_labels = self.true_labels()
        rng = np.random.default_rng(cfg.seed)
        rows = rng.permutation(np.flatnonzero(true_labels >= 0))
        n_train = cfg.n_train or round(cfg.train_frac * len(rows))
        if not 0 < n_train < len(rows):
            what = f"task.n_train {cfg.n_train}" if cfg.n_train else f"task.train_frac {cfg.train_frac}"
            raise GrokscopeError(
                f"{what} asks for {n_train} training inputs of the task's {len(rows)}: there must be at least 1 "
                "training and 1 test input"
            )
        train_rows, test_rows = np.sort(rows[:n_train]), np.sort(rows[n_train:])
        train_labels = true_labels[train_rows].copy()
        corrupted = np.zeros(n_train, dtype=bool)
        n_corrupt = round(cfg.corrupt_frac * n_train)
        if n_corrupt:
            chosen = rng.choice(n_train, size=n_corrupt, replace=False)
            train_labels[chosen] = rng.integers(0, self.n_classes, size=n_corrupt)
            corrupted[chosen] = True
        return Dataset(self.n_classes, train_rows, test_rows, train_labels, true_labels, corrupted)
