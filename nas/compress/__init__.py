"""Compression: channel pruning and the NetAdapt algorithm, and the melnas-adapt job.

Imports: nas.io, nas.runtime, nas.data, nas.latency, nas.train, nas.evaluate, search_spaces.
"""
