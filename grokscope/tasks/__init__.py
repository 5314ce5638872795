"""Modular-arithmetic tasks on the tokens `a b =` (token p is `=`), as pure seeded functions.

Every input pair (a, b) is addressed by its grid row `a * p + b`, so one (p², ...) array holds a
quantity for all inputs; the split, labels and corruption mask are arrays of grid rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from grokscope.config import TaskConfig


def labels_of(op: str, a: np.ndarray, b: np.ndarray, p: int) -> np.ndarray:
    """Label of each pair (a, b) for the operation `op` mod p; for div, b must be nonzero."""
    if op == "add":
        return (a + b) % p
    if op == "sub":
        return (a - b) % p
    if op == "mul":
        return (a * b) % p
    if op == "div":
        return (a * pow_mod_inverse(b, p)) % p
    if op == "poly":
        return (a * a + a * b + b * b) % p
    raise ValueError(f"unknown op {op}")


def pow_mod_inverse(b: np.ndarray, p: int) -> np.ndarray:
    """Inverse of each nonzero b mod prime p (Fermat)."""
    return np.array([pow(int(x), p - 2, p) for x in np.asarray(b).ravel()], dtype=np.int64).reshape(np.shape(b))


@dataclass
class Dataset:
    """The task's inputs as grid rows (a * p + b) and their labels.

    train_rows, test_rows: int64 (n_train,), (n_test,) disjoint, sorted
    train_labels: int64 (n_train,) the labels trained on (corrupted where `corrupted`)
    true_labels: int64 (p*p,) the correct label of every grid row (-1 where the pair is not an input)
    corrupted: bool (n_train,) which training labels were replaced by a random one
    """

    p: int
    train_rows: np.ndarray
    test_rows: np.ndarray
    train_labels: np.ndarray
    true_labels: np.ndarray
    corrupted: np.ndarray

    @property
    def test_labels(self) -> np.ndarray:
        return self.true_labels[self.test_rows]

    def arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for saving with the run."""
        return {
            "train_rows": self.train_rows,
            "test_rows": self.test_rows,
            "train_labels": self.train_labels,
            "true_labels": self.true_labels,
            "corrupted": self.corrupted,
        }


def make_dataset(task: TaskConfig) -> Dataset:
    """Split the valid pairs into train/test with `task.seed`, then corrupt a share of training labels."""
    p = task.p
    a, b = np.divmod(np.arange(p * p, dtype=np.int64), p)
    valid = b != 0 if task.op == "div" else np.ones(p * p, dtype=bool)
    true_labels = np.full(p * p, -1, dtype=np.int64)
    true_labels[valid] = labels_of(task.op, a[valid], b[valid], p)

    rng = np.random.default_rng(task.seed)
    rows = rng.permutation(np.flatnonzero(valid))
    n_train = round(task.train_frac * len(rows))
    train_rows, test_rows = np.sort(rows[:n_train]), np.sort(rows[n_train:])

    train_labels = true_labels[train_rows].copy()
    corrupted = np.zeros(n_train, dtype=bool)
    n_corrupt = round(task.corrupt_frac * n_train)
    if n_corrupt:
        chosen = rng.choice(n_train, size=n_corrupt, replace=False)
        # uniformly random labels (Doshi et al.): about 1 in p of them equals the true label by chance
        train_labels[chosen] = rng.integers(0, p, size=n_corrupt)
        corrupted[chosen] = True
    return Dataset(p, train_rows, test_rows, train_labels, true_labels, corrupted)


def tokens(rows: np.ndarray | torch.Tensor, p: int) -> torch.Tensor:
    """Token sequences `a b =` for grid rows: int64 (n, 3)."""
    rows = torch.as_tensor(rows)
    eq = torch.full_like(rows, p)
    return torch.stack([rows // p, rows % p, eq], dim=1)


def one_hots(rows: np.ndarray | torch.Tensor, p: int) -> torch.Tensor:
    """Concatenated one-hots one-hot(a)‖one-hot(b) for grid rows: float32 (n, 2p)."""
    rows = torch.as_tensor(rows)
    x = torch.zeros(len(rows), 2 * p)
    x[torch.arange(len(rows)), rows // p] = 1.0
    x[torch.arange(len(rows)), p + rows % p] = 1.0
    return x
