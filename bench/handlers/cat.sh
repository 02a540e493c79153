#!/bin/sh
# Reference core_pattern handler: the disk limit. `|/bin/sh cat.sh OUTDIR %P`.
# The core goes to OUTDIR/core.PID as it comes; OUTDIR/done.PID marks the end.
set -u
cat > "$1/core.$2"
: > "$1/done.$2"
