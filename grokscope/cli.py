"""The `grokscope` command. User mistakes print one line `grokscope: error: ...` and exit 2."""

from __future__ import annotations

import argparse
import errno
import json
import sys
import time
from pathlib import Path

from grokscope.config import RunConfig, flatten, known_keys, parse_override
from grokscope.errors import GrokscopeError
from grokscope.presets import PRESETS, load_preset


def attached(argv: list[str]) -> list[str]:
    """argv with a value that starts with "-" after --steps attached to it (`--steps -1,5` → `--steps=-1,5`):
    argparse would read "-1,5" as an option and say only that --steps expects an argument, where the
    command's own check says what is wrong with the steps."""
    out = []
    for arg in argv:
        if out and out[-1] == "--steps" and arg.startswith("-") and arg[1:2].isdigit():
            out[-1] = f"--steps={arg}"
        else:
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if not argv:  # plain `grokscope`: what it can do
        parser.print_help()
        return 0
    args = parser.parse_args(attached(argv))
    try:
        return args.handler(args) or 0
    except GrokscopeError as e:
        print(f"grokscope: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = {
            "train": " (continue with `grokscope train --resume --out RUN`)",
            "sweep": " (the same `grokscope sweep` again resumes it)",
            "demo": " (`grokscope demo` continues it)",
            "analyze": " (analyses finished so far are cached)",
        }
        print(f"grokscope: interrupted; what was saved is kept{hint.get(args.command, '')}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`
        return 0
    except OSError as e:  # permissions, a full or read-only disk, a path through a file, ...
        where = f": {e.filename}" if e.filename else ""
        training = args.command in ("train", "demo", "ticket") and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO)
        how = "`grokscope demo` continues it" if args.command == "demo" else "--resume continues it"
        kept = f" (the run keeps its last durable checkpoint: {how})" if training else ""
        print(f"grokscope: error: {e.strerror or e}{where}{kept}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as e:  # torch's allocators raise RuntimeError (CPU) or a subclass (CUDA)
        if isinstance(e, RuntimeError) and "can't allocate memory" not in str(e) and "out of memory" not in str(e):
            raise
        print("grokscope: error: out of memory (try a smaller task.p or model)", file=sys.stderr)
        return 2


class Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake told in one line (not the whole usage block) and where to look."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="grokscope", description="An interpretability workbench for grokking.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a run with dense checkpoints")
    p.add_argument("--preset", help=f"one of: {', '.join(PRESETS)} (see `grokscope presets`)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. task.p=59 (repeatable)",
    )
    p.add_argument("--steps", type=int, help="training length (sets train.steps)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--out", help="run directory (default checkpoints/<preset>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--force", action="store_true", help="replace an existing run in --out")
    p.add_argument(
        "--commit-every",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how often progress is made crash-safe (default 2 seconds; 0: at every checkpoint)",
    )
    add_threads(p)
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("sweep", help="train every run of a sweep spec (TOML); again: skip done runs, resume the rest")
    p.add_argument("spec", help="the spec: preset, [set], [grid], [[runs]] (see README, Sweeps)")
    p.add_argument("--out", help="the sweep's directory (default checkpoints/<spec file name>)")
    p.add_argument(
        "--executor",
        default="local",
        help="local: on this machine, --jobs at a time; ray: one Ray task per run or pack (pip install 'grokscope[sweep]')",
    )
    p.add_argument("--jobs", type=int, default=1, help="local: runs trained at once, in separate processes (default 1)")
    p.add_argument(
        "--pack",
        type=int,
        default=1,
        metavar="N",
        help="train up to N runs that differ only in seeds, corruption, operation, loss, optim and grokfast settings "
        "together in one process (torch.func.vmap; pays for small models and on GPUs, see README; default 1)",
    )
    p.add_argument(
        "--address", help="ray: the cluster to run on, as ray.init takes it ('auto'; default: a local Ray instance)"
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.set_defaults(handler=cmd_sweep)

    p = sub.add_parser("presets", help="list presets and their settings")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_presets)

    p = sub.add_parser("info", help="summarize a run")
    p.add_argument("run", help="run directory")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_info)

    p = sub.add_parser("analyze", help="compute a run's progress measures over every checkpoint (cached)")
    p.add_argument("run", nargs="?", help="run directory")
    p.add_argument("--only", metavar="NAME,...", help="these analyses only (see --list)")
    p.add_argument("--force", action="store_true", help="recompute even what is cached")
    p.add_argument(
        "--option",
        dest="options",
        action="append",
        default=[],
        metavar="NAME.KEY=VALUE",
        help="an analysis option, e.g. local_complexity.radii=[0.1,1] (repeatable; kept with the result, a "
        "change recomputes it; see --list)",
    )
    add_threads(p)
    p.add_argument("--summary", action="store_true", help="print the headline: key frequencies, phases, shares")
    p.add_argument("--json", action="store_true", help="with --summary: as JSON")
    p.add_argument("--list", action="store_true", help="list the analyses and exit")
    p.set_defaults(handler=cmd_analyze)

    p = sub.add_parser("probe", help="ablate heads, neurons or frequencies at a step and report the damage")
    p.add_argument("run", help="run directory")
    p.add_argument("--step", type=int, help="a saved step (default: the last)")
    p.add_argument("--heads", metavar="H,...", help="attention heads to zero-ablate")
    p.add_argument("--neurons", metavar="N,...", help="neurons of the first MLP layer to zero-ablate")
    p.add_argument(
        "--frequencies", metavar="K,...", help="Fourier frequencies to remove from the inputs (over the tokens)"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_probe)

    p = sub.add_parser("prune", help="prune MLP neurons by a score and report the four accuracies before and after")
    p.add_argument("run", help="run directory")
    p.add_argument("--step", type=int, help="a saved step (default: the last)")
    p.add_argument("--by", required=True, choices=["ipr", "activation", "magnitude"], help="the neuron score")
    order = p.add_mutually_exclusive_group()
    order.add_argument("--lowest", action="store_true", help="prune the lowest scores first (the default)")
    order.add_argument("--highest", action="store_true", help="prune the highest scores first")
    amount = p.add_mutually_exclusive_group(required=True)
    amount.add_argument("--fraction", type=float, help="the fraction of neurons to prune, in [0, 1]")
    amount.add_argument("--count", type=int, help="the number of neurons to prune")
    amount.add_argument("--sweep", action="store_true", help="prune every 2.5%% of the neurons in turn")
    p.add_argument("--out", help="directory to write into (default RUN/pruned/<what>-<by>-<order>@<step>)")
    p.add_argument("--format", default="pdf", help="with --sweep, its figure: pdf, svg or png (default pdf)")
    p.add_argument("--json", action="store_true", help="print the report as JSON (instead of text)")
    p.set_defaults(handler=cmd_prune)

    p = sub.add_parser("ticket", help="train a grokking ticket: a run's magnitude mask applied to its initial weights")
    p.add_argument("run", help="the dense run the mask is taken from")
    p.add_argument("--step", type=int, help="the step the mask is taken at, once generalized (default: the last)")
    p.add_argument("--keep", type=float, required=True, help="the fraction of weights KEPT, in (0, 1]")
    p.add_argument(
        "--control",
        choices=["memorization", "random"],
        help="memorization: the mask taken at a memorization-phase step; random: a random mask, same sparsity",
    )
    p.add_argument("--memorization-step", type=int, help="with --control memorization (default: when train acc ≥ 0.99)")
    p.add_argument("--steps", type=int, help="training length (default: the run's)")
    p.add_argument("--name", help="the new run's name (default <run>-<kind>-keep<F>@<step>)")
    p.add_argument("--out", help="the new run's directory (default: beside RUN, named --name)")
    p.add_argument("--force", action="store_true", help="replace an existing run in --out")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.set_defaults(handler=cmd_ticket)

    p = sub.add_parser("import", help="a series of transformer state dicts (TransformerLens names) as a run")
    p.add_argument(
        "sources", nargs="+", metavar="SOURCE", help="checkpoint files, or directories of them, one per step"
    )
    p.add_argument("--out", required=True, help="the run directory to write")
    p.add_argument(
        "--train-rows",
        help="the training inputs: a JSON list or .npy of grid rows a·p + b (default: the files' own; with neither, the run has no split)",
    )
    p.add_argument("--steps", metavar="S,...", help="each file's training step (default: the last number in its name)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="e.g. task.op=sub")
    p.add_argument("--force", action="store_true", help="replace an existing run in --out")
    p.set_defaults(handler=cmd_import)

    p = sub.add_parser("export", help="one checkpoint of a run for other tools (safetensors, TransformerLens 3 and 4)")
    p.add_argument("run", help="run directory")
    p.add_argument("--step", type=int, help="the saved step (default: the last)")
    p.add_argument("--to", required=True, help="safetensors, tl3 or tl4")
    p.add_argument("--out", required=True, help="directory to write into")
    p.set_defaults(handler=cmd_export)

    p = sub.add_parser(
        "import-hf", help="a series of Hugging Face MoE checkpoints (OLMoE, Mixtral) as a run, with its pathways"
    )
    p.add_argument("dirs", nargs="+", metavar="DIR", help="checkpoint directories (save_pretrained), one per step")
    p.add_argument("--out", required=True, help="the run directory to write")
    p.add_argument(
        "--data", required=True, help='training samples: jsonl, {"input_ids": [...]} or {"text": ...} a line'
    )
    p.add_argument("--test", help="held-out samples, the same format (test loss and accuracy; default none)")
    p.add_argument("--steps", metavar="S,...", help="each DIR's training step (default: from the names, e.g. step1000)")
    p.add_argument("--seq-len", type=int, help="tokens per sample (default: the shortest sample's length)")
    p.add_argument(
        "--dtype", default="float32", help="read the weights as float32 (default) or bfloat16 (half the memory)"
    )
    p.add_argument("--force", action="store_true", help="replace an existing run in --out")
    p.set_defaults(handler=cmd_import_hf)

    p = sub.add_parser("verify", help="check every checkpoint of a run against its checksum, and its other files")
    p.add_argument("run", help="run directory")
    p.set_defaults(handler=cmd_verify)

    p = sub.add_parser(
        "figures",
        help="write the standard figures of a run, or a sweep's phase diagrams, for papers, with their data as CSV",
    )
    p.add_argument("run", help="run directory, or a sweep's directory")
    p.add_argument("--out", required=True, help="directory to write into")
    p.add_argument("--format", default="pdf", help="pdf, svg or png (default pdf)")
    p.add_argument("--step", type=int, help="the step shown or marked (default: the last saved)")
    p.add_argument("--only", metavar="NAME,...", help="these figures only (default: all of them)")
    p.add_argument("--x", help="a sweep: the diagram's x key (default: the first key it varies)")
    p.add_argument("--y", help="a sweep: its y key (default: the second key it varies, if any)")
    p.add_argument(
        "--fix",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a sweep: only runs with this value (repeatable)",
    )
    p.set_defaults(handler=cmd_figures)

    p = sub.add_parser("app", help="start the workbench app on localhost")
    p.add_argument("runs_dir", nargs="?", default="checkpoints", help="directory of runs (default ./checkpoints)")
    p.add_argument("--port", type=int, default=8501, help="the port (default 8501; taken: the next free one)")
    p.add_argument("--host", default="localhost", help="the address to serve on (default localhost only)")
    p.add_argument("--run", help="the run to show first (a name inside RUNS_DIR)")
    p.set_defaults(handler=cmd_app)

    p = sub.add_parser("demo", help="train the demo run on CPU into checkpoints/demo and summarize it")
    p.add_argument("--no-app", action="store_true", help="do not open the app afterwards")
    p.add_argument("--force", action="store_true", help="retrain even if checkpoints/demo is complete")
    p.set_defaults(handler=cmd_demo)
    return parser


def config_from_args(args: argparse.Namespace) -> RunConfig:
    if not args.preset:
        raise GrokscopeError("train needs --preset NAME (or --resume --out RUN)")
    overrides = dict(parse_override(text) for text in args.overrides)
    if args.steps is not None:
        overrides["train.steps"] = args.steps
    return load_preset(args.preset).with_overrides(overrides)


def add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=int,
        help="CPU threads for torch (default: one per core; on a machine shared with other jobs, 1 can be "
        "several times faster). A run records its count and --resume uses it again",
    )


