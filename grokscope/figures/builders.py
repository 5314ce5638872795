"""The figure builders: (run, step) → Plot. Time axes are training steps; the step is the cursor."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import plotly.colors as pcolors
import plotly.graph_objects as go
import plotly.io as pio
import torch
from plotly.subplots import make_subplots

from grokscope import analysis
from grokscope.analysis.memorization import SCORES
from grokscope.analysis.neurons import CLUSTER_THRESHOLD
from grokscope.analysis.progress import KEY_LOSS_RATIO, TRAIN_FIT, loss_ratios
from grokscope.analysis.pruning import not_prunable
from grokscope.analysis.spec import trained_here
from grokscope.analysis.sweeps import COLOURINGS, OUTCOMES, cells, sweep_table, varied_keys
from grokscope.config import RunConfig
from grokscope.errors import GrokscopeError
from grokscope.models import MODELS, load_model
from grokscope.store import Run
from grokscope.store.layout import EVALUATED, STABILITY_COLUMNS
from grokscope.store.sweep import Sweep

# Okabe & Ito (2008): distinguishable with every common colour-vision deficiency
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
# one colour per quantity in every figure (a quantity keeps its colour from page to page)
COLOURS = {
    "train": PALETTE[0],
    "test": PALETTE[1],
    "weight norm": PALETTE[2],
    "softmax collapse": PALETTE[3],
    "corrupted_vs_noisy": PALETTE[4],
    "logit norm": PALETTE[5],
    "corrupted_vs_true": PALETTE[6],
    "zero loss": PALETTE[7],
    "all": PALETTE[1],  # never beside "test": a run has one or the other
    "restricted loss": PALETTE[3],
    "excluded loss": PALETTE[4],
    "gini embed": PALETTE[5],
    "gini out": PALETTE[7],
    "key frequency": PALETTE[1],
    "other frequency": PALETTE[0],
    "neurons": PALETTE[0],
    "clustered share": PALETTE[2],
    "clean_train": PALETTE[0],
    "training points": PALETTE[0],
    "test points": PALETTE[1],
    "random points": PALETTE[7],
    "boundary points": PALETTE[4],
    "distance": PALETTE[2],
    "jaccard": PALETTE[4],
    "consistency": PALETTE[3],
    "stability": PALETTE[5],
}
PHASE_NAMES = ("memorization", "circuit formation", "clean-up", "stable")
PHASE_SHADES = ("rgba(0,0,0,0.07)", "rgba(0,0,0,0.0)", "rgba(0,0,0,0.07)", "rgba(0,0,0,0.0)")
TEMPLATE = "grokscope"
pio.templates[TEMPLATE] = go.layout.Template(pio.templates["simple_white"])  # registered once, applied by name
pio.templates[TEMPLATE].layout.update(
    font={"size": 14, "family": "Arial, Helvetica, sans-serif"},
    colorway=PALETTE,
    margin={"l": 70, "r": 20, "t": 85, "b": 55},
    title={"x": 0.01, "xanchor": "left", "y": 1, "yref": "container", "yanchor": "top"},
    legend={"orientation": "h", "y": -0.18, "x": 0},
    width=800,
    height=500,
)


@dataclass
class Scrub:
    """How a figure follows the cursor without being rebuilt (the app moves it in the browser): the shapes
    named CURSOR move to the step; then, sent once, per checkpoint row the y values of the step-dependent
    traces (trace index → (n_checkpoints, n points)) and the title; or, where that is too much to send at
    once (a model forward per step, a large array per step), `at`: step → (trace index → {attribute:
    values}, title), the figure's step-dependent values computed at one step and sent when it changes."""

    ys: dict[int, np.ndarray] = field(default_factory=dict)
    titles: list[str] | None = None
    at: Callable[[int], tuple[dict[int, dict[str, np.ndarray]], str]] | None = None


@dataclass
class Plot:
    """A figure and the columns it plots (equal-length arrays, written as CSV beside the figure). scrub:
    how it follows the cursor; None where it has no cursor (drawn at one step for every run it compares)."""

    figure: go.Figure
    data: dict[str, np.ndarray]
    scrub: Scrub | None = None


CURSOR = "cursor"  # the name of the dashed line at the step on time axes


def cursor_step(run: Run, step: int | None) -> int:
    """The step shown: a saved step (checked) or, by default, the last one."""
    return int(run.steps[-1]) if step is None else int(run.steps[run.row(step)])


def phase_spans(run: Run) -> list[tuple[str, int, int]]:
    """The phases to shade on time axes, (name, first step, last step), from the cached phases analysis
    (a figure computes nothing for them): only up to the step they were computed for, and never "stable"
    for a run still training (that cannot be claimed at its live end). Empty where none are cached."""
    from grokscope.analysis.results import boundaries

    cached = analysis.cached_result(run, "phases") if "phases" in analysis.applicable(run) else None
    if cached is None:
        return []
    end = min(int(cached["n_metric_steps"]) - 1, int(run.steps[-1]))
    bounds = [int(run.steps[0])]
    for s in boundaries(cached).values():
        if s is None or s >= end:
            break
        bounds.append(s)
    names = PHASE_NAMES[: len(bounds)]
    if not run.complete and names[-1] == "stable":
        names, bounds = names[:-1], bounds[:-1]
    return list(zip(names, bounds, [*bounds[1:], end]))


def decorate(
    fig: go.Figure, run: Run, step: int, title: str, time_axis: bool = True, log_time: bool = False
) -> go.Figure:
    """House style; on time axes the phases shaded and labelled, the grok step dotted and the cursor as a
    dashed line. log_time: the time axes are logarithmic (step 0 is not drawn there)."""
    # the title stands at the top (plotly anchors a title of several lines by its last: padded by a line
    # each), below it the subtitle, then room for the phase labels of time axes
    lines = title.count("<br>")
    fig.update_layout(template=TEMPLATE, title={"text": title, "pad": {"t": 12 + 22 * lines}})
    above = 45 * (time_axis and bool(phase_spans(run))) + 20 * bool(fig.layout.annotations)  # labels, subplot titles
    fig.update_layout(margin={"t": 50 + 22 * lines + above})
    if time_axis:
        first = int(run.steps[run.steps > 0][0]) if (run.steps > 0).any() else 1
        for i, (name, start, end) in enumerate(phase_spans(run)):
            if log_time:  # a log axis places annotations by the log of x (shapes by x itself)
                start, end = max(start, first), max(end, first)
            middle = np.log10(np.sqrt(start * end)) if log_time else (start + end) / 2
            fig.add_vrect(x0=start, x1=end, fillcolor=PHASE_SHADES[i], line_width=0, layer="below")
            fig.add_annotation(
                x=middle,
                y=1.0 + 0.045 * (i % 2),  # staggered, so short phases' labels do not overlap
                yref="paper",
                text=name,
                showarrow=False,
                font={"size": 11},
                yanchor="bottom",
            )
        if run.grok_step is not None:
            fig.add_vline(x=run.grok_step, line_dash="dot", line_color=COLOURS["test"], line_width=1.5)
        fig.add_vline(x=step, line_dash="dash", line_color="#444444", line_width=1, name=CURSOR)
        if log_time:
            fig.update_xaxes(type="log", exponentformat="power")
    return fig


