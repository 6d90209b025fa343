"""OCSF in and out, checked against the published schema (the models
pydantic-ocsf generates from it, and its attribute dictionary): the OCSF
Authentication fixtures `run` reads are valid 1.1.0 events, and every alert
publication `run --alert-format ocsf` writes is a valid Detection Finding
(class 2004) naming only attributes OCSF defines, one for each publication
the JSON form has.
"""

import json
import pathlib

import pytest

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
