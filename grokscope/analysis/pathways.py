"""Pathways over training (Li, Fan & Zhou 2025, "Where to find Grokking in LLM Pretraining? Monitor
Memorization-to-Generalization without Test"): how a training sample's route through a mixture-of-experts
model goes from instance-specific to shared, measured on training samples only.

A sample's pathway: per layer of units, the units it uses at one position (option `position`: the output
position, the mean of the weights over positions, or every position, one after another): for an MoE layer the experts its router chose (its
top_k), for a dense layer grokscope's analogue, the layer's `neurons` most active neurons (not the paper's
metric; only neurons with a positive activation count, fewer leave "none" in the remaining places). Within a layer the units are ordered by weight, highest first (option `order`: or by id, which
makes a layer's choice a set). Over a fixed-seed sample of training inputs and fixed-seed pairs of them:
- distance (checkpoints, L): the mean over pairs of the Levenshtein edit distance between their pathways
  through layers 1..l (unit ids as symbols), divided by the pathways' length l·k (rapidfuzz computes it);
  column L − 1 is the whole pathway, the paper's pathway distance;
- jaccard (checkpoints, L): the mean over pairs of the Jaccard distance 1 − |A∩B| / |A∪B| between the
  sets of units the two use at layer l;
- consistency (checkpoints,): per sample, the mean over consecutive layers of cos(v_l, v_{l+1}) with v_l
  the weighted sum of the embeddings of the experts it uses at layer l (option `embedding`: the router's
  weight vector for the expert, or the mean of its output map; weights renormalised over the chosen
  experts); the mean over samples. The paper's pathway complexity is its inverse. MoE models with two
  layers or more; NaN elsewhere;
- stability (checkpoints, L): the mean over samples of the Jaccard similarity between the units a sample
  uses at layer l at this checkpoint and at the previous saved one (NaN at the first).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from grokscope.analysis.local_complexity import analysed_rows, frozen_model, sample
from grokscope.analysis.spec import Analysis, needs_split
from grokscope.errors import GrokscopeError

METRICS = ("distance", "jaccard", "consistency", "stability")


@dataclass(frozen=True)
class PathwayOptions:
    """position: `last` (the output position), `mean` (weights averaged over positions) or `all` (each
    layer's choices at every position, one after another); order: `weight`
    or `id`; embedding: `router` or `output`; neurons: k for dense layers (MoE layers use their top_k);
    max_samples: training samples; n_pairs: sample pairs; every: analyse every k-th saved checkpoint (and
    the last); seed: the samples and the pairs."""

    position: str = "last"
    order: str = "weight"
    embedding: str = "router"
    neurons: int = 8
    max_samples: int = 1000
    n_pairs: int = 2000
    every: int = 1
    seed: int = 0

    def __post_init__(self):
        for key, allowed in (
            ("position", ("last", "mean", "all")),
            ("order", ("weight", "id")),
            ("embedding", ("router", "output")),
        ):
            if getattr(self, key) not in allowed:
                raise GrokscopeError(f"pathways {key} must be one of {', '.join(allowed)}; got {getattr(self, key)!r}")
        if min(self.neurons, self.max_samples, self.n_pairs, self.every) < 1:
            raise GrokscopeError("pathways needs neurons, max_samples, n_pairs and every ≥ 1")


@dataclass
class Pathways:
    """The units each sample uses: ids (n, L, k) in the pathway's order, n_units[l] standing for "none" (a
    dense layer with fewer than k active neurons), weights (n, L, k) ≥ 0 renormalised to sum to 1 per layer
    (all 0 where no unit is active), and the number of units per layer."""

    ids: torch.Tensor
    weights: torch.Tensor
    n_units: list[int]

    def used(self) -> list[torch.Tensor]:
        """Per layer, which units each sample uses: [(n, n_units) bool] ("none" slots left out)."""
        return [
            torch.zeros(len(self.ids), n + 1, dtype=torch.bool).scatter_(1, self.ids[:, l], True)[:, :n]
            for l, n in enumerate(self.n_units)
        ]


def mean_over_positions(value: torch.Tensor) -> torch.Tensor:
    """A hook's value (batch, pos, units) → (batch, units); models without positions pass through."""
    return value.mean(1) if value.ndim == 3 else value


