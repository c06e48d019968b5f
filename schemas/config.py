"""The project configuration: one YAML file validated with pydantic.

Which file: ``--config``, else ``$DS4H_CONFIG``, else ``$DS4H_HOME/ds4h.yaml``. Relative paths in it
resolve against the folder of the config file. Everything but ``sources`` has a default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from schemas.policy import PrivacyPolicy

SourceFormat = Literal["hospital-csv", "synthea-csv", "fhir-bulk", "omop-csv"]
SITE_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"


L_DIVERSITY_IN_RELEASE = (
    "policy.l_diversity does not apply to a release: every published person-level field counts as known to an "
    "attacker (docs/privacy.md), so none can be the sensitive attribute; diagnoses and other facts are protected by "
    "k^m (attacker_facts). Remove it; l-diversity of one table stays in 'ds4h anonymise-table --l-diversity'")


class ConfigError(Exception):
    """A configuration problem, worded for the user: what is wrong and how to fix it."""


class Source(BaseModel):
    """One hospital extract: a site, its format and where its files land."""

    model_config = ConfigDict(extra="forbid")
    site: str = Field(pattern=SITE_PATTERN, description="lower-case letters, digits and '-' (a partition key)")
    format: SourceFormat = "hospital-csv"
    path: Path
    encoding: str = "utf-8"
    delimiter: str = Field(",", min_length=1, max_length=1)
    mapping: Path | None = None
    stcm: Path | None = Field(None, description="the site's SOURCE_TO_CONCEPT_MAP for local codes (Usagi CSV)")
    persons_per_bucket: int = Field(5_000, ge=1, description="synthea-csv, hospital-csv and fhir-bulk NDJSON: patients per bucket of "
                                    "the raw and OMOP stages (memory grows with it: about 1.2 GB at 5,000 Synthea "
                                    "patients); the extract is split once by patient into buckets of about this many")
    ignore: list[str] = Field(default_factory=list, description="globs, relative to the source's folder, of files the "
                              "format does not read that may stay there (any other unknown file blocks the release)")
    absent: list[str] = Field(default_factory=list, description="hospital-csv: optional entities the extract does not "
                              "hold (e.g. [notes], what 'ds4h generate --no-notes' writes): their file is not "
                              "expected (not reported missing), their tables are empty; the file being there is an error")

    @model_validator(mode="after")
    def _absent_entities(self) -> Source:
        if not self.absent:
            return self
        if self.format != "hospital-csv":
            raise ValueError(f"source {self.site}: 'absent' applies to hospital-csv sources only (a {self.format} "
                             "extract's missing files are found by its reader)")
        from schemas.extract import BY_NAME, REQUIRED_FILES

        optional = [n for n in BY_NAME if n not in REQUIRED_FILES]
        for name in self.absent:
            if name not in optional:
                raise ValueError(f"source {self.site}: absent entity {name!r} is not an optional hospital-csv entity; "
                                 f"choose among {', '.join(optional)}")
        return self

    @field_validator("ignore")
    @classmethod
    def _relative_globs(cls, v: list[str]) -> list[str]:
        for g in v:
            if not g.strip() or g.startswith("/") or ".." in Path(g).parts:
                raise ValueError(f"ignore glob {g!r} must be relative to the source's folder (e.g. 'exports/*.log')")
        return v

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        import codecs

        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(f"unknown encoding {v!r}; use e.g. utf-8, cp1252, latin-1") from None
        return v


class Products(BaseModel):
    """The data products published inside each release (aggregates under disclosure control)."""

    model_config = ConfigDict(extra="forbid")
    k: int | None = Field(None, ge=2, description="smallest count a product publishes (cells between 1 and k-1 are "
                          "withheld); default the policy's k, never below it")
    round_to: int | None = Field(None, ge=1, description="round every published count of the products to the nearest "
                                 "multiple of N (never down below k)")


class Quality(BaseModel):
    """Data-quality gates of the identifiable zone (the data engineers' side)."""

    model_config = ConfigDict(extra="forbid")
    max_quarantine_ratio: float = Field(0.2, ge=0, le=1, description="share of a table's rows quarantined at ingest")
    max_contract_failure_ratio: float = Field(0.05, ge=0, le=1, description="share failing the extract contract")
    dqd_blocks_on_fatal: bool = Field(True, description="fatal DataQualityDashboard failures block the release")
    orphan_events: Literal["keep", "quarantine"] = Field(
        "keep", description="an event whose visit (stay, encounter) was quarantined but whose person is valid: keep "
        "it without its visit (counted unlinked) or quarantine it as raw.orphan")


class Release(BaseModel):
    """What the published dataset is called and who stands behind it."""

    model_config = ConfigDict(extra="forbid")
    dataset: str = Field("omop-demo", pattern=SITE_PATTERN)
    title: str = "ds4h OMOP CDM v5.4 release"
    description: str = "Pseudonymised and k-anonymised OMOP CDM v5.4 tables for secondary use in research."
    publisher: str = "ds4h demo hospital network"
    contact_email: str = "dataspace@example.org"
    access_body: str = "Health data access body (demo)"
    permit: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$",
                               description="data permit id of a pseudonymised release (policy.mode: pseudonymised): ids "
                               "and date offsets are re-derived per permit")