def use_threads(args: argparse.Namespace) -> None:
    if args.threads is None:
        return
    if args.threads < 1:
        raise GrokscopeError(f"--threads must be at least 1; got {args.threads}")
    if getattr(args, "resume", False):
        raise GrokscopeError("--resume uses the run's own thread count (for bit-exact results): drop --threads")
    import torch

    torch.set_num_threads(args.threads)


def cmd_train(args: argparse.Namespace) -> int:
    from grokscope.train import train

    use_threads(args)

    if args.resume:
        if args.preset or args.overrides or args.steps is not None or args.force:
            raise GrokscopeError(
                "--resume continues a run with its own config: drop --preset, --set, --steps and --force"
            )
        config = None
    else:
        config = config_from_args(args)
    start = time.perf_counter()
    timing = {} if args.commit_every is None else {"commit_every_s": args.commit_every}
    out = train(config, args.out, device=args.device, resume=args.resume, force=args.force, **timing)
    report(out, time.perf_counter() - start)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from grokscope.store import open_run
    from grokscope.sweep import sweep
    from grokscope.train import RUNS_DIR

    out = Path(args.out) if args.out else RUNS_DIR / Path(args.spec).stem
    runs = sweep(args.spec, out, args.jobs, args.executor, args.address, args.pack, device=args.device)
    print(f"sweep: {out} ({len(runs)} runs)")
    for path in runs:
        summary = open_run(path).summary()
        grok = "not grokked" if summary["grok_step"] is None else f"grokked at step {summary['grok_step']}"
        print(f"  {summary['name']}: test accuracy {number(summary['final'].get('test_acc'), '.1%')}, {grok}")
    return 0


