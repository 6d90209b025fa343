"""`authpulse run` beside a DuckDB peer computing the same features.

Generates LANL `time,user,computer` lines with `authpulse gen`, then runs,
alternating, `authpulse run` with all its tables and the DuckDB script
scripts/peer-features.sql on the same file, and prints the median wall time
of each, events per second and the ratio. Wall time is the whole process
(start-up, reading, writing Parquet); peak RSS is each process's own. One
more, untimed, run of each compares the peer's features with the curated
table's, row by row. See docs/benchmarks.md.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SQL = ROOT / "scripts" / "peer-features.sql"
FEATURES = ["new_device", "user_logins_1h", "user_logins_24h", "user_distinct_computers_1h",
            "user_distinct_computers_24h", "host_users_ever"]


def timed(command, cwd, log):
    """Runs `command`; returns (seconds, peak RSS in MiB). Fails loudly."""
    with open(log, "w") as out:
        start = time.monotonic()
        child = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.monotonic() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        sys.exit(f"{command[0]} failed ({child.returncode}); see {log}:\n"
                 + Path(log).read_text()[-2000:])
    return seconds, usage.ru_maxrss / 1024


def peer(input_csv, output):
    """The peer itself, in a process of its own (so its RSS is its own)."""
    import duckdb
    sql = SQL.read_text().replace("{input}", str(input_csv)).replace("{output}", str(output))
    duckdb.connect().execute(sql)


def agreement(work, peer_parquet, base_date):
    """Share of rows on which each feature agrees, joined on (time, user,
    computer), and the row counts of both."""
    import duckdb
    curated = work / "authpulse-out" / "warehouse" / "authpulse" / "auth_events_curated" / "data"
    con = duckdb.connect()
    con.execute(f"""
        CREATE TEMP VIEW ours AS
        SELECT CAST(epoch(event_time) - epoch(TIMESTAMPTZ '{base_date}') AS BIGINT) AS time,
               user_id, computer_id, {", ".join(FEATURES)}
        FROM read_parquet('{curated}/**/*.parquet')""")
    con.execute(f"CREATE TEMP VIEW peer AS SELECT * FROM read_parquet('{peer_parquet}')")
    ours, theirs = (con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("ours", "peer"))
    agree = ", ".join(f"avg(CASE WHEN o.{f} = p.{f} THEN 1.0 ELSE 0.0 END)" for f in FEATURES)
    row = con.execute(f"""
        SELECT count(*), {agree} FROM ours o JOIN peer p
        USING (time, user_id, computer_id)""").fetchone()
    return ours, theirs, row[0], dict(zip(FEATURES, row[1:]))


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=str(ROOT / "target" / "release" / "authpulse"),
                        help="the authpulse binary (a release build)")
    parser.add_argument("--events", type=int, default=5_000_000, help="lines to generate")
    parser.add_argument("--days", type=int, default=2, help="days they cover")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="rounds, each running both")
    parser.add_argument("--work", help="working directory (default: a temporary one, removed)")
    parser.add_argument("--peer-child", nargs=2, metavar=("INPUT", "OUTPUT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer_child:
        peer(*args.peer_child)
        return

    work = Path(args.work or tempfile.mkdtemp(prefix="authpulse-bench-peer-"))
    work.mkdir(parents=True, exist_ok=True)
    events = work / "events.csv"
    print(f"generating {args.events:,} events over {args.days} days (seed {args.seed}) ...",
          flush=True)
    timed([args.binary, "gen", "--events", str(args.events), "--days", str(args.days),
           "--seed", str(args.seed), "-o", str(events)], work, work / "gen.log")
    lines = sum(1 for _ in open(events, "rb"))

    runs = {"authpulse": [], "duckdb": []}
    commands = {
        "authpulse": [args.binary, "run", str(events), "--output", "authpulse-out"],
        "duckdb": [sys.executable, __file__, "--peer-child", str(events), "peer.parquet"],
    }
    for round_no in range(args.repeat):
        order = ["authpulse", "duckdb"] if round_no % 2 == 0 else ["duckdb", "authpulse"]
        for name in order:
            shutil.rmtree(work / "authpulse-out", ignore_errors=True)
            (work / "peer.parquet").unlink(missing_ok=True)
            seconds, rss = timed(commands[name], work, work / f"{name}.log")
            runs[name].append((seconds, rss))
            print(f"  round {round_no + 1}: {name:9s} {seconds:6.2f} s  "
                  f"{lines / seconds / 1e3:7.0f}k events/s  peak RSS {rss:5.0f} MiB", flush=True)
    # One more of each, untimed, to compare what they computed.
    shutil.rmtree(work / "authpulse-out", ignore_errors=True)
    timed(commands["authpulse"], work, work / "authpulse.log")
    timed(commands["duckdb"], work, work / "duckdb.log")
    summary = json.loads(Path(work / "authpulse.log").read_text().strip().splitlines()[-1])
    ours, theirs, joined, agree = agreement(work, work / "peer.parquet", "2024-01-01")

    median = {name: statistics.median(s for s, _ in r) for name, r in runs.items()}
    print()
    print(f"{lines:,} lines, {summary['events_scored']:,} events scored "
          f"(the rest exact repeats); medians of {args.repeat}, alternating:")
    for name in runs:
        rss = max(r for _, r in runs[name])
        print(f"  {name:9s} {median[name]:6.2f} s  {lines / median[name] / 1e3:7.0f}k events/s  "
              f"peak RSS {rss:5.0f} MiB")
    print(f"  authpulse / duckdb: {median['duckdb'] / median['authpulse']:.2f}x")
    print(f"rows: curated {ours:,}, peer {theirs:,}, matched {joined:,}; features agree on: "
          + ", ".join(f"{f} {share:.2%}" for f, share in agree.items()))
    if not args.work:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
