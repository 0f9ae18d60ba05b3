"""Composing a command's config in-process, as its console command would (the demo's and
the study's steps, a search's referee searches), and saving it where the command would."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf, open_dict

from nas.io.config_dirs import BUILTIN_CONF_DIR


def compose_step(config_name: str, overrides: Sequence[str], data: DictConfig) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` like its console command would, with ``data``
    (the caller's ``data`` group) put in place of the default one."""
    cfg = compose_config(config_name, overrides)
    with open_dict(cfg):
        cfg.data = OmegaConf.create(OmegaConf.to_container(data, resolve=True))
    return cfg


def compose_config(config_name: str, overrides: Sequence[str]) -> DictConfig:
    """``conf/<config_name>.yaml`` with ``overrides``, its hydra node included."""
    if GlobalHydra.instance().is_initialized():  # inside a melnas command: its config search path
        return compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    with initialize_config_dir(config_dir=str(BUILTIN_CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)


def job_config(cfg: DictConfig) -> DictConfig:
    """``cfg`` without its hydra node: what a command's function receives."""
    return OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])


def save_step_config(run_dir: Path, cfg: DictConfig, overrides: Sequence[str]) -> None:
    """``<run_dir>/.hydra/config.yaml`` and ``overrides.yaml``, as Hydra writes them for a command."""
    hydra_dir = run_dir / ".hydra"
    hydra_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(job_config(cfg), hydra_dir / "config.yaml", resolve=True)
    (hydra_dir / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