def report(out: Path, seconds: float) -> None:
    from grokscope.store import open_run

    run = open_run(out)
    summary, level = run.summary(), run.task.grok_accuracy
    final = summary["final"]
    grok = summary["grok_step"]
    print(f"run: {out}")
    if not run.has_split:  # an imported run resumed: it is complete, and has metrics on all inputs only
        print(
            f"{summary['n_checkpoints']} checkpoints, steps {summary['first_step']}..{summary['last_step']}; no split: "
            f"final loss {number(final['all_loss'], '.3g')} acc {number(final['all_acc'], '.1%')} on all inputs"
        )
        return
    print(
        f"{summary['n_checkpoints']} checkpoints, steps {summary['first_step']}..{summary['last_step']}, {seconds:.0f} s; "
        f"final train loss {number(final['train_loss'], '.3g')} acc {number(final['train_acc'], '.1%')}, "
        f"test loss {number(final['test_loss'], '.3g')} acc {number(final['test_acc'], '.1%')}"
    )
    print(
        f"grokked at step {grok} (test accuracy >= {level:.0%})"
        if grok is not None
        else f"did not grok (test accuracy stayed below {level:.0%})"
    )
    warn_diverged(summary)


def number(value: float | None, spec: str) -> str:
    """A metric for people; None (not finite, or not measured) as n/a."""
    return "n/a" if value is None else format(value, spec)


