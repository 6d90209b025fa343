"""The AWS side end to end, against local servers on loopback.

moto serves Kinesis, S3, Glue, SNS and SQS. CloudWatch's current protocol
(Smithy RPC v2 CBOR) is not served by moto yet, so a small loopback endpoint
here decodes what the real SDK sends (with cbor2, an independent decoder) and
records it.

`authpulse replay` writes generated data with crafted attacks into a 2-shard
stream; `authpulse run --source kinesis://... --until-caught-up` scores it into
Glue tables on S3, publishes alerts to an SNS topic that an SQS queue is
subscribed to, and sends metrics to the CloudWatch endpoint.
"""

import gzip
import hashlib
import http.server
import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid

import cbor2
import pytest

from conftest import boto3_client
from test_glue_s3 import pyiceberg_glue

BIN = os.environ.get("AUTHPULSE_BIN", "authpulse")


def authpulse(*args, cwd, env):
    return subprocess.run([BIN, *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "AUTHPULSE_LOG": "warn", **env})


def summary_of(done):
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


class CloudWatchEndpoint(http.server.ThreadingHTTPServer):
    """Answers PutMetricData in RPC v2 CBOR and keeps the decoded requests."""

    def __init__(self):
        self.requests = []
        super().__init__(("127.0.0.1", 0), CloudWatchHandler)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class CloudWatchHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.requests.append({
            "path": self.path,
            "protocol": self.headers.get("smithy-protocol"),
            "body": cbor2.loads(body),
        })
        reply = cbor2.dumps({})
        self.send_response(200)
        self.send_header("Content-Type", "application/cbor")
        self.send_header("smithy-protocol", "rpc-v2-cbor")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


@pytest.fixture()
def cloudwatch():
    server = CloudWatchEndpoint()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


