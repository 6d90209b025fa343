"""Events/s of one, two and three `run --lease-table` workers on one stream.

Starts a local AWS server (moto: Kinesis, DynamoDB, Glue, S3) on 127.0.0.1,
generates a LANL-model data set, writes it into a four-shard stream once, and
for each worker count reads it whole into fresh Glue tables on S3: all
workers start together with `--until-caught-up`, and the time is from their
start until the last one exits. Prints one JSON line per run and the medians.

    python scripts/bench_fleet.py --bin target/release/authpulse [--events 300000] [--repeat 3]
    python scripts/bench_fleet.py --bin ... --campaigns 8 --kinds spray,burst,fan_in,slow_fan_in

With hidden attacks the incidents of each run are compared with one
worker's by id; BENCH_FLEET_ALERTS=1 prints every alerts-table row too.

Everything runs on this machine, the local server included: the numbers say
what the fleet costs here (claims, commits of several writers, lease rounds),
not what a fleet of machines against AWS reaches.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto():
    port = free_port()
    # The tests' server: moto with Glue's optimistic lock, which several
    # workers committing to one table need.
    server = [sys.executable, os.path.join(ROOT, "tests", "lakehouse", "moto_server.py")]
    process = subprocess.Popen([*server, "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
            return process, url
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("moto_server did not start")


USER_SIDE = ["user_logins_1h", "user_logins_24h", "user_distinct_computers_1h",
             "user_distinct_computers_24h", "user_new_computers_24h", "user_known_computers", "new_device"]
HOST_SIDE = ["host_users_ever", "host_users_today", "new_computer"]


def read_tables(url):
    """The curated table's rows, by event id, and the ids of the incidents
    the alerts table opened (PyIceberg over the Glue catalog)."""
    from pyiceberg.catalog import load_catalog
    catalog = load_catalog("glue", **{
        "type": "glue", "glue.endpoint": url, "glue.region": ENV["AWS_REGION"],
        "glue.access-key-id": "testing", "glue.secret-access-key": "testing",
        "s3.endpoint": url, "s3.region": ENV["AWS_REGION"], "s3.access-key-id": "testing",
        "s3.secret-access-key": "testing", "s3.path-style-access": "true",
    })
    table = catalog.load_table("authpulse.auth_events_curated")
    columns = ["event_id", "risk_score", *USER_SIDE, *HOST_SIDE]
    rows = table.scan(selected_fields=tuple(columns)).to_arrow().to_pylist()
    alerts = catalog.load_table("authpulse.alerts").scan(
        selected_fields=("alert_id", "sequence", "entity_type", "entity_id"))
    if os.environ.get("BENCH_FLEET_ALERTS"):
        for row in catalog.load_table("authpulse.alerts").scan().to_arrow().to_pylist():
            print("ALERT", {k: row[k] for k in ("alert_id", "sequence", "status", "entity_id", "risk_score",
                                                 "opened_event_time", "first_event_time", "event_count")},
                  file=sys.stderr)
    opened = {row["alert_id"]: f"{row['entity_type']} {row['entity_id']}"
              for row in alerts.to_arrow().to_pylist() if row["sequence"] == 1}
    return {row["event_id"]: row for row in rows}, opened


def compare(one, many):
    """Per feature, the share of events whose value a fleet's run gives as one
    worker's does, for the computers' user counts the mean shortfall, and
    the incidents each opened (an incident's id names its entity and the
    event that opened it)."""
    (one, one_alerts), (many, many_alerts) = one, many
    shared = one.keys() & many.keys()
    out = {"events": len(one), "events_in_both": len(shared)}
    for column in [*USER_SIDE, *HOST_SIDE, "risk_score"]:
        same = sum(1 for e in shared if one[e][column] == many[e][column])
        out[f"{column}_equal"] = round(same / max(len(shared), 1), 4)
    for column in ["host_users_ever", "host_users_today"]:
        gaps = [(one[e][column] - many[e][column]) / one[e][column] for e in shared if one[e][column]]
        out[f"{column}_mean_shortfall"] = round(statistics.mean(gaps), 4) if gaps else 0.0
    both = one_alerts.keys() & many_alerts.keys()
    out["incidents"] = {"one_worker": len(one_alerts), "fleet": len(many_alerts), "both": len(both),
                        "only_one_worker": sorted(one_alerts[a] for a in one_alerts.keys() - both),
                        "only_fleet": sorted(many_alerts[a] for a in many_alerts.keys() - both)}
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True, help="the authpulse binary (a release build)")
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--campaigns", type=int, default=0,
                        help="attacks to hide (gen --campaigns): the incidents are compared too")
    parser.add_argument("--kinds", help="the attack kinds (gen --kinds)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", default="1,2,3")
    parser.add_argument("--fleet-max-drift", help="passed on to the workers (e.g. 0s, 5m)")
    parser.add_argument("--batch-size", help="passed on to the workers (how often a worker looks at its pace)")
    args = parser.parse_args()
    import boto3

    moto, url = start_moto()
    env = {**os.environ, **ENV, "AWS_ENDPOINT_URL": url, "AUTHPULSE_LOG": "warn"}
    client = lambda service: boto3.client(service, endpoint_url=url, region_name=ENV["AWS_REGION"],
                                          aws_access_key_id="testing", aws_secret_access_key="testing")
    try:
        with tempfile.TemporaryDirectory() as work:
            stream = "bench-fleet"
            client("kinesis").create_stream(StreamName=stream, ShardCount=4)
            subprocess.run([args.bin, "gen", "--users", str(args.users), "--days", str(args.days),
                            "--events", str(args.events), "--seed", str(args.seed),
                            "--campaigns", str(args.campaigns), *(["--kinds", args.kinds] if args.kinds else []),
                            "-o", "events.csv"],
                           cwd=work, env=env, check=True, capture_output=True)
            subprocess.run([args.bin, "replay", "--input", "events.csv", "--stream", stream],
                           cwd=work, env=env, check=True, capture_output=True)
            results = {}
            curated = {}
            for count in [int(n) for n in args.workers.split(",")]:
                for attempt in range(args.repeat):
                    run = uuid.uuid4().hex[:8]
                    client("s3").create_bucket(Bucket=run)
                    started = time.monotonic()
                    workers = [subprocess.Popen(
                        [args.bin, "run", "--source", f"kinesis://{stream}", "--lease-table", f"leases-{run}",
                         "--worker-id", f"w{i}", "--failover", "2s", "--until-caught-up",
                         "--poll-interval", "200ms", "--output", f"out-{run}-{i}", "--catalog", "glue",
                         "--warehouse", f"s3://{run}/tables", "--s3-path-style",
                         *(["--fleet-max-drift", args.fleet_max_drift] if args.fleet_max_drift else []),
                         *(["--batch-size", args.batch_size] if args.batch_size else [])],
                        cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                        for i in range(count)]
                    outs = [w.communicate()[0] for w in workers]
                    wall = time.monotonic() - started
                    if any(w.returncode != 0 for w in workers):
                        raise SystemExit(f"a worker failed ({count} workers)")
                    if attempt == 0:
                        curated[count] = read_tables(url)
                    # Glue databases are per catalog: drop this run's before the next.
                    glue = client("glue")
                    for table in glue.get_tables(DatabaseName="authpulse")["TableList"]:
                        glue.delete_table(DatabaseName="authpulse", Name=table["Name"])
                    read = [json.loads(out.strip().splitlines()[-1]) for out in outs if out.strip()]
                    line = {"workers": count, "attempt": attempt, "wall_s": round(wall, 2),
                            "events_per_s": round(args.events / wall),
                            "events_read_per_worker": [r.get("events_read") for r in read]}
                    print(json.dumps(line), flush=True)
                    results.setdefault(count, []).append(wall)
            for count, walls in results.items():
                wall = statistics.median(walls)
                print(json.dumps({"workers": count, "median_wall_s": round(wall, 2),
                                  "median_events_per_s": round(args.events / wall)}))
            for count, rows in curated.items():
                if count != 1 and 1 in curated:
                    print(json.dumps({"workers": count, "against_one_worker": compare(curated[1], rows)}))
    finally:
        moto.terminate()


if __name__ == "__main__":
    main()
