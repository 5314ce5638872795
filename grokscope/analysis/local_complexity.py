"""Local complexity over training (Humayun, Balestriero & Baraniuk 2024, "Deep Networks Always Grok").

Around a point x of the perturbed space (dimension D) take P orthonormal directions v_1..v_P, the rows of an
orthogonal matrix drawn once from a fixed seed (`frame`: the same for every point and every checkpoint),
scaled to radius r, and the 2P vertices x + r·v_1, ..., x + r·v_P, x − r·v_1, ..., x − r·v_P (a
cross-polytope, no centroid). All vertices go through the network; in every layer with neurons a neuron
counts when its pre-activation is positive at some vertex and not at the first, or the other way round.
LC(x) is the number of such neurons, summed over layers (also kept per layer). The first layer's count is
exact (a hyperplane cuts the hull iff its vertices fall on both sides); deeper layers' counts are the usual
lower bound, as in the paper's code.

Where it perturbs (`Model.perturbed`): the inputs of models that read vectors or one-hots (the digits deep
MLP in pixel space, the one-hot MLP in R^{2p}); the transformer's token + position embeddings (all
positions, D = 3·d_model), counting its MLP neurons at `=` only. Attention is not piecewise linear, so for
the transformer LC counts neuron crossings, not linear regions.

Point sets: training points, test points (each a fixed-seed sample where there are more than the cap),
random points (uniform over the box the task's inputs span in the perturbed space, from fixed unit-box
coordinates) and boundary points (where the predicted class changes on the segment between two training
points the model assigns different classes, found by bisection): the paper's regions migrate from the data
towards the decision boundary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from grokscope.analysis.spec import Analysis, checkpoint_loader, first_reason, needs_split
from grokscope.errors import GrokscopeError
from grokscope.models import MODELS, build_model, check_shapes
from grokscope.store import Run

SETS = ("train", "test", "random", "boundary")
CHUNK_ROWS = 16_384  # vertices per forward: large matmuls, ~13 MB of pre-activations per 200-wide layer
BISECTIONS = 12  # a boundary point lies within 2⁻¹² of the segment's length from where the class changes


@dataclass(frozen=True)
class LocalComplexityOptions:
    """directions: P (2P vertices; fewer where the space has fewer dimensions); radii: in the perturbed
    space's units; max_train, max_test: caps on the points sampled from each split; n_random, n_boundary:
    random and boundary points; every: analyse every k-th saved checkpoint (and the last); seed: the frame,
    the samples and the random points."""

    directions: int = 25
    radii: tuple[float, ...] = (0.05, 0.1, 0.5, 1.0, 5.0)
    max_train: int = 1000
    max_test: int = 1000
    n_random: int = 1000
    n_boundary: int = 200
    every: int = 1
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "radii", tuple(float(r) for r in self.radii))
        if self.directions < 1 or self.every < 1:
            raise GrokscopeError("local complexity needs directions ≥ 1 and every ≥ 1")
        if not self.radii or min(self.radii) <= 0:
            raise GrokscopeError(f"local complexity radii must be positive; got {list(self.radii)}")
        if min(self.max_train, self.max_test, self.n_random, self.n_boundary) < 0:
            raise GrokscopeError("local complexity point counts cannot be negative")


def frame(dim: int, directions: int, seed: int) -> torch.Tensor:
    """P = min(directions, dim) orthonormal directions in R^dim, the rows of Q from the QR decomposition of a
    Gaussian (dim, P) matrix drawn from `seed`: (P, dim), the same on every call."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, min(directions, dim), generator=g, dtype=torch.float64))
    return q.T.float().contiguous()


def hulls(points: torch.Tensor, directions: torch.Tensor, radius: float) -> torch.Tensor:
    """The cross-polytope around each point: (N, D) → (N, 2P, D), vertex k = x + r·v_k, vertex P + k = x − r·v_k."""
    offsets = radius * torch.cat([directions, -directions])
    return points[:, None, :] + offsets[None]


