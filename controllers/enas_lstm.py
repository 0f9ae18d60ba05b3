"""The ENAS LSTM controller (Pham et al. 2018, arXiv 1802.03268), generic over any space.

An LSTM cell walks the space's decisions in order, one step per decision:

- ``Categorical``: a softmax head sized from the decision's options reads the hidden
  state; the next input is the embedding of the chosen option (one table per decision).
- ``InputChoice`` with ``n`` inputs: attention over the ``n`` most recent *anchors*
  (hidden states that stand for earlier layers): ``q_j = v^T tanh(W1 a_j + W2 h)``,
  logits ``[-q_j, q_j]``, one Bernoulli per input; the next input is the sum of the
  chosen anchors divided by ``1 + number chosen``. With ``n = 0`` nothing is sampled and
  the next input is the start token (ENAS feeds it after layer 0).

Anchor rule (how "earlier layers' hidden states" maps onto a flat list of decisions):
an anchor is recorded after the step of the *first decision* and after the step of
*every InputChoice*. An InputChoice closes a layer, as in ENAS, where each layer ends
with its skip step; the first-decision anchor stands for a first layer that has no
InputChoice of its own. Input ``j`` of an InputChoice with ``n`` inputs is the
``n - j``-th most recent anchor, so input 0 is the oldest of the ``n``. This reproduces
ENAS's macro controller for both conventions a space may use (layer 0 with or without
an ``InputChoice(num_inputs=0)``). If a space asks for more inputs than anchors exist
(e.g. skip choices only on some layers), the missing oldest layers are represented by
learned vectors (``extra_anchors``), so each input stays distinguishable.

Differences from the TF code, on purpose:
- ``Sample.entropy`` is the exact entropy of every distribution on the sampled path;
  ENAS logs ``p(a) * -log p(a)`` of the drawn choice only. It enters the reward scaled
  by ``entropy_weight`` (1e-4), so the difference is negligible for learning.
- Skip penalty exactly as ENAS: ``KL(sigmoid([-q, q]) || [1 - t, t])`` summed over
  inputs and averaged over the InputChoices, although the sampling probability is
  ``softmax([-q, q])[1] = sigmoid(2q)``; at the penalty's optimum the sampled skip rate
  is therefore about 0.31, not 0.4.

Defaults and where they come from (melodyguan/enas, ``src/cifar10/``):

============================  ========  ===============================================
``lstm_size``                 64        main.py (``lstm_size=64, lstm_num_layers=1``)
init uniform ±``init_range``  0.1       general_controller.py ``_create_params``
``tanh_constant``             1.5       scripts/cifar10_macro_search.sh
``temperature``               None      main.py flag default
``entropy_weight``            1e-4      macro_search.sh; added to the reward (build_trainer)
``baseline_decay``            0.99      main.py ``controller_bl_dec``
``skip_target``               0.4       macro_search.sh
``skip_weight``               0.8       macro_search.sh
``lr``                        1e-3      macro_search.sh; never decayed (main.py)
Adam ``betas[0]``, ``eps``    0.0, 1e-3 src/utils.py ``get_train_ops``
============================  ========  ===============================================

ENAS aggregates the gradients of 20 samples per step (``controller_num_aggregate``),
updating the baseline after each sample's reward; ``update`` does the same for the
samples it gets: per sample ``R = reward + entropy_weight * entropy``,
``b <- b - (1 - decay)(b - R)``, advantage ``R - b``; loss
``mean(-log p * advantage) + skip_weight * mean(skip penalty)``; one Adam step.

``update`` recomputes the log-probabilities with gradient by teacher-forcing the
samples, so a ``Sample`` holds no graph and samples may come from a checkpoint.
Everything runs in float32 on the CPU (a ``LSTMCell`` loop over the decisions, batched
over samples) on one intra-op thread: the tensors are tiny ([batch, 64]), so threads
gain nothing, and on a busy CPU each parallel region waits for descheduled threads
(measured: sample+update of 20 archs 28 ms on 1 thread, 1.4 s on 2 threads at load 12 on
2 cores).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from controllers.base import Controller, Sample, check_count
from controllers.enas_policy import Choice, EnasPolicy
from search_spaces.base import ArchValue, Categorical, Decision, InputChoice

class EnasLstmController(Controller):
    """REINFORCE-trained LSTM policy over a space's decisions (defaults: ENAS macro search)."""

    # Its tensors are a few hundred numbers: one thread is faster than handing each tiny
    # op to a pool (and leaves the other cores to the supernet's ranks or jobs).
    threads = 1

    def __init__(
        self,
        decisions: Sequence[Decision],
        *,
        seed: int = 0,
        lstm_size: int = 64,
        init_range: float = 0.1,
        tanh_constant: float | None = 1.5,
        temperature: float | None = None,
        entropy_weight: float = 1e-4,
        baseline_decay: float = 0.99,
        skip_target: float = 0.4,
        skip_weight: float = 0.8,
        lr: float = 1e-3,
        adam_beta1: float = 0.0,
        adam_eps: float = 1e-3,
        marginal_samples: int = 256,
    ) -> None:
        super().__init__(decisions, seed=seed)
        _check_positive_int("lstm_size", lstm_size)
        _check_positive_int("marginal_samples", marginal_samples)
        _check_range("init_range", init_range, low=0.0, low_open=True)
        _check_range("lr", lr, low=0.0, low_open=True)
        _check_range("adam_eps", adam_eps, low=0.0, low_open=True)
        _check_range("adam_beta1", adam_beta1, low=0.0, high=1.0, high_open=True)
        _check_range("baseline_decay", baseline_decay, low=0.0, high=1.0, high_open=True)
        _check_range("skip_target", skip_target, low=0.0, high=1.0, low_open=True, high_open=True)
        _check_range("skip_weight", skip_weight, low=0.0)
        _check_range("entropy_weight", entropy_weight, low=0.0)
        if tanh_constant is not None:
            _check_range("tanh_constant", tanh_constant, low=0.0, low_open=True)
        if temperature is not None:
            _check_range("temperature", temperature, low=0.0, low_open=True)
        self.entropy_weight = float(entropy_weight)
        self.baseline_decay = float(baseline_decay)
        self.skip_weight = float(skip_weight)
        self.marginal_samples = int(marginal_samples)
        self._generator = torch.Generator().manual_seed(self.seed)
        self.policy = EnasPolicy(
            self.decisions,
            lstm_size=int(lstm_size),
            tanh_constant=None if tanh_constant is None else float(tanh_constant),
            temperature=None if temperature is None else float(temperature),
            skip_target=float(skip_target),
        )
        for param in self.policy.parameters():
            nn.init.uniform_(param, -init_range, init_range, generator=self._generator)
        self.optimizer = torch.optim.Adam(
            self.policy.parameters(), lr=float(lr), betas=(float(adam_beta1), 0.999), eps=float(adam_eps)
        )
        self.baseline = 0.0  # ENAS starts the moving average at 0
        self.num_updates = 0

    # ---- proposals -------------------------------------------------------------------

    def sample(self, n: int) -> list[Sample]:
        n = check_count(n)
        with torch.no_grad():
            out = self.policy.rollout(n, generator=self._generator)
        return [
            Sample(self._values(out.choices, b), float(out.log_prob[b]), float(out.entropy[b]))
            for b in range(n)
        ]

    def _values(self, choices: list[Choice], b: int) -> tuple[ArchValue, ...]:
        values: list[ArchValue] = []
        for d, choice in zip(self.decisions, choices):
            if isinstance(d, Categorical):
                values.append(d.options[int(choice[b])])
            else:
                values.append(tuple(int(i) for i in torch.nonzero(choice[b]).flatten()))
        return tuple(values)

    def _encode(self, samples: Sequence[Sample]) -> list[Choice]:
        """The samples' values as the index tensors ``rollout(forced=...)`` takes."""
        forced: list[Choice] = []
        for i, d in enumerate(self.decisions):
            if isinstance(d, Categorical):
                forced.append(torch.tensor([d.options.index(d.validate(s.values[i])) for s in samples]))
            else:
                mask = torch.zeros(len(samples), d.num_inputs, dtype=torch.bool)
                for b, s in enumerate(samples):
                    mask[b, list(d.validate(s.values[i]))] = True
                forced.append(mask)
        return forced

    # ---- learning --------------------------------------------------------------------

    def update(self, samples: Sequence[Sample], rewards: Sequence[float]) -> dict[str, float]:
        r = self._check_update(samples, rewards)
        out = self.policy.rollout(len(samples), forced=self._encode(samples))
        entropy = out.entropy.detach().double().numpy()
        total = r + self.entropy_weight * entropy  # ENAS adds the entropy bonus to the reward
        advantages = np.empty_like(total)
        for i, reward in enumerate(total):  # baseline moves after each sample, as in ENAS
            self.baseline -= (1.0 - self.baseline_decay) * (self.baseline - float(reward))
            advantages[i] = reward - self.baseline
        policy_loss = -(out.log_prob * torch.as_tensor(advantages, dtype=out.log_prob.dtype)).mean()
        skip_penalty = out.skip_penalty.mean()
        loss = policy_loss + self.skip_weight * skip_penalty
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.sqrt(sum((p.grad**2).sum() for p in self.policy.parameters() if p.grad is not None))
        self.optimizer.step()
        self.num_updates += 1
        num_inputs = sum(d.num_inputs for d in self.decisions if isinstance(d, InputChoice))
        return {
            "loss": float(loss.detach()),
            "policy_loss": float(policy_loss.detach()),
            "skip_penalty": float(skip_penalty.detach()),
            "baseline": self.baseline,
            "advantage_mean": float(advantages.mean()),
            "reward_mean": float(r.mean()),
            "reward_max": float(r.max()),
            "entropy": float(entropy.mean()),
            "log_prob_mean": float(out.log_prob.detach().mean()),
            "skip_rate": float(out.skips.mean()) / num_inputs if num_inputs else 0.0,
            "grad_norm": float(grad_norm),
        }

    def probabilities(self) -> dict[str, list[float]]:
        """Monte-Carlo marginals: the conditional probabilities averaged over
        ``marginal_samples`` sampled paths. A generator seeded from (seed, number of
        updates) is used, so calling this never changes the samples that follow."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.num_updates)
        with torch.no_grad():
            out = self.policy.rollout(self.marginal_samples, generator=generator)
        return {d.name: p.mean(0).tolist() for d, p in zip(self.decisions, out.probs)}

    # ---- resuming --------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "decision_names": [d.name for d in self.decisions],
            "seed": self.seed,  # seeds probabilities()
            "policy": copy.deepcopy(self.policy.state_dict()),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "generator": self._generator.get_state(),
            "baseline": self.baseline,
            "num_updates": self.num_updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._check_state_keys(state, ["seed", "policy", "optimizer", "generator", "baseline", "num_updates"])
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._generator.set_state(state["generator"])
        self.baseline = float(state["baseline"])
        self.num_updates = int(state["num_updates"])
        self.seed = int(state["seed"])


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"enas_lstm {name} must be a positive integer, got {value!r}")


def _check_range(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"enas_lstm {name} must be a finite number, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        lo = "(-inf" if low is None else f"{'(' if low_open else '['}{low}"
        hi = "inf)" if high is None else f"{high}{')' if high_open else ']'}"
        raise ValueError(f"enas_lstm {name}={value!r} is outside {lo}, {hi}")
