"""Controllers: valid samples, exact resume, learning a known target, ENAS specifics.

The synthetic reward needs no network: the fraction of arc entries (each categorical,
and each input bit of each InputChoice, as in ENAS's arc encoding) that match a fixed
target arch.
"""

from __future__ import annotations

import io
import math
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hydra.utils import instantiate

from controllers.base import Controller, Sample, check_decisions, uniform_entropy
from search_spaces.base import uniform_values
from controllers.enas_lstm import EnasLstmController
from controllers.evolution import EvolutionController
from controllers.random_search import RandomController
from nas.io.registry import available_spaces, build_space
from search_spaces.base import Categorical, Decision, InputChoice, SearchSpace

CONTROLLER_CONF = Path(__file__).resolve().parents[1] / "conf" / "controller"
CONTROLLER_NAMES = sorted(p.stem for p in CONTROLLER_CONF.glob("*.yaml"))
OPS = ("conv3", "conv5", "sep3", "sep5", "max", "avg")


class ToySpace(SearchSpace):
    """A space with decisions only: enough for ``arch()`` / ``random_arch()``."""

    name = "toy"

    def __init__(self, decisions: list[Decision]) -> None:
        self._decisions = tuple(decisions)

    @property
    def decisions(self) -> tuple[Decision, ...]:
        return self._decisions

    def supernet(self, *, num_classes, input_shape):
        raise NotImplementedError

    def build(self, arch, *, num_classes, input_shape):
        raise NotImplementedError

    def layers(self, arch, *, num_classes, input_shape):
        raise NotImplementedError


def enas_like(layers: int = 4, *, skip_at_layer0: bool = False) -> list[Decision]:
    """ENAS macro layout: per layer an op and the skips from every earlier layer, plus
    categoricals of other option types (ints, bools)."""
    decisions: list[Decision] = []
    for i in range(layers):
        decisions.append(Categorical(f"l{i}_op", OPS))
        if i > 0 or skip_at_layer0:
            decisions.append(InputChoice(f"l{i}_skip", i))
    decisions += [Categorical("width", (16, 24, 32)), Categorical("se", (False, True))]
    return decisions


def sparse_skips() -> list[Decision]:
    """Skip choices only on some layers (more inputs than recorded anchors) and a
    single-option categorical."""
    return [
        Categorical("l0_kernel", (3, 5, 7)),
        Categorical("l1_kernel", (3, 5, 7)),
        Categorical("stem", ("fixed",)),
        Categorical("l2_kernel", (3, 5, 7)),
        InputChoice("l3_skip", 3),
        Categorical("l3_kernel", (3, 5)),
        InputChoice("l4_skip", 4),
    ]


SPACES = {
    "enas_like": lambda: ToySpace(enas_like()),
    "enas_like_skip0": lambda: ToySpace(enas_like(3, skip_at_layer0=True)),
    "sparse_skips": lambda: ToySpace(sparse_skips()),
    **{f"registered_{name}": (lambda name=name: build_space(name)) for name in available_spaces()},
}


def make(name: str, decisions, seed: int = 0) -> Controller:
    """Build a controller exactly as the search does: from its Hydra config."""
    with (CONTROLLER_CONF / f"{name}.yaml").open() as fh:
        partial = instantiate(yaml.safe_load(fh))
    controller = partial(decisions, seed=seed)
    assert isinstance(controller, Controller)
    return controller


def entries(decisions, values) -> list:
    """The arc as ENAS encodes it: one entry per categorical, one bit per input."""
    out: list = []
    for d, v in zip(decisions, values):
        out += [v] if isinstance(d, Categorical) else [i in v for i in range(d.num_inputs)]
    return out


def match(decisions, values, target) -> float:
    a, b = entries(decisions, values), entries(decisions, target)
    return float(np.mean([x == y for x, y in zip(a, b)]))


def most_likely(controller: Controller) -> tuple:
    """Each decision's most probable option; each input included when p > 1/2."""
    probs = controller.probabilities()
    values = []
    for d in controller.decisions:
        p = probs[d.name]
        if isinstance(d, Categorical):
            values.append(d.options[int(np.argmax(p))])
        else:
            values.append(tuple(i for i, q in enumerate(p) if q > 0.5))
    return tuple(values)


