"""Latency: measuring a network (warm-up, repeats, fixed threads), the per-unit lookup
table with its calibration, and timing models in turns (shared by eval, compare, NetAdapt).

Imports: nas.io, nas.runtime, nas.data, search_spaces.
"""
