"""Judging trained networks: metrics, cost (params, MACs), reports, compare and the Pareto
front, prediction on new files, export.

Imports: nas.io, nas.runtime, nas.data, nas.latency, search_spaces.
"""