def training_curves(run: Run, step: int | None = None) -> Plot:
    """Train/test loss (log scale) and accuracy (a run without a split: on all inputs), the weight norm, and
    where the run has them, the numerical stability columns (mean logit norm; Softmax Collapse and zero-loss
    fractions of the training examples), every step (an imported run: at its checkpoints, with the loss curves
    its source recorded, dashed)."""
    step = cursor_step(run, step)
    m = {column: values[run.measured_steps] for column, values in run.metrics.items()}
    # runs made before the stability columns have none; an imported series does not measure them
    stability = all(c in m and np.isfinite(m[c]).any() for c in STABILITY_COLUMNS)
    heights = [0.38, 0.24, 0.19, 0.19] if stability else [0.45, 0.3, 0.25]
    fig = make_subplots(rows=len(heights), cols=1, shared_xaxes=True, vertical_spacing=0.04, row_heights=heights)
    for split in (s for s in EVALUATED if f"{s}_loss" in m):
        style, on = {"color": COLOURS[split]}, EVALUATED[split]
        loss = np.where(m[f"{split}_loss"] > 0, m[f"{split}_loss"], np.nan)  # log axis
        # a line across the steps not measured (train.eval_every: the test metrics at some steps only)
        gaps = {"connectgaps": True}
        fig.add_scatter(x=m["step"], y=loss, name=f"{on} loss", line=style, row=1, col=1, **gaps)
        fig.add_scatter(
            x=m["step"], y=m[f"{split}_acc"], name=f"{on} accuracy", line={**style, "dash": "dot"}, row=2, col=1, **gaps
        )
    for column, values in run.source_metrics.items():  # an imported run: the curves its source recorded
        split = column.split("_")[0]
        steps = np.flatnonzero(np.isfinite(values))
        fig.add_scatter(
            x=steps,
            y=np.where(values[steps] > 0, values[steps], np.nan),
            name=f"{split} loss as the source recorded it",
            line={"color": COLOURS[split], "dash": "dash", "width": 1},
            row=1,
            col=1,
        )
    corrupted = (("corrupted_noisy_acc", "corrupted_vs_noisy"), ("corrupted_true_acc", "corrupted_vs_true"))
    for i, (column, split) in enumerate(corrupted, start=3):
        if column in m and np.isfinite(m[column]).any():  # runs with corrupted labels: the split of Doshi et al.
            fig.add_scatter(
                x=m["step"], y=m[column], name=SPLIT_NAMES[split], line={"color": COLOURS[split]}, row=2, col=1
            )
    fig.add_scatter(
        x=m["step"], y=m["weight_norm"], name="weight norm ‖θ‖", line={"color": COLOURS["weight norm"]}, row=3, col=1
    )
    loss_unit = LOSS_UNITS[run.config.train.loss]
    fig.update_yaxes(type="log", title_text=f"loss ({loss_unit})", exponentformat="power", row=1, col=1)
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02], row=2, col=1)
    fig.update_yaxes(title_text="norm", row=3, col=1)
    if stability:  # the logit norm can outgrow the weight norm by orders of magnitude: a log axis shows both
        norms = np.concatenate([m["weight_norm"], m["logit_norm"]])
        norms = norms[np.isfinite(norms) & (norms > 0)]
        decades = np.log10(norms.max() / norms.min()) if len(norms) else 0
        # a short panel: ticks at powers of ten only where the norms span one (else the 2s and 5s pile up)
        fig.update_yaxes(type="log", exponentformat="power", dtick=1 if decades >= 1 else None, row=3, col=1)
        fig.add_scatter(
            x=m["step"],
            y=m["logit_norm"],
            name="mean logit norm (train)",
            line={"color": COLOURS["logit norm"]},
            row=3,
            col=1,
        )
        for column, line in (
            ("sc_fraction", {"color": COLOURS["softmax collapse"]}),
            ("zero_loss_fraction", {"color": COLOURS["zero loss"], "dash": "dot"}),  # often on top of the SC fraction
        ):
            fig.add_scatter(x=m["step"], y=m[column], name=STABILITY_NAMES[column], line=line, row=4, col=1)
        fig.update_yaxes(title_text="share of train", range=[0, 1.02], row=4, col=1)
    fig.update_xaxes(title_text="step", row=len(heights), col=1)
    fig.update_layout(height=820 if stability else 650)
    if len(m["step"]) < 100:  # a few measured steps (an imported series): each one marked
        fig.update_traces(mode="lines+markers", selector=lambda trace: "source" not in trace.name)
    grokked = "not grokked" if run.grok_step is None else f"grok step {run.grok_step}"
    if not run.has_split:
        grokked = "no split: measured on all inputs"
    title = f"{run.name}: training ({grokked})<br><sup>{training_label(run.config)}</sup>"
    return Plot(decorate(fig, run, step, title), dict(m), Scrub())


STABILITY_NAMES = {
    "sc_fraction": "Softmax Collapse (float32 top probability exactly 1)",
    "zero_loss_fraction": "loss exactly 0",
}


LOSS_NAMES = {
    "ce": "cross-entropy",
    "ce32": "cross-entropy in float32",
    "mse": "MSE",
    "stablemax": "StableMax cross-entropy",
}


def training_label(config: RunConfig) -> str:
    """How a run was trained, in one line: optimizer (⊥Grad-wrapped or not), loss, Grokfast filter."""
    if config.preset == "imported":
        return "trained elsewhere (imported); its losses as grokscope computes them at each checkpoint"
    o, g = config.optim, config.grokfast
    optimizer = {"adamw": "AdamW", "sgd": "SGD"}[o.name]
    parts = [f"{'⊥' if o.orthograd else ''}{optimizer} lr {o.lr:g}, wd {o.weight_decay:g}"]
    parts.append(LOSS_NAMES[config.train.loss])
    if g.kind == "ema":
        parts.append(f"Grokfast-EMA α {g.ema_alpha:g}, λ {g.ema_lamb:g}")
    elif g.kind == "ma":
        parts.append(f"Grokfast-MA w {g.ma_window}, λ {g.ma_lamb:g}")
    return "; ".join(parts)


def embedding_spectrum(run: Run, step: int | None = None) -> Plot:
    """Share of W_E's non-constant Fourier power per frequency at the step; key frequencies marked."""
    step = cursor_step(run, step)
    powers = analysis.load(run, "spectra")["embed_freq_power"][:, 1:]  # (n_checkpoints, n // 2)
    shares = powers / np.clip(powers.sum(1, keepdims=True), 1e-300, None)
    power, share = powers[run.row(step)], shares[run.row(step)]
    frequency = np.arange(1, len(power) + 1)
    keys = set(analysis.load(run, "key_frequencies")["frequencies"].tolist())
    colours = [COLOURS["key frequency"] if k in keys else COLOURS["other frequency"] for k in frequency]
    fig = go.Figure(go.Bar(x=frequency, y=share, marker_color=colours, name="share of power"))
    fig.update_xaxes(title_text="frequency k")
    fig.update_yaxes(title_text="share of W_E's non-constant power")
    note = analysis.group_of(run.config.task).note
    titles = [
        f"{run.name}: embedding spectrum at step {s} (key frequencies in orange)<br><sup>{note}</sup>"
        for s in run.steps
    ]
    decorate(fig, run, step, titles[run.row(step)], False)
    data = {"frequency": frequency, "power": power, "share": share, "key": np.isin(frequency, list(keys))}
    return Plot(fig, data, Scrub({0: shares}, titles))


def key_frequency_ablation(run: Run, step: int | None = None) -> Plot:
    """What removing each frequency from the inputs does to the test loss (a run without a split: the loss on
    all inputs), at the step the key frequencies were found (the last): the ablation rule's evidence, its
    threshold dashed, key frequencies in orange."""
    found = analysis.load(run, "key_frequencies")
    on = EVALUATED["test" if run.has_split else "all"]
    ratio = loss_ratios(found)
    drop = float(found["test_acc"]) - found["ablated_test_acc"]
    frequency = np.arange(1, len(ratio) + 1)
    keys = found["by_ablation"]
    key = np.isin(frequency, keys)
    colours = [COLOURS["key frequency"] if k else COLOURS["other frequency"] for k in key]
    fig = go.Figure(
        go.Bar(
            x=frequency,
            y=ratio,
            marker_color=colours,
            name=f"{on} loss ratio",
            customdata=drop,
            hovertemplate=f"frequency %{{x}}: {on} loss ×%{{y:.3g}}, accuracy −%{{customdata:.3f}}<extra></extra>",
        )
    )
    fig.update_xaxes(title_text="frequency k removed from the inputs")
    fig.update_yaxes(title_text=f"{on} loss with it removed / without", type="log")
    rule = f"key (ablation): {', '.join(map(str, keys.tolist())) or 'none'}; rule used: {found['rule']}"
    title = f"{run.name}: each frequency removed, at step {int(found['step'])}<br><sup>{rule}</sup>"
    decorate(fig, run, int(found["step"]), title, False)
    fig.add_trace(
        go.Scatter(
            x=[0.5, len(ratio) + 0.5],
            y=[KEY_LOSS_RATIO, KEY_LOSS_RATIO],
            mode="lines",
            line={"color": "grey", "dash": "dash"},
            name=f"×{KEY_LOSS_RATIO:g}: key",
        )
    )
    return Plot(fig, {"frequency": frequency, "loss_ratio": ratio, "accuracy_drop": drop, "key": key}, Scrub())


