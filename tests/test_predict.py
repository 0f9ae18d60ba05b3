"""melnas-predict: per-file and per-window probabilities; bad files reported, the rest predicted."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from experiments.predict import main as predict_main
from nas.data.features import windows_from_file
from nas.io.model_file import load_model
from nas.evaluate.export import export_onnx
from nas.evaluate.predict import predict_file, torch_classifier
from nas.evaluate.quantized import export_int8
from tests.test_train_fixtures import SAMPLE_RATE, tiny_cache, tiny_trained  # noqa: F401 (fixtures)
from tests.test_cli import exit_status


@pytest.fixture
def recordings(tmp_path):
    """A wav, a flac at another sample rate in stereo, and three bad files."""
    t = np.arange(int(3.2 * SAMPLE_RATE)) / SAMPLE_RATE
    tone = (0.3 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)
    sf.write(tmp_path / "low.wav", tone, SAMPLE_RATE)
    t44 = np.arange(int(2.0 * 44100)) / 44100
    high = 0.3 * np.sin(2 * np.pi * 1760.0 * t44)
    sf.write(tmp_path / "high.flac", np.stack([high, high], axis=1).astype(np.float32), 44100)
    (tmp_path / "text.wav").write_text("this is not audio")
    sf.write(tmp_path / "short.wav", tone[: SAMPLE_RATE // 100], SAMPLE_RATE)  # 0.01 s < min_seconds
    return {
        "good": [tmp_path / "low.wav", tmp_path / "high.flac"],
        "bad": [tmp_path / "text.wav", tmp_path / "short.wav", tmp_path / "missing.ogg"],
    }


def test_file_probabilities_are_the_mean_of_its_windows(tiny_trained, recordings):
    trained = load_model(tiny_trained.model_path)
    path = recordings["good"][0]
    prediction = predict_file(torch_classifier(trained), path)
    windows = windows_from_file(path, trained.data_meta)
    with torch.no_grad():
        expected = torch.softmax(trained.model.eval()(torch.from_numpy(windows)), dim=1).numpy()
    assert len(prediction.windows) == windows.shape[0] == 5  # 3.2 s, 1 s windows, 0.5 s hop
    assert [w.start_seconds for w in prediction.windows] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert prediction.windows[-1].end_seconds == 3.0
    got = np.array([list(w.probabilities.values()) for w in prediction.windows])
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    np.testing.assert_allclose(list(prediction.probabilities.values()), expected.mean(0), rtol=1e-6)
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0)
    assert prediction.label == trained.class_names[int(expected.mean(0).argmax())]


def test_cli_reports_bad_files_and_predicts_the_rest(tiny_trained, recordings, capsys):
    files = [str(p) for p in (recordings["bad"][0], *recordings["good"], *recordings["bad"][1:])]
    code = predict_main([str(tiny_trained.model_path), *files, "--json", "--windows"])
    out, err = capsys.readouterr()
    assert code == 1  # some files were lost: a script must notice, the rest are still printed
    document = json.loads(out)
    assert [f["path"] for f in document["files"]] == [str(p) for p in recordings["good"]]
    assert document["class_names"] == ["high", "low", "noise"]
    for entry in document["files"]:
        assert sum(entry["probabilities"].values()) == pytest.approx(1.0)
        assert len(entry["windows"]) == entry["num_windows"] >= 1
    failed = {f["path"]: f["error"] for f in document["failed"]}
    assert set(failed) == {str(p) for p in recordings["bad"]}
    assert "cannot decode" in failed[str(recordings["bad"][0])]
    assert "too short" in failed[str(recordings["bad"][1])]
    assert "the data settings the model was trained with" in failed[str(recordings["bad"][1])]
    assert "cannot read" in failed[str(recordings["bad"][2])]
    for path in recordings["bad"]:
        assert f"skipped {path}:" in err
    assert "3 of 5 files could not be read" in err


def test_a_folder_given_as_a_file_says_to_pass_its_files(tiny_trained, tmp_path, capsys):
    assert predict_main([str(tiny_trained.model_path), str(tmp_path)]) == 1
    assert f"skipped {tmp_path}: is a folder: pass its audio files ({tmp_path / '*.wav'})" in capsys.readouterr().err


def test_cli_text_output(tiny_trained, recordings, capsys):
    code = predict_main([str(tiny_trained.model_path), str(recordings["good"][0]), "--windows", "--top-k", "2"])
    out, _ = capsys.readouterr()
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].startswith(f"{recordings['good'][0]}: ") and "5 windows" in lines[0]
    assert len(lines) == 1 + 5
    assert lines[1].split()[0] == "0.00-1.00"


def test_cli_fails_when_every_file_fails_or_the_model_is_unreadable(tiny_trained, recordings, capsys):
    assert predict_main([str(tiny_trained.model_path), *map(str, recordings["bad"])]) == 1
    assert exit_status(predict_main, [str(recordings["good"][0]), str(recordings["good"][0])]) == 2  # not a model
    _, err = capsys.readouterr()
    assert "not a readable melnas model.pt" in err


def _search_checkpoint(path):
    """A file shaped like ``<run>/checkpoints/last.pt`` (``nas.search.loop.checkpoint_state``'s keys)."""
    from nas.io.checkpoint import save_checkpoint

    keys = ("identity", "state", "supernet", "controller", "optimizer", "scheduler", "rng", "log_bytes")
    save_checkpoint(path, {"format": 1, **{key: {} for key in keys}})


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda path, model: path.write_text("epoch,loss\n1,0.5\n"),
         "it is a text file, not a torch archive (it begins 'epoch,loss')"),
        (lambda path, model: path.write_bytes(model.read_bytes()[: model.stat().st_size // 2]),
         "the file is truncated"),
        (lambda path, model: path.write_bytes(b""), "the file is empty"),
        (lambda path, model: sf.write(path, np.zeros(800, np.float32), 8000, format="WAV"),
         "it is a WAV audio file, not a model"),
        (lambda path, model: _search_checkpoint(path), "it is a melnas-search checkpoint"),
    ],
    ids=["text", "truncated", "empty", "audio", "search-checkpoint"],
)
def test_a_file_that_is_not_a_model_is_named_for_what_it_is(make, reason, tiny_trained, tmp_path, capsys):
    path = tmp_path / "model.pt"
    make(path, tiny_trained.model_path)
    assert exit_status(predict_main, [str(path), str(tmp_path / "x.wav")]) == 2
    _, err = capsys.readouterr()
    assert f"{path} is not a" in err and reason in err


