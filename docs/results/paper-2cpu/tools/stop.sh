#!/bin/bash
# stop the paper run when the Nth block line of the log appears (N from /tmp/s7/target)
LOG=$1
while kill -0 $(cat /work/paper-run2/pid) 2>/dev/null; do
  n=$(grep -c '^block ' "$LOG")
  if [ "$n" -ge "$(cat /tmp/s7/target)" ]; then
    echo "$(date -u +%H:%M:%S) stopping at block line $n" >> /tmp/s7/stop.log
    kill -INT -- -$(cat /work/paper-run2/pid)
    break
  fi
  sleep 2
done