class Address(BaseModel):
    """A postal address as Gaia-X 25.11 gx:Address wants it."""

    model_config = ConfigDict(extra="forbid")
    country_code: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 (gx:Address countryCode in the "
                              "25.11 shapes; e.g. LU)")
    street_address: str = Field(min_length=1)
    locality: str = Field(min_length=1)
    postal_code: str = Field(min_length=1)


class RegistrationNumber(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["vatID", "leiCode", "EORI", "local"]
    value: str = Field(min_length=1)


class Participant(BaseModel):
    """The Gaia-X participant (gx:LegalPerson) behind the releases: 'ds4h gaiax export' (docs/gaiax.md)."""

    model_config = ConfigDict(extra="forbid")
    legal_name: str = Field(min_length=1)
    registration_number: RegistrationNumber
    legal_address: Address
    headquarters_address: Address
    did_web_domain: str = Field(pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$",
                                description="the domain serving https://DOMAIN/.well-known/did.json (did:web:DOMAIN)")


ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
POSTGRES_URL_ENV = "DS4H_POSTGRES_URL"


class RunQueue(BaseModel):
    """Runs go through Dagster's queue (QueuedRunCoordinator), with a concurrency limit per site."""

    model_config = ConfigDict(extra="forbid")
    max_concurrent_runs: int = Field(4, ge=1, description="runs in progress at once over the instance")
    per_site_limit: int | None = Field(1, ge=1, description="runs in progress at once for one site (the run's "
                                       "dagster/partition tag); null: no per-site limit")


class Instance(BaseModel):
    """The workspace's Dagster instance: PostgreSQL storage (dagster-postgres) and its run queue.

    Written into $DS4H_HOME/dagster/dagster.yaml by 'ds4h init' and 'ds4h run'; never in Python code.
    """

    model_config = ConfigDict(extra="forbid")
    postgres_url: str | None = Field(None, description="postgresql://user@host:port/db, without a password "
                                     f"(${POSTGRES_URL_ENV} overrides it)")
    password_env: str = Field("DS4H_POSTGRES_PASSWORD", pattern=ENV_NAME,
                              description="environment variable holding the password (Dagster reads it)")
    password_file: Path | None = Field(None, description="a file holding the password (readable by its owner only); "
                                       "read by ds4h and handed to Dagster in password_env, never written")
    run_queue: RunQueue | None = None
    sqlite_synchronous: Literal["normal", "full"] = Field(
        "normal", description="the local SQLite instance's PRAGMA synchronous (its databases are in WAL mode): "
        "'normal' syncs at checkpoints, not at every event (a power cut may lose the last events of a run, "
        "never corrupt the database); 'full' syncs every event. Ignored with postgres_url")

    @field_validator("postgres_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        postgres_parts(v)
        return v

    @model_validator(mode="after")
    def _queue_needs_postgres(self) -> Instance:
        if self.run_queue is not None and self.postgres_url is None:
            raise ValueError("instance.run_queue needs instance.postgres_url: a queue shared by the runs needs the "
                             "PostgreSQL storage")
        return self


STORAGE_URL_ENV = "DS4H_STORAGE_URL"
S3_URL = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9._/=-]*)?$"


