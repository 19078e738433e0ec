"""From trained weights to the four ONNX variants the platform serves, with a manifest.

Two ways in:
- `export_run`: a training run (`model.pt`); calibration statistics for the INT4 outlier
  channels are measured on training data (../shared/data). `bundle=True` also writes the
  run's weights and statistics to the repo bundle (`libra/training/weights/`, a few MB).
- `build`: the bundle alone: no data, no training, minutes on a CPU; the statistics come from
  the bundle, so a fresh clone builds the same INT4 model the bundle's author measured.

The output folder holds `fp32.onnx`, `fp16.onnx`, `int8.onnx`, `int4.onnx` and `manifest.json`
(version, sizes, sha256 of each file). Each file carries metadata (`model_version`,
`precision`, `emotions`, `modalities`, `trained_modalities`) that `Recognizer` reads, and,
where the bundle holds `calibration.json` (written by `libra-model calibrate`), the temperatures
and fusion `Recognizer.predict` applies (`calibration`, also in the manifest).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from libra.runtime.calibration import METADATA_KEY, Calibration
from libra.runtime.home import default_model_dir
from libra.runtime.labels import EMOTIONS, MODALITIES
from libra.runtime.recognizer import ModelInput, assemble
from libra.training import quantize
from libra.training.names import VARIANTS

BUNDLE_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_OUT = default_model_dir()  # $LIBRA_HOME/onnx, the checkout's, or ./artifacts/onnx
OUTLIER_FRACTION = 1 / 32
BLOCK_SIZE = 32
CALIBRATION_ROWS = 96
CALIBRATION_BATCH = 16
CALIBRATION_FILE = "calibration.json"
"""The bundle's confidence calibration (temperatures, fusion), from `libra-model calibrate`."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_version(checkpoint: Path, kind: str) -> str:
    """`<kind>-<first 12 hex of the checkpoint's sha256>`: changes whenever the weights do."""
    return f"{kind}-{file_sha256(checkpoint)[:12]}"


def stamp(path: Path, metadata: dict[str, str]) -> None:
    """Set (replace) metadata properties of an ONNX file in place."""
    model = onnx.load(str(path))
    keep = [p for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def calibration_feeds(root: Path | str | None = None, rows: int = CALIBRATION_ROWS,
                      batch: int = CALIBRATION_BATCH, seed: int = 0) -> list[dict[str, Any]]:
    """Batches of training rows with all three modalities (a MELD text, a RAVDESS clip and a
    FER-2013 face drawn independently), so every MatMul sees real inputs."""
    from libra.training.onnx_eval import source_rows

    parts = {s: source_rows(s, "train", root=root, limit=rows)[0]
             for s in ("meld", "ravdess", "fer")}
    rng = np.random.default_rng(seed)
    order = {s: rng.permutation(len(r)) for s, r in parts.items()}
    triples = [ModelInput(audio=parts["ravdess"][order["ravdess"][i]].audio,
                          video=parts["fer"][order["fer"][i]].video,
                          text=parts["meld"][order["meld"][i]].text)
               for i in range(min(len(r) for r in parts.values()))]
    return [assemble(triples[i:i + batch]) for i in range(0, len(triples), batch)]


def save_energy(path: Path, energy: dict[str, np.ndarray]) -> None:
    arrays: dict[str, Any] = {k: v.astype(np.float32) for k, v in energy.items()}
    np.savez_compressed(path, **arrays)


def load_energy(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k].astype(np.float64) for k in z.files}


