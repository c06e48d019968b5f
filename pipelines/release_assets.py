"""The global steps: the release over all sites, and publishing it to the data space."""


import datetime as dt
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from anonymisation.audit import AuditError, AuditResult, audit_release
from anonymisation.kanon import NoSolutionError
from anonymisation.leakscan import Identifiers, LeakScan, identifiers_from_patients
from anonymisation.pseudonym import CollisionError
from anonymisation.pseudonymise import DEATH_YEARS
from anonymisation.release import build_release
from anonymisation.risk_report import (
    candidate_header,
    evaluate_thresholds,
    protection,
    published_header,
    removal_message,
    render_html,
)
from anonymisation.versions import version_numbers
from pipelines.assets import (
    PSEUDO_TABLES,
    RELEASE_TABLES,
    _fail,
    _md_table,
    inventory_path,
    leak_check_result,
)
from pipelines.fingerprint import run_inputs
from pipelines.leaks import (
    PERSONS_SCHEMA,
    explain_release_dates,
    pseudonymous_identities,
    release_persons,
    released_identities,
    write_private,
)
from pipelines.product_assets import PRODUCTS, product_folder
from pipelines.progress import with_memory
from pipelines.publish import LeakError, publish_release
from pipelines.quality import DQD_MEMORY_LIMIT, dqd_check, dqd_summary, run_dqd
from pipelines.resources import Ds4hResource
from schemas.config import Config
from transforms.inventory import Inventory, landing_inventory
from transforms.storage import (
    LazyTables,
    PartitionWriter,
    Workspace,
    download_tree,
    has_partition,
    partition_files,
    read_parquet_files,
    read_partition,
    remove_tree,
    write_partition,
)
from transforms.vocabulary import load_vocabulary

Events = Iterator[dg.MaterializeResult[Any] | dg.AssetCheckResult]
BLOCKED_CHECK = "ds4h/blocked_check"  # a step failure's metadata: the run was blocked (exit 2), naming the check
STAGES = ("raw", "omop", "pseudo", "pseudo-notes", "release")  # accounting folders (the notes pass: stage pseudo)


def release_identifiers(ws: Workspace, config: Config, secret: bytes) -> tuple[Identifiers, pl.DataFrame]:
    """The direct identifiers of every site's persons (the identity zone), keyed by the person ids the
    release holds (the permit's in a pseudonymised release), and those persons (person_id,
    pseudo_person_id, birth_date_coincidence)."""
    identities = pseudonymous_identities(ws, config.sites)
    permit = config.release.permit if config.policy.mode == "pseudonymised" else None
    persons = release_persons(identities["person_id"], secret, permit)
    ids = identifiers_from_patients(released_identities(identities, persons),
                                    allowed_emails=[config.release.contact_email])
    return ids, persons


def all_identifiers(ws: Workspace, sites: list[str], allowed_emails: list[str] | None = None) -> Identifiers:
    """What is identifying everywhere (no person's own rows: a text file has none) of every site's
    persons, for the published text files."""
    identities = pseudonymous_identities(ws, sites).with_columns(person_id=pl.lit(None, pl.Int64))
    return identifiers_from_patients(identities, allowed_emails=allowed_emails or ())


def audit_written(ws: Workspace, config: Config, report: dict[str, Any]) -> AuditResult:
    """Audit the release tables just written (lake/release/<table>) as a version of the dataset, joined
    with every version already in the data space; the figures go into the report's ``km``."""
    policy = config.policy
    m = max(policy.attacker_facts, 1)  # measured at least for one fact, also when nothing is required
    dataset_dir = ws.dataspace / config.release.dataset
    earlier = [dataset_dir / str(n) for n in version_numbers(dataset_dir)] if policy.mode == "anonymised" else []
    # (every version already there is earlier than the one being built)
    remote = ws.store is not None
    if remote:
        ws.scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ws.scratch if remote else ws.lake("release", "_reports").parent) as tmp:
        view = Path(tmp) / "candidate"
        (view / "omop").mkdir(parents=True)
        for t in RELEASE_TABLES:
            if has_partition(ws.lake("release", t)):
                if remote:  # the audit reads local files: the candidate and earlier versions are copied down
                    download_tree(ws.lake("release", t), view / "omop" / t)
                else:
                    (view / "omop" / t).symlink_to(ws.lake("release", t), target_is_directory=True)
        if remote:
            earlier = [download_tree(v / "omop", Path(tmp) / v.name / "omop").parent for v in earlier]
        try:
            audit = audit_release(view, policy.k, m, earlier)
        except AuditError as e:
            raise _fail(f"the release files cannot be audited: {e}") from None
    km = report["km"]
    km.update(after=audit.release.at_risk, persons_after=audit.release.persons, checked=True,
              smallest_class=audit.release.smallest_class)
    ok = not any(audit.release.at_risk[: policy.attacker_facts + 1])
    if audit.joint is not None:
        km.update(after_joint=audit.joint.check.at_risk, persons_joint=audit.joint.check.persons)
        ok = ok and not any(audit.joint.check.at_risk[: policy.attacker_facts + 1])
    km["passed"] = ok or policy.mode != "anonymised"
    report["protection"] = protection(report, policy, [str(f).replace("_", " ") for f in report["levels"]
                                                       if not str(f).startswith("_v")])
    return audit


