"""Several workers on one stream, against local servers on loopback.

Three `authpulse run --lease-table` workers share a four-shard Kinesis stream
through a DynamoDB lease table and write the same Glue tables on S3 (moto).
The first third of a generated data set is in the stream when they start;
once it is stored, the worker holding the most shards is killed with SIGKILL
and the second third is written: the others take its shards over from its
last commit. Then one of them stalls (SIGSTOP) past its leases' expiry while
the last third is written: the third worker takes its shards over, and when
the stalled one wakes up its commit is refused. They are stopped, and a fourth worker alone reads the stream to its
tips (`--until-caught-up`), which scores what the watermark still held:
every unique event ends up in the curated table exactly once, none
dead-lettered, and the accounts' incidents are those one process alone
opens. The workers read their policy from S3.
"""

import hashlib
import json
import os
import re
import signal
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from conftest import boto3_client
from test_glue_s3 import pyiceberg_glue

BIN = os.environ.get("AUTHPULSE_BIN", "authpulse")
ROOT = Path(__file__).resolve().parents[2]
FAILOVER_S = 2


def authpulse(*args, cwd, env):
    done = subprocess.run([BIN, *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "AUTHPULSE_LOG": "warn", **env})
    assert done.returncode == 0, done.stderr
    return done


def event_id(line):
    return hashlib.sha256(line.strip().replace(",", "|").encode()).hexdigest()[:32]


def leases(table, cwd, env):
    out = authpulse("leases", "--lease-table", table, "--json", cwd=cwd, env=env).stdout
    return [json.loads(line) for line in out.splitlines()]


def ids_in(endpoint, table):
    table = pyiceberg_glue(endpoint).load_table(f"authpulse.{table}")
    return table.scan(selected_fields=("event_id",)).to_arrow().column("event_id").to_pylist()


def stored_twice(endpoint, table):
    """For every event id the table holds more than once: the commits (writer
    and checkpoint, from the snapshot summary) that added a file holding it."""
    import pyarrow.parquet as pq
    table = pyiceberg_glue(endpoint).load_table(f"authpulse.{table}")
    progress = {}
    for snapshot in table.snapshots():
        summary = snapshot.summary.additional_properties if snapshot.summary else {}
        record = json.loads(summary.get("authpulse.progress", "{}"))
        position = record.get("source", {}).get("position", {})
        progress[snapshot.snapshot_id] = (position.get("writer"), record.get("checkpoint"))
    where = {}
    for entry in table.inspect.entries().to_pylist():
        if entry["status"] == 2:  # deleted: not part of the table now
            continue
        path = entry["data_file"]["file_path"]
        with table.io.new_input(path).open() as f:
            for event_id in pq.read_table(f, columns=["event_id"]).column("event_id").to_pylist():
                where.setdefault(event_id, []).append(progress.get(entry["snapshot_id"]))
    return {event_id: commits for event_id, commits in where.items() if len(commits) > 1}


def listen_url(log):
    deadline = time.monotonic() + 60
    while True:
        found = re.search(r"operations server listening.* addr=(127\.0\.0\.1:\d+)", log.read_text())
        if found:
            return f"http://{found.group(1)}"
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


def wait_for(what, done, limit_s=240):
    deadline = time.monotonic() + limit_s
    while not done():
        assert time.monotonic() < deadline, f"not within {limit_s} s: {what}"
        time.sleep(1)


def start_workers(stream, lease_table, lake, tmp_path, aws_env, listen=None):
    """Three workers on `stream`, logging to `<worker>.log`; `listen` also
    serves its operations API."""
    workers = {}
    for worker in ["w1", "w2", "w3"]:
        log = open(tmp_path / f"{worker}.log", "w")
        workers[worker] = (subprocess.Popen(
            [BIN, "run", "--source", f"kinesis://{stream}", "--lease-table", lease_table,
             "--worker-id", worker, "--failover", f"{FAILOVER_S}s", "--commit-interval", "2s",
             "--poll-interval", "200ms", "--output", f"out-{worker}", *lake,
             *(["--listen", "127.0.0.1:0"] if worker == listen else [])],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=log, text=True,
            env={**os.environ, "AUTHPULSE_LOG": "info", **aws_env}), log)
        time.sleep(1)  # the first creates the tables
    return workers


