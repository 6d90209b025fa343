"""An Iceberg table of OCSF Authentication events as a source for backfill.

Security Lake keeps each source's events in an Iceberg table of the Glue
catalog. `run --source glue:DATABASE.TABLE` (or `iceberg:METADATA`, the
table's metadata file) reads the data files of the table's current
snapshot: what an overwrite replaced is not read again, though its files
are still under the table's `data/` prefix. The tables here are written by
PyIceberg, in a local SQL catalog and in Glue on the local AWS server.
"""

import json
import uuid

import pyarrow as pa
import pyarrow.json as pajson
import pytest
from pyiceberg.catalog import load_catalog
from pyiceberg.catalog.sql import SqlCatalog

from conftest import AWS_ENV, boto3_client
from test_security_lake import authpulse, event_rows, partitions, summary


def arrow_events():
    """Every partition's events as one Arrow table (one schema for all),
    `time` a microsecond timestamp, and each partition's row range."""
    ranges, events = {}, []
    for name, part in partitions().items():
        ranges[name] = (len(events), len(part))
        events.extend(part)
    table = pajson.read_json(pa.BufferReader("\n".join(json.dumps(e) for e in events).encode()))
    column = table.schema.get_field_index("time")
    time = table["time"].cast(pa.timestamp("ms", tz="UTC")).cast(pa.timestamp("us", tz="UTC"))
    table = table.set_column(column, "time", time)
    return table, ranges


def write_json_lines(path):
    """The same events as JSON lines, in time order."""
    every = [e for part in partitions().values() for e in part]
    path.write_text("\n".join(json.dumps(e) for e in sorted(every, key=lambda e: e["time"])) + "\n")


def fill(catalog, ident):
    """Creates the table and appends each partition's events in turn (a
    data file and a snapshot each); returns the events as JSON lines."""
    events, ranges = arrow_events()
    catalog.create_namespace_if_not_exists(ident[0])
    table = catalog.create_table(ident, schema=events.schema)
    for start, length in ranges.values():
        table.append(events.slice(start, length))
    return table, events, ranges


@pytest.fixture()
def local_table(tmp_path):
    catalog = SqlCatalog("lake", uri=f"sqlite:///{tmp_path / 'lake.db'}",
                         warehouse=f"file://{tmp_path / 'warehouse'}")
    table, events, ranges = fill(catalog, ("security_lake", "authentication"))
    return tmp_path, table, events, ranges


def test_a_tables_current_snapshot_is_read(local_table):
    cwd, table, events, ranges = local_table
    whole = summary(authpulse("run", "--source", f"iceberg:{table.metadata_location}",
                              "--output", "whole", cwd=cwd))
    # As the files of the same partitions read from a prefix (test_security_lake).
    assert whole["events_read"] == 247 and whole["events_valid"] == 244
    assert whole["invalid_by_reason"] == {"unmapped": 3} and whole["late"] == 0
    write_json_lines(cwd / "events.jsonl")
    summary(authpulse("run", "events.jsonl", "--output", "json-out", cwd=cwd))
    assert event_rows(cwd, "whole") == event_rows(cwd, "json-out")

    # Replace the table's rows with the fixture's alone: the second account's
    # and the first's files stay under data/, but not in the snapshot.
    start, length = ranges["region=us-east-1/accountId=999988887777/eventDay=20240101/fixture.parquet"]
    table.overwrite(events.slice(start, length))
    data_files = list((cwd / "warehouse").rglob("*.parquet"))
    assert len(data_files) == 4, data_files
    replaced = summary(authpulse("run", "--source", f"iceberg:{table.metadata_location}",
                                 "--output", "replaced", cwd=cwd))
    assert replaced["events_read"] == length == 7
    assert {r["user_id"] for r in event_rows(cwd, "replaced")} == {"alice", "bob", "carol", "WS-ALICE$"}
    # The prefix holds every file ever written: rows the table no longer has.
    prefix = summary(authpulse("run", "--source", f"parquet:{data_files[0].parent}",
                               "--output", "prefix", cwd=cwd))
    assert prefix["events_read"] == 247 + 7