def spectrum_over_time(run: Run, step: int | None = None) -> Plot:
    """Heatmap frequency × step of each frequency's share of W_E's non-constant Fourier power."""
    step = cursor_step(run, step)
    power = analysis.load(run, "spectra")["embed_freq_power"][:, 1:]
    share = power / np.clip(power.sum(1, keepdims=True), 1e-300, None)
    frequency = np.arange(1, power.shape[1] + 1)
    keys = analysis.load(run, "key_frequencies")["frequencies"].tolist()
    fig = go.Figure(
        go.Heatmap(x=run.steps, y=frequency, z=share.T, colorscale="Viridis", colorbar={"title": {"text": "share"}})
    )
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="frequency k", tickvals=keys, ticktext=[f"{k} ◀" for k in keys])
    note = analysis.group_of(run.config.task).note
    decorate(
        fig, run, step, f"{run.name}: embedding spectrum over training (key frequencies ticked)<br><sup>{note}</sup>"
    )
    steps, freqs = np.meshgrid(run.steps, frequency, indexing="ij")
    return Plot(fig, {"step": steps.ravel(), "frequency": freqs.ravel(), "share": share.ravel()}, Scrub())


def neuron_clusters(run: Run, step: int | None = None) -> Plot:
    """Clustered neurons per frequency at the step, and the clustered share over training."""
    step = cursor_step(run, step)
    neurons = analysis.load(run, "neurons")
    clustered = neurons["fraction"] >= CLUSTER_THRESHOLD  # (n_checkpoints, d_mlp)
    row = run.row(step)
    n_freq = analysis.group_of(run.config.task).n // 2
    frequency = np.arange(1, n_freq + 1)
    # (n_checkpoints, n_freq): clustered neurons per frequency at every checkpoint
    every = np.stack([np.bincount(f[c], minlength=n_freq + 1)[1:] for f, c in zip(neurons["frequency"], clustered)])
    counts = every[row]
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.55, 0.45],
        horizontal_spacing=0.15,
        subplot_titles=(f"at step {step}", f"over training (share ≥ {CLUSTER_THRESHOLD:.0%} in one k)"),
    )
    fig.add_bar(x=frequency, y=counts, marker_color=COLOURS["neurons"], name="clustered neurons", row=1, col=1)
    fig.add_scatter(
        x=run.steps,
        y=clustered.mean(1),
        line={"color": COLOURS["clustered share"]},
        name="clustered share",
        row=1,
        col=2,
    )
    fig.add_vline(x=step, line_dash="dash", line_color="#444444", line_width=1, row=1, col=2, name=CURSOR)
    fig.update_xaxes(title_text="frequency k", row=1, col=1)
    fig.update_xaxes(title_text="step", row=1, col=2)
    fig.update_yaxes(title_text="neurons", row=1, col=1)
    fig.update_yaxes(title_text="clustered share", range=[0, 1], row=1, col=2)
    titles = [
        f"{run.name}: neuron clusters ({n} of {clustered.shape[1]} clustered at step {s})"
        for s, n in zip(run.steps, clustered.sum(1))
    ]
    decorate(fig, run, step, titles[row], False)
    return Plot(fig, {"frequency": frequency, "clustered_neurons": counts}, Scrub({0: every}, titles))


def progress_measures(run: Run, step: int | None = None) -> Plot:
    """Restricted, excluded and test loss (log scale; a run without a split: restricted loss and the loss on
    all inputs); Gini coefficients; total squared weight norm."""
    step = cursor_step(run, step)
    progress, spectra, norms = (analysis.load(run, n) for n in ("progress", "spectra", "weight_norms"))
    # at the saved steps; NaN (not drawn) where a live run's last checkpoint has no metrics row yet
    split = "test" if run.has_split else "all"
    test_loss = np.full(len(run.steps), np.nan)
    recorded = run.steps < run.n_metric_steps
    test_loss[recorded] = run.metrics[f"{split}_loss"][run.steps[recorded]]
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.05, row_heights=[0.5, 0.25, 0.25])
    curves = (
        ("restricted loss", progress["restricted_loss"], COLOURS["restricted loss"]),
        *((("excluded loss (train)", progress["excluded_loss"], COLOURS["excluded loss"]),) if run.has_split else ()),
        (f"{EVALUATED[split]} loss", test_loss, COLOURS[split]),
    )
    for name, y, colour in curves:
        fig.add_scatter(x=run.steps, y=np.where(y > 0, y, np.nan), name=name, line={"color": colour}, row=1, col=1)
    fig.add_scatter(
        x=run.steps, y=spectra["gini_embed"], name="Gini of W_E", line={"color": COLOURS["gini embed"]}, row=2, col=1
    )
    fig.add_scatter(
        x=run.steps,
        y=spectra["gini_neuron_out"],
        name="Gini of W_out·W_U",
        line={"color": COLOURS["gini out"]},
        row=2,
        col=1,
    )
    fig.add_scatter(x=run.steps, y=norms["sq_norm"], name="Σθ²", line={"color": COLOURS["weight norm"]}, row=3, col=1)
    fig.update_yaxes(type="log", title_text="loss", exponentformat="power", row=1, col=1)
    fig.update_xaxes(title_text="step", row=3, col=1)
    fig.update_yaxes(title_text="Gini", range=[0, 1], row=2, col=1)
    fig.update_yaxes(title_text="Σθ²", row=3, col=1)
    fig.update_layout(height=650)
    keys = ", ".join(map(str, progress["key_frequencies"].tolist()))
    decorate(fig, run, step, f"{run.name}: progress measures (key frequencies {keys})")
    data = {
        "step": run.steps,
        "restricted_loss": progress["restricted_loss"],
        "excluded_loss": progress["excluded_loss"],
        f"{split}_loss": test_loss,
        "gini_embed": spectra["gini_embed"],
        "gini_neuron_out": spectra["gini_neuron_out"],
        "sq_norm": norms["sq_norm"],
    }
    return Plot(fig, data, Scrub())


def attention(run: Run, step: int | None = None) -> Plot:
    """Per head, the attention of `=` to the token a over every input (a, b) at the step (the rest goes
    to b and to `=` itself)."""
    from grokscope.analysis.probes import attention_patterns

    step = cursor_step(run, step)
    p = run.config.task.p

    def to_a(s: int) -> np.ndarray:  # (p², H)
        return attention_patterns(load_model(run, s))[:, :, 0].numpy()

    def title(s: int) -> str:
        return f"{run.name}: attention of '=' to a at step {s}"

    def at(s: int) -> tuple[dict[int, dict[str, np.ndarray]], str]:
        values = to_a(s)
        return {h: {"z": values[:, h].reshape(p, p)} for h in range(values.shape[1])}, title(s)

    values = to_a(step)
    heads = values.shape[1]
    fig = make_subplots(rows=1, cols=heads, subplot_titles=[f"head {h}" for h in range(heads)], horizontal_spacing=0.03)
    for h in range(heads):
        fig.add_heatmap(
            z=values[:, h].reshape(p, p),
            zmin=0,
            zmax=1,
            colorscale="Viridis",
            showscale=h == heads - 1,
            row=1,
            col=h + 1,
        )
        fig.update_xaxes(title_text="b", row=1, col=h + 1)
        fig.update_yaxes(title_text="a" if h == 0 else None, showticklabels=h == 0, row=1, col=h + 1)
    fig.update_layout(height=380, width=250 * heads + 120)
    decorate(fig, run, step, title(step), False)
    a, b = np.divmod(np.arange(p * p), p)
    return Plot(fig, {"a": a, "b": b, **{f"head_{h}": values[:, h] for h in range(heads)}}, Scrub(at=at))


