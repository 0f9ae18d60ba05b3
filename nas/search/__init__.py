"""The ENAS search: the loop, its two phases, scoring archs with shared weights, rewards,
run tracking (logs, TensorBoard), other searches' supernets as referees (``referees.py``),
what a resume must match (``resume.py``), melnas-rank (``rank/``).

Imports: nas.io, nas.runtime, nas.data, nas.latency, controllers, search_spaces.
"""
