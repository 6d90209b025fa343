"""The whole LANL-sized data set through `authpulse run`, end to end.

`authpulse gen` writes the events (by default the LANL set's size: 708M
events over 58 days, 11,362 users, 22,284 computers) into a pipe that
`authpulse run -` reads, with every table, so no file of the data is ever
on disk. Every --interval the run's Prometheus counters (`--listen`) and its
resident memory are sampled: events/s over time. At the end: wall time,
events/s, the run's peak RSS, the generator's CPU time (it shares the
machine), and each table's size on disk. See docs/benchmarks.md.
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LANL_EVENTS = 708_304_516
LANL_DAYS = 58
# Data files per event with all tables (curated 29 B, raw 19 B, measured
# on the full set), with a margin: what --work must have free.
TABLE_BYTES_PER_EVENT = 55


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def counter(text, name):
    """The sum of a Prometheus counter's samples (all label sets)."""
    return sum(float(m.group(1)) for m in
               re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE))


def rss_mib(pid):
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) / 1024 if found else None


def du_mib(path):
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**20


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=str(ROOT / "target" / "release" / "authpulse"))
    parser.add_argument("--events", type=int, default=LANL_EVENTS)
    parser.add_argument("--days", type=int, default=LANL_DAYS)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--interval", type=float, default=30, help="seconds between samples")
    parser.add_argument("--work", help="where the tables go (default: a temporary directory, removed)")
    parser.add_argument("--report", help="also write the figures here as JSON")
    args = parser.parse_args()

    work = Path(args.work or tempfile.mkdtemp(prefix="authpulse-full-set-"))
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    needed, free = args.events * TABLE_BYTES_PER_EVENT, shutil.disk_usage(work).free
    if free < needed:
        sys.exit(f"the tables of {args.events:,} events need about {needed / 1e9:.0f} GB; "
                 f"{work} has {free / 1e9:.0f} GB free: give --work on a larger disk, or fewer --events")
    port = free_port()
    print(f"{args.events:,} events over {args.days} days, generated into `authpulse run -` "
          f"with all tables under {out}", flush=True)

    start = time.monotonic()
    gen = subprocess.Popen([args.binary, "gen", "--events", str(args.events), "--days",
                            str(args.days), "--seed", str(args.seed), "-o", "-"],
                           stdout=subprocess.PIPE, stderr=open(work / "gen.log", "w"))
    run = subprocess.Popen([args.binary, "run", "-", "--output", str(out),
                            "--listen", f"127.0.0.1:{port}"],
                           stdin=gen.stdout, stdout=open(work / "run.log", "w"),
                           stderr=open(work / "run.err", "w"),
                           env={**os.environ, "AUTHPULSE_LOG": "warn"})
    gen.stdout.close()  # the run holds the pipe's read end

    samples, done = [], threading.Event()
    usage = {}

    def reap():
        for name, child in (("run", run), ("gen", gen)):
            _, status, rusage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
            usage[name] = rusage
        done.set()

    threading.Thread(target=reap, daemon=True).start()
    last = (start, 0.0)
    print(f"{'elapsed':>8} {'events':>14} {'events/s':>10} {'overall/s':>10} {'RSS MiB':>8}",
          flush=True)
    while not done.wait(args.interval):
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        except OSError:
            continue
        now, read = time.monotonic(), counter(text, "authpulse_events_read_total")
        rss = rss_mib(run.pid)
        rate = (read - last[1]) / (now - last[0])
        overall = read / (now - start)
        samples.append({"elapsed_s": round(now - start, 1), "events": int(read),
                        "events_per_s": round(rate), "rss_mib": rss})
        print(f"{now - start:8.0f} {int(read):14,} {rate:10,.0f} {overall:10,.0f} "
              f"{rss or 0:8.0f}", flush=True)
        last = (now, read)
    wall = time.monotonic() - start
    if run.returncode != 0 or gen.returncode != 0:
        sys.exit(f"run exited {run.returncode}, gen {gen.returncode}; see {work}/run.err, gen.log:\n"
                 + (work / "run.err").read_text()[-2000:])
    summary = json.loads((work / "run.log").read_text().strip().splitlines()[-1])
    tables = {d.name: round(du_mib(d / "data"), 1)
              for d in sorted((out / "warehouse" / "authpulse").iterdir()) if (d / "data").exists()}
    report = {
        "events_read": summary["events_read"],
        "events_scored": summary["events_scored"],
        "wall_s": round(wall, 1),
        "events_per_s": round(summary["events_read"] / wall),
        "run_events_per_s": round(summary.get("events_per_s", 0)),
        "run_peak_rss_mib": round(usage["run"].ru_maxrss / 1024),
        "run_cpu_s": round(usage["run"].ru_utime + usage["run"].ru_stime, 1),
        "gen_cpu_s": round(usage["gen"].ru_utime + usage["gen"].ru_stime, 1),
        "table_mib": tables,
        "samples": samples,
    }
    print()
    print(f"{report['events_read']:,} events in {wall:,.0f} s: {report['events_per_s']:,} events/s "
          f"end to end; run's peak RSS {report['run_peak_rss_mib']} MiB; CPU: run "
          f"{report['run_cpu_s']} s, generator {report['gen_cpu_s']} s")
    print("tables (MiB of data files): " + ", ".join(f"{t} {m}" for t, m in tables.items()))
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    if not args.work:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
