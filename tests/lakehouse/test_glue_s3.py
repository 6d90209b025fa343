"""The production catalog: tables on S3, tracked by AWS Glue.

Runs `authpulse run --catalog glue` against a local S3- and Glue-compatible
server (moto), then reads the tables back with PyIceberg's own Glue catalog and
S3 file IO, runs `authpulse query` and `authpulse maintain` on the same
catalog, and checks the rows against the run's summary.
"""

import json
import os
import subprocess
import uuid

import pytest
from pyiceberg.catalog import load_catalog

from conftest import AWS_ENV, boto3_client

BIN = os.environ.get("AUTHPULSE_BIN", "authpulse")


def authpulse(*args, cwd, env):
    return subprocess.run([BIN, *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "AUTHPULSE_LOG": "warn", **env})


@pytest.fixture()
def lake(moto_endpoint, aws_env, tmp_path):
    """A fresh bucket and Glue catalog, and the options that point authpulse at them."""
    import urllib.request
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"))
    bucket = f"lake-{uuid.uuid4().hex[:8]}"
    boto3_client("s3", moto_endpoint).create_bucket(Bucket=bucket)
    options = ["--catalog", "glue", "--warehouse", f"s3://{bucket}/tables", "--s3-path-style"]
    gen = authpulse("gen", "--users", "200", "--days", "2", "--events", "30000",
                    "--campaigns", "1", "--kinds", "spray,burst", "--seed", "11", "-o", "events.csv",
                    cwd=tmp_path, env=aws_env)
    assert gen.returncode == 0, gen.stderr
    return bucket, options


def pyiceberg_glue(endpoint):
    return load_catalog("glue", **{
        "type": "glue",
        "glue.endpoint": endpoint,
        "glue.region": AWS_ENV["AWS_REGION"],
        "glue.access-key-id": AWS_ENV["AWS_ACCESS_KEY_ID"],
        "glue.secret-access-key": AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        "s3.endpoint": endpoint,
        "s3.region": AWS_ENV["AWS_REGION"],
        "s3.access-key-id": AWS_ENV["AWS_ACCESS_KEY_ID"],
        "s3.secret-access-key": AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        "s3.path-style-access": "true",
    })


def test_run_writes_glue_tables_on_s3_that_pyiceberg_reads(lake, moto_endpoint, aws_env, tmp_path):
    bucket, options = lake
    done = authpulse("run", "events.csv", "--output", "out", *options, cwd=tmp_path, env=aws_env)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert not (tmp_path / "out" / "catalog.db").exists(), "nothing goes to the embedded catalog"

    glue = boto3_client("glue", moto_endpoint)
    tables = {t["Name"]: t for t in glue.get_tables(DatabaseName="authpulse")["TableList"]}
    assert set(tables) == {"auth_events_raw", "auth_events_curated", "alerts",
                           "user_behavior_hourly", "host_popularity_daily"}
    curated_entry = tables["auth_events_curated"]
    assert curated_entry["Parameters"]["table_type"] == "ICEBERG"
    assert curated_entry["Parameters"]["metadata_location"].startswith(
        f"s3://{bucket}/tables/authpulse.db/auth_events_curated/metadata/")

    keys = [o["Key"] for o in boto3_client("s3", moto_endpoint)
            .list_objects_v2(Bucket=bucket, Prefix="tables/authpulse.db/auth_events_curated/data/")
            .get("Contents", [])]
    assert keys and all(k.endswith(".parquet") for k in keys)

    catalog = pyiceberg_glue(moto_endpoint)
    curated = catalog.load_table("authpulse.auth_events_curated").scan().to_arrow()
    assert curated.num_rows == summary["events_scored"]
    assert len(set(curated.column("event_id").to_pylist())) == summary["events_scored"]
    assert set(curated.column("policy_version").to_pylist()) == {summary["policy_version"]}
    raw = catalog.load_table("authpulse.auth_events_raw").scan().to_arrow()
    assert raw.num_rows == summary["events_valid"]
    alerts = catalog.load_table("authpulse.alerts").scan().to_arrow()
    assert alerts.num_rows == summary["alert_publications"] > summary["alerts"] >= 1

    # `query` reads the same catalog.
    query = authpulse("query", *options, "--format", "json",
                      "SELECT count(*) AS n, count(DISTINCT event_id) AS ids FROM auth_events_curated",
                      cwd=tmp_path, env=aws_env)
    assert query.returncode == 0, query.stderr
    assert json.loads(query.stdout) == {"n": summary["events_scored"], "ids": summary["events_scored"]}

    # The same input again: the tables say it is all committed; nothing is done.
    again = authpulse("run", "events.csv", "--output", "out2", *options, cwd=tmp_path, env=aws_env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.strip().splitlines()[-1])["already_complete"] is True
    # Another input is refused, naming the warehouse.
    (tmp_path / "other.csv").write_text("1,U1,C1\n")
    other = authpulse("run", "other.csv", "--output", "out3", *options, cwd=tmp_path, env=aws_env)
    assert other.returncode != 0
    assert "another input" in other.stderr and f"s3://{bucket}/tables" in other.stderr, other.stderr


def test_maintain_compacts_through_glue(lake, moto_endpoint, aws_env, tmp_path):
    bucket, options = lake
    runs = []
    for i in range(3):
        done = authpulse("run", "events.csv", "--output", f"out{i}", "--append", *options,
                         cwd=tmp_path, env=aws_env)
        assert done.returncode == 0, done.stderr
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    total = sum(r["events_scored"] for r in runs)
    catalog = pyiceberg_glue(moto_endpoint)
    before = catalog.load_table("authpulse.auth_events_curated")
    files_before = len(before.inspect.files())
    assert files_before >= 3

    done = authpulse("maintain", *options, "--expire-older-than", "0s", "--retain-last", "1",
                     cwd=tmp_path, env=aws_env)
    assert done.returncode == 0, done.stderr
    reports = {r["table"].removeprefix("authpulse."): r
               for r in map(json.loads, done.stdout.strip().splitlines())}
    assert set(reports) == {"auth_events_raw", "auth_events_curated", "alerts",
                            "user_behavior_hourly", "host_popularity_daily"}, done.stdout
    report = reports["auth_events_curated"]
    assert report["data_files_before"] == files_before
    assert report["data_files_after"] < files_before

    after = catalog.load_table("authpulse.auth_events_curated")
    assert after.current_snapshot().summary.operation.value == "replace"
    rows = after.scan().to_arrow()
    assert rows.num_rows == total
    assert len(after.inspect.files()) == report["data_files_after"]
    entry = boto3_client("glue", moto_endpoint).get_table(
        DatabaseName="authpulse", Name="auth_events_curated")["Table"]
    assert entry["Parameters"]["metadata_location"] == after.metadata_location
    assert entry["Parameters"]["previous_metadata_location"] != after.metadata_location
    # The replaced files are gone from the bucket; the live ones are all there.
    live = {f.split(f"s3://{bucket}/", 1)[1] for f in after.inspect.files().column("file_path").to_pylist()}
    stored = {o["Key"] for o in boto3_client("s3", moto_endpoint)
              .list_objects_v2(Bucket=bucket, Prefix="tables/authpulse.db/auth_events_curated/data/")
              .get("Contents", [])}
    assert stored == live
