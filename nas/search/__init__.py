"""The ENAS search: the loop, its two phases, scoring archs with shared weights, rewards,
run tracking (logs, TensorBoard).

Imports: nas.io, nas.runtime, nas.data, nas.latency, controllers, search_spaces.
"""