def load_calibration(bundle_dir: Path = BUNDLE_DIR, version: str | None = None
                     ) -> Calibration | None:
    """The bundle's confidence calibration (`libra-model calibrate`), if it has one fitted on
    these weights (`version`: their `model_version`; a calibration of other weights is an
    error, never silently applied)."""
    path = bundle_dir / CALIBRATION_FILE
    if not path.is_file():
        return None
    text = path.read_text()
    try:
        fitted_on = json.loads(text).get("model_version")
        calibration = Calibration.from_json(text)
    except (ValueError, AttributeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    if version is not None and fitted_on != version:
        raise ValueError(f"{path} was fitted on {fitted_on}, not on these weights ({version}): "
                         f"run `libra-model calibrate` again, or delete it")
    return calibration


def save_calibration(calibration: Calibration, version: str, bundle_dir: Path = BUNDLE_DIR
                     ) -> Path:
    """Write the calibration into the bundle, with the weights it was fitted on."""
    path = bundle_dir / CALIBRATION_FILE
    data = {"model_version": version, **json.loads(calibration.to_json())}
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def export_variants(checkpoint: Path, out_dir: Path, *,
                    energy: dict[str, np.ndarray] | Callable[[Path], dict[str, np.ndarray]],
                    variants: Sequence[str] = VARIANTS, source: str = "",
                    calibration: Callable[[str], Calibration | None] | None = None,
                    log: Callable[[str], None] = print) -> dict[str, Any]:
    """Write the variants of one checkpoint and `manifest.json`; returns the manifest.

    `energy` is the INT4 calibration statistics, or a function of the FP32 file computing them;
    `calibration` gives, for the weights' `model_version`, the confidence calibration stamped
    into each file (None: the raw answers).
    """
    from libra.training.checkpoint import load_checkpoint
    from libra.training.export import export_fp32

    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown variants {unknown}; valid: {', '.join(VARIANTS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    model, meta = load_checkpoint(checkpoint)
    version = model_version(checkpoint, meta["kind"])
    common = {"model_version": version, "emotions": json.dumps(list(EMOTIONS)),
              "modalities": json.dumps(list(MODALITIES)),
              "trained_modalities": json.dumps(list(meta["trained_modalities"])),
              "source": source}
    calibrated = calibration(version) if calibration is not None else None
    if calibrated is not None:
        common[METADATA_KEY] = calibrated.to_json()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    fp32 = export_fp32(model, out_dir / "fp32.onnx")
    stamp(fp32, common | {"precision": "fp32"})
    timings["fp32"] = time.perf_counter() - t0
    log(f"fp32: {fp32} ({timings['fp32']:.1f} s)")
    stats = energy(fp32) if callable(energy) else energy
    covered = sorted(set(quantize.quantizable_matmuls(onnx.load(str(fp32))).values()))
    missing = [w for _, w in covered if w not in stats]
    makers: dict[str, Callable[[Path], Path]] = {
        "fp16": lambda dst: quantize.to_fp16(fp32, dst),
        "int8": lambda dst: quantize.to_int8(fp32, dst),
        "int4": lambda dst: quantize.to_int4_quik(fp32, dst, stats,
                                                  outlier_fraction=OUTLIER_FRACTION,
                                                  block_size=BLOCK_SIZE),
    }
    for name in variants:
        if name == "fp32":
            continue
        t0 = time.perf_counter()
        path = makers[name](out_dir / f"{name}.onnx")
        stamp(path, common | {"precision": name})
        timings[name] = time.perf_counter() - t0
        log(f"{name}: {path} ({timings[name]:.1f} s)")
    if "fp32" not in variants:
        fp32.unlink()
    manifest = {
        "model_version": version, "kind": meta["kind"], "source": source,
        "trained_modalities": list(meta["trained_modalities"]),
        "int4": {"block_size": BLOCK_SIZE, "outlier_fraction": OUTLIER_FRACTION,
                 "matmuls": len(covered), "matmuls_without_statistics": len(missing)},
        "variants": {name: {"file": f"{name}.onnx",
                            "bytes": (out_dir / f"{name}.onnx").stat().st_size,
                            "sha256": file_sha256(out_dir / f"{name}.onnx"),
                            "build_s": round(timings[name], 2)} for name in variants},
    }
    if calibrated is not None:
        manifest["calibration"] = json.loads(calibrated.to_json())
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def export_run(run_dir: Path, out_dir: Path = DEFAULT_OUT, *, data_dir: Path | str | None = None,
               variants: Sequence[str] = VARIANTS, bundle: bool = False,
               bundle_dir: Path = BUNDLE_DIR, log: Callable[[str], None] = print
               ) -> dict[str, Any]:
    """Export a training run; calibrate INT4 on its training data; optionally bundle it."""
    checkpoint = run_dir / "model.pt"
    measured: dict[str, np.ndarray] = {}

    def calibrate(fp32: Path) -> dict[str, np.ndarray]:
        log(f"calibrating INT4 outliers on {CALIBRATION_ROWS} training rows")
        measured.update(quantize.activation_energy(fp32, calibration_feeds(data_dir)))
        return measured

    manifest = export_variants(checkpoint, out_dir, energy=calibrate, variants=variants,
                               source=f"run {run_dir.name}", log=log)
    if bundle:
        write_bundle(run_dir, measured, bundle_dir)
        log(f"bundle: {bundle_dir}")
    return manifest


def write_bundle(run_dir: Path, energy: dict[str, np.ndarray], bundle_dir: Path = BUNDLE_DIR
                 ) -> None:
    """The run's weights, its INT4 calibration statistics and its card (config, metrics)."""
    bundle_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run_dir / "model.pt", bundle_dir / "model.pt")
    # the confidence calibration belongs to the old weights: `libra-model calibrate` makes anew
    (bundle_dir / CALIBRATION_FILE).unlink(missing_ok=True)
    save_energy(bundle_dir / "int4_calibration.npz", energy)
    card = {"run": run_dir.name,
            "config": json.loads((run_dir / "config.json").read_text()),
            "metrics": json.loads((run_dir / "metrics.json").read_text())}
    (bundle_dir / "card.json").write_text(json.dumps(card, indent=2) + "\n")


def build(out_dir: Path = DEFAULT_OUT, *, bundle_dir: Path = BUNDLE_DIR,
          variants: Sequence[str] = VARIANTS, log: Callable[[str], None] = print
          ) -> dict[str, Any]:
    """The variants from the repo bundle: no data needed."""
    checkpoint = bundle_dir / "model.pt"
    if not checkpoint.is_file():
        raise FileNotFoundError(f"no bundled weights at {checkpoint}: export a run with "
                                f"`libra-model export RUN --bundle` first")
    card = json.loads((bundle_dir / "card.json").read_text())
    return export_variants(checkpoint, out_dir, variants=variants,
                           energy=load_energy(bundle_dir / "int4_calibration.npz"),
                           source=f"bundle of run {card['run']}",
                           calibration=lambda version: load_calibration(bundle_dir, version),
                           log=log)