def step_activations(run: Run, step: int):
    """The MLP activations (n, n, d_mlp) in group coordinates at a saved step, from one fast forward; the
    last step asked for is kept on the Run, so the figures of one step share a forward."""
    from grokscope.analysis.neurons import grid_neurons

    kept = run.memo.get("activations")
    if kept is None or kept[0] != step:
        acts, _ = grid_neurons(load_model(run, step), analysis.group_of(run.config.task))
        run.memo["activations"] = kept = (step, acts)
    return kept[1]


def neuron_frequency_map(run: Run, step: int | None = None) -> Plot:
    """Every MLP neuron's share of activation variance in each frequency at the step (one fast forward),
    neurons sorted by their dominant frequency, then by its share."""
    from grokscope.analysis.neurons import frequency_fractions

    step = cursor_step(run, step)

    def fractions(s: int) -> np.ndarray:  # (d_mlp, n // 2)
        return frequency_fractions(step_activations(run, s)).numpy()

    def title(s: int) -> str:
        return f"{run.name}: each neuron's share of variance per frequency at step {s}"

    def by_frequency(shares: np.ndarray) -> np.ndarray:  # (frequencies, neurons) in the figure's order
        return shares[np.lexsort((-shares.max(1), shares.argmax(1)))].T

    def at(s: int) -> tuple[dict[int, dict[str, np.ndarray]], str]:
        return {0: {"z": by_frequency(fractions(s))}}, title(s)

    shares = fractions(step)
    frequency = np.arange(1, shares.shape[1] + 1)
    fig = go.Figure(
        go.Heatmap(z=by_frequency(shares), x=np.arange(len(shares)), y=frequency, zmin=0, zmax=1, colorscale="Viridis")
    )
    fig.update_xaxes(title_text="neurons, by dominant frequency", showticklabels=False)
    fig.update_yaxes(title_text="frequency k")
    decorate(fig, run, step, title(step), False)
    neuron, k = np.meshgrid(np.arange(shares.shape[0]), frequency, indexing="ij")
    return Plot(fig, {"neuron": neuron.ravel(), "frequency": k.ravel(), "share": shares.ravel()}, Scrub(at=at))


def neuron_activation(run: Run, step: int | None = None, neuron: int | None = None) -> Plot:
    """One MLP neuron at the step (default: the one with the largest share in one frequency): its
    activation over the inputs in group coordinates, and the power of its 2D Fourier transform."""
    from grokscope.analysis.fourier import component_names, fourier_basis

    step = cursor_step(run, step)
    group = analysis.group_of(run.config.task)
    if neuron is None:
        neuron = int(np.argmax(analysis.load(run, "neurons")["fraction"][run.row(step)]))
    d_mlp = run.config.model.d_mlp
    if not 0 <= neuron < d_mlp:
        raise GrokscopeError(f"no neuron {neuron} (the MLP has {d_mlp}: 0..{d_mlp - 1})")
    F = fourier_basis(group.n)

    def activation(s: int) -> tuple[np.ndarray, np.ndarray]:  # (n, n) each: activation, 2D Fourier power
        A = step_activations(run, s)[:, :, neuron].double()
        return A.numpy(), (F @ (A - A.mean()) @ F.T).square().numpy()

    def title(s: int) -> str:
        return f"{run.name}: neuron {neuron} at step {s}<br><sup>{group.note}</sup>"

    def at(s: int) -> tuple[dict[int, dict[str, np.ndarray]], str]:
        A, power = activation(s)
        return {0: {"z": A}, 1: {"z": power}}, title(s)

    A, power = activation(step)
    names = component_names(group.n)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("activation", "2D Fourier power"), horizontal_spacing=0.2)
    bar = {"len": 0.8, "thickness": 14}  # a colour bar beside each panel
    fig.add_heatmap(z=A, colorscale="Viridis", colorbar={**bar, "x": 0.45, "title": {"text": "act."}}, row=1, col=1)
    fig.add_heatmap(
        z=power, x=names, y=names, colorscale="Viridis", colorbar={**bar, "title": {"text": "power"}}, row=1, col=2
    )
    fig.update_xaxes(title_text="y (b)", row=1, col=1)
    fig.update_yaxes(title_text="x (a)", row=1, col=1)
    shown = names[:: max(1, len(names) // 10)]  # about ten component names per axis, not one per component
    fig.update_xaxes(tickvals=shown, tickangle=-45, row=1, col=2)
    fig.update_yaxes(tickvals=shown, row=1, col=2)
    fig.update_layout(height=480, width=1000)
    decorate(fig, run, step, title(step), False)
    x, y = np.divmod(np.arange(group.n**2), group.n)
    data = {"x": x, "y": y, "a": group.tokens[x], "b": group.tokens[y], "activation": A.ravel()}
    return Plot(fig, data, Scrub(at=at))


LOSS_UNITS = {"ce": "cross-entropy", "ce32": "cross-entropy", "stablemax": "cross-entropy", "mse": "MSE"}


def compare(runs: list[Run], step: int | None = None) -> Plot:
    """Several runs on one time axis, aligned by step: test and train loss (log scale; one axis per unit,
    cross-entropy and MSE apart), test accuracy (a run without a split: loss and accuracy on all inputs), and
    the Softmax Collapse fraction of the training examples (runs that record it).
    step: a dashed line at that step (any step; runs need not share their checkpoints)."""
    if not runs:
        raise GrokscopeError("compare needs at least one run")
    units = list(dict.fromkeys(LOSS_UNITS[run.config.train.loss] for run in runs))
    stability = any("sc_fraction" in run.metrics for run in runs)
    heights = [0.5 / len(units)] * len(units) + ([0.25, 0.25] if stability else [0.4])
    fig = make_subplots(rows=len(heights), cols=1, shared_xaxes=True, vertical_spacing=0.06, row_heights=heights)
    accuracy_row = len(units) + 1
    unsplit = ("all_loss", "all_acc") if not all(run.has_split for run in runs) else ()
    columns = ("step", "train_loss", "test_loss", "test_acc", *unsplit, *(("sc_fraction",) if stability else ()))
    data: dict[str, list] = {"run": [], **{c: [] for c in columns}}
    for i, run in enumerate(runs):
        # at the measured steps (an imported run: its checkpoints; NaN between would leave its lines undrawn)
        m = {column: values[run.measured_steps] for column, values in run.metrics.items()}
        colour = PALETTE[i % len(PALETTE)]
        loss_row = units.index(LOSS_UNITS[run.config.train.loss]) + 1
        for split, dash in (("test", "solid"), ("train", "dot"), ("all", "dash")):
            if f"{split}_loss" in m:
                loss = np.where(m[f"{split}_loss"] > 0, m[f"{split}_loss"], np.nan)
                line, name = {"color": colour, "dash": dash}, f"{run.name} {EVALUATED[split]} loss"
                fig.add_scatter(x=m["step"], y=loss, name=name, line=line, row=loss_row, col=1, connectgaps=True)
        split = "test" if run.has_split else "all"
        fig.add_scatter(
            x=m["step"],
            y=m[f"{split}_acc"],
            name=f"{run.name} {EVALUATED[split]} acc",
            line={"color": colour, "dash": "solid" if run.has_split else "dash"},
            row=accuracy_row,
            col=1,
            connectgaps=True,
        )
        if stability and "sc_fraction" in m:
            name = f"{run.name} SC fraction"
            fig.add_scatter(
                x=m["step"],
                y=m.get("sc_fraction", np.full(len(m["step"]), np.nan)),
                name=name,
                line={"color": colour, "dash": "dash"},
                row=accuracy_row + 1,
                col=1,
            )
        for key in columns:  # NaN where the run has no such column (made before it, or without a split)
            data[key].extend(m.get(key, np.full(len(m["step"]), np.nan)).tolist())
        data["run"].extend([run.name] * len(m["step"]))
    for row, unit in enumerate(units, start=1):
        fig.update_yaxes(type="log", title_text=f"loss ({unit})", exponentformat="power", row=row, col=1)
    fig.update_yaxes(
        title_text="test acc" + (" (all: dashed)" if unsplit else ""), range=[0, 1.02], row=accuracy_row, col=1
    )
    if stability:
        fig.update_yaxes(title_text="SC", range=[0, 1.02], row=accuracy_row + 1, col=1)
    fig.update_xaxes(title_text="step", row=len(heights), col=1)
    fig.update_layout(height=600 + 150 * (len(units) - 1) + 150 * stability)
    if step is not None:
        fig.add_vline(x=step, line_dash="dash", line_color="#444444", line_width=1)
    names = ", ".join(run.name for run in runs)
    what = "train (dotted) and test (solid)" + (", all inputs (dashed)" if unsplit else "")
    decorate(fig, runs[0], step or 0, f"{names}: {what}", False)
    return Plot(fig, {k: np.asarray(v) for k, v in data.items()})


def run_table(runs: list[Run]) -> dict[str, list]:
    """One row per run for comparing them: what it is (dense, or a grokking ticket or control, with the
    fraction of weights kept and where its mask came from), how it was trained (optimizer, loss, Grokfast),
    steps to memorize (train accuracy ≥ 0.99), steps to grok (test accuracy ≥ 0.99; None if not yet) and the
    final accuracies."""
    keys = ("run", "kind", "weights kept", "mask from", "training", "memorized at", "grokked at")
    table: dict[str, list] = {k: [] for k in keys}
    table.update({"final train acc": [], "final test acc": []})
    for run in runs:
        ticket, m = run.config.ticket, run.metrics
        memorized = np.flatnonzero(m["train_acc"] >= TRAIN_FIT) if run.has_split else []
        table["run"].append(run.name)
        table["kind"].append({"": "dense", "ticket": "ticket"}.get(ticket.kind, f"{ticket.kind} control"))
        table["weights kept"].append(ticket.keep)
        table["mask from"].append(f"{ticket.source} @ {ticket.step}" if ticket.kind else "")
        table["training"].append(training_label(run.config))
        table["memorized at"].append(int(memorized[0]) if len(memorized) else None)
        table["grokked at"].append(run.grok_step)
        last = run.final_metrics()
        for split in ("train", "test"):  # None for a run without a split: it has neither
            table[f"final {split} acc"].append(last.get(f"{split}_acc"))
    return table


def readable_on(fill: str) -> str:
    """Black or white text, whichever reads on a fill colour ('#rrggbb' or 'rgb(r, g, b)'): by its relative
    luminance (WCAG), black above 0.18, where the two contrast equally."""
    rgb = pcolors.hex_to_rgb(fill) if fill.startswith("#") else pcolors.unlabel_rgb(fill)
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (v / 255 for v in rgb)]
    return "black" if 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2] > 0.18 else "white"