def next_version(dataset_dir: Path) -> int:
    """The version publish_release gives the next release of the dataset (the highest one + 1)."""
    return max(version_numbers(dataset_dir, published=False), default=0) + 1


def _death_years(ws: Workspace, sites: list[str]) -> pl.DataFrame | None:
    """The true death years the pseudo stage kept beside the shifted dates (never published)."""
    frames = [read_partition(ws.lake("pseudo", DEATH_YEARS, s)) for s in sites if has_partition(ws.lake("pseudo", DEATH_YEARS, s))]
    return pl.concat(frames) if frames else None


def source_extracts(ws: Workspace, config: Config) -> list[dict[str, object]]:
    """Per site: the landing files its raw stage read (path relative to the source's folder, size,
    SHA-256), the optional files it found missing, and the files left aside (the source's ``ignore``;
    ``not_read``: files the format knows and does not read). From the inventory the raw stage recorded;
    a site without one (a workspace of an older version) is inventoried now."""
    out: list[dict[str, object]] = []
    for src in config.sources:
        path = inventory_path(ws, src.site)
        inv = Inventory.from_json(path.read_text(encoding="utf-8")) if path.exists() else landing_inventory(src)
        out.append(inv.manifest_entry())
    return out


def read_accounting(ws: Workspace, sites: list[str]) -> pl.DataFrame:
    frames = []
    for stage in STAGES:
        for s in [*sites, "all"]:
            folder = ws.accounting(stage, s)
            if has_partition(folder):
                frames.append(read_partition(folder))
    return pl.concat(frames) if frames else pl.DataFrame()


