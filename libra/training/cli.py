"""`libra-model`: train and evaluate the emotion model (torch, under the `train` extra).

    python -m libra.training.cli train --quick --name smoke
    python -m libra.training.cli train --name drkf-full --epochs 8
    python -m libra.training.cli train --model late-fusion --name late-fusion
    python -m libra.training.cli train --only audio --model late-fusion --name audio-only
    python -m libra.training.cli eval artifacts/runs/drkf-full --split test
    python -m libra.training.cli eval --paired ravdess-av --seeds 0,1,2,3,4
    python -m libra.training.cli eval --paired mosi --seeds 0,1,2,3,4
    python -m libra.training.cli export artifacts/runs/drkf-full --bundle
    python -m libra.training.cli build
    python -m libra.training.cli eval-onnx artifacts/onnx
    python -m libra.training.cli calibrate artifacts/onnx --check int8
    python -m libra.training.cli text-transfer --sweep --base artifacts/drkf-725d9702258a.pt
    python -m libra.training.cli train-text --base artifacts/drkf-725d9702258a.pt
"""

from __future__ import annotations

import functools
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

# Light names only up here: `libra-model --help` must work where torch is not installed
# (a serving install); each command imports what it runs, after `needs` said what is missing.
from libra.training.names import MODALITY_SOURCE, PAIRED_SETS, SOURCE_MODALITY, SOURCES, VARIANTS

PAIRED_MODELS = ("unimodal", "late-fusion", "early-fusion", "ours", "ours-no-orl", "ours-no-ed",
                 "ours-subset-specific")

_SPLITS = ("train", "val", "test")


def format_table(result: dict[str, Any]) -> str:
    """One line per source, then per pseudo-paired modality subset: n, accuracy, F1s."""
    lines = [f"{'':28} {'n':>6} {'acc':>7} {'w-F1':>7} {'m-F1':>7}"]

    def row(name: str, m: dict[str, Any]) -> str:
        return (f"{name:28} {m['n']:>6} {m['accuracy']:>7.4f} {m['weighted_f1']:>7.4f} "
                f"{m['macro_f1']:>7.4f}")

    for source, m in result["sources"].items():
        lines.append(row(f"{source} ({SOURCE_MODALITY[source]})", m))
    subsets = result.get("subsets") or {}
    if subsets:
        lines.append("label-matched pseudo-pairs (not real paired clips):")
        lines.extend(row(f"  {name}", m) for name, m in subsets.items())
    return "\n".join(lines)


_TORCH_SIDE = ("torch", "onnx", "onnxscript", "transformers", "onnxruntime", "av", "cv2",
               "scipy", "soundfile", "tokenizers")
"""What training, export and build import (the `train` extra, plus ONNX Runtime from `cpu` or
`gpu`, which quantizing and checking the exports use)."""
_ONNX_SIDE = ("onnxruntime", "av", "cv2", "scipy", "soundfile", "tokenizers")
_F = TypeVar("_F", bound=Callable[..., Any])


def needs(modules: tuple[str, ...], extras: str) -> Callable[[_F], _F]:
    """Before the command runs (not before its --help), fail with the pip command that installs
    what it imports, rather than a ModuleNotFoundError from deep inside."""

    def wrap(command: _F) -> _F:
        @functools.wraps(command)
        def checked(*args: Any, **kwargs: Any) -> Any:
            missing = [m for m in modules if importlib.util.find_spec(m) is None]
            if missing:
                name = click.get_current_context().info_name
                raise click.ClickException(
                    f"libra-model {name} needs {', '.join(missing)}, not installed here: "
                    f"pip install 'libra-serve[{extras}]'. Serving needs none of this, only the "
                    f"ONNX files (docs/benchmarks.md, 'Installs').")
            return command(*args, **kwargs)

        return checked  # type: ignore[return-value]

    return wrap


@click.group(name="libra-model", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="libra-serve", prog_name="libra-model")
def main() -> None:
    """Train and evaluate Libra's emotion model on the labeled data in ../shared/data, and build
    the ONNX files serving runs (torch: the `train` extra)."""


@main.command()
@click.option("--name", default=None, help="Run folder name under --out-dir [default: the model, "
              "plus -<modality> with --only, plus -quick with --quick].")