def space_points(model, inputs: torch.Tensor) -> torch.Tensor:
    """The task's inputs (model.task_inputs) as points of the space the model is perturbed in: (N, D)."""
    if model.perturbed is None:
        return inputs.float().flatten(1)
    kept = {}

    def keep(value, hook):
        kept["value"] = value

    with torch.no_grad():
        model.run_with_hooks(inputs, fwd_hooks=[(model.perturbed, keep)])
    return kept["value"].flatten(1)


def forward_from(
    model, values: torch.Tensor, template: torch.Tensor, layers: bool = True
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The model on points of its perturbed space: values (M, D) → logits (M, n_classes) and, with layers,
    each neuron layer's pre-activations where the logits are read, (M, d_mlp) each. template: one input of
    the task (its tokens are replaced at the perturbed hook, so any input will do)."""
    m = len(values)
    names = [layer.hook_pre for layer in model.neuron_layers(model.cfg)] if layers else []
    pre: dict[str, torch.Tensor] = {}

    def keep(value, hook):
        pre[hook.name] = model.at_output(value)

    hooks = [(name, keep) for name in names]
    if model.perturbed is None:
        x = values
    else:
        x = template[:1].expand(m, *template.shape[1:])
        hooks.insert(0, (model.perturbed, lambda value, hook: values.view(value.shape)))
    logits = model.output_logits(model.run_with_hooks(x, fwd_hooks=hooks))
    return logits, [pre[name] for name in names]


@torch.no_grad()
def local_complexity(
    model, points: torch.Tensor, template: torch.Tensor, directions: torch.Tensor, radius: float
) -> torch.Tensor:
    """LC of each point at one radius, per neuron layer: (N, D) points → (N, n_layers) int counts."""
    n_vertices = 2 * len(directions)
    per_chunk = max(1, CHUNK_ROWS // n_vertices)
    counts = []
    for chunk in points.split(per_chunk):
        vertices = hulls(chunk, directions, radius).flatten(0, 1)
        _, pre = forward_from(model, vertices, template)
        layers = []
        for values in pre:
            positive = (values > 0).view(len(chunk), n_vertices, -1)
            layers.append((positive != positive[:, :1]).any(1).sum(-1))
        counts.append(torch.stack(layers, -1))
    return torch.cat(counts) if counts else torch.zeros(0, len(model.neuron_layers(model.cfg)), dtype=torch.long)


@torch.no_grad()
def boundary_points(model, points: torch.Tensor, template: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Up to n points where the predicted class changes, one on each segment between two of `points` that
    the model assigns different classes (pairs in a fixed-seed order), by bisection: (≤ n, D)."""
    if n == 0 or len(points) < 2:
        return points[:0]
    predicted = forward_from(model, points, template, layers=False)[0].argmax(-1)
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randperm(len(points), generator=g), torch.randperm(len(points), generator=g)
    differ = predicted[a] != predicted[b]
    a, b = a[differ][:n], b[differ][:n]
    start, end = points[a], points[b]
    low, high = torch.zeros(len(a)), torch.ones(len(a))
    for _ in range(BISECTIONS):
        middle = (low + high) / 2
        at = start + middle[:, None] * (end - start)
        same = forward_from(model, at, template, layers=False)[0].argmax(-1) == predicted[a]
        low, high = torch.where(same, middle, low), torch.where(same, high, middle)
    return start + ((low + high) / 2)[:, None] * (end - start)


def sample(rows: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """At most `cap` of `rows`, a fixed-seed sample in their order (all of them where there are fewer)."""
    if len(rows) <= cap:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, cap, replace=False))