def axis_order(values: list) -> list:
    """A phase diagram axis's values in order: numbers by value, then anything else as text."""
    distinct = list(dict.fromkeys(values))
    numbers = [v for v in distinct if isinstance(v, int | float) and not isinstance(v, bool)]
    return sorted(numbers) + sorted((v for v in distinct if v not in numbers), key=str)


def sweep_diagram(
    sweep: Sweep,
    x: str,
    y: str | None = None,
    colour: str = "final test accuracy",
    fixed: dict[str, object] | None = None,
    table: dict[str, list] | None = None,
) -> Plot:
    """A sweep's phase diagram: a square per value of key x and of key y (None: one row), coloured by the final
    test accuracy, the grok step or the outcome (analysis/sweeps.py), among the runs with the `fixed` values of other keys; keys neither on an axis
    nor fixed (seeds, say) are pooled: mean accuracy, median grok step of the runs that grokked, most common
    outcome, each cell saying over how many runs. Each marker's customdata is its cell's first run, so a click
    can open it. table: the sweep's `sweep_table`, where already made."""
    table = sweep_table(sweep) if table is None else table
    keys, fixed = varied_keys(table), fixed or {}
    if colour not in COLOURINGS:
        raise GrokscopeError(f"unknown colouring '{colour}' (use {', '.join(COLOURINGS)})")
    if not keys:
        raise GrokscopeError(f"the sweep {sweep.path.name} varies no key: it has no phase diagram")
    if x == y:
        raise GrokscopeError(f"the diagram's axes need two different keys; both are '{x}'")
    grid = cells(table, x, y, fixed)
    if not grid:
        raise GrokscopeError(f"no run of the sweep {sweep.path.name} has started with these values")
    xs = [str(v) for v in axis_order([c["x"] for c in grid])]
    ys = [str(v) for v in axis_order([c["y"] for c in grid])] if y is not None else [""]
    fig = go.Figure()
    cell = int(np.clip(560 / max(len(xs), len(ys)), 70, 120))  # pixels per cell: squares fill 85% of it

    def label(c: dict) -> str:
        n = len(c["runs"])
        if colour == "final test accuracy":
            return ("–" if c["final test acc"] is None else f"{c['final test acc']:.2f}") + (
                f"<br>n={n}" if n > 1 else ""
            )
        if colour == "grok step":
            value = "not<br>grokked" if c["grok step"] is None else f"{c['grok step']:.0f}"
            return value + (f"<br>{c['grokked']}/{n}" if n > 1 else "")
        return (c["outcome"] or "–").replace(" ", "<br>") + (f"<br>{c['outcome count']}/{n}" if n > 1 else "")

    def scatter(chosen: list[dict], fills: list[str], **style) -> None:
        fig.add_scatter(
            x=[str(c["x"]) for c in chosen],
            y=[str(c["y"]) if y is not None else "" for c in chosen],
            mode="markers+text",
            text=[label(c) for c in chosen],
            textfont={"size": 11, "color": [readable_on(fill) for fill in fills]},
            marker={
                "symbol": "square",
                "size": 0.85 * cell,
                "line": {"width": 1, "color": "#444444"},
                **style.pop("marker"),
            },
            customdata=[c["runs"][0] for c in chosen],
            hovertext=[", ".join(c["runs"]) for c in chosen],
            hovertemplate="%{hovertext}<extra></extra>",
            **style,
        )

    if colour == "outcome":
        for i, name in enumerate((*OUTCOMES, None)):
            chosen = [c for c in grid if c["outcome"] == name]
            fill = PALETTE[i % len(PALETTE)] if name is not None else "#dddddd"
            if chosen:
                scatter(chosen, [fill] * len(chosen), name=name or "no outcome", marker={"color": fill})
    else:
        column = COLOURINGS[colour]
        measured = [c for c in grid if c[column] is not None]
        if measured:
            values = np.array([c[column] for c in measured], dtype=float)
            lo, hi = (0.0, 1.0) if colour == "final test accuracy" else (values.min(), values.max())
            shares = np.clip((values - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(values)
            fills = pcolors.sample_colorscale("Viridis", shares.tolist())
            bar = {"title": {"text": colour, "side": "right"}, "len": min(1.0, 300 / (cell * len(ys))), "thickness": 20}
            colours = {"color": values.tolist(), "colorscale": "Viridis", "cmin": lo, "cmax": hi, "colorbar": bar}
            scatter(measured, fills, name=colour, marker=colours)
        missing = [c for c in grid if c[column] is None]
        if missing:
            name = "not grokked" if colour == "grok step" else "not measured"
            scatter(missing, ["#dddddd"] * len(missing), name=name, marker={"color": "#dddddd"})
    pooled = [k for k in keys if k not in (x, y) and k not in fixed]
    said = [f"{k} = {v}" for k, v in fixed.items()] + ([f"pooled over {', '.join(pooled)}"] if pooled else [])
    complete = table["status"].count("complete")
    if complete < len(table["run"]):  # an unfinished sweep: its cells show where its runs are now
        said.append(f"{complete} of {len(table['run'])} runs complete")
    title = f"{sweep.path.name}: {colour}" + (f"<br><sup>{'; '.join(said)}</sup>" if said else "")
    lines = title.count("<br>")  # a title of several lines is anchored by its last: padded by a line each
    fig.update_layout(
        template=TEMPLATE, title={"text": title, "pad": {"t": 12 + 22 * lines}}, showlegend=colour == "outcome"
    )
    # each category exactly `cell` pixels (no padding around the markers)
    fig.update_xaxes(
        title_text=x, type="category", categoryorder="array", categoryarray=xs, range=[-0.5, len(xs) - 0.5]
    )
    fig.update_yaxes(
        title_text=y or "",
        type="category",
        categoryorder="array",
        categoryarray=ys,
        range=[-0.5, len(ys) - 0.5],
        showticklabels=y is not None,
        ticks="outside" if y is not None else "",
    )
    margin = {"l": 130, "r": 150, "t": 90 + 22 * lines, "b": 110}  # axis titles, colour bar, title, legend
    fig.update_layout(
        margin=margin,
        height=margin["t"] + margin["b"] + cell * len(ys),
        width=margin["l"] + margin["r"] + cell * len(xs),
        legend={"y": -90 / (cell * len(ys)), "yanchor": "top"},
    )
    data = {
        x: np.array([str(c["x"]) for c in grid]),
        **({y: np.array([str(c["y"]) for c in grid])} if y is not None else {}),
        "runs": np.array([" ".join(c["runs"]) for c in grid]),
        "n_runs": np.array([len(c["runs"]) for c in grid]),
        "final_test_acc": np.array([np.nan if c["final test acc"] is None else c["final test acc"] for c in grid]),
        "median_grok_step": np.array([np.nan if c["grok step"] is None else c["grok step"] for c in grid]),
        "n_grokked": np.array([c["grokked"] for c in grid]),
        "outcome": np.array([c["outcome"] or "" for c in grid]),
        "outcome_count": np.array([c["outcome count"] for c in grid]),
    }
    return Plot(fig, data)


IPR_BINS = np.linspace(0, 1, 26)  # the IPR lies in (0, 1]
SPLIT_NAMES = {
    "corrupted_vs_noisy": "corrupted train, vs corrupted labels",
    "corrupted_vs_true": "corrupted train, vs true labels",
    "clean_train": "clean train",
    "test": "test",
}


def ipr_histogram(run: Run, step: int | None = None) -> Plot:
    """How many MLP neurons have each IPR at the step (low: memorizing, high: periodic)."""
    step = cursor_step(run, step)
    every = ipr_counts(analysis.load(run, "memorization")["ipr"])
    counts = every[run.row(step)]
    centres = (IPR_BINS[:-1] + IPR_BINS[1:]) / 2
    fig = go.Figure(
        go.Bar(x=centres, y=counts, width=np.diff(IPR_BINS), marker_color=COLOURS["neurons"], name="neurons")
    )
    fig.update_xaxes(title_text="IPR (mean of input a, input b, output)", range=[0, 1])
    fig.update_yaxes(title_text="neurons")
    note = analysis.group_of(run.config.task).note
    titles = [f"{run.name}: neuron IPR at step {s}<br><sup>{note}</sup>" for s in run.steps]
    decorate(fig, run, step, titles[run.row(step)], False)
    data = {"ipr_bin_low": IPR_BINS[:-1], "ipr_bin_high": IPR_BINS[1:], "neurons": counts}
    return Plot(fig, data, Scrub({0: every}, titles))


def ipr_counts(ipr: np.ndarray) -> np.ndarray:
    """(n_checkpoints, d_mlp) IPRs → (n_checkpoints, bins) neurons per IPR bin."""
    return np.stack([np.histogram(row, IPR_BINS)[0] for row in ipr])


def neuron_scores(run: Run, step: int | None = None) -> Plot:
    """Each neuron's IPR against its activation score (runs with corrupted labels) or weight magnitude."""
    step = cursor_step(run, step)
    memorization = analysis.load(run, "memorization")
    other = "activation" if np.isfinite(memorization["activation"]).all() else "magnitude"
    label = {
        "activation": "activation score (clean − corrupted contribution to the label's logit)",
        "magnitude": "weight magnitude",
    }[other]

    def title(s: int) -> str:
        return f"{run.name}: neuron scores at step {s}"

    def at(s: int) -> tuple[dict[int, dict[str, np.ndarray]], str]:
        row = run.row(s)
        return {0: {"x": memorization["ipr"][row], "y": memorization[other][row]}}, title(s)

    scores = {k: memorization[k][run.row(step)] for k in SCORES}
    neuron = np.arange(len(scores["ipr"]))
    fig = go.Figure(
        go.Scatter(
            x=scores["ipr"],
            y=scores[other],
            mode="markers",
            marker={"color": COLOURS["neurons"], "size": 6, "opacity": 0.7},
            text=[f"neuron {k}" for k in neuron],
            name="neurons",
        )
    )
    fig.update_xaxes(title_text="IPR", range=[0, 1.02])
    fig.update_yaxes(title_text=label)
    decorate(fig, run, step, title(step), False)
    return Plot(fig, {"neuron": neuron, **scores}, Scrub(at=at))


def ipr_over_time(run: Run, step: int | None = None) -> Plot:
    """Heatmap IPR × step of the number of neurons at each IPR: the split into memorizing (low) and
    periodic (high) neurons forming."""
    step = cursor_step(run, step)
    counts = ipr_counts(analysis.load(run, "memorization")["ipr"])
    centres = (IPR_BINS[:-1] + IPR_BINS[1:]) / 2
    fig = go.Figure(
        go.Heatmap(x=run.steps, y=centres, z=counts.T, colorscale="Viridis", colorbar={"title": {"text": "neurons"}})
    )
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="IPR")
    decorate(fig, run, step, f"{run.name}: neuron IPR over training")
    steps, bins = np.meshgrid(run.steps, centres, indexing="ij")
    return Plot(fig, {"step": steps.ravel(), "ipr_bin_centre": bins.ravel(), "neurons": counts.ravel()}, Scrub())


def pruning_curves(pruner, table: dict[str, np.ndarray]) -> Plot:
    """The four accuracies against the fraction of neurons pruned (the `sweep` table of a `Pruner`)."""
    by, order = pruner.settings["by"], pruner.settings["order"]
    title = f"{pruner.run.name}: pruning by {by}, {order} first, at step {pruner.step}"
    fig = go.Figure()
    for split, name in SPLIT_NAMES.items():
        if np.isfinite(table[split]).any():
            fig.add_scatter(x=table["fraction"], y=table[split], name=name, line={"color": COLOURS[split]})
    fig.update_xaxes(title_text="fraction of neurons pruned", range=[0, 1])
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02])
    fig.update_layout(template=TEMPLATE, title_text=title, height=520)
    return Plot(fig, dict(table))