@click.option("--model", "model_kind", type=click.Choice(["drkf", "late-fusion"]), default="drkf",
              show_default=True, help="DRKF, or the late-fusion baseline (same encoders, one "
              "linear head per modality, probabilities averaged).")
@click.option("--only", type=click.Choice(list(MODALITY_SOURCE)), default=None,
              help="Unimodal: train on the one source carrying this modality.")
@click.option("--source", "sources", type=click.Choice(list(SOURCES)), multiple=True,
              help="Sources to train on (repeatable) [default: all].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--epochs", type=int, default=None, help="[default: 8; 1 with --quick]")
@click.option("--batch-size", type=int, default=96, show_default=True,
              help="Rows per batch, split equally between the sources.")
@click.option("--steps-per-epoch", type=int, default=None,
              help="[default: one pass over the largest training source]")
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--weight-decay", type=float, default=0.01, show_default=True)
@click.option("--w-unimodal", type=float, default=0.5, show_default=True)
@click.option("--w-contrastive", type=float, default=0.1, show_default=True)
@click.option("--w-separation", type=float, default=0.1, show_default=True)
@click.option("--temperature", type=float, default=0.1, show_default=True,
              help="InfoNCE temperature.")
@click.option("--dropout", type=float, default=0.1, show_default=True,
              help="Dropout in the model's heads and projections (ModelSpec.dropout).")
@click.option("--pair-fraction", type=float, default=0.25, show_default=True,
              help="Rows joined with label-matched examples of the other sources.")
@click.option("--no-augment", is_flag=True, help="No face flips/shifts or audio masks.")
@click.option("--bf16", is_flag=True, help="bfloat16 autocast on the CPU (faster, AVX512-BF16).")
@click.option("--max-train-examples", type=int, default=None,
              help="Cap per source on training examples (a fixed random subset).")
@click.option("--max-eval-examples", type=int, default=None,
              help="Cap per source on val/test examples.")
@click.option("--select-metric", type=click.Choice(["weighted_f1", "macro_f1", "accuracy"]),
              default="weighted_f1", show_default=True,
              help="Val metric (mean over sources) that picks the epoch.")
@click.option("--quick", is_flag=True, help="Smoke run: 300 train / 200 eval examples per "
              "source, 1 epoch (explicit options win).")
@click.option("--out-dir", type=click.Path(path_type=Path), default=None,
              help="[default: artifacts/runs]")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="[default: $LIBRA_DATA_DIR, else ../shared/data]")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="[default: artifacts/cache under $LIBRA_HOME, the checkout or ./]")