def warn_diverged(summary: dict) -> None:
    if summary["diverged_step"] is not None:
        print(
            f"grokscope: warning: training diverged at step {summary['diverged_step']} (the training loss is not "
            "finite from there on): try a smaller optim.lr",
            file=sys.stderr,
        )


def cmd_presets(args: argparse.Namespace) -> int:
    listing = {
        name: {"description": text, "config": load_preset(name).to_dict()} for name, (text, _) in PRESETS.items()
    }
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    defaults = flatten(RunConfig().to_dict())
    for name, (text, overrides) in PRESETS.items():
        print(f"{name}: {text}")
        for key, value in overrides.items():
            print(f"    {key} = {json.dumps(value)}")
    print("\ndefaults (every key `--set` takes):")
    for key in known_keys():
        if key not in ("name", "preset", "schema_version"):
            print(f"    {key} = {json.dumps(defaults[key])}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from grokscope.store import layout, open_run

    run = open_run(args.run)
    summary = run.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    if summary["complete"]:
        status = "complete"
    elif (run.path / layout.COMPLETE).is_file():
        status = f"marked complete, but {layout.FINAL} is missing or corrupt (`grokscope verify` checks the rest)"
    elif summary["n_checkpoints"]:
        status = f"incomplete (saved up to step {summary['last_step']})"
    else:
        status = "no checkpoint saved yet (training has not committed its first)"
    print(f"{summary['name']}: {status}")
    if summary["n_checkpoints"]:
        print(f"  checkpoints: {summary['n_checkpoints']} (steps {summary['first_step']}..{summary['last_step']})")
    if not summary["has_split"]:
        print("  no split (imported without one): metrics on all inputs; no grok step")
    else:
        print(f"  grok step: {'not grokked' if summary['grok_step'] is None else summary['grok_step']}")
    for key, value in summary["final"].items():
        print(f"  final {key}: {number(value, '.6g')}")
    print("  config:")
    for key, value in flatten(summary["config"]).items():
        print(f"    {key} = {json.dumps(value)}")
    warn_diverged(summary)
    return 0


def int_list(text: str | None, what: str) -> list[int]:
    if not text:
        return []
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise GrokscopeError(f"{what} must be comma-separated integers; got '{text}'") from None


def cmd_analyze(args: argparse.Namespace) -> int:
    from grokscope import analysis
    from grokscope.store import open_run

    use_threads(args)

    if args.list:
        if args.run or args.only or args.force or args.summary or args.json or args.options:
            raise GrokscopeError("--list only lists the analyses: drop the run and the other options")
        print(analysis.describe())
        return 0
    if not args.run:
        raise GrokscopeError("analyze needs a run directory (or --list)")
    if args.json and not args.summary:
        raise GrokscopeError("--json goes with --summary")
    run = open_run(args.run)
    only = None if args.only is None else [n.strip() for n in args.only.split(",") if n.strip()]
    if only == []:
        raise GrokscopeError("--only needs analysis names (see grokscope analyze --list)")
    options: dict[str, dict] = {}
    for text in args.options:
        name, dot, option = text.partition("=")[0].partition(".")
        if "=" not in text or not dot or not name or not option:
            raise GrokscopeError(f"--option expects NAME.KEY=VALUE (e.g. local_complexity.radii=[0.1,1]); got '{text}'")
        options.setdefault(name, {})[option.strip()] = parse_override(text)[1]
    computed = analysis.analyze(run, only=only, force=args.force, progress=not args.json, options=options)
    if args.summary:
        summary = analysis.summary(run)
        if args.json:
            print(json.dumps(summary, indent=2))
            return 0
        print_summary(summary)
        return 0
    skipped = analysis.not_applicable(run) if only is None else {}
    print(f"{run.path}: {len(run.steps)} checkpoints (steps {run.steps[0]}..{run.steps[-1]})")
    print(f"  computed: {', '.join(computed) if computed else 'nothing (all cached and current)'}")
    for name, reason in skipped.items():
        print(f"  not applicable: {name} ({reason})")
    asked = [name for name in analysis.applicable(run) if name not in analysis.by_default(run)]
    if asked:
        print(f"  on request (--only {','.join(asked)}): {', '.join(asked)}")
    print(f"  cached in {run.path / analysis.cache.ANALYSIS_DIR}")
    return 0


def print_summary(summary: dict) -> None:
    if summary["key_frequencies"] is None:
        print(f"at step {summary['step']}:")
        print(f"  {summary['not_applicable']}")
    else:
        print(f"at step {summary['step']} ({summary['coordinates']}):")
        print(f"  key frequencies: {summary['key_frequencies']} (rule: {summary['key_frequency_rule']})")
        removing = "; ".join(
            f"{k}: loss {v['test_loss']:.3g}, accuracy {v['test_acc']:.1%}" for k, v in summary["removing_each"].items()
        )
        on = summary["ablation_inputs"]
        print(f"  {on} loss {summary['test_loss']:.3g}; with one of them removed from the inputs: {removing or '-'}")
        print("  every rule's set, and the restricted loss with it:")
        for rule, found in summary["key_frequency_rules"].items():
            used = "  (used)" if rule == summary["key_frequency_rule"] else ""
            print(f"    {rule:10} {found['frequencies']!s:24} {found['restricted_loss']:.3g}{used}")
        share = summary["key_power_share"]
        print(
            f"  share of W_E's non-constant Fourier power in them: {'n/a' if share is None else format(share, '.1%')}"
        )
        print(f"  share of neurons clustered to one frequency: {summary['clustered_neuron_share']:.1%}")
    if summary["phases"] is None:
        print(f"  phases: not applicable (the analysis {summary['phases_not_applicable'] or 'is not computed yet'})")
        return
    bounds = ", ".join(f"{k} {'not reached' if v is None else v}" for k, v in summary["phases"].items())
    print(f"  phase boundaries (steps; rule: {summary['phase_rule']}): {bounds}")


def cmd_probe(args: argparse.Namespace) -> int:
    from grokscope.analysis.probes import ablate, ablation_table
    from grokscope.models import load_model
    from grokscope.store import open_run

    run = open_run(args.run)
    if not run.n_checkpoints:
        raise GrokscopeError(f"{run.path}: no checkpoint saved yet")
    step = int(run.steps[-1]) if args.step is None else args.step
    result = ablate(
        load_model(run, step),
        run.config,
        run.dataset,
        heads=int_list(args.heads, "--heads"),
        neurons=int_list(args.neurons, "--neurons"),
        frequencies=int_list(args.frequencies, "--frequencies"),
    )
    if args.json:
        print(json.dumps({"step": step, **result}, indent=2))
    else:
        print(f"{run.name} at step {step}:")
        print(ablation_table(result))
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from grokscope import figures
    from grokscope.analysis.pruning import SPLITS, Pruner, count_of, default_out, save_pruned
    from grokscope.store import layout, open_run

    if args.fraction is not None and not 0 <= args.fraction <= 1:  # before any work
        raise GrokscopeError(f"--fraction must be in [0, 1]; got {args.fraction}")
    if not args.sweep and args.format != "pdf":
        raise GrokscopeError("--format is for --sweep's figure; a pruned model is written as safetensors")
    if args.sweep and args.format not in figures.FORMATS:
        raise GrokscopeError(f"unknown format '{args.format}' (use {', '.join(figures.FORMATS)})")
    pruner = Pruner(open_run(args.run), args.step, args.by, lowest=not args.highest)
    order = pruner.settings["order"]
    if args.sweep:
        out = Path(args.out or default_out(pruner, "sweep"))
        layout.claim_outputs(out, ["report.json", "pruning_sweep.csv", f"pruning_sweep.{args.format}"])
        table = pruner.sweep()
        report = pruner.sweep_report(table)
        layout.write_json(out / "report.json", report)
        try:
            written = figures.export(
                {"pruning_sweep": figures.builders.pruning_curves(pruner, table)}, out, args.format, progress=True
            )
        except GrokscopeError as e:  # no browser for the image: the table and CSV are still useful
            print(f"grokscope: {e}", file=sys.stderr)
            written = [out / "pruning_sweep.csv"]
        if args.json:
            print(json.dumps(report, indent=2))
            return 0
        print(f"{pruner.run.name} at step {pruner.step}, pruning by {args.by}, {order} first:")
        print(sweep_table(table, SPLITS))
        for path in [out / "report.json", *written]:
            print(path)
        return 0
    n = count_of(pruner.n_neurons, args.fraction, args.count)
    model, report = pruner.prune(n)
    out = save_pruned(args.out or default_out(pruner, f"{n}"), model, pruner.config, report, pruner.settings)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"{pruner.run.name} at step {pruner.step}: pruned {n} of {pruner.n_neurons} neurons by {args.by}, {order} first"
    )
    for split in SPLITS:
        before, after = report["before"][split], report["after"][split]
        if before is not None:
            print(f"  {split:<20} {before:7.1%} → {after:7.1%}")
    print(out)
    return 0


