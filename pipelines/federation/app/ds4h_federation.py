"""Entry points of the ds4h Flower App: the apps live in ds4h (pipelines/federation/apps.py)."""

from pipelines.federation.apps import client, server

__all__ = ["client", "server"]
