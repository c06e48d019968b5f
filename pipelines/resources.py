"""The one Dagster resource: the project config, its workspace and its key."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from anonymisation.keys import ProjectKey, load_key
from schemas.config import Config, load_config
from transforms.storage import Workspace


class Ds4hResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Where the config is; the workspace is $DS4H_HOME (the config never moves it)."""

    config_path: str
    home: str

    def config(self) -> Config:
        return load_config(self.config_path)

    def workspace(self) -> Workspace:
        from pipelines.environment import open_workspace

        return open_workspace(self.config(), Path(self.home))

    def key(self) -> ProjectKey:
        return load_key(self.config().project)
