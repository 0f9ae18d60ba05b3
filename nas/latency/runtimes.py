"""The runtimes a model is deployed with, as latency backends: ``torch`` (eager),
``torchscript`` (traced and frozen) and ``onnxruntime`` (CPU execution provider, fp32 or
statically quantized int8).

For networks this small, eager PyTorch at batch 1 is mostly Python dispatch: the same
model runs 10-30x faster in ONNX Runtime, by a ratio that differs between archs. A search
must therefore time what the user ships. A ``Runtime`` turns a module into a callable
that runs it once (``prepare``); ``nas.latency.measure.measure_latency`` times that
callable the same way for every runtime (warm-up, repeats, statistic, threads).
``describe()`` is everything a reading depends on besides the hardware (runtime, its
version, session settings): it goes into a latency table's key, so tables of different
runtimes are never mixed.
"""

from __future__ import annotations

import io
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

RUNTIMES = ("auto", "onnxruntime", "torchscript", "torch")
PRECISIONS = ("fp32", "int8")
ONNX_OPSET = 17
Run = Callable[[], Any]


@dataclass(frozen=True)
class Runtime:
    """Eager PyTorch: ``model(*inputs)`` under ``torch.no_grad()`` (the caller sets threads)."""

    name = "torch"
    # Eager torch's per-call cost is Python dispatch, paid per module in a whole network
    # too; compiled runtimes pay a fixed cost per run() once per network (see LatencyTable).
    per_call_overhead = False

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": torch.__version__, "precision": "fp32"}

    def label(self) -> str:
        return self.name

    def prepare(self, model: nn.Module, inputs: Sequence[torch.Tensor], *, threads: int) -> Run:
        del threads  # torch's thread count is the caller's (measure_latency sets it)
        return lambda: model(*inputs)


@dataclass(frozen=True)
class TorchScriptRuntime(Runtime):
    """``torch.jit.trace`` then ``torch.jit.freeze`` (what a C++/mobile deployment loads;
    freezing folds batch norm into the convolutions)."""

    name = "torchscript"
    per_call_overhead = True

    def prepare(self, model: nn.Module, inputs: Sequence[torch.Tensor], *, threads: int) -> Run:
        del threads
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript's deprecation notice; tracer notes
            frozen = torch.jit.freeze(torch.jit.trace(model, tuple(inputs), check_trace=False))
        return lambda: frozen(*inputs)


def onnx_bytes(model: nn.Module, inputs: Sequence[torch.Tensor], *, opset: int = ONNX_OPSET) -> bytes:
    """The module exported to ONNX (TorchScript-based exporter, eval mode: batch norm folded
    into the convolutions, as for a deployed file), inputs named ``x0``, ``x1``, ..."""
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(), tuple(inputs), buffer, dynamo=False, opset_version=opset,
            input_names=[f"x{i}" for i in range(len(inputs))], output_names=["y"],
        )
    return buffer.getvalue()


@dataclass(frozen=True)
class OnnxRuntime(Runtime):
    """ONNX Runtime, one ``InferenceSession`` per model: ``threads`` intra-op threads, one
    inter-op thread, sequential execution, graph optimisation ``ORT_ENABLE_ALL``.
    ``precision="int8"`` times the model statically quantized (``nas.latency.quantize``:
    QDQ, per-channel int8 weights, uint8 activations), calibrated on the timing inputs
    (the scales do not change the speed)."""

    precision: str = "fp32"
    provider: str = "CPUExecutionProvider"
    graph_optimization: str = "ORT_ENABLE_ALL"

    name = "onnxruntime"
    per_call_overhead = True

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r} is not one of {list(PRECISIONS)}")

    def describe(self) -> dict[str, Any]:
        import onnxruntime

        return {"name": self.name, "version": onnxruntime.__version__, "precision": self.precision,
                "provider": self.provider, "graph_optimization": self.graph_optimization,
                "inter_op_threads": 1, "opset": ONNX_OPSET}

    def label(self) -> str:
        return f"{self.name} {self.precision}"

    def session(self, model_bytes: bytes, *, threads: int) -> Any:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = getattr(onnxruntime.GraphOptimizationLevel, self.graph_optimization)
        return onnxruntime.InferenceSession(model_bytes, options, providers=[self.provider])

    def prepare(self, model: nn.Module, inputs: Sequence[torch.Tensor], *, threads: int) -> Run:
        if any(x.device.type != "cpu" for x in inputs):
            raise ValueError("latency runtime onnxruntime times on the CPU; use runtime=torch for CUDA")
        proto = onnx_bytes(model, inputs)
        feed = {f"x{i}": x.numpy() for i, x in enumerate(inputs)}
        if self.precision == "int8":
            from nas.latency.quantize import quantize_onnx

            with tempfile.TemporaryDirectory() as tmp:
                fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
                fp32.write_bytes(proto)
                quantize_onnx(fp32, int8, [feed])
                proto = int8.read_bytes()
        session = self.session(proto, threads=threads)
        return lambda: session.run(None, feed)


def make_runtime(name: str = "auto", *, device: str | torch.device = "cpu", precision: str = "fp32") -> Runtime:
    """The runtime called ``name``; ``"auto"``: ONNX Runtime on the CPU, eager torch on CUDA.

    int8 is an ONNX Runtime precision: asking for it with another runtime is an error.
    """
    if name not in RUNTIMES:
        raise ValueError(f"runtime={name!r} is not one of {list(RUNTIMES)}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not one of {list(PRECISIONS)}")
    on_cuda = torch.device(device).type == "cuda" if str(device) != "auto" else torch.cuda.is_available()
    if name == "auto":
        name = "torch" if on_cuda else "onnxruntime"
    if name == "onnxruntime":
        if on_cuda:
            raise ValueError("runtime=onnxruntime measures on the CPU here; use device=cpu, or runtime=torch on CUDA")
        return OnnxRuntime(precision=precision)
    if precision != "fp32":
        raise ValueError(f"precision={precision} needs runtime=onnxruntime (got runtime={name})")
    return TorchScriptRuntime() if name == "torchscript" else Runtime()

