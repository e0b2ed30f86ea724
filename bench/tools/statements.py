"""Sums a hub's statement log (`bench --hub-log 'warn,sqlx::query=debug'`, written to
bench/results/hub-<hub>.log) by statement over a window of UTC times, dearest first:

    python3 bench/tools/statements.py bench/results/hub-main.log 12:00:01.5 12:00:11.5

Take the window from the bench's "scenario done" lines (a run's measured part ends at its
line and began its duration before). Statements are logged without bound values."""

import collections
import json
import sys


def main(log, start, end, top=25):
    total = collections.defaultdict(lambda: [0, 0.0])
    for line in open(log):
        if '"sqlx::query"' not in line:
            continue
        j = json.loads(line)
        at = j["timestamp"][11:]
        if start <= at <= end:
            t = total[j.get("summary", "")]
            t[0] += 1
            t[1] += j.get("elapsed_secs", 0.0)
    for summary, (n, secs) in sorted(total.items(), key=lambda kv: -kv[1][1])[:top]:
        print(f"{secs * 1000:9.0f} ms {n:7d} {secs / n * 1e6:8.0f} µs  {summary[:90]}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
