"""The production catalog: tables on S3, tracked by AWS Glue.

Runs `authpulse run --catalog glue` against a local S3- and Glue-compatible
server (moto), then reads the tables back with PyIceberg's own Glue catalog and
S3 file IO, runs `authpulse query` and `authpulse maintain` on the same
catalog, and checks the rows against the run's summary.
"""

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
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


def test_the_local_glue_refuses_an_update_on_a_stale_version(moto_endpoint):
    """The test server's Glue keeps Glue's optimistic lock (moto alone does
    not): of two updates made on the same version of a table's entry, the
    second is refused, so that two writers' Iceberg commits cannot drop
    each other's snapshots unseen (tests/lakehouse/moto_server.py)."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"))
    glue = boto3_client("glue", moto_endpoint)
    glue.create_database(DatabaseInput={"Name": "locks"})
    glue.create_table(DatabaseName="locks", TableInput={"Name": "t", "Parameters": {"at": "0"}})
    version = glue.get_table(DatabaseName="locks", Name="t")["Table"]["VersionId"]
    glue.update_table(DatabaseName="locks", TableInput={"Name": "t", "Parameters": {"at": "1"}},
                      VersionId=version)
    with pytest.raises(glue.exceptions.ConcurrentModificationException):
        glue.update_table(DatabaseName="locks", TableInput={"Name": "t", "Parameters": {"at": "2"}},
                          VersionId=version)
    table = glue.get_table(DatabaseName="locks", Name="t")["Table"]
    assert table["Parameters"] == {"at": "1"} and table["VersionId"] != version, table


def test_run_writes_glue_tables_on_s3_that_pyiceberg_reads(lake, moto_endpoint, aws_env, tmp_path):
    bucket, options = lake
    done = authpulse("run", "events.csv", "--output", "out", *options, cwd=tmp_path, env=aws_env)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert not (tmp_path / "out" / "catalog.db").exists(), "nothing goes to the embedded catalog"

    glue = boto3_client("glue", moto_endpoint)
    tables = {t["Name"]: t for t in glue.get_tables(DatabaseName="authpulse")["TableList"]}
    assert set(tables) == {"auth_events_raw", "auth_events_curated", "alerts", "ocsf_findings",
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
    # Another input adds to it; an event it repeats is not stored again.
    first_line = next(line for line in open(tmp_path / "events.csv") if line[0].isdigit())
    first_time = first_line.split(",")[0]
    (tmp_path / "other.csv").write_text(first_line + f"{first_time},U_NEW,C_NEW\n")
    other = authpulse("run", "other.csv", "--output", "out3", *options, cwd=tmp_path, env=aws_env)
    assert other.returncode == 0, other.stderr
    added = json.loads(other.stdout.strip().splitlines()[-1])
    assert added["already_stored"] == 1 and added["events_scored"] == 1


def test_maintain_compacts_through_glue(lake, moto_endpoint, aws_env, tmp_path):
    bucket, options = lake
    runs = []
    lines = (tmp_path / "events.csv").read_text().splitlines(keepends=True)
    for i in range(3):
        (tmp_path / f"part{i}.csv").write_text("".join(lines[i::3]))
        done = authpulse("run", f"part{i}.csv", "--output", f"out{i}", *options,
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
    assert set(reports) == {"auth_events_raw", "auth_events_curated", "alerts", "ocsf_findings",
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


class Outage:
    """A TCP proxy in front of the local AWS server that can be taken down and
    brought back on the same port. While it is down connections are refused
    and open ones are cut, as when the server is stopped, while the server
    itself keeps its buckets and catalog (moto keeps them in memory only)."""

    def __init__(self, upstream):
        import urllib.parse
        self.upstream = urllib.parse.urlparse(upstream).port
        self.connections = set()
        self.lock = threading.Lock()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.up()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def up(self):
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def down(self):
        self.listener.close()
        with self.lock:
            for connection in self.connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                connection.close()
            self.connections.clear()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.connections.update((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def readiness(server):
    """(status, JSON body) of GET /readyz."""
    try:
        with urllib.request.urlopen(f"{server}/readyz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_run_rides_out_a_30_second_storage_outage(lake, moto_endpoint, aws_env, tmp_path):
    """S3 and Glue become unreachable for 30 s in the middle of a following
    run (commits every 200 ms). The run fails its commit, waits, resumes
    in-process from the last commit once they are back, and in the end the
    tables hold every event once with the scores of a run that saw no
    outage."""
    gen = authpulse("gen", "--users", "300", "--days", "3", "--events", "60000", "--campaigns", "2",
                    "--kinds", "spray,burst", "--seed", "23", "-o", "events.csv", cwd=tmp_path, env={})
    assert gen.returncode == 0, gen.stderr
    lines = (tmp_path / "events.csv").read_text().splitlines(keepends=True)
    half = len(lines) // 2
    (tmp_path / "live.csv").write_text("".join(lines[:half]))
    whole = authpulse("run", "events.csv", "--output", "whole", cwd=tmp_path, env={})
    assert whole.returncode == 0, whole.stderr

    _, options = lake
    outage = Outage(moto_endpoint)
    env = {**os.environ, **aws_env, "AWS_ENDPOINT_URL": outage.url, "AUTHPULSE_LOG": "info"}
    command = [BIN, "run", "live.csv", "--output", "out", *options, "--commit-interval", "200ms"]
    log = tmp_path / "follow.log"
    with open(log, "w") as stderr:
        child = subprocess.Popen([*command, "--follow", "--listen", "127.0.0.1:0"], cwd=tmp_path,
                                 stdout=subprocess.PIPE, stderr=stderr, env=env, text=True)
        try:
            # Until every table has committed a checkpoint to resume from.
            catalog = pyiceberg_glue(moto_endpoint)
            tables = ["auth_events_raw", "auth_events_curated", "alerts", "ocsf_findings",
                      "user_behavior_hourly", "host_popularity_daily"]

            def committed(name):
                try:
                    snapshot = catalog.load_table(f"authpulse.{name}").current_snapshot()
                except Exception:  # not created yet
                    return False
                return snapshot is not None and "authpulse.progress" in snapshot.summary.additional_properties

            deadline = time.monotonic() + 120
            while not all(committed(name) for name in tables):
                assert time.monotonic() < deadline and child.poll() is None, log.read_text()
                time.sleep(0.2)
            server = "http://" + re.search(r"operations server listening.* addr=(127\.0\.0\.1:\d+)",
                                           log.read_text()).group(1)
            assert readiness(server)[0] == 200
            outage.down()
            down_at = time.monotonic()
            with open(tmp_path / "live.csv", "a") as f:
                f.write("".join(lines[half:]))
            # While storage is down the run is not ready, and says why.
            while True:
                code, body = readiness(server)
                if code == 503:
                    break
                assert time.monotonic() - down_at < 25, (code, body)
                time.sleep(0.2)
            assert any(part["part"] == "pipeline" for part in body["not_ready"]), body
            time.sleep(max(0.0, 30 - (time.monotonic() - down_at)))
            outage.up()
            # Back: the run resumes and reads the rest.
            deadline = time.monotonic() + 120
            while "resuming where the last commit left off" not in log.read_text():
                assert time.monotonic() < deadline and child.poll() is None, log.read_text()
                time.sleep(0.2)
            deadline = time.monotonic() + 60
            while readiness(server)[0] != 200:
                assert time.monotonic() < deadline, readiness(server)
                time.sleep(0.2)
            time.sleep(3)
        finally:
            child.send_signal(signal.SIGTERM)
            stdout, _ = child.communicate(timeout=120)
    text = log.read_text()
    assert child.returncode == 0, text
    assert "the run failed; resuming from the last commit after a pause" in text
    # The state snapshots live beside the tables on S3, not on this host.
    assert "state=s3://" in text, text
    assert not (tmp_path / "out" / "state").exists()
    bucket, _ = lake
    keys = [o["Key"] for o in boto3_client("s3", moto_endpoint).list_objects_v2(
        Bucket=bucket, Prefix="tables/")["Contents"]]
    kept = [k for k in keys if "/state/checkpoint-" in k]
    assert 1 <= len(kept) <= 3, kept
    # The stop left the events the watermark holds in the state: the same
    # command without --follow finishes the input.
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    expected = json.loads(whole.stdout.strip().splitlines()[-1])
    assert summary["events_scored"] == expected["events_scored"]

    def scores(table):
        rows = table.scan(selected_fields=("event_id", "risk_score", "risk_level")).to_arrow().to_pylist()
        return sorted((r["event_id"], r["risk_score"], r["risk_level"]) for r in rows)

    from pyiceberg.catalog.sql import SqlCatalog
    local = SqlCatalog("authpulse", uri=f"sqlite:///{tmp_path / 'whole' / 'catalog.db'}",
                       warehouse=f"file://{tmp_path / 'whole' / 'warehouse'}")
    want = scores(local.load_table("authpulse.auth_events_curated"))
    got = scores(pyiceberg_glue(moto_endpoint).load_table("authpulse.auth_events_curated"))
    assert len(want) == expected["events_scored"]
    assert len({r[0] for r in got}) == len(got), "each event once"
    assert got == want
