#!/bin/sh
# Reference core_pattern handler: a native compressor on the kernel's pipe.
# `|/bin/sh zstd.sh OUTDIR %P`: zstd -3 into OUTDIR/core.PID.zst; OUTDIR/done.PID marks the end.
set -u
zstd -3 -q -c > "$1/core.$2.zst"
: > "$1/done.$2"