def pruning_sweep(run: Run, step: int | None = None, by: str = "ipr", lowest: bool = True) -> Plot:
    """Prune ever more neurons in score order (default: lowest IPR first) and plot the four accuracies."""
    from grokscope.analysis.pruning import Pruner

    pruner = Pruner(run, cursor_step(run, step), by, lowest)
    return pruning_curves(pruner, pruner.sweep())


LC_SETS = {"train": "training points", "test": "test points", "random": "random points", "boundary": "boundary points"}


def chosen_radius(radii: list[float], radius: float | None) -> int:
    """The index of the radius asked for among those computed (default: the one nearest 1, in log terms)."""
    if radius is None:
        return int(np.argmin(np.abs(np.log(np.asarray(radii)))))
    if radius not in radii:
        raise GrokscopeError(f"local complexity was computed at radii {radii}; not at {radius}")
    return radii.index(radius)


def local_complexity(run: Run, step: int | None = None, radius: float | None = None) -> Plot:
    """Local complexity over training at one radius (default: the computed one nearest 1): the mean number
    of neurons whose sign changes around each set of points, summed over layers (top), and per neuron layer
    at the training points (bottom); log time axis, the checkpoints analysed only."""
    from grokscope.analysis.local_complexity import SETS

    step = cursor_step(run, step)
    result = analysis.load(run, "local_complexity")
    radii = json.loads(str(result["options"]))["radii"]
    r = chosen_radius(radii, radius)
    lc = result["lc"][:, :, r]  # (checkpoints, sets, layers)
    analysed = np.isfinite(lc[:, 0, 0])
    steps = run.steps[: len(lc)][analysed]
    n_layers = lc.shape[2]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.6, 0.4])
    data: dict[str, np.ndarray] = {"step": steps}
    for s, key in enumerate(SETS):
        total = lc[analysed, s].sum(-1)
        data[f"lc_{key}"] = total
        name = LC_SETS[key]
        fig.add_scatter(x=steps, y=total, name=name, line={"color": COLOURS[name]}, row=1, col=1)
    for layer in range(n_layers):
        values = lc[analysed, 0, layer]
        data[f"lc_train_layer_{layer}"] = values
        dash = ("solid", "dot", "dash", "dashdot")[layer % 4]
        fig.add_scatter(
            x=steps,
            y=values,
            name=f"layer {layer} (training points)",
            line={"color": COLOURS["train"], "dash": dash},
            row=2,
            col=1,
        )
    fig.update_yaxes(title_text="LC (neurons)", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="LC per layer", rangemode="tozero", row=2, col=1)
    fig.update_xaxes(title_text="step", row=2, col=1)
    fig.update_layout(height=620)
    title = f"{run.name}: local complexity at radius {radii[r]:g}"
    return Plot(decorate(fig, run, step, title, log_time=True), data, Scrub())


