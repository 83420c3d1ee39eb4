"""Prefect flows: thin orchestration over the ``dedup`` stage functions."""