def test_three_workers_share_a_stream_and_take_over_from_a_killed_one(moto_endpoint, aws_env, tmp_path):
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"))
    name = f"fleet-{uuid.uuid4().hex[:8]}"
    boto3_client("kinesis", moto_endpoint).create_stream(StreamName=name, ShardCount=4)
    boto3_client("s3", moto_endpoint).create_bucket(Bucket=name)
    lake = ["--catalog", "glue", "--warehouse", f"s3://{name}/tables", "--s3-path-style"]
    lease_table = f"{name}-leases"
    # The fleet's policy lives on S3. (`replay` writes two days of events in
    # seconds, one PutRecords call spanning over an hour of event time: the
    # shard merge keeps that in order across shards, however the workers'
    # reads interleave with it, or the default 5 minutes' lateness would
    # dead-letter events.)
    policy = (ROOT / "policies.yaml").read_text()
    boto3_client("s3", moto_endpoint).put_object(Bucket=name, Key="policies.yaml", Body=policy.encode())
    lake += ["--policy", f"s3://{name}/policies.yaml"]

    # Hidden attacks: two on accounts, one on a computer (accounts of every
    # shard logging on to it within minutes: no worker sees it alone).
    authpulse("gen", "--users", "200", "--days", "2", "--events", "20000", "--campaigns", "3",
              "--kinds", "spray,burst,fan_in", "--seed", "13", "-o", "events.csv", cwd=tmp_path, env=aws_env)
    lines = [line for line in open(tmp_path / "events.csv") if line[:1].isdigit()]
    third = len(lines) // 3
    parts = [lines[:third], lines[third:2 * third], lines[2 * third:]]
    for name_, part in zip(["first", "second", "last"], parts):
        (tmp_path / f"{name_}.csv").write_text("".join(part))
    first = {event_id(line) for line in parts[0]}
    two = first | {event_id(line) for line in parts[1]}
    every = {event_id(line) for line in lines}
    authpulse("replay", "--input", "first.csv", "--stream", name, cwd=tmp_path, env=aws_env)

    workers = start_workers(name, lease_table, lake, tmp_path, aws_env, listen="w3")

    def logs():
        return "\n".join(f"--- {w}\n" + (tmp_path / f"{w}.log").read_text()[-3000:] for w in workers)

    try:
        # Arrivals are committed to the raw table at once; the watermark holds
        # the newest events back from scoring until later ones arrive.
        wait_for("the first half stored", lambda: set(ids_in(moto_endpoint, "auth_events_raw")) >= first)
        # The lease table has settled: every shard held once, by three workers.
        def owners():
            return [lease.get("leaseOwner") for lease in leases(lease_table, tmp_path, aws_env)]
        wait_for("three workers holding leases", lambda: len(set(owners()) - {None}) == 3, 120)
        held = owners()
        assert len(held) == 4 and None not in held, held

        # A worker's operations server shows the leases it holds.
        url = listen_url(tmp_path / "w3.log")
        def shown():
            fleet = json.loads(urllib.request.urlopen(f"{url}/api/v1/status").read())["fleet"]
            assert fleet["worker"] == "w3" and fleet["lease_table"] == lease_table, fleet
            return sorted(lease["shard"] for lease in fleet["leases"])
        def in_table():
            return sorted(lease["leaseKey"] for lease in leases(lease_table, tmp_path, aws_env)
                          if lease.get("leaseOwner") == "w3")
        wait_for("the status shows w3's leases", lambda: shown() == in_table() != [], 30)
        metrics = urllib.request.urlopen(f"{url}/metrics").read().decode()
        assert f"authpulse_fleet_leases_held {len(shown())}" in metrics, metrics

        busiest = max(set(held), key=held.count)
        process, _ = workers[busiest]
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed_at = time.monotonic()

        authpulse("replay", "--input", "second.csv", "--stream", name, cwd=tmp_path, env=aws_env)
        wait_for("two thirds stored", lambda: set(ids_in(moto_endpoint, "auth_events_raw")) >= two)
        # Its shards went to the others.
        wait_for("the killed worker's leases taken over",
                 lambda: busiest not in owners(), 20 * FAILOVER_S)
        assert time.monotonic() - killed_at < 120

        alive = sorted(w for w in workers if w != busiest)
        held = owners()
        stalled = max(alive, key=held.count)
        workers[stalled][0].send_signal(signal.SIGSTOP)
        wait_for("the stalled worker's leases taken over",
                 lambda: stalled not in owners(), 20 * FAILOVER_S)
        authpulse("replay", "--input", "last.csv", "--stream", name, cwd=tmp_path, env=aws_env)
        wait_for("every event stored", lambda: set(ids_in(moto_endpoint, "auth_events_raw")) >= every)
        workers[stalled][0].send_signal(signal.SIGCONT)
        log = tmp_path / f"{stalled}.log"
        wait_for("the stalled worker's commit refused",
                 lambda: "may not commit" in log.read_text(), 20 * FAILOVER_S)
    except AssertionError:
        raise AssertionError(logs())
    finally:
        for worker, (process, log) in workers.items():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for worker, (process, log) in workers.items():
            process.wait(timeout=60)
            log.close()

    for worker, (process, _) in workers.items():
        if worker != busiest:
            assert process.returncode == 0, logs()
    assert "lost the lease" in (tmp_path / f"{stalled}.log").read_text()
    # A stop gives the leases up.
    assert all(lease.get("leaseOwner") is None for lease in leases(lease_table, tmp_path, aws_env))

    # One worker alone reads on to the tips and scores what was held back.
    last = authpulse("run", "--source", f"kinesis://{name}", "--lease-table", lease_table,
                     "--worker-id", "w4", "--failover", f"{FAILOVER_S}s", "--until-caught-up",
                     "--poll-interval", "200ms", "--output", "out-w4", *lake, cwd=tmp_path, env=aws_env)
    assert json.loads(last.stdout.strip().splitlines()[-1])["invalid"] == 0
    # Nothing dead-lettered anywhere (late, future or invalid).
    for worker in [*workers, "w4"]:
        dead = tmp_path / f"out-{worker}" / "dead-letter.jsonl"
        assert not dead.exists() or dead.read_text() == "", (worker, dead.read_text()[:2000])
    # Each shard's share of the computers' users, as the last worker left
    # them: together exactly each computer's distinct users.
    s3 = boto3_client("s3", moto_endpoint)
    objects = [o["Key"] for o in s3.list_objects_v2(Bucket=name)["Contents"]]
    # An attempt's state snapshots go once every shard it read starts from a
    # later one: left are w4's, and at most one snapshot the stalled worker
    # wrote after its run's were removed.
    runs = {key.rsplit("-", 1)[1] for key in objects if key.endswith(".apstate")}
    attempts = {line.split('writer="')[1].split('"')[0]
                for worker in workers for line in (tmp_path / f"{worker}.log").read_text().splitlines()
                if 'reading writer="' in line}
    assert len(attempts) >= 4 and len(runs) <= 2, (sorted(runs), sorted(attempts))
    keys = [k for k in objects if "/state/hosts-" in k]
    assert len(keys) == 4, keys
    users_ever = {}
    for key in keys:
        share = json.loads(s3.get_object(Bucket=name, Key=key)["Body"].read())
        assert share["writer"].startswith("w4/") and key.endswith(f"hosts-{share['shard']}.json"), key
        for host in share["shares"]:
            users_ever[host["computer"]] = users_ever.get(host["computer"], 0) + host["users_ever"]
    expected = {}
    for line in lines:
        _, user, computer = line.strip().split(",")
        expected.setdefault(computer, set()).add(user)
    assert users_ever == {c: len(users) for c, users in expected.items()}
    # Exactly once: no event lost, none stored twice.
    ids = ids_in(moto_endpoint, "auth_events_curated")
    assert len(ids) == len(every) and set(ids) == every, stored_twice(moto_endpoint, "auth_events_curated")
    # Every worker wrote rows, each commit naming its writer.
    table = pyiceberg_glue(moto_endpoint).load_table("authpulse.auth_events_curated")
    writers = set()
    for snapshot in table.snapshots():
        progress = snapshot.summary and snapshot.summary.additional_properties.get("authpulse.progress")
        if progress:
            writers.add(json.loads(progress)["source"]["position"]["writer"].split("/")[0])
    assert writers == {"w1", "w2", "w3", "w4"}, writers

    # The incidents one process alone opens on the same events: the
    # accounts' are the same, with the same ids. A computer's incidents are
    # decided by one worker from every shard's evidence (none opened twice,
    # none where one process opens none); whether this backfill's computer
    # attack is seen depends on how fresh the others' share of its users
    # was when its events were scored (a trade a second, hours of this
    # sparse data's event time), so it is measured (scripts/bench_fleet.py),
    # not asserted here.
    authpulse("run", "events.csv", "--no-lakehouse", "--output", "alone", cwd=tmp_path, env=aws_env)
    alone = [json.loads(line) for line in open(tmp_path / "alone" / "alerts.jsonl")]
    alone = {(a["entity_type"], a["entity_id"], a["alert_id"]) for a in alone if a["sequence"] == 1}
    assert {a[0] for a in alone} == {"user", "computer"}, alone
    alerts = pyiceberg_glue(moto_endpoint).load_table("authpulse.alerts").scan().to_arrow().to_pylist()
    fleet = [(a["entity_type"], a["entity_id"], a["alert_id"]) for a in alerts if a["sequence"] == 1]
    assert len(fleet) == len(set(fleet)), fleet
    assert {a for a in fleet if a[0] == "user"} == {a for a in alone if a[0] == "user"}, (fleet, alone)
    computers = [a[1] for a in fleet if a[0] == "computer"]
    assert len(computers) == len(set(computers)), fleet
    assert set(computers) <= {a[1] for a in alone if a[0] == "computer"}, (fleet, alone)