def every_position(value: torch.Tensor) -> torch.Tensor:
    """A hook's value as it is: (batch, pos, units), or (batch, units) for models without positions."""
    return value


@torch.no_grad()
def pathways_of(model, inputs: torch.Tensor, options: PathwayOptions) -> Pathways:
    """The pathways of `inputs` (model.task_inputs rows) at the model's current parameters."""
    reduce = {"last": model.at_output, "mean": mean_over_positions, "all": every_position}[options.position]
    values = model.units_values(inputs, reduce)
    k = model.units_chosen(options.neurons)
    ids, weights = [], []
    for v in values:
        positions = v if v.ndim == 3 else v[:, None]  # (n, positions, units): one position unless `all`
        w, i = positions.topk(min(k, v.shape[-1]), dim=-1)  # highest first
        w = w.clamp_min(0)
        i = torch.where(w > 0, i, v.shape[-1])  # a slot whose unit is inactive holds "none" (id n_units)
        if options.order == "id":
            i, order = i.sort(-1)
            w = w.gather(-1, order)
        i, w = i.flatten(1), w.flatten(1)  # a layer's choices at each position in turn
        ids.append(i)
        weights.append(w / w.sum(-1, keepdim=True).clamp_min(1e-30))
    return Pathways(torch.stack(ids, 1), torch.stack(weights, 1), [v.shape[-1] for v in values])


def edit_distances(ids: torch.Tensor, pairs: np.ndarray) -> np.ndarray:
    """Mean normalised Levenshtein distance over `pairs` (m, 2) of the pathways through layers 1..l, for each
    l: (L,). ids: (n, L, k)."""
    from rapidfuzz import process
    from rapidfuzz.distance import Levenshtein

    n, L, k = ids.shape
    symbols = (ids.reshape(n, L * k) + 0x100).tolist()  # unit ids as characters past Latin-1
    strings = ["".join(map(chr, row)) for row in symbols]
    out = np.empty(L, dtype=np.float32)
    for l in range(L):
        prefix = [s[: (l + 1) * k] for s in strings]
        left, right = [prefix[i] for i in pairs[:, 0]], [prefix[j] for j in pairs[:, 1]]
        out[l] = process.cpdist(left, right, scorer=Levenshtein.normalized_distance, workers=1).mean()
    return out


def jaccard(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Jaccard similarity of rows of two (n, units) bool sets: (n,)."""
    union = (a | b).sum(-1)
    return torch.where(union > 0, (a & b).sum(-1) / union.clamp_min(1), 1.0)


@torch.no_grad()
def consistency(paths: Pathways, embeddings: torch.Tensor | None) -> float:
    """Mean over samples of the mean cosine between consecutive layers' weighted expert embeddings."""
    if embeddings is None or paths.ids.shape[1] < 2:
        return float("nan")
    L = paths.ids.shape[1]
    ids = paths.ids.clamp_max(embeddings.shape[1] - 1)  # a "none" slot has weight 0: any row will do
    vectors = torch.stack([(paths.weights[:, l, :, None] * embeddings[l][ids[:, l]]).sum(1) for l in range(L)], 1)
    cos = torch.nn.functional.cosine_similarity(vectors[:, :-1], vectors[:, 1:], dim=-1)  # (n, L - 1)
    return float(cos.mean())


def pathway_row(paths: Pathways, previous: Pathways | None, pairs: np.ndarray, embeddings) -> dict[str, np.ndarray]:
    used = paths.used()
    i, j = torch.as_tensor(pairs[:, 0]), torch.as_tensor(pairs[:, 1])
    stability = np.full(len(used), np.nan, dtype=np.float32)
    if previous is not None:
        stability[:] = [float(jaccard(u, p).mean()) for u, p in zip(used, previous.used())]
    return {
        "distance": edit_distances(paths.ids, pairs),
        "jaccard": np.array([float(1 - jaccard(u[i], u[j]).mean()) for u in used], dtype=np.float32),
        "consistency": np.float32(consistency(paths, embeddings)),
        "stability": stability,
    }


def sample_pairs(n: int, n_pairs: int, seed: int) -> np.ndarray:
    """n_pairs pairs (i, j), i ≠ j, of n samples, drawn with replacement from `seed`: (n_pairs, 2)."""
    if n < 2:
        raise GrokscopeError("pathways needs at least two training samples")
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, n_pairs)
    j = (i + rng.integers(1, n, n_pairs)) % n  # any other sample, uniformly
    return np.stack([i, j], 1)