def robustness(run: Run, step: int | None = None) -> Plot:
    """Clean (solid) and adversarial (dotted) accuracy of the sampled training and test points over training,
    log time axis: robustness that arrives late is the paper's delayed robustness."""
    from grokscope.analysis.robustness import SPLITS, RobustnessOptions, attack_settings

    step = cursor_step(run, step)
    result = analysis.load(run, "robustness")
    norm = MODELS[run.config.model.kind].attack_norm
    eps, _ = attack_settings(RobustnessOptions(**json.loads(str(result["options"]))), norm, run.task)
    analysed = np.isfinite(result["adv_acc"][:, 0])
    steps = run.steps[: len(analysed)][analysed]
    fig = go.Figure()
    data: dict[str, np.ndarray] = {"step": steps}
    for s, split in enumerate(SPLITS):
        for kind, dash in (("clean", "solid"), ("adv", "dot")):
            values = result[f"{kind}_acc"][analysed, s]
            data[f"{kind}_{split}_acc"] = values
            label = f"{split} accuracy" if kind == "clean" else f"{split} adversarial accuracy"
            fig.add_scatter(x=steps, y=values, name=label, line={"color": COLOURS[split], "dash": dash})
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02])
    fig.update_xaxes(title_text="step")
    fig.update_layout(height=480)
    space = "input" if MODELS[run.config.model.kind].perturbed is None else "embedding"
    bound = {"linf": "ℓ∞", "l2": "ℓ2"}[norm]
    title = f"{run.name}: clean and adversarial accuracy<br><sup>PGD, {bound} ≤ {eps:g} in {space} space</sup>"
    return Plot(decorate(fig, run, step, title, log_time=True), data, Scrub())


def region_slice(run: Run, step: int | None = None, resolution: int = 121) -> Plot:
    """A 2-D slice through three training points of different classes, x_a + α(x_b − x_a) + β(x_c − x_a):
    each pixel coloured by how many neurons change sign between it and its next pixels (right and up: the
    slice's region boundaries, dense where many cross), white where the predicted class changes, the three
    points marked. Scrubbed, the boundaries move as training goes."""
    from grokscope.analysis.local_complexity import forward_from, space_points

    step = cursor_step(run, step)
    model = load_model(run, step)
    dataset = run.dataset
    order = np.random.default_rng(0).permutation(dataset.train_rows)
    chosen: list[int] = []
    for row in order:  # three points of different classes where there are three
        if all(dataset.true_labels[c] != dataset.true_labels[row] for c in chosen):
            chosen.append(int(row))
        if len(chosen) == 3:
            break
    chosen += [int(r) for r in order if int(r) not in chosen][: 3 - len(chosen)]
    inputs = model.task_inputs(run.task, dataset)
    span = np.linspace(-0.5, 1.5, resolution)
    alpha, beta = np.meshgrid(span, span)  # rows: β, columns: α
    grid = torch.as_tensor(np.stack([alpha.ravel(), beta.ravel()], 1), dtype=torch.float32)

    def crossings(s: int) -> tuple[np.ndarray, int]:
        """(resolution, resolution) neurons changing sign to the next pixels, NaN where the class changes;
        the number of distinct sign patterns in the slice."""
        net = model if s == step else load_model(run, s)
        x_a, x_b, x_c = space_points(net, inputs[torch.as_tensor(chosen)])
        points = x_a + grid[:, :1] * (x_b - x_a) + grid[:, 1:] * (x_c - x_a)
        with torch.no_grad():
            logits, pre = forward_from(net, points, inputs)
        pattern = torch.cat([(values > 0) for values in pre], 1).view(resolution, resolution, -1)
        count = torch.zeros(resolution, resolution)
        count[:, :-1] += (pattern[:, 1:] != pattern[:, :-1]).sum(-1)
        count[:-1, :] += (pattern[1:, :] != pattern[:-1, :]).sum(-1)
        predicted = logits.argmax(-1).view(resolution, resolution)
        changes = torch.zeros(resolution, resolution, dtype=torch.bool)
        changes[:, :-1] |= predicted[:, 1:] != predicted[:, :-1]
        changes[:-1, :] |= predicted[1:, :] != predicted[:-1, :]
        z = count.masked_fill(changes, float("nan")).numpy()
        return z, len(torch.unique(pattern.view(resolution * resolution, -1), dim=0))

    def title(s: int, n: int) -> str:
        kind = "linear regions" if MODELS[run.config.model.kind].perturbed is None else "neuron sign patterns"
        return (
            f"{run.name}: region boundaries at step {s}<br>"
            f"<sup>a slice through three training points: {n} {kind}; white: the predicted class changes</sup>"
        )

    def at(s: int) -> tuple[dict[int, dict[str, np.ndarray]], str]:
        z, n = crossings(s)
        return {0: {"z": z}}, title(s, n)

    z, n = crossings(step)
    bar = {"title": {"text": "neurons<br>changing<br>sign"}, "len": 0.8, "thickness": 14}
    fig = go.Figure(go.Heatmap(x=span, y=span, z=z, colorscale="Viridis", colorbar=bar, zmin=0))
    classes = [int(dataset.true_labels[c]) for c in chosen]
    fig.add_scatter(
        x=[0, 1, 0],
        y=[0, 0, 1],
        mode="markers+text",
        text=[f"{name}: class {c}" for name, c in zip("abc", classes)],
        textposition="top center",
        textfont={"color": "white"},
        marker={"color": "white", "size": 11, "line": {"color": "black", "width": 2}},
        name="training points",
    )
    fig.update_xaxes(title_text="α (towards b)", range=[-0.5, 1.5])
    fig.update_yaxes(title_text="β (towards c)", range=[-0.5, 1.5], scaleanchor="x")
    fig.update_layout(height=620, width=720, showlegend=False)
    decorate(fig, run, step, title(step, n), False)
    data = {"alpha": alpha.ravel(), "beta": beta.ravel(), "neurons_changing_sign": z.ravel()}
    return Plot(fig, data, Scrub(at=at))


PATHWAY_METRICS = {
    "distance": "pathway distance (edit, whole pathway)",
    "jaccard": "Jaccard distance (mean over layers)",
    "consistency": "consistency (consecutive layers)",
    "stability": "stability (same units as the previous checkpoint)",
}


