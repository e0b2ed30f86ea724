#!/usr/bin/env bash
# Alternating runs of the HL7 phase alone, one per binary given, in the order given:
#   bench/tools/hl7-cpu.sh PATIENTS BINARY...
# For each: the three HL7 runs' throughput, and the CPU the machine and the hub spent per
# 1,000 batch messages over the batch run's measured window (from /proc, sampled every
# 250 ms), and the bytes the hub read and wrote per batch message (rchar and wchar of
# /proc/PID/io: its page reads and WAL and checkpoint writes, and its sockets). CPU per
# message moves less with this machine's drift than throughput does, bytes per message
# hardly at all.
# PostgreSQL: set MEDITRACK_DATABASE_URL (and MEDITRACK_KAFKA_BROKERS) as for the bench.
set -euo pipefail
patients=$1
shift
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for bin in "$@"; do
  bin=$(realpath "$bin")
  log=$out/bench.log
  stat=$out/cpu.txt
  : >"$stat"
  (
    while true; do
      pid=$(pgrep -f "^$bin serve" | head -1 || true)
      if [ -n "$pid" ]; then
        # time, the hub's utime+stime, the machine's busy ticks (user nice system irq
        # softirq), the hub's bytes read and written
        echo "$(date +%s.%N) $(awk '{print $14+$15}' "/proc/$pid/stat" 2>/dev/null) \
$(head -1 /proc/stat | awk '{print $2+$3+$4+$7+$8}') \
$(awk '/^rchar|^wchar/ {printf "%s ", $2}' "/proc/$pid/io" 2>/dev/null)" >>"$stat"
      fi
      sleep 0.25
    done
  ) &
  sampler=$!
  (cd "$here/../.." && "$bin" bench --patients "$patients" --scenarios hl7 \
    --duration 10 --warmup 2 --out "$out/report" >"$log" 2>&1) || true
  kill "$sampler"
  python3 "$here/hl7_cpu.py" "$log" "$stat" "$bin"
done
