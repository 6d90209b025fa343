"""Security Lake's authentication table as a source for backfill.

OCSF Authentication events written as Parquet in Security Lake's layout
(`region=/accountId=/eventDay=` partitions, `time` a timestamp column) are
read with `run --source parquet:DIR` and, from the local S3 server,
`--source s3://BUCKET/PREFIX`. Every row becomes the same record the same
event sent as a JSON line becomes; files of overlapping hours are merged in
event time (none refused as late); what the mapping cannot use is
dead-lettered as from a file.
"""

import json
import os
import subprocess
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.json as pajson
import pyarrow.parquet as pq
import pytest

from conftest import boto3_client

BIN = os.environ.get("AUTHPULSE_BIN", "authpulse")
FIXTURE = Path(__file__).parent.parent / "fixtures" / "formats" / "ocsf-authentication.jsonl"
START_MS = 1_704_099_600_000  # 2024-01-01T09:00:00Z, after the fixture's events


def authpulse(*args, cwd, env=None):
    return subprocess.run([BIN, *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "AUTHPULSE_LOG": "warn", **(env or {})})


def summary(done):
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def logon(account, user, time_ms, computer):
    return {"class_uid": 3002, "activity_id": 1, "time": time_ms, "status_id": 1,
            "logon_type_id": 3, "auth_protocol_id": 2, "user": {"name": user, "type_id": 1},
            "src_endpoint": {"hostname": f"ws-{user}"}, "dst_endpoint": {"hostname": computer},
            "cloud": {"account": {"uid": account}},
            "metadata": {"uid": f"{account}-{time_ms}", "version": "1.1.0",
                         "product": {"name": "Security Lake", "vendor_name": "AWS"}}}


def partitions():
    """Events per Security Lake partition: the fixture's (one account), and two
    accounts' logons over the same two hours, a minute apart."""
    fixture = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
    first = [logon("111122223333", "dave", START_MS + m * 60_000, f"srv{m % 7}") for m in range(120)]
    second = [logon("444455556666", "erin", START_MS + 30_000 + m * 60_000, f"db{m % 5}")
              for m in range(120)]
    return {
        "region=us-east-1/accountId=999988887777/eventDay=20240101/fixture.parquet": fixture,
        # Sorts before the first account's file by name, starts after it.
        "region=us-east-1/accountId=000011112222/eventDay=20240101/second.parquet": second,
        "region=us-east-1/accountId=111122223333/eventDay=20240101/first.parquet": first,
    }


def write_lake(root, events_by_file):
    """Writes each partition's events as Security Lake does: Parquet, `time`
    a millisecond timestamp. Returns the same events as JSON lines."""
    lines = []
    for name, events in events_by_file.items():
        ndjson = "\n".join(json.dumps(e) for e in events).encode()
        table = pajson.read_json(pa.BufferReader(ndjson))
        column = table.schema.get_field_index("time")
        table = table.set_column(column, "time", table["time"].cast(pa.timestamp("ms", tz="UTC")))
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        lines.extend(json.dumps(e) for e in events)
    return sorted(lines, key=lambda line: json.loads(line)["time"])


def event_rows(cwd, out):
    done = authpulse("query", "--output", out, "--format", "json",
                     "SELECT event_id, user_id, computer_id, src_computer_id, logon_type, outcome "
                     "FROM auth_events_curated ORDER BY event_id", cwd=cwd)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.fixture()
