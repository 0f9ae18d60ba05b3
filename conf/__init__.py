"""Hydra configs, importable so that installed entry points find them (pkg://conf)."""