@dataclass
class PointSets:
    """What stays the same across checkpoints: the sampled rows of each split, the random points' unit-box
    coordinates, the frame, and the task's inputs (model.task_inputs)."""

    inputs: torch.Tensor
    train: np.ndarray
    test: np.ndarray
    unit_random: torch.Tensor
    directions: torch.Tensor

    @classmethod
    def of(cls, model, run, options: LocalComplexityOptions) -> PointSets:
        inputs = model.task_inputs(run.task, run.dataset)
        dim = space_points(model, inputs[:1]).shape[1]
        g = torch.Generator().manual_seed(options.seed)
        return cls(
            inputs,
            sample(run.dataset.train_rows, options.max_train, options.seed),
            sample(run.dataset.test_rows, options.max_test, options.seed + 1),
            torch.rand(options.n_random, dim, generator=g),
            frame(dim, options.directions, options.seed),
        )

    def points(self, model, n_boundary: int, seed: int) -> dict[str, torch.Tensor]:
        """The model's points of each set (SETS → (N, D)) at its current parameters."""
        every = space_points(model, self.inputs)
        low, high = every.min(0).values, every.max(0).values
        train = every[torch.as_tensor(self.train)]
        return {
            "train": train,
            "test": every[torch.as_tensor(self.test)],
            "random": low + self.unit_random * (high - low),
            "boundary": boundary_points(model, train, self.inputs, n_boundary, seed),
        }


def frozen_model(run):
    """The run's model in eval mode with its parameters frozen (perturbations take gradients, the weights
    none), and a function loading checkpoint row r into it."""
    if run.checkpoint_dirs is not None:  # an imported series: its model reads them
        model = check_shapes(run)
        return model, model.load_row
    model = build_model(run.config).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, checkpoint_loader(run, model)


def analysed_rows(n_checkpoints: int, start: int, every: int) -> list[int]:
    """The checkpoint rows from `start` on that are analysed: every `every`-th, and the last saved one."""
    return [r for r in range(start, n_checkpoints) if r % every == 0 or r == n_checkpoints - 1]


def lc_rows(model, sets: PointSets, options: LocalComplexityOptions) -> dict[str, np.ndarray]:
    """One checkpoint: lc (sets, radii, layers) the mean count per point, n_points (sets,)."""
    points = sets.points(model, options.n_boundary, options.seed)
    n_layers = len(model.neuron_layers(model.cfg))
    lc = np.full((len(SETS), len(options.radii), n_layers), np.nan, dtype=np.float32)
    for s, name in enumerate(SETS):
        if len(points[name]):
            for r, radius in enumerate(options.radii):
                counts = local_complexity(model, points[name], sets.inputs, sets.directions, radius)
                lc[s, r] = counts.float().mean(0).numpy()
    return {"lc": lc, "n_points": np.array([len(points[name]) for name in SETS], dtype=np.int64)}


def lc_pass(run, group, start: int, progress: Callable[[int, int], None], options: LocalComplexityOptions):
    """The local complexity rows of checkpoints start..n-1 (NaN rows where a checkpoint is skipped)."""
    model, load_row = frozen_model(run)
    sets = PointSets.of(model, run, options)
    todo = set(analysed_rows(run.n_checkpoints, start, options.every))
    n_layers = len(model.neuron_layers(model.cfg))
    skipped = {
        "lc": np.full((len(SETS), len(options.radii), n_layers), np.nan, dtype=np.float32),
        "n_points": np.zeros(len(SETS), dtype=np.int64),
    }
    rows: dict[str, list] = {"lc": [], "n_points": []}
    for r in range(start, run.n_checkpoints):
        if r in todo:
            load_row(r)
            row = lc_rows(model, sets, options)
        else:
            row = skipped
        for key, value in row.items():
            rows[key].append(value)
        progress(r + 1 - start, run.n_checkpoints - start)
    return rows


def has_neurons(run: Run) -> str | None:
    """Local complexity counts the neurons of layers every input passes through."""
    config = run.config
    if not MODELS[config.model.kind].neuron_layers(config.model):
        return f"needs layers of neurons that every input passes through; model.kind '{config.model.kind}' routes tokens to experts"
    return None


LOCAL_COMPLEXITY = Analysis(
    "local_complexity",
    1,
    "on request: mean count of neurons whose pre-activation sign changes over a cross-polytope of 2P "
    "vertices around training, test, random and decision-boundary points, per radius and neuron layer "
    "(Humayun et al. 2024)",
    "checkpoints",
    lc_pass,
    first_reason(has_neurons, needs_split),
    ("lc", "n_points"),
    {"options": 0},
    options=LocalComplexityOptions,
    on_request=True,
)