def build_release_assets(cfg: Config) -> list[dg.AssetsDefinition]:
    all_parts = dg.AllPartitionMapping()

    @dg.multi_asset(
        name="release",
        specs=[dg.AssetSpec(f"release_{t}", group_name="release",
                            deps=[dg.AssetDep(f"pseudo_{p}", partition_mapping=all_parts) for p in PSEUDO_TABLES],
                            description=f"{t} of the release: all sites, k-anonymised.") for t in RELEASE_TABLES],
        check_specs=[
            dg.AssetCheckSpec("risk_thresholds", asset="release_person", blocking=True,
                              description="Re-identification risk within the policy's thresholds."),
            dg.AssetCheckSpec("quasi_identifiers_kept", asset="release_person", blocking=True,
                              description="No quasi-identifier collapsed to one published value (every year of "
                              "birth 0, every sex 0, every location the same) unless the policy allows its "
                              "removal (allow_removal)."),
            dg.AssetCheckSpec("k_anonymity_of_facts", asset="release_person", blocking=True,
                              description="Anonymised mode: the written files are k-anonymous over the person-level "
                              "fields and k^m over the facts, alone and joined with every earlier version "
                              "(anonymisation/audit.py, no code shared with the engine)."),
            dg.AssetCheckSpec("dqd", asset="release_person", blocking=cfg.quality.dqd_blocks_on_fatal,
                              description="DataQualityDashboard checks on the release (published in its reports/)."),
            dg.AssetCheckSpec("leak_scan", asset="release_person", blocking=True,
                              description="No direct identifier of any site's landing data in any released table "
                              "(names, birth dates and streets in their person's rows); the metadata lists the hits "
                              "by table."),
        ],
    )
    def release(context: dg.AssetExecutionContext, ds4h: Ds4hResource) -> Events:
        config, ws = ds4h.config(), ds4h.workspace()
        key = ds4h.key()
        missing = [s for s in config.sites if not has_partition(ws.lake("pseudo", "person", s))]
        if missing:
            raise _fail(f"sites {', '.join(missing)} have no pseudonymised data yet: run 'ds4h run' (it runs them first)")
        site_tables = {s: LazyTables({t: ws.lake("pseudo", t, s) for t in PSEUDO_TABLES}) for s in config.sites}
        vocab = load_vocabulary(config.vocabulary)
        say = with_memory(context.log.info)
        writers: dict[str, PartitionWriter] = {}

        def sink(t: str, df: pl.DataFrame) -> None:
            """Each part of a table written (lake/release/<table>/part-*.parquet, in the order the release
            hands them: site by site, part by part); the leak scan reads them back once the release is
            built (its identifiers are then not held through the facts pass)."""
            writer = writers.get(t)
            if writer is None:
                writer = writers[t] = PartitionWriter(ws.lake("release", t))
            writer.write(df, writer.parts)

        try:
            result = build_release(site_tables, config.policy, key.secret, vocab.ancestor, vocab.concept, sink=sink,
                                   dataset_dir=ws.dataspace / config.release.dataset, permit=config.release.permit,
                                   true_death_years=_death_years(ws, config.sites), log=say)
            for t, df in result.tables.items():
                sink(t, df)
        except BaseException as e:
            for writer in writers.values():  # nothing half-released replaces the last release's tables
                remove_tree(writer.tmp)
            if isinstance(e, NoSolutionError | CollisionError | ValueError):
                raise _fail(str(e)) from None
            raise
        for writer in writers.values():
            writer.commit()
        ids, persons = release_identifiers(ws, config, key.secret)
        scan = LeakScan(ids)
        for t in writers:  # every written part, one at a time
            for part in partition_files(ws.lake("release", t)):
                scan.table(t, read_parquet_files([part]))
        checked = ids.count()
        say(f"leak scan: {checked:,} identifier forms of {persons.height:,} persons looked for in the released tables")
        explained = explain_release_dates(ws, config.sites, scan, persons, result.date_deltas, config.policy.event_dates)
        write_private(ws, persons.with_columns(birth_date_coincidence=pl.col("person_id").is_in(sorted(explained)))
                      .select(*PERSONS_SCHEMA), ws.release_persons)
        hits, explained_cells = scan.hits(), scan.explained_cells
        del scan, ids  # ~1 GB at a million persons: not held through the audit and DQD
        write_partition(result.accounting, ws.accounting("release", "all"))
        audit = audit_written(ws, config, result.report)
        say(f"audit of the written files: persons at risk {result.report['km']['after']} ({audit.seconds:.1f} s)")
        risk = {"mode": config.policy.mode, "before": result.risk_before, "after": result.risk_after,
                "summary": result.summary, "utility": result.report["utility"], "thresholds": result.report["thresholds"], "passed": result.report["passed"],
                "km": result.report["km"], "facts": result.report["facts"], "protection": result.report["protection"]}
        reports = ws.lake("release", "_reports")
        reports.mkdir(parents=True, exist_ok=True)
        (reports / "risk.json").write_text(json.dumps(risk, indent=2, default=str) + "\n", encoding="utf-8")
        (reports / "risk-report.json").write_text(json.dumps(result.report, indent=2, default=str) + "\n", encoding="utf-8")
        released = LazyTables({t: ws.lake("release", t) for t in RELEASE_TABLES})
        # the released files read in place: in memory it took 2.3 of 9.6 s off at 100,000 patients but
        # 370 MB more than the stage's peak
        dqd = run_dqd({t: released.files(t) for t in released}, vocab, config.release.dataset, reports, timings=False,
                      memory_limit=DQD_MEMORY_LIMIT)
        say(f"data quality checks of the release: {len(dqd.results)} checks")
        (reports / "dqd-summary.json").write_text(json.dumps(dqd_summary(dqd), indent=2) + "\n", encoding="utf-8")
        html_path = reports / "risk-report.html"
        candidate = f" Candidate risk report: {html_path}"
        checks = evaluate_thresholds(result.risk_after, config.policy)
        failed = [c for c in checks if not c.passed]
        removal = removal_message(result.report)
        km = result.report["km"]
        dqd_result = dqd_check("release_person", dqd, reports / "dqd.html", config.quality.dqd_blocks_on_fatal)
        reasons = ([f"{c.name} {c.value:.4f} above {c.limit:g}" for c in failed] + ([removal] if removal else [])
                   + ([] if km["passed"] else ["persons at risk in the written files"])
                   + ([] if dqd_result.passed else ["fatal data quality failures"])
                   + (["direct identifiers found in " + ", ".join(sorted(hits))] if hits else []))
        html_path.write_text(render_html(result.report, header=candidate_header(
            config.release.dataset, next_version(ws.dataspace / config.release.dataset), reasons)), encoding="utf-8")
        for t in RELEASE_TABLES:
            md: dict[str, Any] = {"rows": result.rows.get(t, 0), "path": dg.MetadataValue.path(str(ws.lake("release", t)))}
            if t == "person":
                md.update({
                    "k": config.policy.k,
                    "levels": dg.MetadataValue.json(result.summary["levels"]),
                    "suppressed_persons": result.summary["suppressed_persons"],
                    "persons_released": result.summary["persons_released"],
                    "prosecutor_max_after": round(result.risk_after["prosecutor_max"], 4),
                    "prosecutor_avg_after": round(result.risk_after["prosecutor_avg"], 4),
                    "conflicts": dg.MetadataValue.json(result.summary["conflicts"]),
                    "search_seconds": round(result.search.seconds, 3),
                    "lattice_nodes_evaluated": result.search.evaluations,
                })
            yield dg.MaterializeResult(asset_key=f"release_{t}", metadata=md)
        advice = "; ".join(str(sg.get("text") or sg) for sg in result.report["suggestions"][:3])
        yield dg.AssetCheckResult(
            asset_key="release_person", check_name="risk_thresholds", passed=not failed,
            description=("; ".join(f"{c.name} {c.value:.4f} > {c.limit}" for c in failed)
                         + (f". Would pass: {advice}" if advice else "") + "." + candidate)
            if failed else "every threshold holds",
            metadata={**{c.name: round(c.value, 4) for c in checks},
                      **{f"{c.name} (limit)": c.limit for c in checks},
                      "report": dg.MetadataValue.path(str(html_path))},
        )
        utility = result.report["utility"]
        yield dg.AssetCheckResult(
            asset_key="release_person", check_name="quasi_identifiers_kept", passed=not utility["blocked"],
            description=(removal + "." + candidate) if utility["blocked"] and removal else
            ("every quasi-identifier keeps more than one value" if not utility["removed"] else
             f"removed as the policy allows: {', '.join(utility['removed'])}"),
            metadata={"levels": dg.MetadataValue.json(result.report["levels_in_words"]),
                      "removed": dg.MetadataValue.json(utility["removed"]),
                      "constant_in_input": dg.MetadataValue.json(utility["constant"]),
                      "report": dg.MetadataValue.path(str(html_path))},
        )
        at_risk = ", ".join(f"{j} fact(s): {n}" for j, n in enumerate(km["after"]))
        joint = km.get("after_joint")
        yield dg.AssetCheckResult(
            asset_key="release_person", check_name="k_anonymity_of_facts", passed=bool(km["passed"]),
            description=(f"persons at risk by facts known: {at_risk}"
                         + (f"; joined with versions {', '.join(map(str, km['earlier_versions']))}: "
                            + ", ".join(f"{j}: {n}" for j, n in enumerate(joint)) if joint else "")
                         + ("" if config.policy.mode == "anonymised" else " (pseudonymised: measured, not required)")
                         + ("" if km["passed"] else ". The written files do not hold what the engine built: report "
                            "this with the risk report." + candidate)),
            metadata={"k": km["k"], "m": km["m"], "persons": km["persons_after"],
                      "at_risk": dg.MetadataValue.json(km["after"]),
                      **({"at_risk_joint": dg.MetadataValue.json(joint)} if joint else {}),
                      "audit_seconds": round(audit.seconds, 2)},
        )
        yield dqd_result
        yield leak_check_result("release_person", {t: hits.get(t, {}) for t in RELEASE_TABLES}, {
            "identifier_values_checked": checked, "birth_date_coincidences_release": explained_cells})

    @dg.asset(
        name="published_release",
        group_name="publish",
        deps=[*[f"release_{t}" for t in RELEASE_TABLES], *[f"product_{p.replace('-', '_')}" for p in PRODUCTS]],
        description="A new immutable version of the dataset in dataspace/<dataset>/<version>/.",
    )
    def published_release(context: dg.AssetExecutionContext, ds4h: Ds4hResource) -> dg.MaterializeResult[Any]:
        config, ws = ds4h.config(), ds4h.workspace()
        key = ds4h.key()
        tables = LazyTables({t: ws.lake("release", t) for t in RELEASE_TABLES})  # published one at a time
        accounting = read_accounting(ws, config.sites)
        risk = json.loads((ws.lake("release", "_reports") / "risk.json").read_text(encoding="utf-8"))
        extra = {
            "project": config.project,
            "mode": config.policy.mode,
            **({"permit": config.release.permit} if config.release.permit else {}),
            "key_fingerprint": key.fingerprint,
            "title": config.release.title + (" (DEMO)" if config.is_demo else ""),
            "publisher": config.release.publisher,
            "sites": config.sites,
            "cdm_version": "5.4",
            "config": {
                "project": config.project,
                "sources": [{"site": s.site, "format": s.format, "encoding": s.encoding, "delimiter": s.delimiter}
                            for s in config.sources],
                "vocabulary": config.vocabulary if config.vocabulary.startswith("bundled:") else "athena",
                "release": config.release.model_dump(mode="json"),
            },
            "policy": config.policy.model_dump(mode="json"),
            "source_extracts": source_extracts(ws, config),
            "inputs": run_inputs(config, key.fingerprint),
            "risk": risk,
            "generalisation": {
                "levels": risk["summary"]["levels"],
                "levels_in_words": risk["summary"].get("levels_in_words", {}),
                "year_of_birth": "first year of the band when generalised",
                "location": ("postcode, commune, canton or country (residences abroad: postcode, then country), "
                             "by level of the postcode hierarchy; country_source_value is the ISO 3166-1 code"),
            },
            "row_accounting": accounting.sort(["stage", "site", "table", "category", "reason_code"], nulls_last=True).to_dicts(),
        }
        src = ws.lake("release", "_reports")
        reports = {name: (src / name).read_text(encoding="utf-8")
                   for name in ("risk-report.json", "risk-report.html", "dqd-results.json", "dqd.html")}
        version = next_version(ws.dataspace / config.release.dataset)  # the version publish_release writes
        reports["risk-report.html"] = render_html(json.loads(reports["risk-report.json"]), header=published_header(
            config.release.dataset, version, config.is_demo))
        extra["data_quality"] = json.loads((src / "dqd-summary.json").read_text(encoding="utf-8"))
        ids = all_identifiers(ws, config.sites, [config.release.contact_email])
        try:
            pub = publish_release(ws.dataspace, config.release.dataset, tables, extra, demo=config.is_demo,
                                  release_meta=config.release.model_dump(mode="json"), reports=reports,
                                  created=dt.datetime.now(dt.UTC).replace(microsecond=0), identifiers=ids,
                                  vocabulary=load_vocabulary(config.vocabulary),
                                  products={p: product_folder(ws, p) for p in PRODUCTS
                                            if (product_folder(ws, p) / "product.json").exists()},
                                  scratch=ws.scratch)
        except LeakError as e:  # nothing was published: blocked, as a blocking check blocks
            raise dg.Failure(description=str(e), allow_retries=False,
                             metadata={BLOCKED_CHECK: "published_release:leak_scan"}) from None
        if has_partition(ws.release_persons):  # what verify --workspace needs to know whose rows are whose
            write_private(ws, read_partition(ws.release_persons), ws.published_persons(pub.dataset, pub.version))
        return dg.MaterializeResult(metadata={
            "dataset": pub.dataset, "version": pub.version, "path": dg.MetadataValue.path(str(pub.path)),
            "files": len(pub.manifest["files"]), "demo": config.is_demo,
            "rows": _md_table(pl.DataFrame(
                [{"table": f["table"], "rows": f["rows"], "bytes": f["bytes"]} for f in pub.manifest["files"] if "table" in f]
            )),
        })

    return [release, published_release]