@click.option("--threads", type=int, default=None, help="torch threads [default: one per core]")
@click.option("--overwrite", is_flag=True, help="Replace an existing run of the same name.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@needs(_TORCH_SIDE, "train,cpu")
def train(**opts: Any) -> None:
    """Train a model; writes config.json, metrics.json and model.pt to the run folder."""
    from libra.training.drkf import LossWeights, ModelSpec
    from libra.training.train import QUICK, TrainConfig
    from libra.training.train import train as run_training

    if opts["only"] and opts["sources"]:
        raise click.UsageError("--only and --source both choose the sources; give one of them")
    sources = ((MODALITY_SOURCE[opts["only"]],) if opts["only"]
               else tuple(opts["sources"]) or SOURCES)
    name = opts["name"] or "-".join(
        [opts["model_kind"]] + ([opts["only"]] if opts["only"] else [])
        + (["quick"] if opts["quick"] else []))
    fields: dict[str, Any] = {
        "name": name, "model": opts["model_kind"], "sources": sources, "seed": opts["seed"],
        "batch_size": opts["batch_size"], "steps_per_epoch": opts["steps_per_epoch"],
        "lr": opts["lr"], "weight_decay": opts["weight_decay"],
        "loss_weights": LossWeights(unimodal=opts["w_unimodal"],
                                    contrastive=opts["w_contrastive"],
                                    separation=opts["w_separation"],
                                    temperature=opts["temperature"]),
        "spec": ModelSpec(dropout=opts["dropout"]),
        "pair_fraction": opts["pair_fraction"], "augment": not opts["no_augment"],
        "bf16": opts["bf16"], "select_metric": opts["select_metric"],
        "data_dir": opts["data_dir"], "cache_dir": opts["cache_dir"],
        "threads": opts["threads"], "progress": not opts["no_progress"],
    }
    if opts["quick"]:
        fields |= QUICK
    for option, field in (("epochs", "epochs"), ("max_train_examples",
                                                 "max_train_examples_per_source"),
                          ("max_eval_examples", "max_eval_examples_per_source")):
        if opts[option] is not None:
            fields[field] = opts[option]
    if opts["out_dir"] is not None:
        fields["out_dir"] = opts["out_dir"]
    try:
        config = TrainConfig(**fields)
    except ValidationError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        run_dir = run_training(config, overwrite=opts["overwrite"])
    except FileExistsError as exc:
        raise click.ClickException(str(exc)) from None
    metrics = json.loads((run_dir / "metrics.json").read_text())
    click.echo(f"run: {run_dir}  (best epoch {metrics['best_epoch']}, "
               f"{metrics['wall_s']['total']:.0f} s)")
    click.echo("test:")
    click.echo(format_table({"sources": metrics["test"],
                             "subsets": metrics.get("subsets", {}).get("test")}))


@main.command(name="eval")
@click.argument("run_dir", required=False,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--split", type=click.Choice(_SPLITS), default="test", show_default=True)
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None)
@click.option("--no-subsets", is_flag=True, help="Skip the pseudo-paired modality subsets.")
@click.option("--json", "as_json", is_flag=True, help="Print the full metrics as JSON.")
@click.option("--paired", type=click.Choice(PAIRED_SETS), default=None,
              help="Instead of a run: train and evaluate the fusion and its baselines on a "
              "really paired set (RAVDESS audio + face AUs, CMU-MOSI text + audio + video), "
              "every modality subset, several seeds; writes --out.")
@click.option("--seeds", default="0,1,2,3,4", show_default=True,
              help="--paired: comma-separated training seeds.")
@click.option("--epochs", type=int, default=None,
              help="--paired: epochs per model [default: 60 for ravdess-av, 40 for mosi].")
@click.option("--model", "paired_models", type=click.Choice(PAIRED_MODELS), multiple=True,
              help="--paired: models to run (repeatable) [default: all].")
@click.option("--labels", "label_set", type=click.Choice(["8", "7"]), default="8",
              show_default=True, help="--paired ravdess-av: RAVDESS's 8 emotions, or the "
              "project's 7 (calm folded into neutral; recorded as dataset ravdess-av-7).")
@click.option("--max-train-examples", type=int, default=None,
              help="--paired: cap on training rows (a fixed subset; for smoke runs).")
@click.option("--max-eval-examples", type=int, default=None,
              help="--paired: cap on validation and test rows (a fixed subset).")
@click.option("--out", "out_json", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="--paired: the JSON records file [default: docs/model-paired.json].")
@click.option("--threads", type=int, default=1, show_default=True,
              help="--paired: torch threads (the models are small: one thread wastes least on "
              "a shared machine).")
@click.option("--jobs", type=int, default=1, show_default=True,
              help="--paired: seeds trained at once, each in its own process with one torch "
              "thread (the same numbers as one process with --threads 1).")
@click.option("--encoder-init", type=click.Choice(["scratch", "unimodal"]), default=None,
              help="--paired: fused models' encoders from scratch or from the same seed's "
              "unimodal models [default: per set, see DEFAULT_CONFIGS].")
@click.option("--encoder-lr-scale", type=float, default=None,
              help="--paired: learning rate of encoders started from unimodal models, relative "
              "to the rest [default: per set].")
@click.option("--no-progress", is_flag=True, help="--paired: no per-model log lines.")
@needs(_TORCH_SIDE, "train,cpu")
def eval_cmd(run_dir: Path | None, split: str, data_dir: Path | None, cache_dir: Path | None,
             no_subsets: bool, as_json: bool, paired: str | None, **paired_opts: Any) -> None:
    """Evaluate a trained run (its model.pt and config.json) on one split, or (--paired) train
    and evaluate the fusion on a really paired set."""
    if paired is not None:
        if run_dir is not None:
            raise click.UsageError("give a RUN_DIR or --paired, not both")
        _eval_paired(paired, data_dir, cache_dir, as_json, **paired_opts)
        return
    if run_dir is None:
        raise click.UsageError("give a RUN_DIR (a training run) or --paired NAME")
    from libra.training.evaluate import evaluate

    for needed in ("config.json", "model.pt"):
        if not (run_dir / needed).is_file():
            raise click.ClickException(f"{run_dir} has no {needed}: is it a training run?")
    result = evaluate(run_dir, split, data_dir=data_dir, cache_dir=cache_dir,
                      subsets=not no_subsets, progress=not as_json)
    click.echo(json.dumps(result, indent=2) if as_json else
               f"{run_dir} ({split}):\n{format_table(result)}")


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r}: give integers separated by commas",
                                 param_hint="--seeds") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise click.BadParameter(f"{text!r}: give one or more distinct seeds",
                                 param_hint="--seeds")
    return seeds


