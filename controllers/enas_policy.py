"""The ENAS controller's policy: an LSTM cell walking a space's decisions, batched over samples.

``EnasPolicy.rollout`` samples (or, given choices, teacher-forces) one pass over the
decisions and returns log-probabilities, entropies and the skip penalty; the model, the
anchor rule and the defaults are described in ``controllers.enas_lstm``, which owns the
REINFORCE update, the baseline and the checkpoint state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from search_spaces.base import Categorical, Decision, InputChoice

# A teacher-forced choice: option indices [B] for a Categorical, an inclusion mask [B, n]
# (bool) for an InputChoice.
Choice = Tensor


@dataclass
class Rollout:
    """One batched pass over the decisions. ``B`` = batch size."""

    choices: list[Choice]
    probs: list[Tensor]  # per decision: option probs [B, size] or inclusion probs [B, n]
    log_prob: Tensor  # [B], with gradient when not under no_grad
    entropy: Tensor  # [B]
    skip_penalty: Tensor  # [B], mean over InputChoices with inputs of the summed KL
    skips: Tensor  # [B], number of inputs chosen


class EnasPolicy(nn.Module):
    """The controller's parameters and its batched walk over the decisions."""

    def __init__(
        self,
        decisions: Sequence[Decision],
        *,
        lstm_size: int,
        tanh_constant: float | None,
        temperature: float | None,
        skip_target: float,
    ) -> None:
        super().__init__()
        self.decisions = tuple(decisions)
        self.tanh_constant = tanh_constant
        self.temperature = temperature
        self.start = nn.Parameter(torch.empty(1, lstm_size))  # ENAS g_emb
        self.lstm = nn.LSTMCell(lstm_size, lstm_size, bias=False)  # ENAS stack_lstm has no bias
        categoricals = [d for d in self.decisions if isinstance(d, Categorical)]
        self.embeddings = nn.ModuleList(nn.Embedding(d.size, lstm_size) for d in categoricals)
        self.heads = nn.ModuleList(nn.Linear(lstm_size, d.size, bias=False) for d in categoricals)
        self.attn_anchor = nn.Linear(lstm_size, lstm_size, bias=False)  # ENAS w_attn_1
        self.attn_query = nn.Linear(lstm_size, lstm_size, bias=False)  # ENAS w_attn_2
        self.attn_v = nn.Linear(lstm_size, 1, bias=False)  # ENAS v_attn
        self.extra_anchors = nn.Parameter(torch.empty(_missing_anchors(self.decisions), lstm_size))
        self.register_buffer(
            "log_skip_target", torch.tensor([1.0 - skip_target, skip_target]).log(), persistent=False
        )

    def shape_logits(self, logits: Tensor) -> Tensor:
        if self.temperature is not None:
            logits = logits / self.temperature
        if self.tanh_constant is not None:
            logits = self.tanh_constant * torch.tanh(logits)
        return logits

    def rollout(
        self,
        batch: int,
        *,
        generator: torch.Generator | None = None,
        forced: Sequence[Choice] | None = None,
    ) -> Rollout:
        """Sample ``batch`` archs with ``generator``, or score the ``forced`` choices."""
        size = self.start.shape[1]
        h = c = self.start.new_zeros(batch, size)
        x = self.start.expand(batch, size)
        anchors: list[Tensor] = []  # [B, H] each, oldest first
        zeros = self.start.new_zeros(batch)
        out = Rollout(choices=[], probs=[], log_prob=zeros, entropy=zeros, skip_penalty=zeros, skips=zeros)
        penalties: list[Tensor] = []
        k = 0  # index of the next categorical's embedding and head
        for step, d in enumerate(self.decisions):
            h, c = self.lstm(x, (h, c))
            force = None if forced is None else forced[step]
            if isinstance(d, Categorical):
                choice, p, x = self._categorical(k, d, h, out, generator, force)
                k += 1
            elif d.num_inputs == 0:  # nothing to choose; ENAS feeds the start token after layer 0
                choice, p = h.new_zeros(batch, 0, dtype=torch.bool), h.new_zeros(batch, 0)
                x = self.start.expand(batch, size)
            else:
                earlier = self._earlier(anchors, d.num_inputs, batch)
                choice, p, x = self._input_choice(earlier, h, out, penalties, generator, force)
            if step == 0 or isinstance(d, InputChoice):
                anchors.append(h)
            out.choices.append(choice)
            out.probs.append(p)
        if penalties:
            out.skip_penalty = torch.stack(penalties).mean(0)
        return out

    def _categorical(
        self,
        k: int,
        d: Categorical,
        h: Tensor,
        out: Rollout,
        generator: torch.Generator | None,
        force: Choice | None,
    ) -> tuple[Choice, Tensor, Tensor]:
        """Choose option indices [B] from the hidden state [B, H]; returns (choice, probs
        [B, size], next input [B, H]) and adds to ``out``'s log-prob and entropy."""
        logp = F.log_softmax(self.shape_logits(self.heads[k](h)), dim=-1)  # [B, size]
        p = logp.exp()
        if force is None:
            u = torch.rand(h.shape[0], 1, generator=generator)
            choice = (p.cumsum(-1) < u).sum(-1).clamp(max=d.size - 1)  # inverse CDF
        else:
            choice = force
        out.log_prob = out.log_prob + logp.gather(1, choice[:, None]).squeeze(1)
        out.entropy = out.entropy - (p * logp).sum(-1)
        return choice, p, self.embeddings[k](choice)

    def _input_choice(
        self,
        earlier: Tensor,
        h: Tensor,
        out: Rollout,
        penalties: list[Tensor],
        generator: torch.Generator | None,
        force: Choice | None,
    ) -> tuple[Choice, Tensor, Tensor]:
        """Choose a subset of the ``earlier`` anchors [B, n, H] by attention from ``h``
        [B, H]; returns (inclusion mask [B, n], inclusion probs [B, n], next input [B, H])."""
        q = self.attn_v(torch.tanh(self.attn_anchor(earlier) + self.attn_query(h)[:, None]))  # [B, n, 1]
        logits = self.shape_logits(torch.cat([-q, q], dim=-1))  # [B, n, 2]
        logp = F.log_softmax(logits, dim=-1)
        p = logp[..., 1].exp()
        choice = torch.rand(p.shape, generator=generator) < p if force is None else force
        out.log_prob = out.log_prob + logp.gather(-1, choice.long()[..., None]).squeeze(-1).sum(-1)
        out.entropy = out.entropy - (logp.exp() * logp).sum((-1, -2))
        # ENAS skip penalty: KL(sigmoid(logits) || [1 - t, t]), summed over the inputs.
        s_log = F.logsigmoid(logits)
        penalties.append((s_log.exp() * (s_log - self.log_skip_target)).sum((-1, -2)))
        chosen = choice.to(h.dtype)
        out.skips = out.skips + chosen.sum(-1)
        return choice, p, (chosen[..., None] * earlier).sum(1) / (1.0 + chosen.sum(-1, keepdim=True))

    def _earlier(self, anchors: list[Tensor], n: int, batch: int) -> Tensor:
        """The anchors of the ``n`` previous layers, oldest first: [B, n, H]."""
        missing = max(0, n - len(anchors))
        extra = [self.extra_anchors[i].expand(batch, -1) for i in range(missing)]
        return torch.stack(extra + anchors[len(anchors) - (n - missing) :], dim=1)


def _missing_anchors(decisions: Sequence[Decision]) -> int:
    """The most inputs any InputChoice asks for beyond the anchors recorded before it."""
    recorded, missing = 0, 0
    for step, d in enumerate(decisions):
        if isinstance(d, InputChoice):
            missing = max(missing, d.num_inputs - recorded)
        if step == 0 or isinstance(d, InputChoice):
            recorded += 1
    return missing