class Storage(BaseModel):
    """Object storage (S3-compatible) for the workspace's lake, quarantine, accounting, reports and data space.

    The Dagster instance, scratch (work/) and the landing folders stay on local disk; the identity zone
    too unless ``identity: object``. Credentials come from the usual AWS environment variables
    (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), never from this file.
    """

    model_config = ConfigDict(extra="forbid")
    url: str = Field(pattern=S3_URL, description="s3://bucket/prefix: the workspace's root on the object store "
                     f"(${STORAGE_URL_ENV} overrides it)")
    endpoint_url: str | None = Field(None, pattern=r"^https?://[^\s/]+(/.*)?$",
                                     description="the S3 endpoint of a non-AWS store (MinIO, SeaweedFS, Ceph...): "
                                     "http(s)://host:port; default: $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, else AWS")
    region: str = Field("us-east-1", pattern=r"^[a-z0-9-]{2,32}$", description="the bucket's region")
    identity: Literal["local", "object"] = Field(
        "local", description="where the identity zone (direct identifiers) lives: 'local' keeps it on this "
        "machine's disk (folders 0700); 'object' puts it under the store's identity/ prefix (protect it there "
        "with a bucket policy of its own)")


def postgres_parts(url: str) -> dict[str, Any]:
    """The dagster-postgres ``postgres_db`` fields of a URL (no password: it stays in an environment variable)."""
    from urllib.parse import unquote, urlsplit

    try:
        u = urlsplit(url)
        port = u.port or 5432
    except ValueError:
        raise ValueError("instance.postgres_url is not a URL; write postgresql://user@host:5432/dbname") from None
    if u.scheme not in ("postgresql", "postgres"):
        raise ValueError("instance.postgres_url must start with postgresql:// (e.g. postgresql://dagster@db:5432/ds4h)")
    if u.password is not None:
        raise ValueError("instance.postgres_url must not contain a password: put it in the environment variable "
                         "DS4H_POSTGRES_PASSWORD (instance.password_env) or in instance.password_file")
    db = unquote(u.path.lstrip("/"))
    if not u.username or not u.hostname or not db or "/" in db or u.query or u.fragment:
        raise ValueError("instance.postgres_url needs a user, a host and a database: postgresql://user@host:5432/dbname")
    return {"username": unquote(u.username), "hostname": u.hostname, "port": port, "db_name": db}


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    project: str = Field("demo", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    sources: list[Source] = Field(min_length=1)
    vocabulary: str = Field("bundled:demo", description="bundled:demo, an Athena folder, or a loaded vocabulary folder")
    policy: PrivacyPolicy = Field(default_factory=PrivacyPolicy)
    release: Release = Field(default_factory=Release)
    quality: Quality = Field(default_factory=Quality)
    products: Products = Field(default_factory=Products)
    participant: Participant | None = None
    instance: Instance = Field(default_factory=Instance)
    storage: Storage | None = None
    # set by load_config, not by the file
    config_path: Path | None = Field(None, exclude=True)

    @field_validator("sources")
    @classmethod
    def _unique_sites(cls, v: list[Source]) -> list[Source]:
        sites = [s.site for s in v]
        dupes = sorted({s for s in sites if sites.count(s) > 1})
        if dupes:
            raise ValueError(f"site names must be unique; repeated: {', '.join(dupes)}")
        return v

    @model_validator(mode="after")
    def _permit(self) -> Config:
        if self.policy.mode == "pseudonymised" and not self.release.permit:
            raise ValueError("policy.mode pseudonymised needs release.permit: the id of the data permit the release is "
                             "delivered under (ids and date offsets are re-derived per permit)")
        if self.policy.l_diversity is not None:
            raise ValueError(L_DIVERSITY_IN_RELEASE)
        if self.products.k is not None and self.products.k < self.policy.k:
            raise ValueError(f"products.k ({self.products.k}) is below policy.k ({self.policy.k}): a product may only "
                             "withhold more, not less")
        if self.policy.mode == "anonymised" and self.release.permit:
            raise ValueError("release.permit is only used by pseudonymised releases: remove it, or set policy.mode: "
                             "pseudonymised")
        return self

    @property
    def sites(self) -> list[str]:
        return [s.site for s in self.sources]

    @property
    def products_k(self) -> int:
        """The smallest count a data product publishes: products.k, else the policy's k."""
        return self.products.k or self.policy.k

    @property
    def is_demo(self) -> bool:
        return self.project == "demo"

    def source(self, site: str) -> Source:
        for s in self.sources:
            if s.site == site:
                return s
        raise ConfigError(f"site {site!r} is not in the config; sites: {', '.join(self.sites)}")


def home() -> Path:
    """The workspace folder: $DS4H_HOME, else ./workspace."""
    return Path(os.environ.get("DS4H_HOME") or "workspace").resolve()


def config_path(explicit: str | Path | None = None) -> Path:
    if explicit:
        return Path(explicit).resolve()
    env = os.environ.get("DS4H_CONFIG")
    if env:
        return Path(env).resolve()
    return home() / "ds4h.yaml"


def _describe(err: ValidationError,
              unknown: str = "unknown key (a typo?); allowed keys are listed in docs/configuration.md") -> str:
    """At most three of ``err``'s problems, one line each; ``unknown`` says what to do about an unknown key."""
    parts = []
    for e in err.errors()[:3]:
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = unknown
        elif e["type"] == "missing":
            msg = "required key is missing"
        parts.append(f"{loc}: {msg}")
    more = f" (and {len(err.errors()) - 3} more)" if len(err.errors()) > 3 else ""
    return "; ".join(parts) + more


def parse_config(data: Any, base: Path) -> Config:
    """Validate a parsed YAML mapping; relative paths resolve against ``base``."""
    if not isinstance(data, dict):
        raise ConfigError("the config must be a YAML mapping with at least 'sources'; run 'ds4h init' for an example")
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"invalid config: {_describe(e)}") from None
    for s in cfg.sources:
        if not s.path.is_absolute():
            s.path = (base / s.path).resolve()
        if s.mapping is not None and not s.mapping.is_absolute():
            s.mapping = (base / s.mapping).resolve()
        if s.stcm is not None and not s.stcm.is_absolute():
            s.stcm = (base / s.stcm).resolve()
    if cfg.policy.opt_out_registry and not Path(cfg.policy.opt_out_registry).is_absolute():
        cfg.policy.opt_out_registry = str((base / cfg.policy.opt_out_registry).resolve())
    for q in cfg.policy.quasi_identifiers:
        if not q.hierarchy.startswith("builtin:") and not Path(q.hierarchy).is_absolute():
            q.hierarchy = str((base / q.hierarchy).resolve())
    if cfg.instance.password_file is not None and not cfg.instance.password_file.is_absolute():
        cfg.instance.password_file = (base / cfg.instance.password_file).resolve()
    if not cfg.vocabulary.startswith("bundled:") and not Path(cfg.vocabulary).is_absolute():
        cfg.vocabulary = str((base / cfg.vocabulary).resolve())
    return cfg


