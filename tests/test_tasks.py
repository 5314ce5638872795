import numpy as np
import pytest
import torch

from grokscope.config import TaskConfig
from grokscope.tasks import make_dataset, one_hots, tokens

P = 23


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "poly"])
def test_labels_satisfy_their_defining_equation(op):
    data = make_dataset(TaskConfig(op=op, p=P, train_frac=0.5))
    rows = np.concatenate([data.train_rows, data.test_rows])
    a, b, y = rows // P, rows % P, data.true_labels[rows]
    if op == "add":
        assert np.all((y - a - b) % P == 0)
    elif op == "sub":
        assert np.all((y + b - a) % P == 0)
    elif op == "mul":
        assert np.all((y - a * b) % P == 0)
    elif op == "div":
        assert np.all(b != 0) and np.all((y * b - a) % P == 0)
    else:
        assert np.all((y - a * a - a * b - b * b) % P == 0)
    assert np.all((0 <= y) & (y < P))


def test_split_is_reproducible_disjoint_and_complete():
    task = TaskConfig(p=P, train_frac=0.3, seed=5)
    one, two = make_dataset(task), make_dataset(task)
    assert np.array_equal(one.train_rows, two.train_rows)
    assert len(np.intersect1d(one.train_rows, one.test_rows)) == 0
    assert len(one.train_rows) + len(one.test_rows) == P * P
    assert len(one.train_rows) == round(0.3 * P * P)
    other = make_dataset(TaskConfig(p=P, train_frac=0.3, seed=6))
    assert not np.array_equal(one.train_rows, other.train_rows)


def test_division_leaves_out_b_zero():
    data = make_dataset(TaskConfig(op="div", p=P, train_frac=0.5))
    assert len(data.train_rows) + len(data.test_rows) == P * (P - 1)
    assert np.all(data.true_labels[np.arange(P) * P] == -1)


def test_corruption_replaces_the_requested_share_with_random_labels():
    data = make_dataset(TaskConfig(p=P, train_frac=0.5, corrupt_frac=0.35, seed=1))
    n = len(data.train_rows)
    assert data.corrupted.sum() == round(0.35 * n)
    true = data.true_labels[data.train_rows]
    assert np.array_equal(data.train_labels[~data.corrupted], true[~data.corrupted])
    # uniform random labels match the true one with probability 1/p = 4%: of ~93 replaced labels,
    # expect ~4 matches; more than 20% matching (P < 1e-6 by a binomial tail) means they were not replaced
    assert np.mean(data.train_labels[data.corrupted] == true[data.corrupted]) < 0.2
    assert np.all((0 <= data.train_labels) & (data.train_labels < P))
    # seeded: the same corruption again
    assert np.array_equal(
        make_dataset(TaskConfig(p=P, train_frac=0.5, corrupt_frac=0.35, seed=1)).train_labels, data.train_labels
    )


def test_encodings():
    rows = torch.tensor([0, P + 2, P * P - 1])
    assert tokens(rows, P).tolist() == [[0, 0, P], [1, 2, P], [P - 1, P - 1, P]]
    x = one_hots(rows, P)
    assert x.shape == (3, 2 * P) and torch.all(x.sum(1) == 2)
    assert x[1, 1] == 1 and x[1, P + 2] == 1
