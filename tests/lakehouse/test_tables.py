"""The Iceberg tables written by `authpulse run`, read by other engines.

Runs the real binary on generated data into a fresh warehouse, then reads
`authpulse.auth_events_curated` with PyIceberg (SQL catalog on the same SQLite
file) and with DuckDB's iceberg extension, and checks both agree with the run's
own summary: row counts, distinct event ids, risk levels, rule flags, partitions.
"""

import json
import os
import pathlib
import subprocess

import duckdb
import pytest
from pyiceberg.catalog.sql import SqlCatalog

BIN = os.environ.get("AUTHPULSE_BIN", "authpulse")


def authpulse(*args, cwd):
    done = subprocess.run([BIN, *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "AUTHPULSE_LOG": "warn"})
    return done


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    work = tmp_path_factory.mktemp("lakehouse")
    gen = authpulse("gen", "--users", "400", "--days", "3", "--events", "120000",
                    "--campaigns", "2", "--kinds", "spray,burst", "--seed", "7", "-o", "events.csv", cwd=work)
    assert gen.returncode == 0, gen.stderr
    done = authpulse("run", "events.csv", "--output", "out", cwd=work)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return work / "out", summary, work


def curated_arrow(out):
    catalog = SqlCatalog("authpulse", uri=f"sqlite:///{out / 'catalog.db'}",
                         warehouse=f"file://{out / 'warehouse'}")
    table = catalog.load_table("authpulse.auth_events_curated")
    return table, table.scan().to_arrow()


def test_pyiceberg_reads_what_authpulse_reported(run):
    out, summary, _ = run
    table, rows = curated_arrow(out)
    assert rows.num_rows == summary["events_scored"]
    assert len(set(rows.column("event_id").to_pylist())) == summary["events_scored"]
    levels = {}
    for level in rows.column("risk_level").to_pylist():
        levels[level] = levels.get(level, 0) + 1
    assert {k: v for k, v in summary["risk_levels"].items() if v} == levels
    hits = {}
    for flags in rows.column("risk_flags").to_pylist():
        for flag in flags:
            hits[flag] = hits.get(flag, 0) + 1
    assert {k: v for k, v in summary["rule_hits"].items() if v} == hits
    assert set(rows.column("policy_version").to_pylist()) == {summary["policy_version"]}
    spec = table.spec()
    assert [(f.name, str(f.transform)) for f in spec.fields] == [("event_day", "day")]
    snapshot = table.current_snapshot()
    assert int(snapshot.summary["total-records"]) == summary["events_scored"]


def test_raw_table_accounts_for_every_valid_record(run):
    out, summary, _ = run
    catalog = SqlCatalog("authpulse", uri=f"sqlite:///{out / 'catalog.db'}",
                         warehouse=f"file://{out / 'warehouse'}")
    table = catalog.load_table("authpulse.auth_events_raw")
    raw = table.scan().to_arrow()
    assert raw.num_rows == summary["events_valid"]
    admissions = {}
    for admission in raw.column("admission").to_pylist():
        admissions[admission] = admissions.get(admission, 0) + 1
    assert admissions.get("accepted") == summary["events_scored"]
    assert admissions.get("duplicate", 0) == summary["duplicates"] > 0
    assert admissions.get("late", 0) == summary["late"]
    assert sorted(raw.column("source_line").to_pylist())[:3] == [1, 2, 3]
    assert set(raw.column("source").to_pylist()) == {"file:events.csv"}
    accepted = {r["event_id"] for r in raw.select(["event_id", "admission"]).to_pylist()
                if r["admission"] == "accepted"}
    _, curated = curated_arrow(out)
    assert accepted == set(curated.column("event_id").to_pylist())
    assert [(f.name, str(f.transform)) for f in table.spec().fields] == [("ingestion_hour", "hour")]


