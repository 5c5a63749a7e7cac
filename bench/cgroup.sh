#!/usr/bin/env bash
# The cost of box-cgroup-limit around a command: /bin/true and a box-spawn container,
# with and without it, in one hyperfine run (so every row gets the same machine state).
#
#   bash bench/cgroup.sh            # 300 runs per row
#   QUICK=1 bash bench/cgroup.sh    # 30 runs per row
#
# Rows (hyperfine -N, no shell; the same order every time):
#   true                      /bin/true
#   limit true                box-cgroup-limit --memory 64M -- /bin/true
#   limit(all) true           box-cgroup-limit --memory 64M --cpus 1 --pids 100 --cpu-weight 100 -- /bin/true
#   spawn                     box-spawn B -- /bin/true
#   limit spawn               box-cgroup-limit --memory 64M -- box-spawn B -- /bin/true
#   spawn --cgroup            box-spawn --cgroup PATH B -- /bin/true   (a group made once, beforehand)
# The bundle B is the offline busybox image, unpacked on a tmpfs. Results (hyperfine
# JSON, summary.md with medians, the added time and the ratios):
# $BENCH_WORK/results/cgroup-<time>/.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_WORK="${BENCH_WORK:-/tmp/boxkit-bench}"
QUICK="${QUICK:-0}"
say() { printf 'bench/cgroup.sh: %s\n' "$*" >&2; }

# shellcheck source=lib/common.sh
source bench/lib/common.sh
unset SOURCE_DATE_EPOCH # common.sh fixes it for the image builders; not wanted here
bench_start cgroup hyperfine jq python3 busybox

SCRATCH="$BENCH_WORK/cgroup-scratch"
GROUP="bench-$$"
mkdir -p "$OUT" "$SCRATCH"

HF_PID=""
cleanup() {
    set +e # every step runs, whatever the one before returned
    if [ -n "$HF_PID" ]; then kill "$HF_PID" 2>/dev/null; wait "$HF_PID" 2>/dev/null; fi
    "$BIN/box-cgroup-limit" --remove "$GROUP" 2>/dev/null
    unmount_under "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
mountpoint -q "$SCRATCH" || mount -t tmpfs -o size=256m tmpfs "$SCRATCH"

export BOXKIT_ROOT="$SCRATCH/root"
bash testdata/busybox/make-rootfs.sh "$SCRATCH/busybox.tar" 2>/dev/null
"$BIN/box-import" --change 'CMD ["sh"]' "$SCRATCH/busybox.tar" busybox >/dev/null
B="$SCRATCH/bundle"
"$BIN/box-unpack" busybox "$B" >/dev/null
CG=$("$BIN/box-cgroup-limit" --create "$GROUP" --memory 64M)
HIERARCHY=$([ "$(stat -fc %T "$CG")" = cgroup2fs ] && echo "cgroup v2" || echo "cgroup v1")

# Each command once, untimed: it must work before it is timed.
"$BIN/box-cgroup-limit" --memory 64M -- /bin/true
"$BIN/box-spawn" "$B" -- /bin/true
"$BIN/box-cgroup-limit" --memory 64M -- "$BIN/box-spawn" "$B" -- /bin/true
"$BIN/box-spawn" --cgroup "$CG" "$B" -- /bin/true

runs=300
[ "$QUICK" = 1 ] && runs=30
say "hyperfine: 6 rows, $runs runs each, $HIERARCHY (log: $OUT/log.txt)"
hyperfine -N --style basic --warmup 5 --runs "$runs" --export-json "$OUT/cgroup.json" \
    -n "true" "/bin/true" \
    -n "limit true" "$BIN/box-cgroup-limit --memory 64M -- /bin/true" \
    -n "limit(all) true" "$BIN/box-cgroup-limit --memory 64M --cpus 1 --pids 100 --cpu-weight 100 -- /bin/true" \
    -n "spawn" "$BIN/box-spawn $B -- /bin/true" \
    -n "limit spawn" "$BIN/box-cgroup-limit --memory 64M -- $BIN/box-spawn $B -- /bin/true" \
    -n "spawn --cgroup" "$BIN/box-spawn --cgroup $CG $B -- /bin/true" \
    >"$OUT/log.txt" 2>&1 &
HF_PID=$!
wait "$HF_PID"
HF_PID=""

# Nothing left behind: only the group made above remains below boxkit/.
left=$(find "$(dirname "$CG")" -mindepth 1 -maxdepth 1 -type d -name 'run-*' | wc -l)

python3 - "$OUT/cgroup.json" "$HIERARCHY" "$runs" "$left" >"$OUT/summary.md" <<'PY'
import json, sys
res = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
ms = lambda name: res[name]["median"] * 1000
print(f"# box-cgroup-limit around a command ({sys.argv[2]}, {sys.argv[3]} runs per row)\n")
print("| row | median | mean ± σ | min |")
print("|---|---:|---:|---:|")
for name, r in res.items():
    print(f"| {name} | {r['median']*1000:.2f} ms | {r['mean']*1000:.2f} ± {r['stddev']*1000:.2f} ms | {r['min']*1000:.2f} ms |")
print()
print(f"- box-cgroup-limit adds {ms('limit true') - ms('true'):.2f} ms to /bin/true "
      f"({ms('limit(all) true') - ms('true'):.2f} ms with four limits): mkdir, the limit files, "
      "cgroup.procs, then after the command ends the kill check and rmdir.")
print(f"- around box-spawn it adds {ms('limit spawn') - ms('spawn'):.2f} ms: "
      f"limit spawn / spawn = {ms('limit spawn') / ms('spawn'):.2f}.")
print(f"- joining a group made beforehand (box-spawn --cgroup) adds {ms('spawn --cgroup') - ms('spawn'):.2f} ms: "
      f"spawn --cgroup / spawn = {ms('spawn --cgroup') / ms('spawn'):.2f}.")
print(f"- run-* groups left behind after the benchmark: {sys.argv[4]}")
PY
cat "$OUT/summary.md"
[ "$left" = 0 ] || { say "FAIL: box-cgroup-limit left $left groups behind"; exit 1; }
