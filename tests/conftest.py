"""Shared test settings: one thread, deterministic.

The GPU is not hidden: a test that needs the CPU asks for it (``device=cpu``), and the
CUDA tests (``tests/test_cuda.py``) run only where a CUDA device is present.
"""

import os

# Idle OpenMP threads sleep instead of spinning: on a busy shared machine, spinning
# threads of a 2-thread pool wait on each other and slow small ops down 100x.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# The suite checks melnas's own configs: a developer's own config folders stay out of it
# (tests of MELNAS_CONFIG_PATH set it themselves).
os.environ.pop("MELNAS_CONFIG_PATH", None)

import torch  # noqa: E402

# Tests use tiny models: one thread is fastest and immune to a busy machine.
torch.set_num_threads(1)