def drive(controller: Controller, steps: int, n: int, reward) -> list:
    """Run ``steps`` sample/update rounds; return everything observable."""
    seen = []
    for _ in range(steps):
        samples = controller.sample(n)
        stats = controller.update(samples, [reward(s.values) for s in samples])
        seen.append((samples, stats, controller.probabilities()))
    return seen


def uniform_reward(values) -> float:
    """A deterministic pseudo-reward in [0, 1) that differs between archs."""
    return (zlib.crc32(repr(values).encode()) % 1000) / 1000.0


# ---- every controller ---------------------------------------------------------------


@pytest.mark.parametrize("space_name", sorted(SPACES))
@pytest.mark.parametrize("name", CONTROLLER_NAMES)
def test_samples_are_valid_archs(name, space_name):
    space = SPACES[space_name]()
    controller = make(name, space.decisions, seed=1)
    for _ in range(3):  # the later rounds come from a trained / evolved controller
        samples = controller.sample(25)
        for s in samples:
            arch = space.arch(s.values)
            assert arch.values == s.values  # already canonical: sorted tuples, option values
            assert math.isfinite(s.log_prob) and s.log_prob <= 1e-6
            assert math.isfinite(s.entropy) and s.entropy >= -1e-6
        controller.update(samples, [uniform_reward(s.values) for s in samples])


@pytest.mark.parametrize("name", CONTROLLER_NAMES)
def test_state_dict_resume_is_exact(name):
    decisions = enas_like()
    original = make(name, decisions, seed=5)
    drive(original, steps=3, n=10, reward=uniform_reward)  # evolution: population now full
    state = original.state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    expected = drive(original, steps=4, n=10, reward=uniform_reward)

    from_memory = make(name, decisions, seed=99)  # a different seed: the state must win
    from_memory.load_state_dict(state)  # state_dict() is a copy, not a live view
    from_disk = make(name, decisions, seed=99)
    buffer.seek(0)
    from_disk.load_state_dict(torch.load(buffer, weights_only=True))
    for resumed in (from_memory, from_disk):
        assert drive(resumed, steps=4, n=10, reward=uniform_reward) == expected


@pytest.mark.parametrize("name", CONTROLLER_NAMES)
def test_probabilities_are_distributions_and_do_not_disturb_sampling(name):
    decisions = sparse_skips() + enas_like(3)
    a, b = make(name, decisions, seed=2), make(name, decisions, seed=2)
    drive(a, 3, 10, uniform_reward)
    drive(b, 3, 10, uniform_reward)
    probs = a.probabilities()
    assert list(probs) == [d.name for d in decisions]
    for d in decisions:
        p = np.asarray(probs[d.name])
        assert np.all((p >= 0) & (p <= 1))
        if isinstance(d, Categorical):
            assert p.shape == (d.size,) and p.sum() == pytest.approx(1.0, abs=1e-5)
        else:
            assert p.shape == (d.num_inputs,)
    assert a.sample(5) == b.sample(5)


@pytest.mark.parametrize("name", CONTROLLER_NAMES)
def test_bad_input_is_rejected(name):
    controller = make(name, enas_like())
    samples = controller.sample(2)
    with pytest.raises(ValueError, match="2 samples but 1 rewards"):
        controller.update(samples, [0.5])
    with pytest.raises(ValueError, match="finite"):
        controller.update(samples, [0.5, float("nan")])
    foreign = Sample(("conv3",), 0.0, 0.0)
    with pytest.raises(ValueError, match="1 values"):
        controller.update([foreign], [0.5])
    values = list(samples[0].values)
    values[2] = (5,)  # l1_skip has one input
    with pytest.raises(ValueError, match="l1_skip"):
        controller.update([Sample(tuple(values), 0.0, 0.0)], [0.5])
    with pytest.raises(ValueError, match="positive integer"):
        controller.sample(0)
    with pytest.raises(ValueError, match="other decisions"):
        make(name, enas_like(3)).load_state_dict(controller.state_dict())


