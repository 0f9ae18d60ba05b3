"""Shared test settings: CPU only, one thread, deterministic."""

import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# Idle OpenMP threads sleep instead of spinning: on a busy shared machine, spinning
# threads of a 2-thread pool wait on each other and slow small ops down 100x.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

# Tests use tiny models: one thread is fastest and immune to a busy machine.
torch.set_num_threads(1)
