#!/usr/bin/env bash
# Install the Debian packages flightbox and its tests use, when missing:
#   acl (setfacl: the crashing user may read their own crashes),
#   gdb (stack traces, gcore, flightbox debug), elfutils (eu-stack: fast stack traces and
#   build-ids), zstd (core compression), perl (the launcher's core pipe size, a core's holes),
#   gcc + libc6-dev (test crashers), util-linux (dmesg), strace (tests: faults injected into
#   the hole listing).
set -euo pipefail
missing=()
have() { command -v "$1" >/dev/null 2>&1; }
have gdb || missing+=(gdb)
have eu-stack || missing+=(elfutils)
have zstd || missing+=(zstd)
have perl || missing+=(perl-base)
have strace || missing+=(strace)
have gcc || missing+=(gcc)
[ -e /usr/include/stdio.h ] || missing+=(libc6-dev)
have dmesg || missing+=(util-linux)
have useradd || missing+=(passwd)
have lttng || missing+=(lttng-tools)
dpkg -s liblttng-ust-dev >/dev/null 2>&1 || missing+=(liblttng-ust-dev)
have babeltrace2 || missing+=(babeltrace2)
have trace-cmd || missing+=(trace-cmd)
have unzip || missing+=(unzip)
have setfacl || missing+=(acl)
have chromium || missing+=(chromium)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install-deps: all present"
fi