def test_decisions_are_checked():
    with pytest.raises(ValueError, match="at least one"):
        check_decisions([])
    with pytest.raises(ValueError, match="unique"):
        check_decisions([Categorical("a", (1, 2)), InputChoice("a", 1)])
    with pytest.raises(TypeError, match="Categorical or InputChoice"):
        check_decisions([("a", (1, 2))])
    with pytest.raises(ValueError, match="seed"):
        RandomController(enas_like(), seed=-1)


# ---- random ---------------------------------------------------------------------------


def test_random_draws_like_space_random_arch():
    space = ToySpace(enas_like())
    controller = RandomController(space.decisions, seed=11)
    rng = np.random.default_rng(11)
    assert [s.values for s in controller.sample(20)] == [space.random_arch(rng).values for _ in range(20)]
    s = controller.sample(1)[0]
    expected_entropy = 4 * math.log(6) + math.log(3) + math.log(2) + (1 + 2 + 3) * math.log(2)
    assert s.entropy == pytest.approx(expected_entropy) and s.log_prob == pytest.approx(-expected_entropy)


# ---- regularized evolution ------------------------------------------------------------


def test_evolution_learns_target():
    decisions = enas_like()
    target = uniform_values(decisions, np.random.default_rng(100))
    controller = EvolutionController(decisions, seed=0, population_size=20, sample_size=5)
    first = None
    for step in range(1, 101):
        samples = controller.sample(10)
        stats = controller.update(samples, [match(decisions, s.values, target) for s in samples])
        first = first or stats["population_reward_mean"]
        if controller.best[1] == 1.0:
            break
    # 4 ops x 6, 3 widths, 2 SE, 6 skip bits: 497,664 archs; measured: found after 220
    # evaluations (90-440 over seeds 0-7; random search gets 67-83% of the entries in as
    # many).
    assert controller.best == (target, 1.0), f"not found in {stats['num_evaluated']:.0f} evaluations"
    assert stats["population_reward_mean"] > first + 0.2


def test_evolution_mutates_one_decision_and_the_oldest_die():
    decisions = enas_like()
    controller = EvolutionController(decisions, seed=3, population_size=10, sample_size=3)
    added = []
    for _ in range(6):
        samples = controller.sample(5)
        population = [values for values, _ in controller.state_dict()["population"]]
        if len(population) == 10:  # full: every proposal is a one-entry mutation of a member
            for s in samples:
                child = entries(decisions, s.values)
                distances = [sum(a != b for a, b in zip(child, entries(decisions, p))) for p in population]
                assert min(distances) == 1
        else:  # filling up: uniform proposals
            assert all(s.log_prob == pytest.approx(-uniform_entropy(decisions)) for s in samples)
        controller.update(samples, [uniform_reward(s.values) for s in samples])
        added += [s.values for s in samples]
        assert [values for values, _ in controller.state_dict()["population"]] == added[-10:]


def test_evolution_settings_are_checked():
    with pytest.raises(ValueError, match="sample_size"):
        EvolutionController(enas_like(), population_size=5, sample_size=6)
    with pytest.raises(ValueError, match="population_size"):
        EvolutionController(enas_like(), population_size=1, sample_size=1)
    state = EvolutionController(enas_like(), population_size=5, sample_size=2).state_dict()
    with pytest.raises(ValueError, match="same settings"):
        EvolutionController(enas_like(), population_size=6, sample_size=2).load_state_dict(state)


# ---- ENAS LSTM ------------------------------------------------------------------------


