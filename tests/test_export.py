"""melnas-export: TorchScript always; ONNX when the optional onnx package is installed.

The ONNX test is skipped only when ``onnx`` is missing (``pip install 'melnas[onnx]'``);
the message when it is missing is tested either way.
"""

from __future__ import annotations

import builtins
import importlib.util
import json

import pytest
import torch

from experiments.export import main as export_main
from nas.evaluate.export import OnnxUnavailable, export_onnx, export_torchscript
from nas.io.model_file import load_model
from tests.test_train_fixtures import tiny_cache, tiny_trained  # noqa: F401 (fixtures)
from tests.test_cli import exit_status


def test_torchscript_export_matches_the_model(tiny_trained, tmp_path):
    trained = load_model(tiny_trained.model_path)
    check = export_torchscript(trained, tmp_path / "model.torchscript.pt")
    assert check.max_abs_diff <= 1e-4 and check.variable_length
    extra = {"melnas.json": ""}
    scripted = torch.jit.load(str(check.path), _extra_files=extra)
    meta = json.loads(extra["melnas.json"])
    assert meta["class_names"] == trained.class_names and meta["input_shape"] == list(trained.input_shape)
    assert meta["data_meta"]["n_mels"] == 32
    x = torch.randn(3, *trained.input_shape)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), trained.model(x), atol=1e-5, rtol=1e-5)


def test_onnx_export_matches_the_model(tiny_trained, tmp_path):
    onnx = pytest.importorskip("onnx", reason="the optional onnx package is not installed (melnas[onnx])")
    trained = load_model(tiny_trained.model_path)
    check = export_onnx(trained, tmp_path / "model.onnx")
    proto = onnx.load(str(check.path))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["class_names"]) == trained.class_names
    if importlib.util.find_spec("onnxruntime") is not None:  # installed with melnas[onnx]
        assert check.verified_by == "onnxruntime"
        assert check.max_abs_diff <= 1e-4 and check.variable_length


def test_missing_onnx_gives_a_clear_message(tiny_trained, tmp_path, monkeypatch, capsys):
    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError("No module named 'onnx'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    with pytest.raises(OnnxUnavailable, match=r"melnas\[onnx\]"):
        export_onnx(load_model(tiny_trained.model_path), tmp_path / "model.onnx")
    # the CLI still writes TorchScript, says why ONNX was skipped, and fails only when ONNX was asked for
    assert export_main([str(tiny_trained.model_path), "--out", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "TorchScript:" in out and "ONNX skipped" in err
    assert (tmp_path / "model.torchscript.pt").is_file()
    assert exit_status(export_main, [str(tiny_trained.model_path), "--out", str(tmp_path), "--format", "onnx"]) == 2