def test_an_exported_onnx_file_predicts_what_its_model_pt_does(tiny_trained, recordings, tmp_path, capsys):
    """The file a user ships, fp32 or int8, run in ONNX Runtime on new recordings."""
    trained = load_model(tiny_trained.model_path)
    fp32 = export_onnx(trained, tmp_path / "model.onnx").path
    int8 = export_int8(trained, tmp_path / "model.int8.onnx", calibration_windows=64).path
    files = [str(p) for p in (*recordings["good"], recordings["bad"][0])]

    def predicted(model) -> dict:
        code = predict_main([str(model), *files, "--json", "--windows"])
        assert code == 1  # the bad file is reported for an ONNX model too
        document = json.loads(capsys.readouterr().out)
        assert [f["path"] for f in document["failed"]] == [files[-1]]
        return {f["path"]: f for f in document["files"]}

    reference, from_fp32, from_int8 = predicted(tiny_trained.model_path), predicted(fp32), predicted(int8)
    for path, entry in reference.items():
        # ONNX Runtime's float kernels differ from torch's in the last bits (export's own check: 1e-4 on logits)
        np.testing.assert_allclose(list(from_fp32[path]["probabilities"].values()),
                                   list(entry["probabilities"].values()), atol=1e-4)
        assert len(from_fp32[path]["windows"]) == len(entry["windows"])
        assert from_int8[path]["label"] == entry["label"]  # two tones far apart: int8 keeps the class
