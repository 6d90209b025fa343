"""OCSF in and out, checked against the published schema (the models
pydantic-ocsf generates from it, and its attribute dictionary): the OCSF
Authentication fixtures `run` reads are valid 1.1.0 events, and every alert
publication `run --alert-format ocsf` writes is a valid Detection Finding
(class 2004) naming only attributes OCSF defines, one for each publication
the JSON form has.
"""

import datetime
import json
import pathlib
import sqlite3

import pytest
from pyiceberg.catalog.sql import SqlCatalog

from test_tables import authpulse

ocsf = pytest.importorskip("ocsf")
from ocsf.v1_1_0.events import Authentication, DetectionFinding  # noqa: E402

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "formats"


def ocsf_attributes():
    """Every attribute name OCSF 1.1.0 defines (its dictionary)."""
    schema_file = pathlib.Path(ocsf.__file__).parent / "schemas" / "v1_1_0.json"
    return set(json.loads(schema_file.read_text())["dictionary"]["attributes"])


def keys(value, under=""):
    """Every key of a JSON value outside `unmapped`, with its path."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "unmapped":
                continue
            yield key, f"{under}.{key}"
            yield from keys(inner, f"{under}.{key}")
    elif isinstance(value, list):
        for inner in value:
            yield from keys(inner, under + "[]")


def test_ocsf_fixtures_are_valid_authentication_events():
    lines = (FIXTURES / "ocsf-authentication.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    authentication = [e for e in events if e["class_uid"] == 3002]
    assert len(authentication) == len(events) - 1
    known = ocsf_attributes()
    for event in authentication:
        Authentication.model_validate(event)
        unknown = [path for key, path in keys(event) if key not in known]
        assert unknown == [], unknown


@pytest.fixture(scope="module")
def alerts(tmp_path_factory):
    """The same generated input run twice: alerts as AuthPulse's JSON and as
    OCSF Detection Findings."""
    work = tmp_path_factory.mktemp("findings")
    gen = authpulse("gen", "--users", "300", "--days", "3", "--events", "60000",
                    "--campaigns", "3", "--kinds", "spray,burst,fan_in", "--seed", "5",
                    "-o", "events.csv", cwd=work)
    assert gen.returncode == 0, gen.stderr
    forms = {}
    for form in ("json", "ocsf"):
        done = authpulse("run", "events.csv", "--output", form, "--alert-format", form,
                         "--no-lakehouse", cwd=work)
        assert done.returncode == 0, done.stderr
        forms[form] = [json.loads(line) for line in
                       (work / form / "alerts.jsonl").read_text().splitlines()]
    return forms


def test_every_publication_is_a_valid_detection_finding(alerts):
    findings, originals = alerts["ocsf"], alerts["json"]
    assert len(findings) == len(originals) > 0
    known = ocsf_attributes()
    activity = {"open": 1, "update": 2, "closed": 3}
    severity = {"LOW": 2, "MEDIUM": 3, "HIGH": 4, "CRITICAL": 5}
    for finding, alert in zip(findings, originals):
        DetectionFinding.model_validate(finding)
        unknown = [path for key, path in keys(finding) if key not in known]
        assert unknown == [], unknown
        assert (finding["class_uid"], finding["category_uid"]) == (2004, 2)
        assert finding["activity_id"] == activity[alert["status"]]
        assert finding["type_uid"] == 200400 + finding["activity_id"]
        assert finding["severity_id"] == severity[alert["risk_level"]]
        assert finding["finding_info"]["uid"] == alert["alert_id"]
        assert finding["finding_info"]["types"] == alert["risk_flags"]
        assert finding["metadata"]["version"] == "1.1.0"
        assert finding["metadata"]["sequence"] == alert["sequence"]
        assert finding["resources"][0]["name"] == alert["entity_id"]
        assert [e["uid"] for e in finding["finding_info"]["related_events"]] == \
            [e["event_id"] for e in alert["events"]]


@pytest.fixture(scope="module")
def findings_table(tmp_path_factory):
    """A run with tables: the `ocsf_findings` table and the alerts file."""
    work = tmp_path_factory.mktemp("findings-table")
    gen = authpulse("gen", "--users", "300", "--days", "3", "--events", "60000",
                    "--campaigns", "3", "--kinds", "spray,burst,fan_in", "--seed", "5",
                    "-o", "events.csv", cwd=work)
    assert gen.returncode == 0, gen.stderr
    done = authpulse("run", "events.csv", "--output", "out", "--alert-format", "ocsf",
                     "--findings-region", "eu-west-1", "--findings-account-id", "123456789012",
                     cwd=work)
    assert done.returncode == 0, done.stderr
    out = work / "out"
    catalog = SqlCatalog("authpulse", uri=f"sqlite:///{out / 'catalog.db'}",
                         warehouse=f"file://{out / 'warehouse'}")
    published = [json.loads(line) for line in (out / "alerts.jsonl").read_text().splitlines()]
    return catalog.load_table("authpulse.ocsf_findings"), published, out, work


def as_ocsf(row):
    """A table row back as OCSF JSON: times in milliseconds, `unmapped` a
    JSON object, nulls and the partition columns left out."""
    def clean(value, key=""):
        if isinstance(value, dict):
            return {k: clean(v, k) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            if key == "unmapped":
                return {k: json.loads(v) if v[:1] in "[{0123456789" else v for k, v in value}
            return [clean(v) for v in value]
        if isinstance(value, datetime.datetime):
            return int(value.timestamp() * 1000)
        return value
    finding = clean(row)
    for partition in ("region", "accountId", "eventDay"):
        finding.pop(partition)
    return finding


def test_findings_table_is_security_lake_shaped(findings_table):
    table, published, out, _ = findings_table
    spec = table.spec()
    assert [(f.name, str(f.transform)) for f in spec.fields] == [
        ("region", "identity"), ("accountId", "identity"), ("eventDay", "identity")]
    files = [task.file.file_path for task in table.scan().plan_files()]
    assert files and all("/region=eu-west-1/accountId=123456789012/eventDay=2024010" in f
                         for f in files), files
    rows = table.scan().to_arrow().to_pylist()
    assert len(rows) == len(published) > 0
    by_uid = {p["metadata"]["uid"]: p for p in published}
    known = ocsf_attributes()
    for row in rows:
        finding = as_ocsf(row)
        assert finding["cloud"] == {"provider": "AWS", "region": "eu-west-1",
                                    "account": {"uid": "123456789012"}}
        DetectionFinding.model_validate(finding)
        unknown = [path for key, path in keys(finding) if key not in known]
        assert unknown == [], unknown
        assert row["eventDay"] == datetime.datetime.fromtimestamp(
            finding["time"] / 1000, datetime.timezone.utc).strftime("%Y%m%d")
        # The same finding as the alerts file's, with `cloud` added.
        sent = by_uid[finding["metadata"]["uid"]]
        assert {k: v for k, v in finding.items() if k != "cloud"} == sent


def test_duckdb_reads_the_findings_table(findings_table):
    from test_tables import duckdb_connection
    _, published, out, _ = findings_table
    metadata = sorted((out / "warehouse" / "authpulse" / "ocsf_findings" / "metadata")
                      .glob("*.metadata.json"))[-1]
    con = duckdb_connection()
    count, critical = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE severity_id = 5) FROM iceberg_scan('{metadata}') "
        "WHERE region = 'eu-west-1' AND \"accountId\" = '123456789012'").fetchone()
    assert count == len(published)
    assert critical == sum(1 for p in published if p["severity_id"] == 5)


def test_a_warehouse_without_the_findings_table_gets_it_without_starting_over(findings_table):
    """A warehouse written before the findings table (simulated by taking it out
    of the catalog) gets it on the next start, joined at the others' progress:
    the complete input is not read again."""
    _, _, out, work = findings_table
    with sqlite3.connect(out / "catalog.db") as db:
        db.execute("DELETE FROM iceberg_tables WHERE table_name = 'ocsf_findings'")
    again = authpulse("run", "events.csv", "--output", "out", cwd=work)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.strip().splitlines()[-1]) == {
        "already_complete": True, "events_read": 0}