def test_alerts_table_matches_the_alerts_file(run):
    out, summary, work = run
    catalog = SqlCatalog("authpulse", uri=f"sqlite:///{out / 'catalog.db'}",
                         warehouse=f"file://{out / 'warehouse'}")
    rows = catalog.load_table("authpulse.alerts").scan().to_arrow().to_pylist()
    # One row per publication: every incident's opening, updates and closing.
    assert len(rows) == summary["alert_publications"] > summary["alerts"] >= 2
    from_file = [json.loads(line) for line in (out / "alerts.jsonl").read_text().splitlines()]
    key = lambda a: (a["alert_id"], a["sequence"])
    assert sorted(map(key, rows)) == sorted(map(key, from_file))
    assert sum(a["status"] == "open" for a in from_file) == summary["alerts"]
    assert sum(a["status"] == "closed" for a in from_file) == summary["alerts"]
    by_id = {key(r): r for r in rows}
    for alert in from_file:
        row = by_id[key(alert)]
        assert (row["status"], row["entity_type"], row["entity_id"]) == (
            alert["status"], alert["entity_type"], alert["entity_id"])
        assert row["user_id"] == (alert["entity_id"] if alert["entity_type"] == "user" else "")
        assert row["risk_score"] == alert["risk_score"] and row["risk_level"] == alert["risk_level"]
        assert row["risk_flags"] == alert["risk_flags"]
        assert row["event_ids"] == [e["event_id"] for e in alert["events"]]
        assert row["users"] == alert["users"] and row["computers"] == alert["computers"]
        assert row["event_count"] == alert["event_count"]
        assert row["max_event_score"] == alert["max_event_score"]
        assert row["first_event_time"].strftime("%Y-%m-%dT%H:%M:%SZ") == alert["first_event_time"]
        assert row["opened_event_time"].strftime("%Y-%m-%dT%H:%M:%SZ") == alert["opened_event_time"]
    lateral = [r for r in rows if "lateral_movement" in r["risk_flags"]]
    assert lateral and all("T1021" in r["mitre_techniques"] for r in lateral)


def test_aggregates_agree_with_the_curated_events(run):
    out, summary, _ = run
    import pyarrow.compute as pc
    catalog = SqlCatalog("authpulse", uri=f"sqlite:///{out / 'catalog.db'}",
                         warehouse=f"file://{out / 'warehouse'}")
    _, events = curated_arrow(out)
    hourly = catalog.load_table("authpulse.user_behavior_hourly").scan().to_arrow()
    daily = catalog.load_table("authpulse.host_popularity_daily").scan().to_arrow()
    assert pc.sum(hourly.column("logins")).as_py() == summary["events_scored"]
    assert pc.sum(daily.column("logins")).as_py() == summary["events_scored"]
    assert pc.sum(hourly.column("new_devices")).as_py() == summary["device_pairs"]
    assert pc.sum(daily.column("first_time_users")).as_py() == summary["device_pairs"]

    # Recompute per (user, hour) and per (computer, day) from the events.
    hour = pc.floor_temporal(events.column("event_time"), unit="hour")
    day = pc.floor_temporal(events.column("event_time"), unit="day")
    events = events.append_column("hour", hour).append_column("day", day)
    by_hour = events.group_by(["user_id", "hour"]).aggregate(
        [("computer_id", "count_distinct"), ("risk_score", "max"), ("risk_score", "sum")])
    expected = {(r["user_id"], r["hour"]): (r["computer_id_count_distinct"], r["risk_score_max"], r["risk_score_sum"])
                for r in by_hour.to_pylist()}
    got = {(r["user_id"], r["window_start"]): (r["distinct_computers"], r["max_risk"], r["sum_risk"])
           for r in hourly.to_pylist()}
    assert got == expected
    by_day = events.group_by(["computer_id", "day"]).aggregate([("user_id", "count_distinct")])
    expected = {(r["computer_id"], r["day"].date()): r["user_id_count_distinct"] for r in by_day.to_pylist()}
    got = {(r["computer_id"], r["day"]): r["distinct_users"] for r in daily.to_pylist()}
    assert got == expected


def test_known_event_has_its_features(run):
    out, _, work = run
    _, rows = curated_arrow(out)
    first = (work / "events.csv").read_text().splitlines()[0].split(",")
    import hashlib
    event_id = hashlib.sha256("|".join(first).encode()).hexdigest()[:32]
    ids = rows.column("event_id").to_pylist()
    row = rows.slice(ids.index(event_id), 1).to_pylist()[0]
    assert row["user_id"] == first[1] and row["computer_id"] == first[2]
    assert row["user_logins_1h"] == 1 and row["new_device"] is True
    assert row["risk_level"] == "LOW" and row["risk_flags"] == []
    assert row["user_gap_s"] is None


def test_duckdb_iceberg_extension_agrees(run):
    out, summary, _ = run
    con = duckdb_connection()
    metadata = sorted((out / "warehouse" / "authpulse" / "auth_events_curated" / "metadata")
                      .glob("*.metadata.json"))[-1]
    count, distinct = con.execute(
        f"SELECT count(*), count(DISTINCT event_id) FROM iceberg_scan('{metadata}')").fetchone()
    assert count == distinct == summary["events_scored"]
    high = con.execute(
        f"SELECT count(*) FROM iceberg_scan('{metadata}') WHERE risk_level IN ('HIGH', 'CRITICAL')"
    ).fetchone()[0]
    assert high == summary["risk_levels"]["HIGH"] + summary["risk_levels"]["CRITICAL"]
    assert high > 0