def pathways_pass(run, group, start: int, progress: Callable[[int, int], None], options: PathwayOptions):
    """The pathway rows of checkpoints start..n-1 (NaN rows where a checkpoint is skipped)."""
    model, load_row = frozen_model(run)
    rows = sample(run.dataset.train_rows, options.max_samples, options.seed)
    inputs = model.task_inputs(run.task, run.dataset)[torch.as_tensor(rows)]
    pairs = sample_pairs(len(rows), options.n_pairs, options.seed)
    n_layers = len(model.pathway_hooks())
    skipped = {
        "distance": np.full(n_layers, np.nan, dtype=np.float32),
        "jaccard": np.full(n_layers, np.nan, dtype=np.float32),
        "consistency": np.float32(np.nan),
        "stability": np.full(n_layers, np.nan, dtype=np.float32),
    }
    out: dict[str, list] = {name: [] for name in METRICS}
    previous: tuple[int, Pathways] | None = None
    todo = set(analysed_rows(run.n_checkpoints, start, options.every))
    for r in range(start, run.n_checkpoints):
        row = skipped
        if r in todo:
            if r > 0 and (previous is None or previous[0] != r - 1):
                load_row(r - 1)
                previous = (r - 1, pathways_of(model, inputs, options))
            load_row(r)
            paths = pathways_of(model, inputs, options)
            embeddings = model.unit_embeddings(options.embedding)
            row = pathway_row(paths, previous[1] if previous else None, pairs, embeddings)
            previous = (r, paths)
        for key, value in row.items():
            out[key].append(value)
        progress(r + 1 - start, run.n_checkpoints - start)
    return out


def accuracy_at(run, steps: np.ndarray, split: str) -> np.ndarray:
    """A split's accuracy at saved steps, NaN where not recorded yet (a live run's newest checkpoint)."""
    metrics = run.metrics
    recorded = steps < len(metrics["step"])
    out = np.full(len(steps), np.nan)
    out[recorded] = metrics[f"{split}_acc"][steps[recorded]]  # metrics hold one row per step from 0
    return out


def series(result: dict) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The analysed checkpoints (a bool mask over the rows) and, at them, one value per metric: the whole
    pathway's distance, the mean over layers of the others (stability NaN at the first checkpoint)."""
    analysed = np.isfinite(result["distance"][:, -1])
    return analysed, {
        "distance": result["distance"][analysed, -1],
        "jaccard": result["jaccard"][analysed].mean(1),
        "consistency": result["consistency"][analysed],
        "stability": result["stability"][analysed].mean(1),
    }


def correlations(run, result: dict) -> list[tuple[str, float, float, int]]:
    """Spearman's ρ of each metric of `series` with test accuracy over the analysed checkpoints, its p-value
    and the number of checkpoints; NaN where fewer than three checkpoints or a constant series leave it
    undefined."""
    from scipy.stats import spearmanr

    analysed, values_of = series(result)
    accuracy = accuracy_at(run, result["steps"][analysed], "test")
    out = []
    for name, values in values_of.items():
        ok = np.isfinite(values) & np.isfinite(accuracy)
        rho = p = float("nan")
        if ok.sum() >= 3 and np.ptp(values[ok]) > 0 and np.ptp(accuracy[ok]) > 0:
            rho, p = (float(v) for v in spearmanr(values[ok], accuracy[ok]))
        out.append((name, rho, p, int(ok.sum())))
    return out


PATHWAYS = Analysis(
    "pathways",
    1,
    "on training samples only: mean normalised edit distance between samples' pathways (MoE: the experts "
    "chosen per layer; dense models: each layer's most active neurons, grokscope's analogue), per layer "
    "prefix; Jaccard distance per layer; consistency of consecutive layers' expert embeddings; stability "
    "of a sample's units between saved checkpoints (Li, Fan & Zhou 2025)",
    "checkpoints",
    pathways_pass,
    needs_split,
    METRICS,
    {"options": 0},
    options=PathwayOptions,
)