def cmd_ticket(args: argparse.Namespace) -> int:
    from grokscope.analysis.tickets import ticket
    from grokscope.store import open_run

    start = time.perf_counter()
    out = ticket(
        open_run(args.run),
        args.step,
        args.keep,
        control=args.control,
        mask_step=args.memorization_step,
        name=args.name,
        out=args.out,
        steps=args.steps,
        force=args.force,
        device=args.device,
    )
    report(out, time.perf_counter() - start)
    return 0


def sweep_table(table: dict, splits: tuple[str, ...]) -> str:
    """A pruning sweep as aligned text: fraction pruned, then the accuracies."""
    lines = ["fraction  " + "  ".join(f"{s:>18}" for s in splits)]
    for i, fraction in enumerate(table["fraction"]):
        cells = ("—" if table[s][i] != table[s][i] else f"{table[s][i]:.1%}" for s in splits)  # NaN: empty split
        lines.append(f"{fraction:8.3f}  " + "  ".join(f"{c:>18}" for c in cells))
    return "\n".join(lines)


def steps_list(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise GrokscopeError(f"--steps expects integers separated by commas; got '{text}'") from None


def cmd_import(args: argparse.Namespace) -> int:
    from grokscope.importers.state_dicts import import_state_dicts

    overrides = dict(parse_override(text) for text in args.overrides)
    out = import_state_dicts(
        args.sources, args.out, args.train_rows, steps=steps_list(args.steps), overrides=overrides, force=args.force
    )
    print(f"wrote {out}: `grokscope analyze {out}` computes its progress measures")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from grokscope.importers.export import export
    from grokscope.store import open_run

    run = open_run(args.run)
    if not run.n_checkpoints:
        raise GrokscopeError(f"{run.path}: no checkpoint saved yet")
    step = int(run.steps[-1]) if args.step is None else args.step
    print(f"wrote {export(run, step, args.to, args.out)}")
    return 0


def cmd_import_hf(args: argparse.Namespace) -> int:
    from grokscope.importers.hf import import_hf

    steps = steps_list(args.steps)
    if args.seq_len is not None and args.seq_len < 2:
        raise GrokscopeError(f"--seq-len must be at least 2 (a next token to predict); got {args.seq_len}")
    out = import_hf(
        args.dirs,
        args.out,
        args.data,
        test=args.test,
        steps=steps,
        seq_len=args.seq_len,
        dtype=args.dtype,
        force=args.force,
    )
    print(f"wrote {out}: open it with `grokscope app {out.parent} --run {out.name}`")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from grokscope.models import check_shapes
    from grokscope.store import open_run
    from grokscope.store.verify import verify

    run = open_run(args.run)
    problems = verify(run)
    try:
        check_shapes(run)
    except GrokscopeError as e:
        problems.append(str(e))
    for problem in problems:
        print(f"grokscope: {problem}", file=sys.stderr)
    corrupt = [p for p in problems if not p.startswith("no checksums recorded")]
    status = "complete" if run.complete else f"{run.n_checkpoints} checkpoints so far"
    if corrupt:
        verdict = "problems found"
    elif run.checkpoint_dirs is not None:
        verdict = f"sound ({run.n_checkpoints} checkpoint directories in place, the first one read)"
    elif run.checksums is None:
        verdict = "no problem found in its other files; checkpoints not checked (no checksums)"
    else:
        verdict = f"sound ({run.n_checkpoints} checkpoints match their checksums)"
    print(f"{run.path}: {verdict} ({status})")
    return 1 if corrupt else 0


def cmd_figures(args: argparse.Namespace) -> int:
    from grokscope import analysis, figures
    from grokscope.store import open_run
    from grokscope.store.sweep import is_sweep

    if args.format not in figures.FORMATS:
        raise GrokscopeError(f"unknown format '{args.format}' (use {', '.join(figures.FORMATS)})")
    if is_sweep(args.run):
        return sweep_figures(args)
    if args.x or args.y or args.fix:
        raise GrokscopeError(f"--x, --y and --fix are for a sweep's directory; {args.run} is not one")
    run = open_run(args.run)
    skipped = figures.builders.not_applicable(run)
    names = figures.standard(run) if args.only is None else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in figures.FIGURES]
    if unknown or not names:
        raise GrokscopeError(
            f"unknown figure '{unknown[0] if unknown else args.only}' (known: {', '.join(figures.FIGURES)})"
        )
    for name in names:
        if name in skipped:
            raise GrokscopeError(f"the figure {name} does not apply to {run.name}: it {skipped[name]}")
    if args.only is None:
        for name, reason in skipped.items():
            print(f"grokscope: not applicable: {name} ({reason})", file=sys.stderr)
    analysis.analyze(run)  # what the figures read, computed once up front (with a progress bar)
    plots = {name: figures.FIGURES[name][0](run, args.step) for name in names}
    for path in figures.export(plots, args.out, args.format, progress=True):
        print(path)
    return 0