def _eval_paired(name: str, data_dir: Path | None, cache_dir: Path | None, as_json: bool, *,
                 seeds: str, epochs: int | None, paired_models: tuple[str, ...],
                 label_set: str, max_train_examples: int | None,
                 max_eval_examples: int | None, out_json: Path | None, threads: int,
                 jobs: int, encoder_init: str | None, encoder_lr_scale: float | None,
                 no_progress: bool) -> None:
    import dataclasses
    import shlex
    import sys

    import torch

    from libra.training.paired_data import load_paired
    from libra.training.paired_eval import (
        DEFAULT_CONFIGS,
        DEFAULT_OUT,
        format_records,
        run_paired,
        write_records,
    )

    seed_list = _parse_seeds(seeds)
    for option, value in (("--epochs", epochs), ("--threads", threads), ("--jobs", jobs),
                          ("--max-train-examples", max_train_examples),
                          ("--max-eval-examples", max_eval_examples)):
        if value is not None and value < 1:
            raise click.BadParameter(f"{value}: must be at least 1", param_hint=option)
    if label_set != "8" and name != "ravdess-av":
        raise click.UsageError("--labels applies to --paired ravdess-av only")
    torch.set_num_threads(threads)
    if encoder_lr_scale is not None and not encoder_lr_scale > 0:
        raise click.BadParameter(f"{encoder_lr_scale}: must be above 0",
                                 param_hint="--encoder-lr-scale")
    overrides: dict[str, Any] = {"epochs": epochs, "encoder_init": encoder_init,
                 "encoder_lr_scale": encoder_lr_scale}
    config = dataclasses.replace(DEFAULT_CONFIGS[name],
                                 **{k: v for k, v in overrides.items() if v is not None})
    try:
        dataset = load_paired(name, data_dir, label_set="7" if label_set == "7" else "8",
                              max_train=max_train_examples, max_eval=max_eval_examples,
                              cache_dir=cache_dir, progress=not no_progress)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    log = (lambda _: None) if no_progress or as_json else click.echo
    result = run_paired(dataset, seed_list, config, paired_models or PAIRED_MODELS, log=log,
                        jobs=jobs)
    command = shlex.join(["libra-model", *sys.argv[1:]]) if sys.argv[0].endswith(
        "libra-model") else f"libra-model eval --paired {name}"
    path = out_json or DEFAULT_OUT
    try:
        write_records(path, result, command)
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot write {path}: {exc}") from None
    click.echo(json.dumps(result, indent=2) if as_json else
               f"{name}: {len(result['records'])} records -> {path}\n"
               + format_records(result["records"]))


_RECIPE_OPTIONS = (
    click.option("--neutral-cap", type=float, default=None,
                 help="Neutral rows per corpus at most this x its largest emotion [default: "
                 "the chosen recipe, libra/training/text_transfer.py]."),
    click.option("--class-power", type=float, default=None,
                 help="Class weight = share^-power (0: as found, 1: balanced)."),
    click.option("--epochs", type=int, default=None),
    click.option("--lr", type=float, default=None),
    click.option("--seed", type=int, default=None),
)


def _recipe_options(command: _F) -> _F:
    for option in reversed(_RECIPE_OPTIONS):
        command = option(command)
    return command


def _recipe(opts: dict[str, Any]) -> Any:
    from libra.training.text_transfer import CHOSEN, recipe_from

    values = {k: opts.pop(k) for k in ("neutral_cap", "class_power", "epochs", "lr", "seed")}
    return recipe_from(CHOSEN, {k: v for k, v in values.items() if v is not None})