def test_a_shard_split_while_three_workers_run(moto_endpoint, aws_env, tmp_path):
    """A shard is split while three workers read a two-shard stream: its
    children are read only once it is read to its end and committed, their
    users' state comes from it, and every event is stored once."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"))
    name = f"split-{uuid.uuid4().hex[:8]}"
    kinesis = boto3_client("kinesis", moto_endpoint)
    kinesis.create_stream(StreamName=name, ShardCount=2)
    boto3_client("s3", moto_endpoint).create_bucket(Bucket=name)
    lake = ["--catalog", "glue", "--warehouse", f"s3://{name}/tables", "--s3-path-style"]
    lease_table = f"{name}-leases"
    authpulse("gen", "--users", "200", "--days", "2", "--events", "12000", "--campaigns", "2",
              "--kinds", "spray,burst", "--seed", "21", "-o", "events.csv", cwd=tmp_path, env=aws_env)
    lines = [line for line in open(tmp_path / "events.csv") if line[:1].isdigit()]
    half = len(lines) // 2
    (tmp_path / "before.csv").write_text("".join(lines[:half]))
    (tmp_path / "after.csv").write_text("".join(lines[half:]))
    before = {event_id(line) for line in lines[:half]}
    every = {event_id(line) for line in lines}
    authpulse("replay", "--input", "before.csv", "--stream", name, cwd=tmp_path, env=aws_env)

    workers = start_workers(name, lease_table, lake, tmp_path, aws_env)

    def logs():
        return "\n".join(f"--- {w}\n" + (tmp_path / f"{w}.log").read_text()[-3000:] for w in workers)

    def lease_items():
        return {lease["leaseKey"]: lease for lease in leases(lease_table, tmp_path, aws_env)}

    parent = "shardId-000000000000"
    try:
        wait_for("the first half stored", lambda: set(ids_in(moto_endpoint, "auth_events_raw")) >= before)
        kinesis.split_shard(StreamName=name, ShardToSplit=parent,
                            NewStartingHashKey=str(2**128 // 4))
        authpulse("replay", "--input", "after.csv", "--stream", name, cwd=tmp_path, env=aws_env)
        # The children are leased, and read once their parent is finished.
        wait_for("the parent read to its end and the children taken", lambda: (
            lease_items().get(parent, {}).get("checkpoint") == "SHARD_END"
            and sum(1 for key, lease in lease_items().items()
                    if key != parent and lease.get("leaseOwner")) == 3), 120)
        wait_for("every event stored", lambda: set(ids_in(moto_endpoint, "auth_events_raw")) >= every)
    except AssertionError:
        raise AssertionError(logs())
    finally:
        for process, _ in workers.values():
            process.send_signal(signal.SIGTERM)
        for process, log in workers.values():
            process.wait(timeout=60)
            log.close()
    assert all(process.returncode == 0 for process, _ in workers.values()), logs()

    items = lease_items()
    children = sorted(key for key, lease in items.items() if parent in (lease.get("parentShardId") or []))
    assert len(children) == 2, items
    assert sorted(items[parent].get("childShardIds") or []) == children, items
    # One worker alone reads on to the tips and scores what was held back.
    authpulse("run", "--source", f"kinesis://{name}", "--lease-table", lease_table,
              "--worker-id", "w4", "--failover", f"{FAILOVER_S}s", "--until-caught-up",
              "--poll-interval", "200ms", "--output", "out-w4", *lake, cwd=tmp_path, env=aws_env)
    for worker in [*workers, "w4"]:
        dead = tmp_path / f"out-{worker}" / "dead-letter.jsonl"
        assert not dead.exists() or dead.read_text() == "", (worker, dead.read_text()[:2000])
    ids = ids_in(moto_endpoint, "auth_events_curated")
    assert len(ids) == len(every) and set(ids) == every, stored_twice(moto_endpoint, "auth_events_curated")
    # The children's events were scored with their users' history from the
    # parent: the accounts' incidents are those one process alone opens.
    authpulse("run", "events.csv", "--no-lakehouse", "--output", "alone", cwd=tmp_path, env=aws_env)
    alone = [json.loads(line) for line in open(tmp_path / "alone" / "alerts.jsonl")]
    alone = {(a["entity_id"], a["alert_id"]) for a in alone if a["sequence"] == 1 and a["entity_type"] == "user"}
    alerts = pyiceberg_glue(moto_endpoint).load_table("authpulse.alerts").scan().to_arrow().to_pylist()
    fleet = [(a["entity_id"], a["alert_id"]) for a in alerts if a["sequence"] == 1 and a["entity_type"] == "user"]
    assert sorted(fleet) == sorted(alone) != [], (fleet, alone)
    # Each worker's alerts file keeps what every one of its attempts
    # published: together they hold every publication the table does.
    published = set()
    for worker in [*workers, "w4"]:
        for line in open(tmp_path / f"out-{worker}" / "alerts.jsonl"):
            alert = json.loads(line)
            published.add((alert["alert_id"], alert["sequence"]))
    assert {(a["alert_id"], a["sequence"]) for a in alerts} <= published, (alerts, published)