def sweep_figures(args: argparse.Namespace) -> int:
    """A sweep's phase diagrams, one per colouring (file sweep_<colouring>), over --x and --y."""
    from grokscope import figures
    from grokscope.analysis.sweeps import COLOURINGS, sweep_table, varied_keys
    from grokscope.config import parse_override
    from grokscope.store.sweep import open_sweep

    given = [option for option, value in (("--step", args.step), ("--only", args.only)) if value is not None]
    if given:
        raise GrokscopeError(f"{given[0]} is for a run; a sweep's diagrams are all written, at each run's last step")
    sweep = open_sweep(args.run)
    table = sweep_table(sweep)
    keys = varied_keys(table)
    if any("=" not in text for text in args.fix):
        raise GrokscopeError(f"--fix expects KEY=VALUE, got '{next(t for t in args.fix if '=' not in t)}'")
    fixed = {key: tuple(v) if isinstance(v, list) else v for key, v in map(parse_override, args.fix)}  # as configs
    free = [k for k in keys if k not in fixed]
    if args.x and not args.y:  # y: the first other free key, if any
        x, y = args.x, next((k for k in free if k != args.x), None)
    elif args.y:  # x: the first other free key; --y alone on the only free key: one row of it
        x = args.x or next((k for k in free if k != args.y), args.y)
        y = None if args.x is None and x == args.y else args.y
    else:
        x, y = (free + [None, None])[:2]
    if x is None:
        raise GrokscopeError(f"the sweep {sweep.path.name} varies no key that is not fixed: it has no phase diagram")
    plots = {
        f"sweep_{colouring.replace(' ', '_')}": figures.builders.sweep_diagram(sweep, x, y, colouring, fixed, table)
        for colouring in COLOURINGS
    }
    for path in figures.export(plots, args.out, args.format, progress=True):
        print(path)
    return 0