def test_a_table_without_snapshots_or_metadata_is_refused(tmp_path):
    catalog = SqlCatalog("lake", uri=f"sqlite:///{tmp_path / 'lake.db'}",
                         warehouse=f"file://{tmp_path / 'warehouse'}")
    catalog.create_namespace("security_lake")
    events, _ = arrow_events()
    empty = catalog.create_table(("security_lake", "empty"), schema=events.schema)
    done = authpulse("run", "--source", f"iceberg:{empty.metadata_location}", "--output", "out",
                     cwd=tmp_path)
    assert done.returncode != 0
    assert f"iceberg:{empty.metadata_location} holds no Parquet files" in done.stderr, done.stderr
    done = authpulse("run", "--source", f"iceberg:{tmp_path}/nothing.metadata.json",
                     "--output", "out", cwd=tmp_path)
    assert done.returncode != 0
    assert "read the table metadata" in done.stderr and "nothing.metadata.json" in done.stderr


def test_a_glue_table_reads_as_the_same_events_sent_as_json(tmp_path, moto_endpoint, aws_env):
    bucket = f"aws-security-data-lake-{uuid.uuid4().hex[:8]}"
    boto3_client("s3", moto_endpoint).create_bucket(Bucket=bucket)
    glue = load_catalog("glue", **{
        "type": "glue",
        "glue.endpoint": moto_endpoint,
        "glue.region": AWS_ENV["AWS_REGION"],
        "glue.access-key-id": AWS_ENV["AWS_ACCESS_KEY_ID"],
        "glue.secret-access-key": AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        "s3.endpoint": moto_endpoint,
        "s3.region": AWS_ENV["AWS_REGION"],
        "s3.access-key-id": AWS_ENV["AWS_ACCESS_KEY_ID"],
        "s3.secret-access-key": AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        "s3.path-style-access": "true",
        "warehouse": f"s3://{bucket}/lake",
    })
    database = "amazon_security_lake_glue_db_us_east_1"
    fill(glue, (database, "authentication"))
    write_json_lines(tmp_path / "events.jsonl")

    from_glue = summary(authpulse("run", "--source", f"glue:{database}.authentication",
                                  "--s3-path-style", "--output", "glue-out", cwd=tmp_path,
                                  env=aws_env))
    assert from_glue["events_valid"] == 244 and from_glue["late"] == 0
    summary(authpulse("run", "events.jsonl", "--output", "json-out", cwd=tmp_path))
    assert event_rows(tmp_path, "glue-out") == event_rows(tmp_path, "json-out")
    # The raw table names the table it read.
    done = authpulse("query", "--output", "glue-out", "--format", "json",
                     "SELECT DISTINCT source FROM auth_events_raw", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [json.loads(l)["source"] for l in done.stdout.splitlines()] == [
        f"glue:{database}.authentication"]

    missing = authpulse("run", "--source", f"glue:{database}.nothing", "--s3-path-style",
                        "--output", "none", cwd=tmp_path, env=aws_env)
    assert missing.returncode != 0
    assert f"glue:{database}.nothing" in missing.stderr and "EntityNotFound" in missing.stderr, \
        missing.stderr


def test_a_table_read_before_is_read_on_from_its_snapshot(tmp_path):
    """A second run into the same tables reads only the data files the
    table gained since the snapshot the first run read to its end; a third,
    with nothing new, reads nothing; together they store what one run of
    the whole table does."""
    catalog = SqlCatalog("lake", uri=f"sqlite:///{tmp_path / 'lake.db'}",
                         warehouse=f"file://{tmp_path / 'warehouse'}")
    ident = ("security_lake", "authentication")
    events, ranges = arrow_events()
    catalog.create_namespace("security_lake")
    table = catalog.create_table(ident, schema=events.schema)
    *earlier, (start, length) = ranges.values()
    for s, n in earlier:
        table.append(events.slice(s, n))

    def run(output):
        where = catalog.load_table(ident).metadata_location
        return summary(authpulse("run", "--source", f"iceberg:{where}", "--output", output,
                                 cwd=tmp_path))

    first = run("out")
    assert first["events_read"] == sum(n for _, n in earlier)
    table.append(events.slice(start, length))
    second = run("out")
    assert second["events_read"] == length == 120, second
    assert second["already_stored"] == 0 and second["late"] == 0, second
    third = run("out")
    assert third["events_read"] == 0, third
    # The table's metadata names the snapshot each run read to its end.
    whole = run("whole")
    assert whole["events_read"] == first["events_read"] + length
    assert event_rows(tmp_path, "out") == event_rows(tmp_path, "whole")