def test_rerun_of_a_complete_input_does_nothing_and_says_so(run):
    out, summary, work = run
    again = authpulse("run", "events.csv", "--output", "out", cwd=work)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.strip().splitlines()[-1]) == {"already_complete": True, "events_read": 0}
    assert "nothing to do" in again.stderr
    _, rows = curated_arrow(out)
    assert rows.num_rows == summary["events_scored"]


def test_another_input_adds_to_the_warehouse_without_storing_an_event_twice(tmp_path):
    """A second file into the same warehouse adds its events; those the
    warehouse already stores (by event_id) are counted, not stored again."""
    gen = authpulse("gen", "--users", "100", "--days", "2", "--events", "8000", "--seed", "9",
                    "-o", "events.csv", cwd=tmp_path)
    assert gen.returncode == 0, gen.stderr
    lines = (tmp_path / "events.csv").read_text().splitlines(keepends=True)
    (tmp_path / "first.csv").write_text("".join(lines[:5000]))
    # The second input repeats 1,000 events of the first one.
    (tmp_path / "second.csv").write_text("".join(lines[4000:]))
    first = authpulse("run", "first.csv", "--output", "out", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    first = json.loads(first.stdout.strip().splitlines()[-1])
    second = authpulse("run", "second.csv", "--output", "out", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    second = json.loads(second.stdout.strip().splitlines()[-1])
    repeated = {line.strip() for line in lines[4000:5000]} - {line.strip() for line in lines[:4000]}
    assert second["already_stored"] >= len(repeated) > 900
    _, rows = curated_arrow(tmp_path / "out")
    ids = rows.column("event_id").to_pylist()
    assert len(ids) == len(set(ids)), "no event stored twice"
    whole = authpulse("run", "events.csv", "--output", "whole", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    _, all_rows = curated_arrow(tmp_path / "whole")
    assert set(ids) == set(all_rows.column("event_id").to_pylist())
    assert len(ids) == first["events_scored"] + second["events_scored"]


def test_follow_commits_on_an_interval(tmp_path):
    """A following daemon makes scored events visible while it runs."""
    import signal
    import time

    live = tmp_path / "live.csv"
    # 20 minutes of event time: with the 5-minute lateness, the first ~15 are
    # released (scored) while the stream is still open.
    lines = [f"{t},U{t % 7},C{t % 11}" for t in range(1, 1201, 3)]
    live.write_text("\n".join(lines[:10]) + "\n")
    proc = subprocess.Popen([BIN, "run", "live.csv", "--follow", "--output", "out",
                             "--commit-interval", "300ms"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "AUTHPULSE_LOG": "warn"})
    try:
        time.sleep(1.0)
        with live.open("a") as f:
            f.write("\n".join(lines[10:]) + "\n")
        out = tmp_path / "out"
        # The event clock is at the second-latest event (1195): the latest
        # has nothing read after it to vouch for it.
        released = sum(1 for t in range(1, 1201, 3) if t < 1195 - 300)
        deadline = time.time() + 30
        seen = 0
        while time.time() < deadline:
            if (out / "catalog.db").exists():
                try:
                    seen = curated_arrow(out)[1].num_rows
                except Exception:  # table not committed yet
                    seen = 0
            if seen == released:
                break
            time.sleep(0.3)
        assert proc.poll() is None, "still following"
        assert seen == released
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    # A stop is not the end of the input: the events the watermark holds
    # stay in the state, and the next start goes on with them.
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["events_scored"] == released
    assert curated_arrow(tmp_path / "out")[1].num_rows == released
    done = authpulse("run", "live.csv", "--output", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["events_read"] == len(lines) and summary["events_scored"] == len(lines)
    assert curated_arrow(tmp_path / "out")[1].num_rows == len(lines)


def duckdb_connection():
    import duckdb_ext  # noqa: F401 (the extension files live in this package)
    ext_dir = pathlib.Path(duckdb_ext.__path__[0]) / "extensions"
    con = duckdb.connect(config={"extension_directory": str(ext_dir),
                                 "autoinstall_known_extensions": False})
    con.execute("LOAD avro")
    con.execute("LOAD iceberg")
    return con


def test_maintain_compacts_and_other_readers_agree(tmp_path):
    """Three runs of three inputs leave three files per partition; `maintain` rewrites
    them into one with a replace snapshot that PyIceberg and DuckDB read."""
    gen = authpulse("gen", "--users", "200", "--days", "2", "--events", "30000",
                    "--seed", "3", "-o", "events.csv", cwd=tmp_path)
    assert gen.returncode == 0, gen.stderr
    lines = (tmp_path / "events.csv").read_text().splitlines()
    scored = 0
    for part in range(3):
        (tmp_path / f"part{part}.csv").write_text("\n".join(lines[part::3]) + "\n")
        done = authpulse("run", f"part{part}.csv", "--output", "out", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        scored += json.loads(done.stdout.strip().splitlines()[-1])["events_scored"]
    out = tmp_path / "out"
    table, before = curated_arrow(out)
    assert before.num_rows == scored
    files_before = len(table.inspect.files())
    assert files_before >= 6  # 3 runs x 2-3 day partitions

    done = authpulse("maintain", "--output", "out", "--expire-older-than", "0s",
                     "--retain-last", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    reports = {r["table"]: r for r in map(json.loads, done.stdout.strip().splitlines())}
    curated = reports["authpulse.auth_events_curated"]
    assert curated["data_files_before"] == files_before
    assert curated["data_files_after"] < files_before and curated["manifests_after"] == 1
    assert curated["files_deleted"] >= files_before  # the small files, manifests and lists

    table, after = curated_arrow(out)
    assert after.num_rows == scored
    assert sorted(after.column("event_id").to_pylist()) == sorted(before.column("event_id").to_pylist())
    assert table.current_snapshot().summary.operation.value == "replace"
    assert len(table.snapshots()) == 1
    files = table.inspect.files()
    assert len(files) == curated["data_files_after"]
    live = {pathlib.Path(p.removeprefix("file://")) for p in files.column("file_path").to_pylist()}
    on_disk = set((out / "warehouse" / "authpulse" / "auth_events_curated" / "data").rglob("*.parquet"))
    assert live == on_disk  # the compacted-away files are gone, the live ones kept

    con = duckdb_connection()
    metadata = sorted((out / "warehouse" / "authpulse" / "auth_events_curated" / "metadata")
                      .glob("*.metadata.json"))[-1]
    count, distinct = con.execute(
        f"SELECT count(*), count(DISTINCT event_id) FROM iceberg_scan('{metadata}')").fetchone()
    # Duplicates split across the three runs are scored once per run.
    assert count == scored and distinct == len(set(before.column("event_id").to_pylist()))

    again = authpulse("query", "--output", "out", "--format", "json",
                      "SELECT count(*) AS n FROM auth_events_curated", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"n": scored}


FORMATS = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "formats"


@pytest.mark.parametrize("fixture", ["ocsf-authentication.jsonl", "ecs-windows-logons.jsonl",
                                     "lanl-auth.txt"])
def test_richer_records_columns_read_by_pyiceberg_and_duckdb(tmp_path, fixture):
    done = authpulse("run", str(FORMATS / fixture), "--output", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    out = tmp_path / "out"
    table, rows = curated_arrow(out)
    detail = ["src_computer_id", "src_user_id", "logon_type", "auth_package", "outcome",
              "failure_reason"]
    names = [f.name for f in table.schema().fields]
    assert names[-6:] == detail
    assert all(not table.schema().find_field(name).required for name in detail)
    assert rows.num_rows == summary["events_valid"]
    outcomes = rows.column("outcome").to_pylist()
    assert "failure" in outcomes and "success" in outcomes
    failed = [r for r in rows.to_pylist() if r["outcome"] == "failure"]
    assert all(r["src_computer_id"] for r in failed)

    catalog = SqlCatalog("authpulse", uri=f"sqlite:///{out / 'catalog.db'}",
                         warehouse=f"file://{out / 'warehouse'}")
    raw = catalog.load_table("authpulse.auth_events_raw").scan().to_arrow()
    assert sorted(raw.column("outcome").to_pylist(), key=str) == sorted(outcomes, key=str)
    # The record's own id, where the format has one (OCSF metadata.uid,
    # ECS event.id or the event log's record number; LANL lines have none).
    raw_table = catalog.load_table("authpulse.auth_events_raw")
    assert raw_table.schema().find_field("source_event_id").required is False
    ids = [i for i in raw.column("source_event_id").to_pylist() if i is not None]
    expected = {"ocsf-authentication.jsonl": {"0f6b1c9e-6c1e-4b7a-9a55-1e2f3a4b5c6d", "2d1a",
                                              "7c3e", "9e9e"},
                "ecs-windows-logons.jsonl": {"88211", "b3c81f0e"},
                "lanl-auth.txt": set()}[fixture]
    assert set(ids) == expected

    con = duckdb_connection()
    metadata = sorted((out / "warehouse" / "authpulse" / "auth_events_curated" / "metadata")
                      .glob("*.metadata.json"))[-1]
    by_outcome = dict(con.execute(
        f"SELECT coalesce(outcome, '-'), count(*) FROM iceberg_scan('{metadata}') GROUP BY 1"
    ).fetchall())
    assert by_outcome == {k if k else "-": outcomes.count(k) for k in set(outcomes)}
