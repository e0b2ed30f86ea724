"""Reads a bench log and the CPU samples of bench/tools/hl7-cpu.sh; prints one line."""

import datetime
import json
import os
import sys

TICKS = os.sysconf("SC_CLK_TCK")


def main(log, stat, binary):
    done = {}
    for line in open(log):
        if '"scenario done"' not in line:
            continue
        j = json.loads(line)
        t = datetime.datetime.fromisoformat(j["timestamp"].replace("Z", "+00:00"))
        done[j["scenario"]] = (t.timestamp(), j["throughput"])
    if "hl7-oru-batch" not in done:
        sys.exit(f"{binary}: the HL7 runs did not finish; see the bench's log")
    rows = [tuple(map(float, l.split())) for l in open(stat) if len(l.split()) == 5]
    # The batch run's measured window: after the run before it and the batch's warm-up.
    start = done["hl7-oru-n"][0] + 2.2
    end = done["hl7-oru-batch"][0] - 0.1
    a = min(rows, key=lambda r: abs(r[0] - start))
    z = min(rows, key=lambda r: abs(r[0] - end))
    messages = done["hl7-oru-batch"][1] * (z[0] - a[0])
    per_1000 = lambda ticks: ticks * 1000 / TICKS / messages * 1000
    kib = lambda n: n / messages / 1024
    print(
        f"{binary}: one {done['hl7-oru-1'][1]:.0f}/s, n {done['hl7-oru-n'][1]:.0f}/s, "
        f"batches {done['hl7-oru-batch'][1]:.0f}/s; per 1,000 batch messages "
        f"machine {per_1000(z[2] - a[2]):.0f} ms, hub {per_1000(z[1] - a[1]):.0f} ms CPU; "
        f"hub read {kib(z[3] - a[3]):.1f} KiB, wrote {kib(z[4] - a[4]):.1f} KiB per message"
    )


if __name__ == "__main__":
    main(*sys.argv[1:4])
