"""Targets: spec parsing, loading by importlib, discovery and groups."""