@main.command(name="text-transfer")
@click.option("--head", "heads", type=click.Choice(
    ["majority", "tfidf", "served-meld", "logreg", "drkf-text"]), multiple=True,
    help="Heads to score (repeatable) [default: all five].")
@click.option("--sweep", is_flag=True, help="Also score drkf-text under each recipe of the "
              "sweep (text_transfer.SWEEP), to choose one by the leave-one-corpus-out mean.")
@_recipe_options
@click.option("--base", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Checkpoint whose text path is retrained "
              "[default: libra/training/weights/model.pt].")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
@click.option("--out", "out_json", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="[default: docs/model-text-transfer.json in the checkout]")
@needs(_TORCH_SIDE, "train,cpu")
def text_transfer_cmd(heads: tuple[str, ...], sweep: bool, base: Path | None,
                      data_dir: Path | None, out_json: Path | None, **opts: Any) -> None:
    """Leave one text corpus out: train on four, test on the fifth, for every head."""
    from libra.training.build import BUNDLE_DIR
    from libra.training.paired_eval import REPO_ROOT
    from libra.training.text_transfer import run_report

    try:
        report = run_report(heads or None, _recipe(opts), base or BUNDLE_DIR / "model.pt",
                            sweep=sweep, root=data_dir, log=click.echo)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    path = out_json or REPO_ROOT / "docs" / "model-text-transfer.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    click.echo(report["table"])
    click.echo(f"report: {path}")


@main.command(name="train-text")
@click.option("--name", default="drkf-text-transfer", show_default=True,
              help="Run folder under artifacts/runs (what `export --bundle` takes).")
@_recipe_options
@click.option("--base", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="[default: libra/training/weights/model.pt]")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
@needs(_TORCH_SIDE, "train,cpu")
def train_text_cmd(name: str, base: Path | None, data_dir: Path | None, **opts: Any) -> None:
    """Retrain the text path of a checkpoint on the five text corpora (audio and face answers
    stay bit for bit the same); write a run folder for `libra-model export --bundle`."""
    from libra.training.build import BUNDLE_DIR
    from libra.training.text_transfer import write_run
    from libra.training.train import DEFAULT_RUNS_DIR

    try:
        run = write_run(base or BUNDLE_DIR / "model.pt", DEFAULT_RUNS_DIR / name, _recipe(opts),
                        root=data_dir, log=click.echo)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"run: {run}  (next: libra-model export {run} --bundle)")


@main.command(name="export")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="[default: $LIBRA_HOME/onnx, else the checkout's or ./ artifacts/onnx]")
@click.option("--variant", "variants", type=click.Choice(VARIANTS), multiple=True,
              help="Variants to write (repeatable) [default: all four].")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Training data for the INT4 calibration [default: ../shared/data].")
@click.option("--bundle", is_flag=True, help="Also write the run's weights and calibration "
              "statistics to libra/training/weights/ (what `build` uses).")
@needs(_TORCH_SIDE, "train,cpu")
def export_cmd(run_dir: Path, out_dir: Path | None, variants: tuple[str, ...],
               data_dir: Path | None, bundle: bool) -> None:
    """Export a training run to ONNX (FP32, FP16, INT8, QUIK-style INT4) with a manifest."""
    from libra.training.build import DEFAULT_OUT, export_run

    if not (run_dir / "model.pt").is_file():
        raise click.ClickException(f"{run_dir} has no model.pt: is it a training run?")
    manifest = export_run(run_dir, out_dir or DEFAULT_OUT, data_dir=data_dir,
                          variants=variants or VARIANTS, bundle=bundle, log=click.echo)
    click.echo(format_manifest(manifest))


@main.command(name="build")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="[default: $LIBRA_HOME/onnx, else the checkout's or ./ artifacts/onnx]")
@click.option("--variant", "variants", type=click.Choice(VARIANTS), multiple=True,
              help="Variants to write (repeatable) [default: all four].")
