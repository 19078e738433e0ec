"""FP16, INT8 and QUIK-style INT4 variants of the FP32 serving graph (onnx + onnxruntime, no torch).

- FP16 (GPU workers): every float tensor in half precision, inputs and outputs kept float32 so
  callers feed the same arrays (`onnxruntime.transformers.float16`).
- INT8 (Lambda, CPU): dynamic quantization, weights int8 per output channel, activations
  quantized on the fly (`onnxruntime.quantization.quantize_dynamic`).
- INT4 (Lambda, CPU): weight-only 4-bit `MatMulNBits` in blocks along the input axis, after QUIK
  (Ashkboos et al., 2023): the few input channels that carry most of the error stay FP32. For
  `Y = X @ W` the saliency of input channel k is E[x_k^2] * max_n W[k, n]^2 (its activation
  energy on calibration data times its largest weight, the expected error a 4-bit step on that
  row would cause); the top `outlier_fraction` of channels are split off into an FP32 MatMul on
  the gathered channels, `Y = X @ W_rest + X[:, idx] @ W[idx]`, and `W_rest` (outlier rows
  zeroed, so they no longer stretch the block scales) is quantized to 4 bits. The word embedding
  table is 4-bit too (`GatherBlockQuantized`). Gemm and Conv layers (the small recognizer heads
  and encoders) stay FP32.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

OUTLIER_SUFFIX = "/quik_outliers"


def to_fp16(src: Path, dst: Path) -> Path:
    """Half-precision weights and compute; float32 inputs and outputs."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    _copy_metadata(onnx.load(str(src), load_external_data=False), model)
    onnx.save(model, str(dst))
    return dst


def to_int8(src: Path, dst: Path) -> Path:
    """Dynamic INT8: MatMul, Gemm and the embedding Gather quantized per channel."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), op_types_to_quantize=["MatMul", "Gemm", "Gather"],
                     per_channel=True, weight_type=QuantType.QInt8)
    model = onnx.load(str(dst))
    _copy_metadata(onnx.load(str(src), load_external_data=False), model)
    onnx.save(model, str(dst))
    return dst


def quantizable_matmuls(model: onnx.ModelProto) -> dict[str, tuple[str, str]]:
    """MatMul nodes whose right operand is a 2-D weight used by that node only:
    node name -> (activation input, weight initializer name)."""
    inits = {i.name: i for i in model.graph.initializer}
    uses = Counter(name for node in model.graph.node for name in node.input)
    out = {}
    for node in model.graph.node:
        if node.op_type != "MatMul" or len(node.input) != 2:
            continue
        weight = node.input[1]
        if weight in inits and len(inits[weight].dims) == 2 and uses[weight] == 1:
            out[node.name] = (node.input[0], weight)
    return out


def activation_energy(src: Path, batches: Iterable[Mapping[str, np.ndarray]]
                      ) -> dict[str, np.ndarray]:
    """Mean square of each input channel of every quantizable MatMul, over calibration batches:
    weight initializer name -> (K,) float64."""
    import onnxruntime as ort

    model = onnx.load(str(src))
    targets = quantizable_matmuls(model)
    activations = sorted({a for a, _ in targets.values()})
    known = {o.name for o in model.graph.output}
    for name in activations:
        if name not in known:
            model.graph.output.append(helper.make_empty_tensor_value_info(name))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    sums: dict[str, np.ndarray] = {}
    counts: Counter[str] = Counter()
    for feeds in batches:
        values = dict(zip(activations, session.run(activations, dict(feeds)), strict=True))
        for name, value in values.items():
            flat = np.asarray(value, dtype=np.float64).reshape(-1, value.shape[-1])
            sums[name] = sums.get(name, 0.0) + (flat ** 2).sum(0)
            counts[name] += flat.shape[0]
    if not counts:
        raise ValueError("activation_energy got no calibration batches")
    return {weight: sums[act] / counts[act] for act, weight in targets.values()}


def outlier_channels(weight: np.ndarray, energy: np.ndarray, fraction: float) -> np.ndarray:
    """Sorted indices of the input channels (rows of `weight`) kept in FP32."""
    k = weight.shape[0]
    n = round(fraction * k)
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    saliency = energy * np.abs(weight).max(axis=1) ** 2
    return np.sort(np.argsort(-saliency, kind="stable")[:n]).astype(np.int64)


def split_outliers(model: onnx.ModelProto, energy: Mapping[str, np.ndarray], fraction: float
                   ) -> list[str]:
    """Rewrite each quantizable MatMul as `X @ W_rest + X[..., idx] @ W[idx]` in place; returns
    the names of the outlier MatMuls (to keep out of quantization)."""
    inits = {i.name: i for i in model.graph.initializer}
    targets = quantizable_matmuls(model)
    kept: list[str] = []
    new_nodes: list[onnx.NodeProto] = []
    for node in model.graph.node:
        if node.name not in targets or targets[node.name][1] not in energy:
            new_nodes.append(node)
            continue
        act, weight_name = targets[node.name]
        weight = numpy_helper.to_array(inits[weight_name])
        idx = outlier_channels(weight, np.asarray(energy[weight_name]), fraction)
        if idx.size == 0:
            new_nodes.append(node)
            continue
        rest = weight.copy()
        rest[idx] = 0.0
        inits[weight_name].CopyFrom(numpy_helper.from_array(rest, weight_name))
        base = node.name + OUTLIER_SUFFIX
        model.graph.initializer.extend([
            numpy_helper.from_array(idx, base + "/idx"),
            numpy_helper.from_array(np.ascontiguousarray(weight[idx]), base + "/weight"),
        ])
        out = node.output[0]
        new_nodes.extend([
            helper.make_node("MatMul", [act, weight_name], [base + "/rest"], name=node.name),
            helper.make_node("Gather", [act, base + "/idx"], [base + "/x"], axis=-1,
                             name=base + "/gather"),
            helper.make_node("MatMul", [base + "/x", base + "/weight"], [base + "/y"],
                             name=base),
            helper.make_node("Add", [base + "/rest", base + "/y"], [out], name=base + "/add"),
        ])
        kept.append(base)
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    return kept


def to_int4_quik(src: Path, dst: Path, energy: Mapping[str, np.ndarray], *,
                 outlier_fraction: float = 1 / 32, block_size: int = 32) -> Path:
    """Weight-only INT4 with QUIK-style FP32 outlier channels (see the module docstring)."""
    from onnxruntime.quantization import matmul_nbits_quantizer as nbits

    model = onnx.load(str(src))
    meta = onnx.load(str(src), load_external_data=False)
    keep = split_outliers(model, energy, outlier_fraction)
    config = nbits.DefaultWeightOnlyQuantConfig(
        block_size=block_size, is_symmetric=True, accuracy_level=4,
        op_types_to_quantize=("MatMul", "Gather"), quant_axes=(("MatMul", 0), ("Gather", 1)))
    quantizer = nbits.MatMulNBitsQuantizer(model, nodes_to_exclude=keep, algo_config=config)
    quantizer.process()
    out = quantizer.model.model
    _copy_metadata(meta, out)
    onnx.save(out, str(dst))
    return dst


def _copy_metadata(src: onnx.ModelProto, dst: onnx.ModelProto) -> None:
    have = {p.key for p in dst.metadata_props}
    for prop in src.metadata_props:
        if prop.key not in have:
            dst.metadata_props.append(prop)
