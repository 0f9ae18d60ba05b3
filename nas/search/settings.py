"""The settings of a search's loop: ``conf/trainer/search.yaml`` as ``TrainerSettings``, its
``final`` group as ``FinalSettings``; each checks its values when built, before any data is read."""

from __future__ import annotations

from dataclasses import dataclass, field

from nas.search.few_shot import FewShotSettings
from nas.search.refit import check_refit
from nas.search.sampling import check_sampling
from nas.train.amp import AMP_CHOICES
from nas.train.augment import AugmentSettings

DDP_ARCHS = ("same", "per_rank")  # trainer.ddp_archs


@dataclass(frozen=True)
class FinalSettings:
    """The end of the search: which archs are scored on the whole validation split."""

    num_samples: int = 100  # fresh controller samples (one per network)
    top_k: int = 5  # archs kept in top_archs.json
    bn_mode: str = "recalibrate"
    referees: list[str] = field(default_factory=list)  # finished searches whose supernets score the candidates too
    referee_searches: int = 0  # one-arch ENAS searches the search trains as referees (experiments/referee_searches.py)
    referee_dir: str = "outputs/referees"  # where those are kept, shared by every search that needs the same one
    refit_examples: int = 0  # > 0: each candidate scored with the output layer refitted on that many train examples
    refit_l2: float = 1e-4

    def __post_init__(self) -> None:
        if self.num_samples < 1 or self.top_k < 1:
            raise ValueError(f"trainer.final needs num_samples >= 1 and top_k >= 1, got {self}")
        check_refit(self.refit_examples, self.refit_l2, setting="trainer.final")
        if self.referee_searches < 0:
            raise ValueError(f"trainer.final.referee_searches={self.referee_searches}: give 0 (none) or more")


@dataclass(frozen=True)
class TrainerSettings:
    """``conf/trainer/*.yaml``; defaults from the ENAS macro search where it has one."""

    epochs: int = 20
    batch_size: int = 64  # ENAS: 128
    lr: float = 0.05  # ENAS: cosine 0.05 -> 5e-4
    lr_min: float = 5e-4
    momentum: float = 0.9  # ENAS: Nesterov 0.9
    nesterov: bool = True
    weight_decay: float = 2.5e-4  # ENAS search: l2 2.5e-4
    grad_clip: float = 5.0  # ENAS: gradient-norm clip 5
    controller_steps: int = 20  # K per epoch (ENAS: 50 steps x 20 aggregated samples)
    archs_per_step: int = 10  # M
    controller_warmup: float = 0.0  # fraction of controller steps without updates (TuNAS: 0.25)
    sampling: str = "controller"  # archs per shared step: controller | uniform | fair | sandwich (nas/search/sampling.py)
    sandwich_random: int = 2  # sandwich: random archs per step besides the largest and smallest
    sandwich_draw: str = "uniform"  # sandwich: how those are drawn: uniform | tilted | budget (nas/search/sampling.py)
    sandwich_band: tuple[float, float] = (0.8, 1.0)  # sandwich_draw=budget: predicted latency, fractions of the target
    sandwich_distill: bool = True  # sandwich: the others learn the largest's soft labels (false: the labels)
    sandwich_unsized: str = "fixed"  # sandwich: the extremes' unsized decisions (activation): fixed | uniform per step
    zero_init_residual: bool = False  # the supernet's residual blocks start as the identity (BigNAS)
    # One supernet for every controller of a seed (nas/search/shared_supernet.py): keep each
    # epoch's shared weights for other searches to follow, or follow such a search's
    keep_epoch_supernets: bool = False
    supernet_from: str | None = None
    ddp_archs: str = "same"  # under torchrun: every rank trains the same arch per step | each rank its own
    val_batch_size: int = 256
    bn_mode: str = "batch"
    bn_recalibration_batches: int = 2
    # SpecAugment on the shared steps' batches; off by default (ENAS trains the supernet
    # without it), on to regularise the supernet like the retraining recipe does
    spec_augment: AugmentSettings = field(default_factory=lambda: AugmentSettings(enabled=False))
    final: FinalSettings = field(default_factory=FinalSettings)
    few_shot: FewShotSettings = field(default_factory=FewShotSettings)  # split the supernet (nas/search/few_shot.py)
    num_workers: int = 0
    device: str = "auto"
    amp: str = "off"  # mixed precision of the shared-weight step: off | bf16 | fp16 | auto (nas/train/amp.py)
    threads: int | None = None
    progress: bool = True
    stop_after_epochs: int | None = None  # end this invocation after N epochs (a simulated kill)

    def __post_init__(self) -> None:
        positive = ("epochs", "batch_size", "controller_steps", "archs_per_step", "val_batch_size")
        bad = [f"trainer.{k}={getattr(self, k)}" for k in positive if getattr(self, k) < 1]
        if self.lr <= 0 or self.lr_min < 0 or self.lr_min > self.lr:
            bad.append(f"trainer.lr={self.lr}, trainer.lr_min={self.lr_min} (need 0 <= lr_min <= lr, lr > 0)")
        if not 0.0 <= self.controller_warmup < 1.0:
            bad.append(f"trainer.controller_warmup={self.controller_warmup} (need 0 <= x < 1)")
        if self.grad_clip <= 0 or self.bn_recalibration_batches < 1 or self.num_workers < 0:
            bad.append("trainer.grad_clip > 0, trainer.bn_recalibration_batches >= 1, trainer.num_workers >= 0")
        if str(self.amp).lower() not in AMP_CHOICES:
            bad.append(f"trainer.amp={self.amp!r} (need one of {', '.join(AMP_CHOICES)})")
        if self.threads is not None and self.threads < 1:
            bad.append(f"trainer.threads={self.threads} (need null or >= 1)")
        if self.stop_after_epochs is not None and self.stop_after_epochs < 1:
            bad.append(f"trainer.stop_after_epochs={self.stop_after_epochs} (need null or >= 1)")
        if self.ddp_archs not in DDP_ARCHS:
            bad.append(f"trainer.ddp_archs={self.ddp_archs!r} (need one of {', '.join(DDP_ARCHS)})")
        if self.few_shot.split is not None and self.final.refit_examples > 0:
            bad.append("trainer.final.refit_examples > 0 with trainer.few_shot.split (each sub-supernet has its own "
                       "output layer, and the refit needs one shared by every arch): set one of them back")
        if self.supernet_from is not None and self.sampling == "controller":
            bad.append(f"trainer.supernet_from with trainer.sampling=controller (the controller picks the archs that "
                       "train the shared weights, so no other search's supernet is this one's): drop one of them")
        if bad:
            raise ValueError("invalid search trainer settings: " + "; ".join(bad))
        check_sampling(self.sampling, self.sandwich_random, self.sandwich_draw, self.sandwich_unsized, self.sandwich_band)

    @property
    def warmup_steps(self) -> int:
        """Controller steps of the whole run that skip the update (``controller_warmup``)."""
        return int(self.controller_warmup * self.epochs * self.controller_steps)