def load_config(explicit: str | Path | None = None) -> Config:
    path = config_path(explicit)
    if not path.exists():
        raise ConfigError(f"no config at {path}: run 'ds4h init' (or pass --config FILE)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path} is not valid YAML{where}: fix the syntax") from None
    cfg = parse_config(data, path.parent)
    url = os.environ.get(POSTGRES_URL_ENV)
    if url:
        try:
            postgres_parts(url)
        except ValueError as e:
            raise ConfigError(f"${POSTGRES_URL_ENV}: {str(e).replace('instance.postgres_url', 'the URL')}") from None
        cfg.instance.postgres_url = url
    storage_url = os.environ.get(STORAGE_URL_ENV)
    if storage_url:
        import re

        if not re.match(S3_URL, storage_url):
            raise ConfigError(f"${STORAGE_URL_ENV}: {storage_url!r} is not an s3://bucket/prefix URL")
        cfg.storage = (cfg.storage or Storage(url=storage_url)).model_copy(update={"url": storage_url})
    if cfg.storage is not None and cfg.storage.endpoint_url is None:
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            cfg.storage.endpoint_url = endpoint
    cfg.config_path = path
    return cfg


def dump_config(cfg: Config) -> str:
    data = cfg.model_dump(mode="json", exclude_defaults=False, exclude={"config_path"})
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
