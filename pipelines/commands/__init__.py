"""CLI commands that need no Dagster import (each exposes ``register(app)``)."""
