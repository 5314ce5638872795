"""Progress measures (Nanda et al. 2023): key frequencies, restricted and excluded loss, phases.

Key frequencies, four rules (every rule's set is stored with every result, with the rule used):
- `ablation`: the frequencies the model needs. Each frequency k = 1..n//2 is removed from the model's
  inputs in turn (probes.frequencies_removed); k is key when that raises the test cross-entropy at least
  KEY_LOSS_RATIO-fold or lowers the test accuracy by at least KEY_ACC_DROP (and KEY_MIN_WRONG inputs);
- `neurons`: the distinct frequencies of clustered neurons (fraction ≥ 0.85, see neurons.py);
- `embed`: frequencies whose power in the embedding is at least KEY_POWER_FRACTION of the strongest's;
- `logit_map`: the same rule on the DFT of the neuron → logit map W_out·W_U.
The default is `ablation`: the clustering threshold misses a frequency whose neurons spread their
variance over its harmonics (x² neurons put a fifth of it on 2k: none reaches 0.85), and the power rules
keep what the model carries but does not use. Where no frequency is needed (a run that has not
generalised, or one that spreads its answer over many frequencies so that each can go) it falls back to
`neurons`, then to `embed`, and says so. Each rule's set comes with its restricted loss beside the test
loss, so what a set leaves out shows.

Restricted and excluded loss: L = logits over the inputs (n² in group coordinates). For each key k the
unit vectors c_k, s_k over the inputs are cos(w_k z), sin(w_k z) with z = x ± y the label's coordinate
and w_k = 2πk/n; Π_K L projects L (per output class) onto their span. Restricted: Π_K L + mean(L) −
mean(Π_K L), means over inputs per class, cross-entropy over all inputs. Excluded: L − Π_K L,
cross-entropy on the training inputs with the labels trained on. Per frequency: K = {k}.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from grokscope.analysis.cache import top_up_start
from grokscope.analysis.neurons import CLUSTER_THRESHOLD, cluster, frequency_fractions, grid_neurons
from grokscope.analysis.probes import frequencies_removed
from grokscope.analysis.spec import Analysis, Forward, frequencies_in_range, needs_fourier, trained_here
from grokscope.errors import GrokscopeError
from grokscope.models import load_model
from grokscope.models.common import Readout
from grokscope.store import Run
from grokscope.tasks import Dataset, Group

# A frequency the network uses carries power within an order of magnitude of the strongest one's; after
# clean-up the others sit orders of magnitude lower, so the rule is insensitive to the exact value.
KEY_POWER_FRACTION = 0.1
# The ablation rule's thresholds. On the presets (benchmarks/README.md) removing a key frequency raises the
# test cross-entropy 44-fold to 3·10⁷-fold and removing any other at most 2.5-fold, so tenfold sits between
# them with room on both sides; a point of test accuracy catches a frequency that matters where the loss
# is already high (a run that has not finished cleaning up). The cross-entropy of the logits whatever
# the run trained with, so that the rule reads the same on every run; losses under LOSS_FLOOR count as
# LOSS_FLOOR (a ratio of two round-off errors means nothing).
KEY_LOSS_RATIO = 10.0
KEY_ACC_DROP = 0.01
KEY_MIN_WRONG = 5  # and at least this many more test inputs wrong: on a small test set one point is one input
LOSS_FLOOR = 1e-9
KEY_RULES = ("ablation", "neurons", "embed", "logit_map")


def key_frequencies_by_power(freq_power: np.ndarray, fraction: float = KEY_POWER_FRACTION) -> np.ndarray:
    """freq_power (n // 2 + 1,) per frequency, index 0 = constant → the keys: sorted int array."""
    power = np.asarray(freq_power[1:], dtype=np.float64)
    if not power.size or power.max() <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(power >= fraction * power.max()) + 1


def key_frequencies_by_neurons(frequency: np.ndarray, clustered: np.ndarray) -> np.ndarray:
    """frequency, clustered (d_mlp,) → the distinct frequencies of the clustered neurons, sorted."""
    return np.unique(np.asarray(frequency)[np.asarray(clustered, dtype=bool)]).astype(np.int64)


@torch.no_grad()
def ablation_effects(model: torch.nn.Module, group: Group, dataset: Dataset) -> dict[str, np.ndarray]:
    """Test cross-entropy and accuracy of the model (test_loss, test_acc: ()) and with each frequency
    k = 1..n//2 removed from its inputs (ablated_test_loss, ablated_test_acc: (n // 2,), index k − 1); on all
    inputs where the dataset has no split (Dataset.held_out)."""
    rows, labels = (torch.as_tensor(a) for a in dataset.held_out())

    def measure() -> tuple[float, float]:
        if not len(rows):  # nothing to measure on: NaN, and the rule finds nothing
            return math.nan, math.nan
        logits = model.grid_activations()[1].rows(rows).double()
        return float(F.cross_entropy(logits, labels)), float((logits.argmax(-1) == labels).double().mean())

    loss, acc = measure()
    ablated = []
    for k in range(1, group.n // 2 + 1):
        with frequencies_removed(model, group, [k]):
            ablated.append(measure())
    after = np.array(ablated, dtype=np.float64).reshape(-1, 2)
    return {
        "test_loss": np.float64(loss),
        "test_acc": np.float64(acc),
        "ablated_test_loss": after[:, 0],
        "ablated_test_acc": after[:, 1],
    }


def loss_ratios(effects: dict[str, np.ndarray]) -> np.ndarray:
    """ablation_effects → per frequency k (index k − 1), the test loss with k removed over the test loss
    (at least LOSS_FLOOR)."""
    return effects["ablated_test_loss"] / max(float(effects["test_loss"]), LOSS_FLOOR)


def key_frequencies_by_ablation(effects: dict[str, np.ndarray], n_test: int) -> np.ndarray:
    """ablation_effects over n_test test inputs → the frequencies whose removal raises the test loss
    KEY_LOSS_RATIO-fold or lowers the test accuracy by KEY_ACC_DROP and KEY_MIN_WRONG inputs: sorted int
    array (empty without test inputs)."""
    if not n_test:
        return np.zeros(0, dtype=np.int64)
    drop = float(effects["test_acc"]) - effects["ablated_test_acc"]
    acc_down = drop >= max(KEY_ACC_DROP, KEY_MIN_WRONG / n_test) - 1e-12
    return np.flatnonzero((loss_ratios(effects) >= KEY_LOSS_RATIO) | acc_down).astype(np.int64) + 1


def key_directions(group: Group, keys: np.ndarray) -> torch.Tensor:
    """Unit vectors c_k, s_k over the n² inputs (group coordinates), as columns: float64 (n², ≤ 2 |keys|).
    For even n the frequency n/2 has no sine."""
    z = torch.as_tensor(group.label_coordinate(), dtype=torch.float64)
    columns = []
    for k in keys:
        w = 2 * math.pi * int(k) / group.n
        columns.append(torch.cos(w * z))
        if 2 * int(k) != group.n:
            columns.append(torch.sin(w * z))
    if not columns:
        return torch.zeros(len(z), 0, dtype=torch.float64)
    Q = torch.stack(columns, dim=1)
    return Q / Q.norm(dim=0)


class LossProbe:
    """Restricted and excluded loss of logits over one group's inputs, for fixed key frequencies.

    labels: int (n²,) correct label of each input; train: bool (n²,) which inputs are trained on;
    train_labels: int (n²,) the labels trained on (used where train).
    """

    def __init__(self, group: Group, keys: np.ndarray, labels, train, train_labels):
        self.keys = np.asarray(keys, dtype=np.int64)
        # the unit directions two columns per key (a zero column where n/2 has no sine): (n², K, 2); the
        # keys' span for Π_K is all of them, each key's for Π_k its own two
        self.Q = torch.zeros(group.n**2, len(self.keys), 2, dtype=torch.float64)
        for i, k in enumerate(self.keys):
            self.Q[:, i, : 1 if 2 * int(k) == group.n else 2] = key_directions(group, np.array([k]))
        self.Q_flat = self.Q.reshape(group.n**2, -1)
        # the directions, hence the restricted logits, depend on the input only through its label
        # coordinate z: the restricted logits are n distinct rows, not n²
        self.z = torch.as_tensor(group.label_coordinate())
        _, first = np.unique(group.label_coordinate(), return_index=True)
        self.Q_z = self.Q_flat[torch.as_tensor(first)]  # (n, 2K): row z
        self.labels = torch.as_tensor(labels)
        self.train = torch.as_tensor(np.flatnonzero(train))
        self.train_labels = torch.as_tensor(train_labels)[self.train]

    @torch.no_grad()
    def __call__(self, readout: Readout) -> dict[str, torch.Tensor]:
        """The logits (as a Readout over the n² inputs) → restricted_loss, excluded_loss () and
        excluded_loss_per_freq (|keys|,). Only the projections Qᵀ L (one pass over the features), the
        mean and the training rows of L are formed."""
        coefficients = readout.project(self.Q_flat.T).double()  # (2K, p)
        restricted = self.Q_z @ coefficients + readout.mean().double() - self.Q_flat.mean(0) @ coefficients
        L_train, Q_train = readout.rows(self.train).double(), self.Q[self.train]  # (r, p), (r, K, 2)
        per_key = torch.einsum("rkc,kcp->krp", Q_train, coefficients.reshape(len(self.keys), 2, coefficients.shape[-1]))
        return {
            "restricted_loss": -restricted.log_softmax(-1)[self.z, self.labels].mean(),
            "excluded_loss": self.excluded(L_train - per_key.sum(0)),
            "excluded_loss_per_freq": self.excluded(L_train - per_key),
        }

    def excluded(self, logits_train: torch.Tensor) -> torch.Tensor:
        """Cross-entropy on the train rows: (..., r, p) → (...)."""
        log_p = logits_train.log_softmax(-1)
        index = self.train_labels.expand(*log_p.shape[:-1])[..., None]
        return -log_p.gather(-1, index)[..., 0].mean(-1)


def loss_probe(data: Dataset, group: Group, keys: np.ndarray) -> LossProbe:
    """The LossProbe of a run's dataset in the group's coordinates."""
    rows = group.grid_rows()
    train = np.isin(rows, data.train_rows)
    trained_label = np.full(len(rows), -1, dtype=np.int64)
    trained_label[train] = data.train_labels[np.searchsorted(data.train_rows, rows[train])]
    return LossProbe(group, keys, data.true_labels[rows], train, trained_label)


# Phase boundaries: a share of the test loss's fall (in log space) from its peak after memorization
# to its lowest value after that peak. 10% marks the loss leaving its plateau, 90% its arrival at the
# floor; a fall of less than tenfold is not a clean-up.
PHASE_SHARES = (0.1, 0.9)
MIN_FALL = math.log(10)
TRAIN_FIT = 0.99
# The loss rule's fit: a training cross-entropy of at most ln 2 · (1 − 0.99). By Markov's inequality at most
# 1% of the examples then have a loss above ln 2 (a probability under ½ on their label), so at least 99% are
# answered right: the accuracy rule's threshold, guaranteed (this step can come after the accuracy rule's,
# never before it).
FIT_LOSS = math.log(2) * (1 - TRAIN_FIT)


def phases(fitted: np.ndarray, test_loss: np.ndarray) -> dict[str, int | None]:
    """Phase boundaries (steps, None where not reached) from per-step curves (index = step): fitted (bool)
    whether the training set counts as fitted at the step, test_loss the test loss (NaN where not measured).

    memorization_end: the first fitted step (circuit formation starts);
    cleanup_start: after it, the first step where log test loss has come down 10% of the way from its
    peak to its minimum after the peak (circuit formation ends: the test loss leaves its plateau);
    stable_start: the first step where it has come down 90% of the way (clean-up ends).
    """
    out: dict[str, int | None] = {"memorization_end": None, "cleanup_start": None, "stable_start": None}
    fit = np.flatnonzero(np.asarray(fitted, dtype=bool))
    if not len(fit):
        return out
    start = int(fit[0])
    out["memorization_end"] = start
    log_loss = np.log(np.clip(np.asarray(test_loss[start:], dtype=np.float64), 1e-300, None))
    if np.isnan(log_loss).all():
        return out
    peak = int(np.nanargmax(log_loss))
    fall = log_loss[peak] - np.nanmin(log_loss[peak:])
    if not fall >= MIN_FALL:
        return out
    for name, share in zip(("cleanup_start", "stable_start"), PHASE_SHARES):
        below = np.flatnonzero(log_loss[peak:] <= log_loss[peak] - share * fall)
        out[name] = start + peak + int(below[0])
    return out


# --- the registered analyses ---------------------------------------------------------------------------


def key_frequencies(
    run: Run, group: Group, spec: dict, neurons: dict | None, row: int | None = None, rule: str | None = None
) -> dict:
    """Key frequencies at checkpoint `row` (default: the last) by all four rules, each with its restricted
    loss, and the ablation's effects; `rule` (default: ablation, else neurons, else embed, the first that
    finds any) decides."""
    if rule is not None and rule not in KEY_RULES:
        raise GrokscopeError(f"unknown key-frequency rule '{rule}' (known: {', '.join(KEY_RULES)})")
    row = run.n_checkpoints - 1 if row is None else row
    model = load_model(run, int(run.steps[row]))
    acts, readout = grid_neurons(model, group)
    if neurons is not None and top_up_start(run, neurons) > row:
        frequency, fraction = neurons["frequency"][row], neurons["fraction"][row]
    else:  # one forward at that step instead of waiting for the whole neuron pass
        c = cluster(frequency_fractions(acts))
        frequency, fraction = c["frequency"].numpy(), c["fraction"].numpy()
    effects = ablation_effects(model, group, run.dataset)
    by = {
        "ablation": key_frequencies_by_ablation(effects, len(run.dataset.held_out()[0])),
        "neurons": key_frequencies_by_neurons(frequency, fraction >= CLUSTER_THRESHOLD),
        "embed": key_frequencies_by_power(spec["embed_freq_power"][row]),
        "logit_map": key_frequencies_by_power(spec["neuron_out_freq_power"][row]),
    }
    if rule is None:
        rule = next((name for name in ("ablation", "neurons") if len(by[name])), "embed")
    return {
        "step": np.int64(run.steps[row]),
        "frequencies": by[rule],
        "rule": np.array(rule),
        **{f"by_{name}": keys for name, keys in by.items()},
        **{
            f"restricted_loss_by_{name}": np.float64(loss_probe(run.dataset, group, keys)(readout)["restricted_loss"])
            for name, keys in by.items()
        },
        **effects,
        "coordinates": np.array(group.note),
    }


KEY_FREQUENCIES = Analysis(
    "key_frequencies",
    3,
    "the key frequencies at the last saved step by four rules (each with its restricted loss), the rule used,"
    " and each frequency's ablation",
    "run",
    lambda run, group, cached: key_frequencies(run, group, cached["spectra"], cached.get("neurons")),
    needs_fourier,
    meta={
        "step": 0,
        "frequencies": 1,
        "rule": 0,
        **{f"by_{name}": 1 for name in KEY_RULES},
        **{f"restricted_loss_by_{name}": 0 for name in KEY_RULES},
        "test_loss": 0,
        "test_acc": 0,
        "ablated_test_loss": 1,
        "ablated_test_acc": 1,
        "coordinates": 0,
        "inputs": 0,
    },
    requires=("spectra",),
    versions_of=("spectra", "neurons"),
    settings=(
        f"ablation: test loss ×{KEY_LOSS_RATIO:g} or accuracy −{KEY_ACC_DROP:g} (≥ {KEY_MIN_WRONG} inputs);"
        f" cluster share {CLUSTER_THRESHOLD};"
        f" power fraction {KEY_POWER_FRACTION}"
    ),
    current=lambda run, result: int(result["step"]) == int(run.steps[-1]),
    valid=frequencies_in_range("frequencies", *(f"by_{name}" for name in KEY_RULES)),
)


def progress_rows(probe: LossProbe, forward: Forward) -> dict[str, np.ndarray]:
    """One checkpoint's row of the `progress` analysis."""
    return {key: value.numpy() for key, value in probe(forward.readout).items()}


PROGRESS = Analysis(
    "progress",
    1,
    "restricted loss, excluded loss, and excluded loss per key frequency",
    "forward",
    progress_rows,
    needs_fourier,
    ("restricted_loss", "excluded_loss", "excluded_loss_per_freq"),
    {"key_frequencies": 1},
    requires=("key_frequencies",),
    prepare=lambda run, group, cached: loss_probe(run.dataset, group, cached["key_frequencies"]["frequencies"]),
    inputs=lambda cached: {"key_frequencies": cached["key_frequencies"]["frequencies"]},
    valid=frequencies_in_range("key_frequencies"),
)


def dense(curve: np.ndarray | None) -> bool:
    """A recorded curve is step by step: values at ≥ 90% of the steps (a per-epoch file's one value per
    checkpoint is not)."""
    return curve is not None and bool(np.isfinite(curve).mean() >= 0.9)


def phase_rule(run: Run) -> str | None:
    """The rule the run's curves allow (README, Analyses: phases), or None: a run trained here has train
    accuracy at every step; an imported run has grokscope's metrics at its checkpoints only, and where its
    source recorded cross-entropy curves step by step, those give the boundaries at every step instead; a run
    without a split has neither train nor test accuracy, only what its source recorded."""
    source = run.source_metrics
    if run.has_split and len(run.measured_steps) == run.n_metric_steps:
        return "accuracy"
    if run.config.train.loss == "ce" and all(dense(source.get(name)) for name in ("train_loss", "test_loss")):
        return "source losses"
    return "accuracy at checkpoints" if run.has_split else None


def has_phase_rule(run: Run) -> str | None:
    if trained_here(run) is not None or phase_rule(run) is not None:
        return trained_here(run)
    return (
        "needs the train/test split or the source's train and test losses step by step; the run was imported "
        "with neither (grokscope import --train-rows FILE)"
    )


def phase_boundaries(run: Run, group, cached) -> dict[str, np.ndarray]:
    """The phases by phase_rule's rule."""
    rule = phase_rule(run)
    if rule == "source losses":
        fitted, test_loss = run.source_metrics["train_loss"] <= FIT_LOSS, run.source_metrics["test_loss"]
    else:
        fitted, test_loss = run.metrics["train_acc"] >= TRAIN_FIT, run.metrics["test_loss"]
    bounds = phases(fitted, test_loss)
    return {
        "n_metric_steps": np.int64(run.n_metric_steps),
        "names": np.array(list(bounds)),
        "boundary_steps": np.array([-1 if s is None else s for s in bounds.values()], dtype=np.int64),
        "rule": np.array(rule),
    }


PHASES = Analysis(
    "phases",
    2,
    "memorization / circuit-formation / clean-up / stable boundaries, as steps, and the rule that found them",
    "run",
    phase_boundaries,
    has_phase_rule,
    meta={"n_metric_steps": 0, "names": 1, "boundary_steps": 1, "rule": 0},
    current=lambda run, result: int(result["n_metric_steps"]) == run.n_metric_steps,
)
