"""Files on disk: one atomic write, checkpoints, model files, and the registry that turns
config nodes into spaces (the one place under nas/ that may import Hydra).

Imports: nas.runtime, search_spaces, child_models.
"""