APP = Path(__file__).resolve().parent.parent / "app" / "app.py"


def cmd_app(args: argparse.Namespace) -> int:
    return launch_app(Path(args.runs_dir), args.port, args.run, host=args.host)


def free_port(host: str, port: int, tries: int = 20) -> int:
    """`port` if nothing listens on it, else the next free one (GrokscopeError after `tries`)."""
    import socket

    for candidate in range(port, min(port + tries, 65536)):
        with socket.socket() as s:
            try:
                s.bind((host, candidate))
                return candidate
            except OSError:
                continue
    raise GrokscopeError(f"ports {port}..{port + tries - 1} are all in use: choose one with --port")


def launch_app(
    runs_dir: Path, port: int, run: str | None = None, open_browser: bool = False, host: str = "localhost"
) -> int:
    """Serve the app on `host` (localhost unless asked) until interrupted; open_browser: open it in the
    user's browser once it answers (where there is one)."""
    import os
    import signal
    import subprocess
    import urllib.request
    import webbrowser

    from grokscope.store import layout

    if not APP.is_file():
        raise GrokscopeError(
            f"the app is not in this installation ({APP} missing): install from a checkout (pip install -e .)"
        )
    if not runs_dir.is_dir():
        raise GrokscopeError(f"{runs_dir}: no such directory of runs")
    if not 0 < port < 65536:
        raise GrokscopeError(f"--port must be between 1 and 65535; got {port}")
    if run is not None and (Path(run).name != run or not layout.is_run(runs_dir / run)):
        raise GrokscopeError(f"--run: no run '{run}' inside {runs_dir}")
    if host not in ("localhost", "127.0.0.1", "::1"):
        print(
            f"grokscope app: warning: serving on {host}: anyone who can reach it can read these runs", file=sys.stderr
        )
    chosen = free_port(host, port)
    if chosen != port:
        print(f"grokscope app: port {port} is in use; using {chosen}", file=sys.stderr)
    port = chosen
    env = dict(os.environ, GROKSCOPE_RUNS_DIR=str(runs_dir.resolve()), **({"GROKSCOPE_RUN": run} if run else {}))
    if host not in ("0.0.0.0", "::"):  # app.py refuses sessions under any other Host name (DNS rebinding)
        env["GROKSCOPE_HOSTS"] = ",".join(sorted({"localhost", "127.0.0.1", "::1", host.lower()}))
    command = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", host]
    command += ["--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    command += ["--client.toolbarMode", "minimal"]  # no Deploy button, no developer menu
    url = f"http://{'localhost' if host in ('localhost', '127.0.0.1', '::1') else host}:{port}"
    print(f"grokscope app: {url} (runs in {runs_dir.resolve()}; Ctrl-C stops it)", flush=True)
    server = subprocess.Popen(command, env=env)
    # a plain `kill` of this command must stop the server too: SIGTERM unwinds through `finally`
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if open_browser:
            for _ in range(60):
                try:
                    urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
                    webbrowser.open(url)
                    break
                except OSError:
                    if server.poll() is not None:
                        break
                    time.sleep(0.5)
        return server.wait()
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=30)


def cmd_demo(args: argparse.Namespace) -> int:
    from grokscope.store import layout, open_run
    from grokscope.train import RUNS_DIR, train

    out = RUNS_DIR / "demo"
    start = time.perf_counter()
    if layout.is_run(out) and open_run(out).complete and not args.force:
        print(f"the demo run is already trained in {out} (retrain with --force)")
    elif layout.is_run(out) and not args.force:
        print(f"continuing the interrupted demo run in {out}")
        train(out=out, resume=True)
    else:
        print(f"training the demo preset ({PRESETS['demo'][0]}) into {out}")
        train(load_preset("demo"), out, force=args.force)
    report(out, time.perf_counter() - start)
    from grokscope import analysis

    run = open_run(out)
    start = time.perf_counter()
    analysis.analyze(run)
    print(f"analysed every checkpoint in {time.perf_counter() - start:.0f} s (cached in {out / 'analysis'}); ", end="")
    print_summary(analysis.summary(run))
    if not args.no_app:
        return launch_app(RUNS_DIR, 8501, "demo", open_browser=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
