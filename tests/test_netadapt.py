"""The NetAdapt loop (nas.compress.netadapt) on tiny models of both spaces, and melnas-adapt end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from nas.latency.measure import LatencyTable, in_turns
from nas.io.model_file import load_model
from nas.compress.netadapt import (
    MAX_STEP_HALVINGS,
    AdaptSettings,
    Proposal,
    choose_step,
    most_pruned,
    netadapt,
    pick_best,
    propose,
)
from experiments.adapt import adapt
from experiments.cli import HydraRun
from nas.latency.relative import RelativeLatency, measure_in_turns, time_in_turns
from nas.compress.pruning import candidate_widths, channel_groups, prunable_widths
from nas.io.config_dirs import BUILTIN_CONF_DIR
from tests.test_train_fixtures import train_model
from tests.test_pruning import NUM_CLASSES, _enas, _mobilenet
from tests.test_train_fixtures import compose_train, tiny_cache  # noqa: F401 (fixture)

CASES = {"mobilenetv3": _mobilenet, "enas_macro": _enas}


def _param_ms(model: torch.nn.Module, input_shape=None, *, num_inputs: int = 1) -> float:
    """A deterministic stand-in for a latency measurement: 1 ms per 1000 parameters (+ a floor)."""
    return 0.05 + sum(p.numel() for p in model.parameters()) / 1000.0


def _overhead_ms(model: torch.nn.Module, input_shape=None, *, num_inputs: int = 1) -> float:
    """Like a small net on a CPU: a fixed cost per conv that no width cut removes (20 ms each) dominates."""
    return _param_ms(model) + 20.0 * sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def _table(tmp_path: Path, space, shape, measure=_param_ms) -> LatencyTable:
    context = {"space": space.name, "input_shape": list(shape), "num_classes": NUM_CLASSES, "test": measure.__name__}
    return LatencyTable(tmp_path / "table.json", context, measure=in_turns(measure))


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("step_fraction", [0.01, 0.05])
def test_every_proposal_lowers_predicted_latency_by_its_step(name, step_fraction, tmp_path):
    space, arch, shape = CASES[name]()
    table = _table(tmp_path, space, shape)

    def predict(a, widths):
        return table.predict(space.layers(a, num_classes=NUM_CLASSES, input_shape=shape, widths=widths))

    widths = prunable_widths(space, arch)
    current = predict(arch, widths)
    required = current - step_fraction * current
    proposals = propose(space, arch, widths, predict=predict, required_ms=required, divisor=8, min_channels=8)
    assert proposals
    groups = {g.name: g for g in channel_groups(space, arch)}
    for p in proposals:
        assert p.predicted_ms <= required
        assert p.predicted_ms == pytest.approx(predict(p.arch, p.widths))
        assert p.channels % 8 == 0 and p.channels < p.channels_before
        assert {k: v for k, v in p.widths.items() if k != p.group} == {k: v for k, v in widths.items() if k != p.group}
        # The fewest filters: every wider candidate misses the step.
        wider = [
            w for w in candidate_widths(p.channels_before, divisor=8, min_channels=8, forbidden=groups[p.group].forbidden)
            if w > p.channels
        ]
        assert all(predict(arch, {**widths, p.group: w}) > required for w in wider)
        if p.channels == 0:  # a removal: only when the narrowest width falls short
            assert groups[p.group].removal and p.group not in p.widths
            assert p.arch == space.arch({**arch.as_dict(), **dict(groups[p.group].removal)})
        else:
            assert p.arch == arch


def test_blocks_are_removed_when_no_width_saves_enough(tmp_path):
    """A step larger than any width cut of a residual block, smaller than its removal."""
    space, arch, shape = _mobilenet()
    table = _table(tmp_path, space, shape)

    def predict(a, widths):
        return table.predict(space.layers(a, num_classes=NUM_CLASSES, input_shape=shape, widths=widths))

    widths = prunable_widths(space, arch)
    groups = {g.name: g for g in channel_groups(space, arch) if g.prunable}
    removable = [g for g in groups.values() if g.removal]
    assert removable  # MobileNetV3-Small's residual blocks
    narrowest = {g.name: predict(arch, {**widths, g.name: 8}) for g in removable}
    removed = {
        g.name: predict(space.arch({**arch.as_dict(), **dict(g.removal)}), {k: v for k, v in widths.items() if k != g.name})
        for g in removable
    }
    best = max(removable, key=lambda g: narrowest[g.name] - removed[g.name])
    required = removed[best.name]
    assert narrowest[best.name] > required  # removing the block saves more than any width cut
    proposals = {p.group: p for p in propose(space, arch, widths, predict=predict, required_ms=required, divisor=8, min_channels=8)}
    assert proposals[best.name].channels == 0
    for g in removable:
        expected_removal = narrowest[g.name] > required >= removed[g.name]
        assert (g.name in proposals and proposals[g.name].channels == 0) == expected_removal


def _random_batches(shape, n: int, *, seed: int):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, *shape, generator=gen), torch.randint(0, NUM_CLASSES, (8,), generator=gen)) for _ in range(n)]


@pytest.mark.parametrize(
    "name,measure,target_ratio",
    [("enas_macro", _param_ms, 0.85), ("mobilenetv3", _param_ms, 0.85), ("mobilenetv3", _overhead_ms, 0.6)],
)
def test_loop_reaches_the_target_and_keeps_a_consistent_model(name, measure, target_ratio, tmp_path):
    space, arch, shape = CASES[name]()
    torch.manual_seed(0)
    model = space.build(arch, num_classes=NUM_CLASSES, input_shape=shape)
    table = _table(tmp_path, space, shape, measure)
    settings = AdaptSettings(init_ratio=0.05, decay=0.9, max_iterations=30, short_steps=2)
    seen: list[int] = []
    result = netadapt(
        space, arch, model, num_classes=NUM_CLASSES, input_shape=shape,
        predict_layers=table.predict, measure=measure,
        train_batches=lambda k: _random_batches(shape, 2, seed=k), val_batches=_random_batches(shape, 2, seed=99),
        target_ratio=target_ratio, settings=settings, on_iteration=lambda trace: seen.append(len(trace)),
    )
    assert result.stop_reason == "target reached"
    assert seen == list(range(1, result.iterations + 2))  # the start, then every iteration
    assert result.target_ms == pytest.approx(target_ratio * measure(model))
    assert result.trace[-1].latency_ms == pytest.approx(result.trace[-1].measured_ms)
    assert result.trace[-1].measured_ms <= result.target_ms
    assert result.iterations >= 2
    assert result.trace[-1].measured_ms == pytest.approx(measure(result.model))
    for before, row in zip(result.trace, result.trace[1:]):
        assert row.predicted_ms < before.predicted_ms
        assert row.channels < row.channels_before
        assert row.measured_ms < before.measured_ms
    assert prunable_widths(space, result.arch, result.widths) == result.widths
    removed = [row.group for row in result.trace[1:] if row.channels == 0]
    assert (result.arch != arch) == bool(removed)
    if measure is _overhead_ms:  # width cuts alone cannot reach the target
        assert removed
    rebuilt = space.build(result.arch, num_classes=NUM_CLASSES, input_shape=shape, widths=result.widths)
    rebuilt.load_state_dict(result.model.state_dict(), strict=True)
    assert result.model.eval()(torch.randn(2, *shape)).shape == (2, NUM_CLASSES)


def _adapt_enas(tmp_path, target_ms: float, train_batches=None):
    space, arch, shape = _enas()
    model = space.build(arch, num_classes=NUM_CLASSES, input_shape=shape)
    return netadapt(
        space, arch, model, num_classes=NUM_CLASSES, input_shape=shape,
        predict_layers=_table(tmp_path, space, shape).predict, measure=_param_ms,
        train_batches=train_batches or (lambda k: _random_batches(shape, 1, seed=k)),
        val_batches=_random_batches(shape, 1, seed=9),
        target_ms=target_ms, settings=AdaptSettings(init_ratio=0.5, decay=1.0, short_steps=1),
    )


def _floor_ms() -> float:
    space, arch, shape = _enas()
    floor_arch, floor_widths = most_pruned(space, arch, prunable_widths(space, arch), divisor=8, min_channels=8)
    assert floor_widths and all(w == 8 for w in floor_widths.values())
    return _param_ms(space.build(floor_arch, num_classes=NUM_CLASSES, input_shape=shape, widths=floor_widths))


def test_a_target_below_the_most_pruned_network_is_refused_before_any_work(tmp_path):
    def no_training(k):
        raise AssertionError("fine-tuned although the target is out of reach")

    with pytest.raises(ValueError, match=r"out of reach.*still runs at 0\.\d\d of its latency"):
        _adapt_enas(tmp_path, target_ms=0.99 * _floor_ms(), train_batches=no_training)


def test_a_target_just_above_the_most_pruned_network_is_reached(tmp_path):
    result = _adapt_enas(tmp_path, target_ms=1.01 * _floor_ms())
    assert result.stop_reason == "target reached"
    assert result.floor_ratio == pytest.approx(_floor_ms() / result.initial_ms)


def test_loop_stops_clearly_when_no_group_saves_more(tmp_path, monkeypatch):
    """The floor can measure under the target (noise) while the loop cannot get there."""
    monkeypatch.setattr("nas.compress.netadapt.check_reachable", lambda *args, **kwargs: 0.0)
    result = _adapt_enas(tmp_path, target_ms=0.01)
    assert "no group can be pruned further" in result.stop_reason
    assert all(w == 8 for w in result.widths.values())


def _proposal(group: str, predicted: float) -> Proposal:
    return Proposal(group, 16, 8, {group: 8}, predicted, None)


def _proposals_saving(options: dict[str, float], current_ms: float):
    """``propose_at`` over groups that each save a fixed amount: those saving at least the step."""
    return lambda step: [_proposal(g, current_ms - saving) for g, saving in options.items() if saving >= step]


def test_a_step_that_would_overshoot_is_halved_to_one_that_lands():
    """Near the target only a block removal (saving 1.0) meets the step; a width cut saving
    0.3 lands within the tolerance once the step is halved twice."""
    step, proposals = choose_step(_proposals_saving({"block": 1.0, "width": 0.3}, 10.0), 0.8, lowest_ms=9.5)
    assert step == pytest.approx(0.2)
    assert [p.group for p in proposals] == ["width"]


def test_far_from_the_target_every_proposal_is_kept():
    step, proposals = choose_step(_proposals_saving({"block": 1.0, "width": 0.9}, 10.0), 0.8, lowest_ms=5.0)
    assert step == 0.8 and [p.group for p in proposals] == ["block", "width"]


def test_when_only_overshooting_proposals_exist_the_first_step_with_any_is_kept():
    step, proposals = choose_step(_proposals_saving({"a": 1.0, "b": 0.7}, 10.0), 1.6, lowest_ms=9.9)
    assert step == pytest.approx(0.8) and [p.group for p in proposals] == ["a"]
    step, proposals = choose_step(_proposals_saving({}, 10.0), 1.6, lowest_ms=9.9)
    assert proposals == [] and step == pytest.approx(1.6 / 2 ** (MAX_STEP_HALVINGS + 1))


def test_measuring_in_turns_cancels_a_changing_load():
    """The load changes between rounds (x1, x3, x2 ...) and one round is disturbed
    between the two readings: the median ratio is still the true one. The two models
    take turns at being timed first."""
    small, large = torch.nn.Linear(2, 2), torch.nn.Linear(8, 8)
    base = {id(small): 1.5, id(large): 2.5}
    loads = iter([1, 1, 3, 3, 2, 2, 9, 1, 4, 4])
    order = []

    def measure(model):
        order.append("model" if model is small else "reference")
        return base[id(model)] * next(loads)

    turns = measure_in_turns(small, large, measure, rounds=5)
    assert order == ["model", "reference", "reference", "model"] * 2 + ["model", "reference"]
    assert turns.ratio == pytest.approx(0.6)
    assert (turns.model_ms, turns.reference_ms) == (pytest.approx(3.0), pytest.approx(7.5))


def test_time_in_turns_rotates_the_order_every_round():
    order = []
    readings = time_in_turns(["a", "b", "c"], lambda m: order.append(m) or len(order), rounds=3)
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert readings == [[1, 6, 8], [2, 4, 9], [3, 5, 7]]


def test_relative_latency_confirms_a_reading_under_the_threshold_on_more_rounds():
    calls = []

    def measure(model):
        calls.append(model)
        return {"ref": 10.0, "fast": 5.0}[model]

    timing = RelativeLatency("ref", measure, rounds=2, confirm_factor=3)
    assert timing.reference_ms == 10.0 and len(calls) == 2
    assert timing.measure_ms("fast", confirm_below=4.0) == 5.0 and len(calls) == 2 + 4
    assert timing.measure_ms("fast", confirm_below=6.0) == 5.0 and len(calls) == 6 + 4 + 12


def test_pick_rules():
    scored = [(_proposal("a", 9.0), 0.80), (_proposal("b", 5.0), 0.78), (_proposal("c", 9.5), 0.80)]
    assert pick_best(scored, rule="accuracy", current_accuracy=0.82, current_predicted_ms=10.0) == 0
    # a loses 0.02 per ms, b 0.04 / 5 = 0.008 per ms: b is the better trade
    assert pick_best(scored, rule="accuracy_per_ms", current_accuracy=0.82, current_predicted_ms=10.0) == 1


@pytest.mark.parametrize(
    "bad", [{"init_ratio": 0.0}, {"decay": 1.5}, {"max_iterations": 0}, {"pick": "loss"}, {"divisor": 0}]
)
def test_settings_are_checked(bad):
    with pytest.raises(ValueError):
        AdaptSettings(**bad)


# ---- melnas-adapt end to end, through the real pipeline on tiny generated audio -------


def compose_adapt(*overrides: str):
    with initialize_config_dir(config_dir=str(BUILTIN_CONF_DIR), version_base="1.3"):
        return compose(config_name="adapt", overrides=list(overrides))


def test_adapt_config_composes_with_paper_defaults():
    cfg = compose_adapt("model=x.pt", "target_ratio=0.6")
    settings = AdaptSettings(**cfg.netadapt)
    assert (settings.init_ratio, settings.decay, settings.momentum, settings.weight_decay) == (0.025, 0.96, 0.9, 1e-4)


@pytest.mark.slow
def test_melnas_adapt_end_to_end(tiny_cache, tmp_path, monkeypatch, caplog):
    # Timings of a 16-filter model are noise-level: NetAdapt's table and measurements use the
    # deterministic stand-in, so every run prunes (the real timer is covered in test_latency).
    monkeypatch.setattr("nas.latency.measure.InterleavedTimer.__call__",
                        lambda timer, models: [_param_ms(m.model) for m in models])
    trained = train_model(
        compose_train(tiny_cache, "search_space.filters=16", "train.epochs=3"), tmp_path / "train"
    )
    cfg = compose_adapt(
        f"model={trained.model_path}", "target_ratio=0.9", "device=cpu", "seed=0",
        "netadapt.short_steps=3", "netadapt.max_iterations=3", "netadapt.init_ratio=0.05", "short_batch_size=8",
        "finetune.epochs=1", "finetune.batch_size=8", f"latency_table.cache_dir={tmp_path / 'latency'}",
        "latency_table.calibration_archs=0", "latency_table.warmup=2", "latency_table.repeats=5",
        "latency_table.statistic=min", "latency_table.min_span_ms=0", "netadapt.measure_rounds=1", "latency_measure.warmup=1", "latency_measure.repeats=3",
    )
    run = adapt(cfg, HydraRun(tmp_path / "adapt"))
    metrics = json.loads(run.metrics_path.read_text())
    assert metrics["retrained"] is False and metrics["origin"].endswith("+netadapt")
    summary = metrics["netadapt"]
    assert summary["target_ms"] == pytest.approx(0.9 * summary["initial_measured_ms"])
    warned = any("of the target latency, not within 5%" in r.getMessage() for r in caplog.records)
    assert warned == (not summary["within_5pct_of_target"])
    with run.trace_path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == summary["iterations"] + 1 >= 2
    assert run.plot_path.is_file()
    adapted = load_model(run.model_path)
    assert adapted.widths == summary["widths_after"] != summary["widths_before"]
    x = torch.randn(2, *adapted.input_shape)
    assert adapted.model(x).shape == (2, len(adapted.class_names))


def test_adapt_refuses_two_targets(tmp_path):
    space, arch, shape = _enas()
    model = space.build(arch, num_classes=NUM_CLASSES, input_shape=shape)
    with pytest.raises(ValueError, match="exactly one"):
        netadapt(
            space, arch, model, num_classes=NUM_CLASSES, input_shape=shape, predict_layers=lambda _: 1.0,
            measure=_param_ms, train_batches=lambda k: [], val_batches=[], target_ms=1.0, target_ratio=0.5,
        )


@pytest.mark.parametrize(
    "overrides, message",
    [([], "model is required"), (["model=x.pt"], "exactly one"),
     (["model=x.pt", "target_ms=1", "target_ratio=0.5"], "exactly one")],
)
def test_adapt_config_errors_name_the_setting(overrides, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        adapt(compose_adapt(*overrides), HydraRun(tmp_path))
