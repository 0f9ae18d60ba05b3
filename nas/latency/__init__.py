"""Latency: the timing loop (``timing``: models interleaved over a span), measuring a
network in a runtime (warm-up, repeats, fixed threads), the per-unit lookup table with its
calibration, side-by-side re-timing (compare, study) and timing in turns (NetAdapt).

Imports: nas.io, nas.runtime, nas.data, search_spaces.
"""
