#!/usr/bin/env bash
# Lesson 08: a cgroup puts a ceiling on what a group of processes may use.
#
# Needs: the box-* tools on PATH, BOXKIT_ROOT and LESSON_TMP (empty directories), python3,
# root (creating cgroups needs it). Prints the same on a cgroup v1 and a cgroup v2 machine.
set -euo pipefail
export LC_ALL=C TZ=UTC
: "${BOXKIT_ROOT:?set BOXKIT_ROOT to an empty directory}"
: "${LESSON_TMP:?set LESSON_TMP to an empty directory}"
cd "$LESSON_TMP"

step() { printf '\n== %s ==\n' "$*"; }

# Run box-cgroup-limit; print the command's output, box-cgroup-limit's message and the status.
limited() {
    local rc=0
    box-cgroup-limit "$@" >out.txt 2>err.txt || rc=$?
    sed 's/^/  stdout: /' out.txt
    sed 's/^/  stderr: /' err.txt
    echo "  exit status: $rc"
}

# A program that allocates MiB of memory (and touches every page, so it is really used).
cat >hog.py <<'PY'
import sys
mib = int(sys.argv[1])
block = bytearray(mib << 20)
block[::4096] = b"x" * (len(block) // 4096)
print(f"allocated {mib} MiB")
PY

# A fork loop: fork until the kernel refuses, then report how far it got.
cat >forker.py <<'PY'
import os, signal
children = []
while len(children) < 1000:
    try:
        pid = os.fork()
    except OSError as e:
        print(f"fork number {len(children) + 1} failed: {os.strerror(e.errno)}")
        break
    if pid == 0:
        signal.pause()      # the child waits; box-cgroup-limit kills what is left
        os._exit(0)
    children.append(pid)
print(f"{len(children)} children are running")
PY

step "1. a memory limit: under it, and over it"
echo "\$ box-cgroup-limit --memory 64M -- python3 hog.py 16"
limited --memory 64M -- python3 hog.py 16
echo "\$ box-cgroup-limit --memory 64M -- python3 hog.py 256"
limited --memory 64M -- python3 hog.py 256

step "2. a group that stays: --create, --join, --stats, --remove"
name=lesson08-$$
box-cgroup-limit --create "$name" --memory 64M >path.txt
echo "box-cgroup-limit --create printed a path ending in: $(sed 's|.*/\(boxkit/\)|\1|; s|-[0-9]*$|-PID|' path.txt)"
echo "\$ box-cgroup-limit --join $name -- python3 hog.py 256" | sed 's/-[0-9]* --/-PID --/'
limited --join "$name" -- python3 hog.py 256
echo "what the kernel counted (box-cgroup-limit --stats $name --json):" | sed 's/-[0-9]* /-PID /'
box-cgroup-limit --stats "$name" --json >stats.json
python3 - stats.json <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"  memory_limit_bytes  {s['memory_limit_bytes']}   (64 MiB)")
print(f"  oom_kills           {s['oom_kills']}")
print(f"  pids                {s['pids']}           (nothing left running in it)")
PY
box-cgroup-limit --remove "$name"
echo "after --remove, the directory is gone: $([ -e "$(cat path.txt)" ] && echo no || echo yes)"

step "3. a fork loop stops at the pids limit"
echo "\$ box-cgroup-limit --pids 16 -- python3 forker.py"
limited --pids 16 -- python3 forker.py
echo "(16 = python itself + 15 children; the children were killed when python ended)"

step "4. a CPU quota: --cpus 0.2 is 20 ms of CPU time in every 100 ms period"
box-cgroup-limit --create "$name" --cpus 0.2 >/dev/null
box-cgroup-limit --join "$name" -- timeout 2 sh -c 'while :; do :; done' || true
box-cgroup-limit --stats "$name" --json >stats.json
box-cgroup-limit --remove "$name"
python3 - stats.json <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
# CPU time over the 100 ms periods in which the group had work: both from the kernel.
share = s["cpu_usec"] / (s["cpu_periods"] * 100_000)
print(f"a busy loop for 2 s got {'0.2 of a CPU, give or take 20%' if 0.16 <= share <= 0.24 else f'{share:.2f} CPUs'}")
print(f"it was throttled (made to wait for the next period): {'yes' if s['throttled_periods'] > 0 else 'no'}")
PY