def pathways(run: Run, step: int | None = None) -> Plot:
    """The pathway metrics of training samples over training (top; Spearman's ρ with test accuracy in the
    legend), train and test accuracy (middle), and the pathway distance through layers 1..l as a heatmap
    layer × step (bottom: shallow layers sharing their experts first shows as their rows darkening first)."""
    from grokscope.analysis.pathways import accuracy_at, correlations, series

    step = cursor_step(run, step)
    result = analysis.load(run, "pathways")
    analysed, values_of = series(result)
    steps = run.steps[: len(analysed)][analysed]
    rho = {name: (value, p) for name, value, p, _ in correlations(run, result)}
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06, row_heights=[0.45, 0.25, 0.3])
    data: dict[str, np.ndarray] = {"step": steps}
    for name, values in values_of.items():
        if not np.isfinite(values).any():
            continue  # consistency on models without experts
        data[name] = values
        value, p = rho[name]
        label = f"{PATHWAY_METRICS[name]}; ρ {value:+.2f} (p {p:.1g})" if np.isfinite(value) else PATHWAY_METRICS[name]
        fig.add_scatter(x=steps, y=values, name=label, line={"color": COLOURS[name]}, row=1, col=1)
    for split in ("train", "test"):
        data[f"{split}_acc"] = accuracy_at(run, steps, split)
        fig.add_scatter(
            x=steps, y=data[f"{split}_acc"], name=f"{split} accuracy", line={"color": COLOURS[split]}, row=2, col=1
        )
    layers = result["distance"].shape[1]
    prefix = result["distance"][analysed].T  # (layers, steps)
    for layer in range(layers):
        data[f"distance_through_layer_{layer}"] = prefix[layer]
    fig.add_heatmap(
        x=steps,
        y=[f"layers 0–{layer}" if layer else "layer 0" for layer in range(layers)],
        z=prefix,
        colorscale="Viridis",
        colorbar={"title": "distance", "len": 0.3, "y": 0.15},
        row=3,
        col=1,
    )
    fig.update_yaxes(title_text="pathways", row=1, col=1)
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02], row=2, col=1)
    fig.update_xaxes(title_text="step", row=3, col=1)
    fig.update_layout(height=720)
    title = (
        f"{run.name}: pathways of training samples<br><sup>units: {MODELS[run.config.model.kind].pathway_units}</sup>"
    )
    return Plot(decorate(fig, run, step, title), data, Scrub())


def pathway_grid(run: Run, step: int | None = None, n_samples: int = 8) -> Plot:
    """At the step, the units each of a few training samples (fixed-seed) uses in each layer, with their
    weights: one row per sample and layer, one column per unit (0 where unused). Scrubbed, shared pathways
    show as the samples' rows lining up."""
    from grokscope.analysis.local_complexity import sample
    from grokscope.analysis.pathways import PathwayOptions, pathways_of

    step = cursor_step(run, step)
    rows = sample(run.dataset.train_rows, n_samples, 0)
    model = load_model(run, step)
    inputs = model.task_inputs(run.task, run.dataset)[torch.as_tensor(rows)]
    cached = analysis.cached_result(run, "pathways")  # the options the metrics beside it were computed with
    options = PathwayOptions() if cached is None else PathwayOptions(**json.loads(str(cached["options"])))

    def weights(s: int) -> np.ndarray:
        """(samples · layers, units) the weight of each unit a sample uses in a layer (the widest layer's units)."""
        paths = pathways_of(model if s == step else load_model(run, s), inputs, options)
        n, layers, _ = paths.ids.shape
        z = torch.zeros(n, layers, max(paths.n_units) + 1)  # the last column: "none", dropped
        z.scatter_add_(2, paths.ids, paths.weights.float())  # a unit chosen at several positions: their sum
        return z[..., :-1].reshape(n * layers, -1).numpy()

    z = weights(step)
    layers = z.shape[0] // len(rows)
    labels = [f"input {r} · layer {layer}" for r in rows for layer in range(layers)]
    fig = go.Figure(go.Heatmap(z=z, y=labels, colorscale="Blues", zmin=0, zmax=1, colorbar={"title": "weight"}))
    fig.update_xaxes(title_text="unit (expert or neuron)")
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=max(360, 24 * len(labels) + 160))

    def title(s: int) -> str:
        return f"{run.name}: pathways of {len(rows)} training inputs at step {s}<br><sup>{MODELS[run.config.model.kind].pathway_units}</sup>"

    decorate(fig, run, step, title(step), False)
    data = {
        "row": np.repeat(np.arange(len(labels)), z.shape[1]),
        "unit": np.tile(np.arange(z.shape[1]), len(labels)),
        "weight": z.ravel(),
    }
    return Plot(fig, data, Scrub(at=lambda s: ({0: {"z": weights(s)}}, title(s))))


ON_REQUEST = ("local_complexity", "robustness")  # figures of the analyses computed on request, of the same names


FIGURES = {
    "training_curves": (training_curves, "loss and accuracy (train, test), weight norm; phases shaded"),
    "embedding_spectrum": (embedding_spectrum, "W_E's Fourier power per frequency at the step"),
    "spectrum_over_time": (spectrum_over_time, "W_E's Fourier power per frequency over training"),
    "key_frequency_ablation": (key_frequency_ablation, "the test loss with each frequency removed from the inputs"),
    "neuron_clusters": (neuron_clusters, "clustered neurons per frequency, and their share over training"),
    "progress_measures": (progress_measures, "restricted, excluded and test loss; Gini; weight norm"),
    "neuron_frequency_map": (neuron_frequency_map, "every neuron's share of variance per frequency at the step"),
    "attention": (attention, "per head, the attention of '=' to a over every input, at the step"),
    "neuron_activation": (neuron_activation, "the most clustered neuron's activation and 2D Fourier power at the step"),
    "ipr_histogram": (ipr_histogram, "MLP neurons per IPR at the step (low: memorizing, high: periodic)"),
    "neuron_scores": (neuron_scores, "each neuron's IPR against its activation score or weight magnitude"),
    "ipr_over_time": (ipr_over_time, "neurons per IPR over training"),
    "pruning_sweep": (pruning_sweep, "the four accuracies as the lowest-IPR neurons are pruned, at the step"),
    "local_complexity": (local_complexity, "local complexity over training per point set and per layer (on request)"),
    "robustness": (robustness, "clean and adversarial accuracy over training (on request)"),
    "region_slice": (region_slice, "region boundaries in a 2-D slice through three training points, at the step"),
    "pathways": (pathways, "pathway distance, Jaccard, consistency and stability of training samples over training"),
    "pathway_grid": (pathway_grid, "the units a few training samples use in each layer, at the step"),
}
TIME_AXIS = (
    "training_curves",
    "spectrum_over_time",
    "neuron_clusters",
    "progress_measures",
    "ipr_over_time",
    "local_complexity",
    "robustness",
    "pathways",
)  # with the cursor
AT_LAST_STEP = ("key_frequency_ablation",)  # drawn at the step their analysis holds (the last), whatever the cursor
# the analysis each figure draws from: where it does not apply to a run, neither does the figure (the training
# curves and attention patterns read the run itself)
READS = {
    "embedding_spectrum": "spectra",
    "spectrum_over_time": "spectra",
    "key_frequency_ablation": "key_frequencies",
    "neuron_clusters": "neurons",
    "progress_measures": "progress",
    "neuron_frequency_map": "neurons",
    "neuron_activation": "neurons",
    "ipr_histogram": "memorization",
    "neuron_scores": "memorization",
    "ipr_over_time": "memorization",
    "pruning_sweep": "memorization",
    "local_complexity": "local_complexity",
    "robustness": "robustness",
    "region_slice": "local_complexity",
    "pathways": "pathways",
    "pathway_grid": "pathways",
}


def not_applicable(run: Run) -> dict[str, str]:
    """The figures that do not apply to the run → why not (one line each): those whose analysis (READS) does
    not apply, attention without attention heads, the pruning sweep where the model cannot be pruned, and
    those of analyses computed on request and not computed yet."""
    skipped = analysis.not_applicable(run)
    model = MODELS[run.config.model.kind]
    prune = not_prunable(run)
    out = {}
    for name in FIGURES:
        if READS.get(name) in skipped:
            out[name] = skipped[READS[name]]
        elif name == "attention" and not model.has_attention:
            out[name] = trained_here(run) or f"needs attention heads; model.kind '{run.config.model.kind}' has none"
        elif name == "pruning_sweep" and prune is not None:
            out[name] = prune
        elif name in ON_REQUEST and analysis.cached_result(run, name) is None:
            out[name] = f"is computed on request: grokscope analyze {run.path} --only {name}"
    return out


def standard(run: Run) -> list[str]:
    """The figures that apply to the run, in the order of FIGURES."""
    skipped = not_applicable(run)
    return [name for name in FIGURES if name not in skipped]
