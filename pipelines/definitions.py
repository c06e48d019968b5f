"""The one place Dagster definitions are built: assets, checks, jobs, sensors, resources.

``dagster dev`` (``ds4h ui``) loads ``defs`` from here, with the config named by $DS4H_CONFIG.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import dagster as dg

from pipelines.assets import build_site_assets
from pipelines.environment import tune_sqlite
from pipelines.product_assets import build_product_assets
from pipelines.progress import progress_logger
from pipelines.release_assets import build_release_assets
from pipelines.resources import Ds4hResource
from pipelines.sensors import build_landing_sensor
from schemas.config import Config, config_path, home, load_config

# partitioned asset checks are a preview feature of Dagster 1.13: we rely on them knowingly
warnings.filterwarnings("ignore", category=dg.PreviewWarning)
warnings.filterwarnings("ignore", category=dg.BetaWarning)

SITE_GROUPS = ("raw", "omop", "pseudo")


def site_selection() -> dg.AssetSelection:
    return dg.AssetSelection.groups(*SITE_GROUPS)


def build_definitions(cfg: Config) -> dg.Definitions:
    site_assets = build_site_assets(cfg)
    release_assets = build_release_assets(cfg)
    product_assets = build_product_assets(cfg)
    site_job = dg.define_asset_job(
        "site_job", selection=site_selection(),
        description="One site's partitions: raw -> omop -> pseudo.",
    )
    release_job = dg.define_asset_job(
        "release_job", selection=dg.AssetSelection.groups("release", "products", "publish"),
        description="The release over all sites, its data products, then publishing (run by 'ds4h run').",
    )
    path = cfg.config_path or config_path()
    return dg.Definitions(
        assets=[*site_assets, *release_assets, *product_assets],
        jobs=[site_job, release_job],
        sensors=[build_landing_sensor(cfg, site_job)],
        resources={"ds4h": Ds4hResource(config_path=str(path), home=str(home()))},
        executor=dg.in_process_executor,
        loggers={"console": dg.colored_console_logger, "ds4h_progress": progress_logger},
    )


def _load() -> dg.Definitions:
    cfg = load_config()
    dagster_home = os.environ.get("DAGSTER_HOME")
    if dagster_home and cfg.instance.postgres_url is None:
        # runs launched from the UI execute in a process of their own that loads this module
        tune_sqlite(Path(dagster_home), cfg.instance.sqlite_synchronous)
    return build_definitions(cfg)


defs = _load()