def test_lstm_learns_target_and_entropy_falls():
    """ENAS defaults except the skip penalty, which pulls every input towards ENAS's skip
    density whatever the reward says (tested on its own below); 20 samples per update.

    Measured (seeds 0-7, this space): every criterion below holds after 180-320 updates
    (5-13 s on a busy 2-core machine) for 7 seeds of 8; seed 5 keeps 2 of the 12 entries
    (4 ops, 6 skip bits, width, SE) wrong. Seed 0: 180 updates, mean reward 0.36 -> 0.61,
    entropy 13.1 -> 9.6 nats."""
    decisions = enas_like()
    target = uniform_values(decisions, np.random.default_rng(100))
    controller = EnasLstmController(decisions, seed=0, skip_weight=0.0)
    history = []

    def learned() -> bool:
        early = np.mean([h["reward_mean"] for h in history[:10]])
        late = np.mean([h["reward_mean"] for h in history[-10:]])
        return (
            match(decisions, most_likely(controller), target) > 0.9  # at most one entry wrong
            and late > early + 0.25
            and history[-1]["entropy"] < 0.8 * history[0]["entropy"]
        )

    for step in range(1, 401):
        samples = controller.sample(20)
        history.append(controller.update(samples, [match(decisions, s.values, target) for s in samples]))
        if step % 10 == 0 and learned():
            break
    assert learned(), (
        f"after {step} updates: match {match(decisions, most_likely(controller), target):.2f}, "
        f"reward {history[0]['reward_mean']:.2f} -> {history[-1]['reward_mean']:.2f}, "
        f"entropy {history[0]['entropy']:.2f} -> {history[-1]['entropy']:.2f}"
    )


def test_lstm_skip_penalty_pulls_inputs_to_enas_skip_target():
    """With nothing to gain from the reward, only the skip penalty moves the policy: to
    ENAS's fixed point, where sigmoid(q) = 0.4, i.e. a sampled inclusion rate of
    softmax([-q, q])[1] = sigmoid(2 logit(0.4)) = 0.308."""
    decisions = enas_like()
    controller = EnasLstmController(decisions, seed=0, lr=0.005)

    def inclusion() -> float:
        probs = controller.probabilities()
        return float(np.mean([p for d in decisions if isinstance(d, InputChoice) for p in probs[d.name]]))

    before = inclusion()
    drive(controller, steps=60, n=20, reward=lambda values: 0.0)
    fixed_point = 1.0 / (1.0 + math.exp(-2.0 * math.log(0.4 / 0.6)))
    assert before == pytest.approx(0.5, abs=0.05)
    assert inclusion() == pytest.approx(fixed_point, abs=0.03)


def test_lstm_sample_log_prob_matches_teacher_forced_update():
    decisions = sparse_skips() + enas_like(3)
    controller = EnasLstmController(decisions, seed=4)
    samples = controller.sample(16)
    stats = controller.update(samples, [0.5] * 16)
    assert stats["log_prob_mean"] == pytest.approx(np.mean([s.log_prob for s in samples]), abs=1e-5)
    assert stats["entropy"] == pytest.approx(np.mean([s.entropy for s in samples]), abs=1e-4)


def test_lstm_baseline_follows_enas_moving_average():
    controller = EnasLstmController(enas_like(), seed=0, entropy_weight=0.0)
    rewards = [0.2, 0.9, 0.4]
    stats = controller.update(controller.sample(3), rewards)
    b = 0.0
    for r in rewards:
        b -= (1 - 0.99) * (b - r)
    assert stats["baseline"] == pytest.approx(b)


def test_lstm_anchors_one_per_layer():
    """ENAS layout, with or without a 0-input skip choice at layer 0, needs no learned
    anchors; skip choices on some layers only get one per unmarked earlier layer."""
    assert EnasLstmController(enas_like()).policy.extra_anchors.shape[0] == 0
    assert EnasLstmController(enas_like(skip_at_layer0=True)).policy.extra_anchors.shape[0] == 0
    assert EnasLstmController(sparse_skips()).policy.extra_anchors.shape[0] == 2


@pytest.mark.parametrize(
    "setting, value",
    [
        ("lr", 0.0),
        ("lstm_size", 0),
        ("baseline_decay", 1.0),
        ("skip_target", 1.0),
        ("tanh_constant", -1.0),
        ("temperature", 0.0),
        ("entropy_weight", float("nan")),
    ],
)
def test_lstm_settings_are_checked(setting, value):
    with pytest.raises(ValueError, match=setting):
        EnasLstmController(enas_like(), **{setting: value})