@click.option("--bundle-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="[default: libra/training/weights, the bundle in the repo]")
@needs(_TORCH_SIDE, "train,cpu")
def build_cmd(out_dir: Path | None, variants: tuple[str, ...], bundle_dir: Path | None) -> None:
    """Build the ONNX variants from the weights bundled in the repo (no data, no training)."""
    from libra.training.build import BUNDLE_DIR, DEFAULT_OUT, build

    try:
        manifest = build(out_dir or DEFAULT_OUT, variants=variants or VARIANTS, log=click.echo,
                         bundle_dir=bundle_dir or BUNDLE_DIR)
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(format_manifest(manifest))


@main.command(name="eval-onnx")
@click.argument("onnx_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--split", type=click.Choice(_SPLITS), default="test", show_default=True)
@click.option("--variant", "variants", type=click.Choice(VARIANTS), multiple=True,
              help="Variants to evaluate (repeatable) [default: those in the folder].")
@click.option("--limit", type=int, default=None, help="Examples per source (a fixed subset).")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@needs(_ONNX_SIDE, "media,cpu")
def eval_onnx_cmd(onnx_dir: Path, split: str, variants: tuple[str, ...], limit: int | None,
                  data_dir: Path | None, as_json: bool) -> None:
    """Evaluate ONNX variants through the serving preprocessing; deltas against FP32."""
    from libra.runtime.recognizer import Recognizer
    from libra.training.onnx_eval import evaluate_onnx

    names = variants or tuple(v for v in VARIANTS if (onnx_dir / f"{v}.onnx").is_file())
    if not names:
        raise click.ClickException(f"{onnx_dir} holds no variant ({', '.join(VARIANTS)}.onnx)")
    recognizers = {}
    for name in names:
        try:
            recognizers[name] = Recognizer(onnx_dir / f"{name}.onnx")
        except Exception as exc:  # onnxruntime raises its own types for kernels it lacks
            raise click.ClickException(f"{name}: {exc}") from None
    result = evaluate_onnx(recognizers, split, root=data_dir, limit=limit,
                           progress=not as_json)
    click.echo(json.dumps(result, indent=2) if as_json else format_variants(result))


@main.command(name="calibrate")
@click.argument("onnx_dir", required=False,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--variant", type=click.Choice(VARIANTS), default="fp32", show_default=True,
              help="The variant whose raw probabilities the temperatures are fitted on.")
@click.option("--check", "checks", type=click.Choice(VARIANTS), multiple=True,
              help="Also score this variant on the held-out corpora under the fitted "
              "temperatures (repeatable).")
@click.option("--text-limit", type=int, default=2000, show_default=True,
              help="Rows per text corpus (a fixed random subset).")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="[default: $LIBRA_DATA_DIR, else ../shared/data]")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Raw probabilities per corpus [default: artifacts/cache/calibration].")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="[default: docs/model-calibration.json in the checkout]")
@click.option("--plots", "plot_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Folder for the reliability diagrams, one PNG per modality "
              "[default: docs/; needs matplotlib, the `plot` extra].")
@click.option("--bundle-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where calibration.json goes, for `build` [default: libra/training/weights].")
@click.option("--dry-run", is_flag=True, help="Fit and report only: write no calibration into "
              "the bundle or the ONNX files.")
@needs((*_ONNX_SIDE, "onnx"), "train,cpu")
def calibrate_cmd(onnx_dir: Path | None, variant: str, checks: tuple[str, ...],
                  text_limit: int, data_dir: Path | None, cache_dir: Path | None,
                  report_path: Path | None, plot_dir: Path | None, bundle_dir: Path | None,
                  dry_run: bool) -> None:
    """Fit temperatures per modality subset on corpora the model never trained on (leave one
    corpus out), choose how modalities are fused, and store both with the model: the bundle's
    calibration.json (what `build` stamps) and every ONNX file in ONNX_DIR."""
    from libra.runtime.recognizer import Recognizer
    from libra.training.build import BUNDLE_DIR, DEFAULT_OUT, save_calibration
    from libra.training.calibration import (
        DEFAULT_CACHE,
        calibrate,
        check_variant,
        plot_reliability,
        stamp_folder,
    )
    from libra.training.paired_eval import REPO_ROOT

    folder = onnx_dir or DEFAULT_OUT
    if text_limit < 1:
        raise click.BadParameter(f"{text_limit}: must be at least 1", param_hint="--text-limit")
    if not (folder / f"{variant}.onnx").is_file():
        raise click.ClickException(f"no {variant}.onnx in {folder}: run `libra-model build`")
    recognizer = Recognizer(folder / f"{variant}.onnx")
    cache = cache_dir or DEFAULT_CACHE
    try:
        calibration, report = calibrate(recognizer, data_dir, text_limit=text_limit,
                                        cache_dir=cache, log=click.echo)
        for other in checks:
            report.setdefault("checks", {})[other] = check_variant(
                Recognizer(folder / f"{other}.onnx"), report, data_dir, text_limit=text_limit,
                cache_dir=cache, log=click.echo)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    report["command"] = "libra-model calibrate" + "".join(f" --check {c}" for c in checks)
    path = report_path or REPO_ROOT / "docs" / "model-calibration.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    click.echo(format_calibration(report))
    click.echo(f"report: {path}")
    try:
        for png in plot_reliability(report, plot_dir or path.parent):
            click.echo(f"plot: {png}")
    except ImportError:
        click.echo("no reliability diagrams: matplotlib is not installed (the `plot` extra)")
    if dry_run:
        return
    saved = save_calibration(calibration, recognizer.info.version, bundle_dir or BUNDLE_DIR)
    click.echo(f"calibration: {saved}")
    click.echo(format_manifest(stamp_folder(folder, calibration)))


