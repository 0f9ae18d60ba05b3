"""Training a standalone network: the one training loop (retraining, fine-tuning), the
recipe, SpecAugment, and the melnas-train job.

Imports: nas.io, nas.runtime, nas.data, nas.evaluate, search_spaces.
"""