@pytest.fixture()
def aws(moto_endpoint, tmp_path):
    """A fresh stream (2 shards), bucket, topic and subscribed queue."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"))
    name = f"auth-{uuid.uuid4().hex[:8]}"
    kinesis = boto3_client("kinesis", moto_endpoint)
    kinesis.create_stream(StreamName=name, ShardCount=2)
    boto3_client("s3", moto_endpoint).create_bucket(Bucket=name)
    sns = boto3_client("sns", moto_endpoint)
    sqs = boto3_client("sqs", moto_endpoint)
    topic = sns.create_topic(Name=name)["TopicArn"]
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    return {
        "stream": name,
        "topic": topic,
        "queue": queue,
        "lake": ["--catalog", "glue", "--warehouse", f"s3://{name}/tables", "--s3-path-style"],
    }


def received(endpoint, queue):
    """Every message on the queue: (subject, attributes, parsed message)."""
    sqs = boto3_client("sqs", endpoint)
    out, empty = [], 0
    while empty < 2:
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        messages = got.get("Messages", [])
        empty = 0 if messages else empty + 1
        for m in messages:
            envelope = json.loads(m["Body"])
            attributes = {k: v["Value"] for k, v in envelope.get("MessageAttributes", {}).items()}
            out.append((envelope.get("Subject"), attributes, json.loads(envelope["Message"])))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
    return out


def event_ids(csv_path):
    ids = set()
    with open(csv_path) as f:
        for line in f:
            line = line.strip()
            if line and line[0].isdigit():
                ids.add(hashlib.sha256(line.replace(",", "|").encode()).hexdigest()[:32])
    return ids


def test_replay_kinesis_run_sns_cloudwatch_end_to_end(aws, moto_endpoint, aws_env, cloudwatch, tmp_path):
    # Two days: the rules need a day of history to see a device as new (on
    # seed 12 both attacks fall after their account's first day).
    gen = authpulse("gen", "--users", "200", "--days", "2", "--events", "30000", "--campaigns", "2", "--kinds", "spray,burst",
                    "--seed", "12", "-o", "events.csv", "--truth", "truth.jsonl",
                    cwd=tmp_path, env=aws_env)
    assert gen.returncode == 0, gen.stderr
    unique = event_ids(tmp_path / "events.csv")
    lines = sum(1 for line in open(tmp_path / "events.csv") if line[0].isdigit())
    attacks = [json.loads(line) for line in open(tmp_path / "truth.jsonl")]

    replay = summary_of(authpulse("replay", "--input", "events.csv", "--stream", aws["stream"],
                                  cwd=tmp_path, env=aws_env))
    assert replay["events_sent"] == lines
    assert replay["events_failed"] == 0 and replay["invalid"] == 0
    assert replay["put_calls"] >= lines // 500
    # PartitionKey = user_id spreads the users over both shards.
    kinesis = boto3_client("kinesis", moto_endpoint)
    shards = kinesis.list_shards(StreamName=aws["stream"])["Shards"]
    assert len(shards) == 2

    env = {**aws_env, "AWS_ENDPOINT_URL_CLOUDWATCH": cloudwatch.url}
    run = summary_of(authpulse(
        "run", "--source", f"kinesis://{aws['stream']}", "--until-caught-up",
        "--poll-interval", "200ms", "--output", "out", *aws["lake"],
        "--sns-topic", aws["topic"], "--cloudwatch", "--metrics-interval", "1s",
        "--pipeline-name", "e2e", "--metrics-emf", "metrics.emf", cwd=tmp_path, env=env))
    assert run["events_read"] == lines
    assert run["late"] == 0 and run["invalid"] == 0
    assert run["events_scored"] == len(unique)
    assert run["duplicates"] == lines - len(unique)

    # The curated table on S3 holds each unique event once.
    catalog = pyiceberg_glue(moto_endpoint)
    curated = catalog.load_table("authpulse.auth_events_curated").scan().to_arrow()
    assert curated.num_rows == len(unique)
    assert set(curated.column("event_id").to_pylist()) == unique
    raw = catalog.load_table("authpulse.auth_events_raw").scan().to_arrow()
    assert set(raw.column("source").to_pylist()) == {f"kinesis:{aws['stream']}"}

    # Exactly the alerts raised arrived through SNS, and the attacks' among them.
    table_alerts = catalog.load_table("authpulse.alerts").scan().to_arrow().to_pylist()
    assert run["alert_publications"] == len(table_alerts) > run["alerts"] >= 1
    messages = received(moto_endpoint, aws["queue"])
    alerts = [m for _, attrs, m in messages if attrs.get("kind") == "alert"]
    key = lambda a: (a["alert_id"], a["sequence"])
    assert sorted(map(key, alerts)) == sorted(map(key, table_alerts))
    assert run["sns"] == {"published": len(messages), "already_sent": 0, "retries": 0, "pending": 0}
    alerted_users = {a["entity_id"] for a in alerts if a["entity_type"] == "user"}
    for attack in attacks:
        assert set(attack["users"]) & alerted_users, attack
    subject, attrs, first = next(m for m in messages if m[1].get("kind") == "alert")
    line = f'[{first["status"]}] {first["summary"]}'
    assert subject == (line if len(line) <= 100 else line[:97] + "...")
    assert attrs["risk_level"] == first["risk_level"] and attrs["status"] == first["status"]
    # Each incident went out as it opened, and once more when it closed.
    for alert_id in {a["alert_id"] for a in alerts}:
        statuses = [a["status"] for a in sorted(alerts, key=key) if a["alert_id"] == alert_id]
        assert statuses[0] == "open" and statuses[-1] == "closed", statuses
    # The events are from 2024: far behind the 5-minute freshness SLA, which says so once.
    sla = [m for _, attrs, m in messages if attrs.get("kind") == "freshness_sla"]
    assert len(sla) == 1 and sla[0]["p95_lag_s"] > 300 and sla[0]["pipeline"] == "e2e"

    # CloudWatch got the metrics, decoded from the SDK's CBOR by an independent reader.
    assert cloudwatch.requests, "no PutMetricData call"
    for request in cloudwatch.requests:
        assert request["path"].endswith("/operation/PutMetricData")
        assert request["protocol"] == "rpc-v2-cbor"
        assert request["body"]["Namespace"] == "AuthPulse"
    data = [d for r in cloudwatch.requests for d in r["body"]["MetricData"]]
    by_name = {}
    for datum in data:
        by_name.setdefault(datum["MetricName"], []).append(datum)
    for name in ["EventsIn", "EventsOut", "DuplicateEvents", "AlertsRaised", "RuleFailures",
                 "ProcessingLag", "ProcessingLagP95", "BatchDuration", "IteratorAge"]:
        assert name in by_name, name
    assert sum(d["Value"] for d in by_name["EventsIn"]) == lines
    assert sum(d["Value"] for d in by_name["EventsOut"]) == len(unique)
    assert sum(d["Value"] for d in by_name["AlertsRaised"]) == run["alerts"]
    lag = by_name["ProcessingLag"][0]
    assert lag["Unit"] == "Seconds" and len(lag["Values"]) == len(lag["Counts"]) >= 1
    # Lag is taken as each valid record is read, duplicates included.
    assert sum(sum(d["Counts"]) for d in by_name["ProcessingLag"]) == lines
    assert {"Name": "Pipeline", "Value": "e2e"} in lag["Dimensions"]
    shard_dims = {dim["Value"] for d in by_name["IteratorAge"] for dim in d["Dimensions"]
                  if dim["Name"] == "Shard"}
    assert shard_dims == {s["ShardId"] for s in shards}

    # The same readings as Embedded Metric Format lines.
    emf = [json.loads(line) for line in open(tmp_path / "metrics.emf")]
    assert sum(line["EventsIn"] for line in emf) == lines
    directives = [line["_aws"]["CloudWatchMetrics"][0] for line in emf]
    assert all(d["Namespace"] == "AuthPulse" and d["Dimensions"] == [["Pipeline"]]
               for d in directives)
    # A lag is reported for the intervals in which records were read (on a
    # busy machine the first may have none).
    assert {m["Name"] for d in directives for m in d["Metrics"]} >= {"EventsIn", "ProcessingLagP95"}
    assert all(line["Pipeline"] == "e2e" for line in emf)

    # A second run goes on from where the tables say the first one got: it
    # reads nothing again (its summary counts the whole run, state restored)
    # and stores nothing twice.
    again = summary_of(authpulse(
        "run", "--source", f"kinesis://{aws['stream']}", "--until-caught-up",
        "--poll-interval", "200ms", "--output", "out", *aws["lake"], cwd=tmp_path, env=env))
    assert again["events_read"] == lines and again["events_scored"] == len(unique)
    curated = pyiceberg_glue(moto_endpoint).load_table("authpulse.auth_events_curated").scan().to_arrow()
    assert curated.num_rows == len(unique)
    # The positions are in the tables' progress, and nowhere else.
    assert not (tmp_path / "out" / "kinesis-checkpoint.json").exists()
    progress = json.loads(curated_snapshot_summary(moto_endpoint)["authpulse.progress"])
    assert set(progress["source"]["position"]["shards"]) == {s["ShardId"] for s in shards}


def curated_snapshot_summary(moto_endpoint):
    table = pyiceberg_glue(moto_endpoint).load_table("authpulse.auth_events_curated")
    return table.current_snapshot().summary


def test_alerts_wait_in_the_outbox_while_sns_is_down(aws, moto_endpoint, aws_env, tmp_path):
    gen = authpulse("gen", "--users", "200", "--days", "2", "--events", "30000", "--campaigns", "1", "--kinds", "spray,burst",
                    "--seed", "11", "-o", "events.csv", cwd=tmp_path, env=aws_env)
    assert gen.returncode == 0, gen.stderr
    # A topic that does not exist yet: every publish fails.
    missing = aws["topic"] + "-later"
    run = summary_of(authpulse("run", "events.csv", "--output", "out", "--no-lakehouse",
                               "--sns-topic", missing, "--sns-drain-timeout", "1s",
                               "--freshness-sla", "0", cwd=tmp_path, env=aws_env))
    assert run["alerts"] >= 1
    assert run["sns"]["published"] == 0 and run["sns"]["pending"] == run["alert_publications"]
    outbox = [json.loads(line) for line in open(tmp_path / "out" / "sns-outbox.jsonl")]
    raised = [json.loads(line) for line in open(tmp_path / "out" / "alerts.jsonl")]
    assert [m["id"] for m in outbox] == [f'{a["alert_id"]}-{a["sequence"]}' for a in raised]

    # SNS is back: the next start sends the outbox first.
    sns = boto3_client("sns", moto_endpoint)
    sqs = boto3_client("sqs", moto_endpoint)
    topic = sns.create_topic(Name=missing.rsplit(":", 1)[1])["TopicArn"]
    assert topic == missing
    queue_arn = sqs.get_queue_attributes(QueueUrl=aws["queue"], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    later = summary_of(authpulse("run", "empty.csv", "--output", "out", "--no-lakehouse",
                                 "--alerts", "later.jsonl", "--sns-topic", topic,
                                 cwd=tmp_path, env=aws_env))
    assert later["sns"] == {"published": len(raised), "already_sent": 0, "retries": 0, "pending": 0}
    assert not (tmp_path / "out" / "sns-outbox.jsonl").exists()
    delivered = [(m["alert_id"], m["sequence"]) for _, _, m in received(moto_endpoint, aws["queue"])]
    assert sorted(delivered) == sorted((a["alert_id"], a["sequence"]) for a in raised)


def test_aggregated_records_and_a_split_shard(moto_endpoint, aws_env, tmp_path):
    """KPL-aggregated records are read like plain ones, and a shard split in
    the middle of the stream is followed: the parent is finished before its
    children, every event is scored once and none is late.

    (moto keeps routing records to the closed parent after a split, and never
    ends it with a null iterator: the reader must see that a closed shard
    with nothing left is done, and an aggregate must not span more event
    time than the watermark allows, since here all of them share a shard.)"""
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"))
    stream = f"split-{uuid.uuid4().hex[:8]}"
    kinesis = boto3_client("kinesis", moto_endpoint)
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    gen = authpulse("gen", "--users", "100", "--days", "1", "--events", "6000", "--seed", "3",
                    "-o", "events.csv", cwd=tmp_path, env=aws_env)
    assert gen.returncode == 0, gen.stderr
    lines = [line for line in open(tmp_path / "events.csv") if line[0].isdigit()]
    half = len(lines) // 2
    (tmp_path / "first.csv").write_text("".join(lines[:half]))
    (tmp_path / "second.csv").write_text("".join(lines[half:]))
    unique = event_ids(tmp_path / "events.csv")

    first = summary_of(authpulse("replay", "-i", "first.csv", "--stream", stream, "--aggregate",
                                 "--aggregate-bytes", "4096", cwd=tmp_path, env=aws_env))
    assert first["events_sent"] == half
    # A quiet day (4 events a minute): about 5 events per minute-long aggregate.
    assert first["records_sent"] < half // 4, "events are packed into fewer records"
    parent = kinesis.list_shards(StreamName=stream)["Shards"][0]
    middle = (int(parent["HashKeyRange"]["EndingHashKey"]) + 1) // 2
    kinesis.split_shard(StreamName=stream, ShardToSplit=parent["ShardId"],
                        NewStartingHashKey=str(middle))
    second = summary_of(authpulse("replay", "-i", "second.csv", "--stream", stream, "--aggregate",
                                  cwd=tmp_path, env=aws_env))
    assert second["events_sent"] == len(lines) - half

    run = summary_of(authpulse("run", "--source", f"kinesis://{stream}", "--until-caught-up",
                               "--poll-interval", "200ms", "--output", "out", "--no-lakehouse",
                               cwd=tmp_path, env=aws_env))
    assert run["events_read"] == len(lines)
    assert run["late"] == 0 and run["invalid"] == 0
    assert run["events_scored"] == len(unique)
    shards = {s["ShardId"]: s for s in kinesis.list_shards(StreamName=stream)["Shards"]}
    assert len(shards) == 3
    checkpoint = json.loads((tmp_path / "out" / "kinesis-checkpoint.json").read_text())
    assert checkpoint["shards"][parent["ShardId"]]["ended"] is True
    children = [i for i, s in shards.items() if s.get("ParentShardId") == parent["ShardId"]]
    assert len(children) == 2 and all(c in checkpoint["shards"] for c in children)


class ThrottlingKinesis(http.server.ThreadingHTTPServer):
    """A Kinesis endpoint in front of moto that throttles like the real one:
    PutRecords calls report their last records as failed
    (`ProvisionedThroughputExceededException`, the per-shard rate limit)
    the first time it sees them, and every third GetRecords call is refused
    whole with the same error."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.seen = set()
        self.failed_records = 0
        self.throttled_reads = 0
        self.reads = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), ThrottlingHandler)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class ThrottlingHandler(http.server.BaseHTTPRequestHandler):
    def forward(self, body):
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() in ("content-type", "x-amz-target", "authorization", "x-amz-date")}
        request = urllib.request.Request(self.server.upstream, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        target = self.headers.get("X-Amz-Target", "")
        server = self.server
        throttled = {"ErrorCode": "ProvisionedThroughputExceededException",
                     "ErrorMessage": "Rate exceeded for shard"}
        if target.endswith(".GetRecords"):
            with server.lock:
                server.reads += 1
                refuse = server.reads % 3 == 0
                server.throttled_reads += refuse
            if refuse:
                return self.reply(400, json.dumps({"__type": "ProvisionedThroughputExceededException",
                                                   "message": "Rate exceeded for shard"}).encode())
        if not target.endswith(".PutRecords"):
            return self.reply(*self.forward(body))
        request = json.loads(body)
        records = request["Records"]
        with server.lock:
            # The call's last three records fail the first time they are seen.
            fail = [i >= len(records) - 3 and r["Data"] not in server.seen
                    for i, r in enumerate(records)]
            server.seen.update(r["Data"] for r in records)
            server.failed_records += sum(fail)
        accepted = [r for r, f in zip(records, fail) if not f]
        results = iter([])
        if accepted:
            status, answer = self.forward(json.dumps({**request, "Records": accepted}).encode())
            if status != 200:
                return self.reply(status, answer)
            results = iter(json.loads(answer)["Records"])
        merged = [dict(throttled) if f else next(results) for f in fail]
        self.reply(200, json.dumps({"FailedRecordCount": sum(fail), "Records": merged}).encode())

    def log_message(self, *args):
        pass


def test_throttling_is_retried_without_loss_or_duplicates(moto_endpoint, aws_env, tmp_path):
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"))
    stream = f"throttled-{uuid.uuid4().hex[:8]}"
    boto3_client("kinesis", moto_endpoint).create_stream(StreamName=stream, ShardCount=2)
    proxy = ThrottlingKinesis(moto_endpoint)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        env = {**aws_env, "AWS_ENDPOINT_URL_KINESIS": proxy.url}
        gen = authpulse("gen", "--users", "100", "--days", "1", "--events", "5000", "--seed", "4",
                        "-o", "events.csv", cwd=tmp_path, env=env)
        assert gen.returncode == 0, gen.stderr
        lines = sum(1 for line in open(tmp_path / "events.csv") if line[0].isdigit())
        unique = event_ids(tmp_path / "events.csv")

        replay = summary_of(authpulse("replay", "-i", "events.csv", "--stream", stream,
                                      cwd=tmp_path, env=env))
        # Only the failed records were sent again, each once.
        assert proxy.failed_records >= lines // 500 * 3
        assert replay["retried"] == proxy.failed_records
        assert replay["events_sent"] == lines and replay["events_failed"] == 0

        run = summary_of(authpulse("run", "--source", f"kinesis://{stream}", "--until-caught-up",
                                   "--poll-interval", "200ms", "--output", "out", "--no-lakehouse",
                                   cwd=tmp_path, env=env))
        assert proxy.throttled_reads >= 1
        # Backing off kept the readers' places: every event once, none late.
        assert run["events_read"] == lines
        assert run["duplicates"] == lines - len(unique)
        assert run["events_scored"] == len(unique) and run["late"] == 0
    finally:
        proxy.shutdown()


def test_fifo_topic_gets_group_and_deduplication_ids(moto_endpoint, aws_env, tmp_path):
    """On a FIFO topic each alert carries the user as its message group and its
    alert_id as the deduplication id, so SNS itself drops a resend."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"))
    sns = boto3_client("sns", moto_endpoint)
    sqs = boto3_client("sqs", moto_endpoint)
    name = f"alerts-{uuid.uuid4().hex[:8]}.fifo"
    topic = sns.create_topic(Name=name, Attributes={"FifoTopic": "true"})["TopicArn"]
    queue = sqs.create_queue(QueueName=name, Attributes={"FifoQueue": "true"})["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn,
                  Attributes={"RawMessageDelivery": "true"})
    gen = authpulse("gen", "--users", "200", "--days", "2", "--events", "30000", "--campaigns", "2", "--kinds", "spray,burst",
                    "--seed", "12", "-o", "events.csv", cwd=tmp_path, env=aws_env)
    assert gen.returncode == 0, gen.stderr
    run = summary_of(authpulse("run", "events.csv", "--output", "out", "--no-lakehouse",
                               "--sns-topic", topic, "--freshness-sla", "0",
                               cwd=tmp_path, env=aws_env))
    assert run["alerts"] >= 2 and run["sns"]["published"] == run["alert_publications"]
    got = []
    while True:
        answer = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                     AttributeNames=["MessageGroupId", "MessageDeduplicationId"])
        if not answer.get("Messages"):
            break
        for m in answer["Messages"]:
            got.append((m["Attributes"], json.loads(m["Body"])))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
    assert len(got) == run["alert_publications"]
    for attributes, alert in got:
        assert attributes["MessageGroupId"] == f'{alert["entity_type"]}:{alert["entity_id"]}'
        assert attributes["MessageDeduplicationId"] == f'{alert["alert_id"]}-{alert["sequence"]}'


def curated_and_alerts(out):
    """What a run stored that does not depend on the wall clock or on how the
    shards interleaved: the curated rows' scores, and the alert publications."""
    from pyiceberg.catalog.sql import SqlCatalog
    catalog = SqlCatalog("authpulse", uri=f"sqlite:///{out / 'catalog.db'}",
                         warehouse=f"file://{out / 'warehouse'}")
    curated = catalog.load_table("authpulse.auth_events_curated").scan(
        selected_fields=("event_id", "risk_score", "risk_level", "risk_flags")).to_arrow().to_pylist()
    rows = sorted((r["event_id"], r["risk_score"], r["risk_level"], tuple(r["risk_flags"])) for r in curated)
    alerts = sorted((a["alert_id"], a["sequence"], a["status"], a["entity_id"], a["risk_score"])
                    for a in map(json.loads, open(out / "alerts.jsonl")))
    return rows, alerts


def wait_for_log(path, what, timeout=120):
    """Waits until the log at `path` says `what`; returns when (monotonic)."""
    deadline = time.monotonic() + timeout
    while what not in path.read_text():
        assert time.monotonic() < deadline, f"{path} never said {what!r}"
        time.sleep(0.01)
    return time.monotonic()


def test_a_killed_kinesis_run_resumes_exactly_once(aws, moto_endpoint, aws_env, tmp_path):
    """A run reading a 2-shard stream of aggregated records (several events a
    record) is killed with SIGKILL at five moments, commits every 50 ms so
    that some kills land while one is in flight, and is started again each
    time with the same command. The tables record per shard the sequence
    number and the events of a record already read, beside the state: in
    the end the curated table holds every unique event once with the scores
    of an uninterrupted run, the alerts are the same, and the SNS topic got
    each publication once."""
    gen = authpulse("gen", "--users", "300", "--days", "3", "--events", "100000", "--campaigns", "2",
                    "--kinds", "spray,burst", "--seed", "17", "-o", "events.csv",
                    cwd=tmp_path, env=aws_env)
    assert gen.returncode == 0, gen.stderr
    unique = event_ids(tmp_path / "events.csv")
    replay = summary_of(authpulse("replay", "--input", "events.csv", "--stream", aws["stream"],
                                  "--aggregate", "--aggregate-bytes", "2048", cwd=tmp_path, env=aws_env))
    assert replay["records_sent"] < replay["events_sent"] // 3, "records hold several events"

    def command(output):
        sns = ["--sns-topic", aws["topic"], "--freshness-sla", "0"] if output == "killed" else []
        return [BIN, "run", "--source", f"kinesis://{aws['stream']}", "--until-caught-up",
                "--poll-interval", "200ms", "--commit-interval", "50ms", "--output", output, *sns]

    env = {**os.environ, **aws_env, "AUTHPULSE_LOG": "info"}
    log = tmp_path / "whole.log"
    with open(log, "w") as stderr:
        child = subprocess.Popen(command("whole"), cwd=tmp_path, stdout=subprocess.PIPE,
                                 stderr=stderr, env=env, text=True)
        first_commit = wait_for_log(log, "committed")
        stdout, _ = child.communicate()
        committing = time.monotonic() - first_commit
    whole = subprocess.CompletedProcess(child.args, child.returncode, stdout, log.read_text())
    expected = summary_of(whole)
    assert expected["events_scored"] == len(unique) and expected["late"] == 0
    assert expected["alerts"] >= 1

    resumed = 0
    for k in range(5):
        log = tmp_path / f"killed-{k}.log"
        with open(log, "w") as stderr:
            child = subprocess.Popen(command("killed"), cwd=tmp_path, stdout=subprocess.DEVNULL,
                                     stderr=stderr, env=env)
            # After the run's first commit, at moments spread over the time
            # the uninterrupted run committed for, in fixed proportions so
            # that a failure can be replayed.
            wait_for_log(log, "committed")
            time.sleep(committing * (2 * k + 1) / 12)
            child.kill()
            child.wait()
        text = log.read_text()
        resumed += "resuming where" in text
    last = subprocess.run(command("killed"), cwd=tmp_path, capture_output=True, text=True, env=env)
    after = summary_of(last)
    resumed += "resuming where" in last.stderr
    assert resumed >= 5, f"the runs resumed from a checkpoint: {resumed}"
    # The summary of a resumed run counts the whole run.
    for key in ("events_read", "events_scored", "duplicates", "alerts", "alert_publications"):
        assert after[key] == expected[key], key

    want_rows, want_alerts = curated_and_alerts(tmp_path / "whole")
    got_rows, got_alerts = curated_and_alerts(tmp_path / "killed")
    assert len(want_rows) == len(unique)
    assert len({r[0] for r in got_rows}) == len(got_rows), "each event once"
    assert got_rows == want_rows
    assert got_alerts == want_alerts

    # SNS (a standard topic) got each publication of the alerts file: the
    # ones a resumed run emitted again were not sent again. Only a kill
    # between SNS answering and the id reaching the sent log can repeat one.
    delivered = [(m["alert_id"], m["sequence"]) for _, attrs, m in received(moto_endpoint, aws["queue"])
                 if attrs.get("kind") == "alert"]
    published = [(a["alert_id"], a["sequence"]) for a in map(json.loads, open(tmp_path / "killed" / "alerts.jsonl"))]
    assert set(delivered) == set(published)
    assert len(delivered) - len(set(delivered)) <= 1, sorted(delivered)

    # The progress names each shard's position.
    from pyiceberg.catalog.sql import SqlCatalog
    catalog = SqlCatalog("authpulse", uri=f"sqlite:///{tmp_path / 'killed' / 'catalog.db'}",
                         warehouse=f"file://{tmp_path / 'killed' / 'warehouse'}")
    snapshot = catalog.load_table("authpulse.auth_events_curated").current_snapshot()
    progress = json.loads(snapshot.summary["authpulse.progress"])
    assert progress["source"]["identity"] == {"kinesis": aws["stream"]}
    shards = boto3_client("kinesis", moto_endpoint).list_shards(StreamName=aws["stream"])["Shards"]
    assert set(progress["source"]["position"]["shards"]) == {s["ShardId"] for s in shards}

    # The state divides by shard: a part per shard holds the users whose
    # partition key (the user name) hashes into its range, all of them.
    users = {line.split(",")[1] for line in open(tmp_path / "events.csv") if line.strip()}
    snapshots = sorted((tmp_path / "whole" / "state").glob("checkpoint-*.apstate"))
    total = 0
    for shard in shards:
        start, end = (int(shard["HashKeyRange"][k]) for k in ("StartingHashKey", "EndingHashKey"))
        mine = {u for u in users if start <= int(hashlib.md5(u.encode()).hexdigest(), 16) <= end}
        part = summary_of(authpulse("state", "split", str(snapshots[-1]), "--stream", aws["stream"],
                                    "--shard", shard["ShardId"], "-o", f"{shard['ShardId']}.apstate",
                                    cwd=tmp_path, env=aws_env))
        assert part["users_with_state"] == len(mine) > 0, (shard["ShardId"], part)
        total += part["users_with_state"]
    assert total == part["users_with_state_before"] == len(users)
    wrong = authpulse("state", "split", str(snapshots[-1]), "--stream", aws["stream"],
                      "--shard", "shardId-999", "-o", "x.apstate", cwd=tmp_path, env=aws_env)
    assert wrong.returncode != 0 and "has no shard `shardId-999`" in wrong.stderr, wrong.stderr


def test_a_stream_run_reports_each_shard_on_its_operations_server(aws, moto_endpoint, aws_env, tmp_path):
    """`run --source kinesis://... --listen`: ready once connected, and the
    metrics count the events read from each shard and its iterator age."""
    from test_operations import Daemon, get_json, parse_metrics, request
    gen = authpulse("gen", "--users", "200", "--days", "1", "--events", "20000", "--seed", "9",
                    "-o", "events.csv", cwd=tmp_path, env=aws_env)
    assert gen.returncode == 0, gen.stderr
    lines = sum(1 for _ in open(tmp_path / "events.csv"))
    summary_of(authpulse("replay", "--input", "events.csv", "--stream", aws["stream"], cwd=tmp_path, env=aws_env))
    daemon = Daemon(tmp_path, "--source", f"kinesis://{aws['stream']}", "--poll-interval", "200ms",
                    "--output", "out", "--no-lakehouse", env=aws_env, follow=False)
    try:
        daemon.wait_for(lambda s: s["summary"]["events_read"] == lines, "the stream read")
        assert get_json(f"{daemon.url}/readyz") == (200, {"ready": True})
        status = get_json(f"{daemon.url}/api/v1/status")[1]
        shards = {s["ShardId"] for s in boto3_client("kinesis", moto_endpoint).list_shards(
            StreamName=aws["stream"])["Shards"]}
        assert set(status["events_by_shard"]) == shards
        assert sum(status["events_by_shard"].values()) == lines
        samples, _ = parse_metrics(request(f"{daemon.url}/metrics")[2].decode())
        per_shard = {l["shard"]: v for l, v in samples["authpulse_kinesis_events_read_total"]}
        assert set(per_shard) == shards and sum(per_shard.values()) == lines
        assert {l["shard"] for l, _ in samples["authpulse_kinesis_iterator_age_seconds"]} == shards
    finally:
        code, _ = daemon.stop()
    assert code == 0