def format_calibration(report: dict[str, Any]) -> str:
    """The held-out tables: per corpus (one modality), then per fusion and subset."""
    lines = [f"{'corpus':18} {'n':>5} {'acc':>6} {'conf':>6} {'ECE':>6} {'T':>8} {'ECE T':>6}"]
    for r in report["single"]["held_out"]:
        b, a = r["before"], r["after"]
        lines.append(f"{r['corpus']:18} {b['n']:>5} {b['accuracy']:>6.3f} "
                     f"{b['mean_confidence']:>6.3f} {b['ece']:>6.3f} {r['temperature']:>8.3f} "
                     f"{a['ece']:>6.3f}")
    several = report["several"]
    lines.append("pseudo-pairs, held-out side: ECE without -> with a temperature per subset")
    for r in several["held_out"]:
        b, a = r["before"], r["after"]
        lines.append(f"  {r['fusion']:8} {r['subset']:17} {r['held_out_side']} {b['n']:>5} "
                     f"acc {b['accuracy']:.3f} ECE {b['ece']:.3f} -> {a['ece']:.3f} "
                     f"(T {r['temperature']:.3f})")
    for name, m in several["candidates"].items():
        lines.append(f"  mean over subsets and sides, {name:24} ECE {m['ece']:.3f} "
                     f"NLL {m['nll']:.3f} acc {m['accuracy']:.3f}")
    lines.append(f"  served: {several['chosen']}")
    lines.append("served temperatures: " + ", ".join(
        f"{k} {v:g}" for k, v in report["calibration"]["temperatures"].items()))
    return "\n".join(lines)


def format_manifest(manifest: dict[str, Any]) -> str:
    lines = [f"model {manifest['model_version']} ({manifest['source']})"]
    lines += [f"  {name:5} {v['bytes'] / 1e6:8.1f} MB  sha256 {v['sha256'][:12]}"
              for name, v in manifest["variants"].items()]
    return "\n".join(lines)


def format_variants(result: dict[str, Any]) -> str:
    """One row per variant and source: accuracy, weighted F1 and their change from FP32."""
    lines = [f"{'variant':8} {'source':16} {'n':>6} {'acc':>7} {'w-F1':>7} {'d-acc':>7} "
             f"{'d-wF1':>7}"]
    base = result.get("fp32")
    for name, sources in result.items():
        for source, m in sources.items():
            ref = base[source] if base else None
            d_acc = f"{100 * (m['accuracy'] - ref['accuracy']):+7.2f}" if ref else f"{'':>7}"
            d_f1 = (f"{100 * (m['weighted_f1'] - ref['weighted_f1']):+7.2f}" if ref
                    else f"{'':>7}")
            lines.append(f"{name:8} {source + ' (' + m['modality'] + ')':16} {m['n']:>6} "
                         f"{m['accuracy']:>7.4f} {m['weighted_f1']:>7.4f} {d_acc} {d_f1}")
    lines.append("d-acc, d-wF1: change from fp32 in percentage points")
    return "\n".join(lines)


if __name__ == "__main__":
    main(prog_name="libra-model")