def lake(tmp_path):
    lines = write_lake(tmp_path / "lake", partitions())
    (tmp_path / "events.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_parquet_rows_score_as_their_json_lines(lake):
    from_json = summary(authpulse("run", "events.jsonl", "--output", "json-out", cwd=lake))
    from_lake = summary(authpulse("run", "--source", "parquet:lake", "--output", "lake-out", cwd=lake))
    assert from_lake["events_read"] == from_json["events_read"] == 247
    assert from_lake["events_valid"] == from_json["events_valid"] == 244
    # The fixture's logoff, other class and SYSTEM logon, as from the file.
    assert from_lake["invalid_by_reason"] == from_json["invalid_by_reason"] == {"unmapped": 3}
    # Two accounts' hours overlap: merged in event time, none late.
    assert from_lake["late"] == 0
    rows = event_rows(lake, "lake-out")
    assert rows == event_rows(lake, "json-out")
    assert {"user_id": "carol", "computer_id": "db7", "src_computer_id": "jump01",
            "logon_type": "remote_interactive", "outcome": "success"}.items() <= next(
        r for r in rows if r["user_id"] == "carol").items()
    dead = [json.loads(line) for line in (lake / "lake-out" / "dead-letter.jsonl").read_text().splitlines()]
    assert sorted(d["reason"].split(": ", 1)[1] for d in dead) == sorted([
        "a logoff ends a session", "OCSF class 3001 is not Authentication (3002)",
        "`SYSTEM` is the operating system's own account"])


def test_an_s3_prefix_reads_as_the_local_copy(lake, moto_endpoint, aws_env):
    bucket = f"aws-security-data-lake-{uuid.uuid4().hex[:8]}"
    s3 = boto3_client("s3", moto_endpoint)
    s3.create_bucket(Bucket=bucket)
    prefix = "aws/AUTH/2.0"
    for path in (lake / "lake").rglob("*.parquet"):
        s3.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(lake / 'lake')}")
    s3.put_object(Bucket=bucket, Key=f"{prefix}/_SUCCESS", Body=b"")
    done = authpulse("run", "--source", f"s3://{bucket}/{prefix}/", "--s3-path-style",
                     "--output", "s3-out", cwd=lake, env=aws_env)
    from_s3 = summary(done)
    assert from_s3["events_valid"] == 244 and from_s3["late"] == 0
    summary(authpulse("run", "--source", "parquet:lake", "--output", "lake-out", cwd=lake))
    assert event_rows(lake, "s3-out") == event_rows(lake, "lake-out")
    # Read again: the tables hold every event already, nothing is added.
    again = summary(authpulse("run", "--source", f"s3://{bucket}/{prefix}", "--s3-path-style",
                              "--output", "s3-out", cwd=lake, env=aws_env))
    assert again["already_stored"] == 244 and again["events_scored"] == 0
    missing = authpulse("run", "--source", f"s3://{bucket}/nothing-here", "--s3-path-style",
                        "--output", "none-out", cwd=lake, env=aws_env)
    assert missing.returncode != 0
    assert f"s3://{bucket}/nothing-here holds no Parquet files" in missing.stderr


def test_what_is_not_parquet_is_refused_by_name(tmp_path):
    (tmp_path / "lake").mkdir()
    (tmp_path / "lake" / "broken.parquet").write_text("not parquet at all")
    done = authpulse("run", "--source", "parquet:lake", "--output", "out", cwd=tmp_path)
    assert done.returncode != 0
    assert "lake/broken.parquet" in done.stderr, done.stderr
    done = authpulse("run", "--source", "parquet:nowhere", "--output", "out", cwd=tmp_path)
    assert done.returncode != 0 and "nowhere" in done.stderr, done.stderr


def test_a_configuration_file_names_the_parquet_source(lake):
    (lake / "c.yaml").write_text("source:\n  parquet: lake\n  format: ocsf\noutput:\n  dir: cfg-out\n")
    from_config = summary(authpulse("run", "--config", "c.yaml", cwd=lake))
    assert from_config["events_valid"] == 244 and from_config["late"] == 0
    (lake / "both.yaml").write_text("source:\n  parquet: lake\n  file: events.jsonl\n")
    refused = authpulse("config", "check", "both.yaml", cwd=lake)
    assert refused.returncode != 0
    assert "both.yaml: source: give one of `file`, `kinesis` and `parquet`" in refused.stderr
