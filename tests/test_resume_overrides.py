"""``resume=true hydra.run.dir=<run>`` fills in the overrides the run was started with."""

from __future__ import annotations

from experiments.resume_overrides import STARTED_WITH, fill_resume_overrides, record_overrides


def test_a_resume_takes_the_recorded_overrides_it_does_not_give(tmp_path):
    record_overrides(tmp_path, ["experiment=quick", "trainer.epochs=3", "seed=2", "resume=false",
                                "hydra.run.dir=elsewhere", "+trainer.extra=1", "trainer.stop_after_epochs=1"])
    assert (tmp_path / STARTED_WITH).is_file()
    argv = ["melnas-search", "resume=true", f"hydra.run.dir={tmp_path}", "trainer.threads=1", "seed=3"]
    assert fill_resume_overrides(argv) == [
        "melnas-search", "experiment=quick", "trainer.epochs=3", "+trainer.extra=1",  # seed given: it wins
        "resume=true", f"hydra.run.dir={tmp_path}", "trainer.threads=1", "seed=3"]
    # per call settings (stop_after_epochs) are not carried over; quoting and spelling as Hydra reads them
    spaced = tmp_path / "my runs"
    record_overrides(spaced, ["seed=2"])
    assert fill_resume_overrides(["melnas-search", "+resume=TRUE", f"hydra.run.dir='{spaced}'"])[1] == "seed=2"


def test_no_resume_a_sweep_or_no_record_leaves_the_command_line_alone(tmp_path):
    for argv in (["melnas-search", f"hydra.run.dir={tmp_path}", "seed=1"],
                 ["melnas-search", "resume=true", f"hydra.run.dir={tmp_path}"]):  # no record: a run from before it
        assert fill_resume_overrides(list(argv)) == argv
    record_overrides(tmp_path, ["seed=1"])
    sweep = ["melnas-search", "-m", "resume=true", f"hydra.run.dir={tmp_path}"]
    assert fill_resume_overrides(list(sweep)) == sweep
