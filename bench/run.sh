#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# boxkit benchmarks against peer tools, on the same work, with hyperfine.
#
#   bench/run.sh [spawn|unpack|all]     (default: all)
#
#   spawn   box-spawn BUNDLE -- /bin/true  vs  runc run  vs  crun run, on one
#           busybox bundle made by box-unpack
#   unpack  box-unpack --layout L latest OUT  vs  umoci unpack  vs  a GNU tar
#           loop over the layers, for the busybox, layered and big images
#
# Environment:
#   QUICK=1          smoke run: few runs, no big image
#   BENCH_WORK=DIR   state (images, results, scratch); default /tmp/boxkit-bench
#   SKIP_BUILD=1     use the binaries already in target/release (no cargo build)
#   FORCE=1          rebuild the benchmark images
#
# Run as root (namespaces, mounts, runc, crun, umoci unpack need it). This
# script installs nothing; it stops with the apt-get line to run if a tool is
# missing. Needs: hyperfine runc crun umoci skopeo busybox-static jq openssl
# util-linux, GNU tar, gzip, and a Rust toolchain (cargo).
#
# What it writes:
#   $BENCH_WORK/images/<name>/     OCI layouts (tag "latest"), built offline once
#                                  and reused (bench/lib/images.sh; FORCE=1 rebuilds)
#   $BENCH_WORK/results/<UTC time>/
#                                  <bench>.json (hyperfine), log.txt (exact command
#                                  lines and hyperfine output), checks.txt,
#                                  summary.md (printed at the end), summary.tsv
#   $BENCH_WORK/results/latest     symlink to the newest results
#   $BENCH_WORK/scratch            a tmpfs while the script runs (bundles, runc/crun
#                                  state, unpack targets); unmounted and removed on
#                                  exit, whatever the exit path
#
# Each comparison is ONE hyperfine invocation (same runs, same --prepare), so the
# ratios in summary.md come from the same run.

set -euo pipefail
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH_DIR/.." && pwd)"
# shellcheck source=lib/common.sh
. "$BENCH_DIR/lib/common.sh"

usage() { sed -n '3,/^$/s/^# \{0,1\}//p' "$0" >&2; exit 2; }
case "${1:-all}" in
  spawn) TASKS=(spawn) ;;
  unpack) TASKS=(unpack) ;;
  all) TASKS=(spawn unpack) ;;
  -h|--help|help) usage ;;
  *) log "unknown task: $1"; usage ;;
esac
[[ $# -le 1 ]] || usage

QUICK="${QUICK:-0}"
[[ $(id -u) == 0 ]] || die "run as root: box-spawn, runc, crun, umoci unpack and the tmpfs scratch need it"
need hyperfine runc crun umoci skopeo busybox jq openssl unshare mountpoint tar gzip chroot cargo
if ldd "$(command -v busybox)" >/dev/null 2>&1; then
  die "$(command -v busybox) is dynamically linked; the images need a static one: apt-get install -y busybox-static"
fi

runs() { # runs <normal> <quick>
  if [[ $QUICK == 1 ]]; then echo "$2"; else echo "$1"; fi
}

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
RES="$BENCH_WORK/results/$STAMP"
W="$BENCH_WORK/scratch"
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
if awk -v l="${LOAD_START%% *}" 'BEGIN { exit !(l > 1.0) }'; then
  log "warning: load average is $LOAD_START; other work on the machine will show up in the numbers"
fi
mkdir -p "$RES"
: >"$RES/log.txt"; : >"$RES/checks.txt"

# ---------------------------------------------------------------- scratch + cleanup
MOUNTED_W=0
CG_WRAP=()
RUNC_IDS=(bench-runc bench-crun bench-crun-nocg bench-check-runc bench-check-crun bench-probe)
cleanup() {
  set +e
  local id
  if [[ -d "$W/runc-root" ]]; then
    for id in "${RUNC_IDS[@]}"; do
      [[ -d "$W/runc-root/$id" ]] && runc --root "$W/runc-root" delete -f "$id" >/dev/null 2>&1
    done
  fi
  if [[ -d "$W/crun-root" ]]; then
    for id in "${RUNC_IDS[@]}"; do
      [[ -d "$W/crun-root/$id" ]] && "${CG_WRAP[@]}" crun --root "$W/crun-root" delete -f "$id" >/dev/null 2>&1
    done
  fi
  if [[ $MOUNTED_W == 1 ]]; then
    umount "$W" || umount -l "$W"
  else
    rm -rf "${W:?}"
  fi
  rmdir "$W" 2>/dev/null
  rm -rf "$BENCH_WORK"/bundle.* "$BENCH_WORK"/opq.* "$IMG_DIR"/.*.tmp
}
HF_PID=""
on_signal() {
  # stop the running hyperfine (by its PID; unshare and bash exec into it)
  set +e
  if [[ -n $HF_PID ]]; then kill -TERM "$HF_PID" 2>/dev/null; wait "$HF_PID" 2>/dev/null; fi
  log "interrupted"; exit 130
}
trap cleanup EXIT
trap on_signal INT TERM HUP

if mountpoint -q "$W" 2>/dev/null; then umount "$W"; fi   # left by a killed run
rm -rf "$W"; mkdir -p "$W"
mount -t tmpfs -o size=8g,mode=0755 boxkit-bench-scratch "$W"
MOUNTED_W=1
cd "$BENCH_WORK"   # benchmarked commands run here, never in the caller's directory

# ---------------------------------------------------------------- helpers
FAILED=0
check() { # check <PASS|FAIL|NOTE> <text>; only FAIL makes the script fail
  echo "$1: $2" | tee -a "$RES/checks.txt" >&2
  [[ $1 == FAIL ]] && FAILED=$((FAILED + 1))
  return 0
}

# CPU time, in clock ticks: of the whole machine (busy, all CPUs) and of this
# script's reaped children. Their difference over a benchmark is CPU that other
# work on the machine used meanwhile (plus kernel threads), a noise indicator.
cpu_busy() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9; exit}' /proc/stat; }
cpu_ours() { awk '{print $16+$17}' "/proc/$$/stat"; }
TICKS="$(getconf CLK_TCK)"
declare -A OTHER_CPU

# hf <bench-id> [hyperfine args...] -> $RES/<bench-id>.json; runs inside
# "${HF_WRAP[@]}" when that is set.
HF_WRAP=()
hf() {
  local id="$1"; shift
  log "bench: $id"
  { echo "### $id"; [[ ${#HF_WRAP[@]} -gt 0 ]] && printf '%q ' "${HF_WRAP[@]}"; printf '%q ' hyperfine "$@"; echo; } >>"$RES/log.txt"
  local b0 o0 t0=$SECONDS; b0="$(cpu_busy)"; o0="$(cpu_ours)"
  # in the background + wait, so that INT/TERM reach the trap at once
  "${HF_WRAP[@]}" hyperfine --style basic --export-json "$RES/$id.json" "$@" >>"$RES/log.txt" 2>&1 &
  HF_PID=$!
  local rc=0; wait "$HF_PID" || rc=$?
  HF_PID=""
  OTHER_CPU[$id]="$(awk -v b="$(( $(cpu_busy) - b0 ))" -v o="$(( $(cpu_ours) - o0 ))" -v t="$TICKS" \
    -v w="$((SECONDS - t0))" 'BEGIN { x = (b - o) / t; if (x < 0) x = 0
      printf "%.1f CPU-seconds in %d s (%.0f%% of one core)", x, w, (w > 0 ? 100 * x / w : 0) }')"
  if [[ $rc != 0 ]]; then
    log "bench $id FAILED (see $RES/log.txt)"; tail -5 "$RES/log.txt" >&2
    rm -f "$RES/$id.json"; FAILED=$((FAILED + 1)); return 1
  fi
}

# ---------------------------------------------------------------- build
if [[ ${SKIP_BUILD:-0} == 1 ]]; then
  log "SKIP_BUILD=1: using the binaries already built"
else
  log "cargo build --release --workspace (log: $RES/build.log)"
  (cd "$REPO" && cargo build --release --workspace) >"$RES/build.log" 2>&1 ||
    { tail -20 "$RES/build.log" >&2; die "cargo build failed"; }
fi
TARGET_DIR="$(cd "$REPO" && cargo metadata --format-version 1 --no-deps 2>/dev/null | jq -r .target_directory)" ||
  TARGET_DIR="$REPO/target"
BOX="$TARGET_DIR/release"
for b in box-unpack box-spawn; do [[ -x "$BOX/$b" ]] || die "$BOX/$b not found (build failed?)"; done
BOXKIT_REV="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git -C "$REPO" status --porcelain -- tools Cargo.toml Cargo.lock 2>/dev/null)" ]]; then
  BOXKIT_REV+=" + uncommitted changes in tools/"
fi

# ---------------------------------------------------------------- images
IMAGES=(busybox layered big)
[[ $QUICK == 1 ]] && IMAGES=(busybox layered)
[[ " ${TASKS[*]} " == *" unpack "* ]] || IMAGES=(busybox)
bash "$BENCH_DIR/lib/images.sh" build "${IMAGES[@]}" || die "image build failed"
for img in "${IMAGES[@]}"; do
  d="$(skopeo inspect --raw "oci:$IMG_DIR/$img:latest" | sha256sum | cut -d' ' -f1)"
  if [[ "sha256:$d" == "$(image_digest "$img")" ]]; then check PASS "skopeo reads image $img ($(image_digest "$img" | cut -c1-19)…)"
  else check FAIL "skopeo reads image $img with a different manifest digest sha256:$d"; fi
done

# ---------------------------------------------------------------- spawn
# crun 1.8 refuses cgroup "hybrid" mode when the cgroup2 mount has a controller
# ("cgroups in hybrid mode not supported, drop all controllers from cgroupv2").
# Workaround: a private mount namespace where /sys/fs/cgroup/unified is
# unmounted, so crun sees plain cgroup v1. The whole spawn hyperfine runs in
# it, so box-spawn, runc and crun are measured in the same conditions.
detect_cgroup_wrap() { # <oci-bundle>
  local b="$1" out
  if out="$(crun --root "$W/crun-root" run --bundle "$b" bench-probe 2>&1)"; then
    CG_WRAP=()
    log "crun runs in the host mount namespace; no workaround needed"
  elif grep -q "hybrid mode not supported" <<<"$out" && mountpoint -q /sys/fs/cgroup/unified; then
    CG_WRAP=(unshare --mount --propagation private -- bash -c 'umount /sys/fs/cgroup/unified && exec "$@"' _)
    log "crun refuses hybrid cgroups here: spawn runs in a private mount ns without /sys/fs/cgroup/unified"
  else
    die "crun run failed: $out"
  fi
}

task_spawn() {
  local d="$W/spawn" b="$W/spawn/bundle" ob="$W/spawn/oci-bundle" out
  mkdir -p "$d" "$ob" "$W/runc-root" "$W/crun-root"
  "$BOX/box-unpack" --layout "$IMG_DIR/busybox" latest "$b" >/dev/null
  # runc/crun: a copy of config.json next to it, on the SAME rootfs: args
  # /bin/true, no terminal, an absolute root path.
  jq --arg r "$b/rootfs" '.process.args=["/bin/true"]
      | .process.terminal=false | .root.path=$r' "$b/config.json" >"$ob/config.json"
  diff <(jq -S . "$b/config.json") <(jq -S . "$ob/config.json") >"$RES/spawn-config.diff" || true
  detect_cgroup_wrap "$ob"

  # untimed: each command runs once (in the same namespace) and exits 0
  local wrap=("${CG_WRAP[@]}")
  if out="$("${wrap[@]}" "$BOX/box-spawn" "$b" -- /bin/sh -c 'echo ok' 2>&1)" && [[ $out == ok ]]; then
    check PASS "box-spawn runs the busybox bundle"; else check FAIL "box-spawn: $out"; fi
  # the timed row runs with every wall up: Docker's capabilities, seccomp, device filter
  if out="$("${wrap[@]}" "$BOX/box-spawn" "$b" -- /bin/sh -c 'grep -E "^(CapEff|Seccomp):" /proc/self/status | tr -d "\t" | tr "\n" " "; cut -d: -f3 /proc/self/cgroup | sort -u' 2>&1)" &&
    [[ $out == "CapEff:00000000a80425fb Seccomp:2 /" ]]; then
    check PASS "box-spawn is hardened: Docker's capabilities, seccomp filter, own cgroup namespace"
  else check FAIL "box-spawn is not hardened as expected: $out"; fi
  if out="$("${wrap[@]}" runc --root "$W/runc-root" run --bundle "$ob" bench-check-runc 2>&1)"; then
    check PASS "runc runs the same rootfs"; else check FAIL "runc: $out"; fi
  if out="$("${wrap[@]}" crun --root "$W/crun-root" run --bundle "$ob" bench-check-crun 2>&1)"; then
    check PASS "crun runs the same rootfs"; else check FAIL "crun: $out"; fi

  HF_WRAP=("${CG_WRAP[@]}")
  local count=(--min-runs 200); [[ $QUICK == 1 ]] && count=(--runs 5)
  hf spawn -N --warmup "$(runs 10 2)" "${count[@]}" \
    -n "box-spawn B -- /bin/true" "$BOX/box-spawn $b -- /bin/true" \
    -n "runc run /bin/true" "runc --root $W/runc-root run --bundle $ob bench-runc" \
    -n "crun run /bin/true" "crun --root $W/crun-root run --bundle $ob bench-crun" \
    -n "ref: box-spawn --privileged B -- /bin/true" "$BOX/box-spawn --privileged $b -- /bin/true" \
    -n "ref: crun --cgroup-manager=disabled run /bin/true" \
    "crun --root $W/crun-root --cgroup-manager=disabled run --bundle $ob bench-crun-nocg" \
    -n "ref: unshare (pid,mnt,uts,ipc,net) chroot /bin/true" \
    "unshare --fork --pid --mount --uts --ipc --net chroot $b/rootfs /bin/true" || true
  HF_WRAP=()

  # `run` deletes its container when the process exits; check nothing is left
  local left
  left="$(runc --root "$W/runc-root" list -q 2>/dev/null; ls "$W/crun-root" 2>/dev/null)"
  if [[ -z "$left" ]]; then check PASS "no runc/crun container left after the spawn benchmark"
  else check FAIL "containers left after the spawn benchmark: ${left//$'\n'/ }"; fi
  rm -rf "$d"
}

# ---------------------------------------------------------------- unpack
# mode owner nlink size mtime path [link target] of every entry; directory
# sizes and the rootfs directory itself are left out (filesystem/tool specific).
# Directory mtimes go to a list of their own (dir_times_of): a layer that adds
# a file without naming its directory changes that directory's mtime, which
# umoci restores and other unpackers do not.
tree_of() {
  (cd "$1" && find . -mindepth 1 \( -type d -printf '%M %U:%G - - - %p\n' \) \
    -o -printf '%M %U:%G %n %s %T@ %p %l\n' | sed 's/ $//' | LC_ALL=C sort -k6)
}
dir_times_of() {
  (cd "$1" && find . -mindepth 1 -type d -printf '%T@ %p\n' | LC_ALL=C sort -k2)
}

task_unpack() {
  local img n out="$W/unpack/out" ls d="$W/unpack"
  mkdir -p "$d"
  for img in "${IMAGES[@]}"; do
    ls="$(layers_of "$img" | tr '\n' ' ')"
    # untimed: box-unpack and umoci unpack give the same tree
    "$BOX/box-unpack" --layout "$IMG_DIR/$img" latest "$d/box" >/dev/null
    umoci unpack --image "$IMG_DIR/$img:latest" "$d/umoci" >/dev/null 2>&1
    tree_of "$d/box/rootfs" >"$d/box.tree"; tree_of "$d/umoci/rootfs" >"$d/umoci.tree"
    if diff -u "$d/umoci.tree" "$d/box.tree" >"$RES/unpack-$img-tree.diff"; then
      check PASS "box-unpack and umoci unpack give the same tree for $img ($(wc -l <"$d/box.tree") entries: type, mode, owner, links, size, file mtime, symlink target)"
      rm -f "$RES/unpack-$img-tree.diff"
    else
      check FAIL "box-unpack and umoci unpack trees differ for $img (see unpack-$img-tree.diff)"
    fi
    dir_times_of "$d/box/rootfs" >"$d/box.dt"; dir_times_of "$d/umoci/rootfs" >"$d/umoci.dt"
    if diff -u "$d/umoci.dt" "$d/box.dt" >"$RES/unpack-$img-dirtimes.diff"; then
      rm -f "$RES/unpack-$img-dirtimes.diff"
    else
      check NOTE "directory mtimes differ from umoci's for $img: $(grep -c '^+[0-9]' "$RES/unpack-$img-dirtimes.diff") directories, e.g. $(grep -m1 '^+[0-9]' "$RES/unpack-$img-dirtimes.diff" | cut -d' ' -f2-) (see unpack-$img-dirtimes.diff)"
    fi
    rm -rf "$d/box" "$d/umoci" "$d"/*.tree "$d"/*.dt

    case $img in big) n=$(runs 10 2) ;; *) n=$(runs 30 3) ;; esac
    hf "unpack-$img" --warmup 1 --runs "$n" --prepare "rm -rf $out; sync" \
      -n "box-unpack --layout $img" "$BOX/box-unpack --layout $IMG_DIR/$img latest $out" \
      -n "umoci unpack $img" "umoci unpack --image $IMG_DIR/$img:latest $out" \
      -n "GNU tar -xzf layers $img" "mkdir -p $out/rootfs && for l in $ls; do tar -xzf \$l -C $out/rootfs; done" \
      -n "ref: gzip -dc layers >/dev/null $img" "for l in $ls; do gzip -dc \$l; done >/dev/null" || true
    rm -rf "$out"
  done
  rm -rf "$d"
}

# ---------------------------------------------------------------- summary
median_of() { # median_of <json> <name-prefix> -> seconds (empty if absent)
  [[ -f "$1" ]] || return 0
  jq -r --arg p "$2" '[.results[] | select(.command|startswith($p)) | .median][0] // empty' "$1"
}
ms() { awk -v s="$1" 'BEGIN { v = s * 1000; if (v < 10) printf "%.2f ms", v; else if (v < 1000) printf "%.1f ms", v; else printf "%.3f s", s }'; }

goal() { # goal <label> <boxkit s> <other s> <factor> <other name>: pass if other >= factor * boxkit
  local label="$1" b="$2" o="$3" f="$4" on="$5"
  if [[ -z "$b" || -z "$o" ]]; then echo "- **SKIP** $label: no data"; return; fi
  awk -v l="$label" -v b="$b" -v o="$o" -v f="$f" -v on="$on" 'BEGIN {
    r = o / b; ok = (o >= f * b)
    if (ok) m = sprintf("margin: %.0f%% faster than needed", (r / f - 1) * 100)
    else m = sprintf("missed: %.0f%% slower than needed (%.2f ms over)", (f / r - 1) * 100, (b - o / f) * 1000)
    printf "- **%s** %s: boxkit %.2f ms, %s %.2f ms, ratio %.2fx (goal >= %.1fx); %s\n",
      ok ? "PASS" : "FAIL", l, b * 1000, on, o * 1000, r, f, m }'
}

summarize() {
  local f id bmed
  {
    echo "# boxkit benchmark summary"
    echo
    echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ) (started $STAMP)"
    echo "- machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(free -g | awk '/Mem:/{print $2}') GiB RAM, kernel $(uname -r), $(. /etc/os-release; echo "$PRETTY_NAME"); load average at start: $LOAD_START, at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- boxkit: $BOXKIT_REV, release build ($BOX)"
    echo "- peers: runc $(runc --version | awk 'NR==1{print $3}'), crun $(crun --version | awk 'NR==1{print $3}'), umoci $(umoci --version | awk '{print $3}'), $(tar --version | head -1), $(gzip --version | head -1), hyperfine $(hyperfine --version | awk '{print $2}')"
    echo "- scratch: tmpfs at $W (bundles, runc/crun state, unpack targets); images on $(df --output=fstype "$IMG_DIR" | tail -1) in the page cache"
    echo "- QUICK=$QUICK; tasks: ${TASKS[*]}"
    [[ ${#CG_WRAP[@]} -gt 0 ]] && echo "- spawn ran inside \`unshare --mount --propagation private\` with /sys/fs/cgroup/unified unmounted there (crun 1.8.1 hybrid-cgroup workaround), for all commands alike"
    echo
    echo "Values are hyperfine medians. \"vs boxkit\" = that row's median / the boxkit row's median: above 1 means boxkit is faster."
    for id in spawn unpack-busybox unpack-layered unpack-big; do
      f="$RES/$id.json"
      [[ -f "$f" ]] || continue
      bmed="$(median_of "$f" "box-")"
      echo
      echo "## $id"
      echo
      echo "Other CPU use on the machine meanwhile: ${OTHER_CPU[$id]:-unknown}."
      echo
      echo "| command | median | mean ± sd | min | max | runs | vs boxkit |"
      echo "|---|---:|---:|---:|---:|---:|---:|"
      jq -r --arg b "${bmed:-0}" '.results[] |
        def ms: (. * 1000) as $v | if $v < 10 then "\($v * 100 | round / 100) ms"
          elif $v < 1000 then "\($v * 10 | round / 10) ms" else "\(. * 1000 | round / 1000) s" end;
        "| \(.command|gsub("\\|";"\\|")) | \(.median|ms) | \(.mean|ms) ± \(.stddev // 0|ms) | \(.min|ms) | \(.max|ms) | \(.times|length) | \(if ($b|tonumber) > 0 then "\(.median / ($b|tonumber) * 100 | round / 100)x" else "-" end) |"' "$f"
    done
    echo
    echo "## Goals"
    echo
    if [[ -f "$RES/spawn.json" ]]; then
      goal "spawn at least as fast as crun run" "$(median_of "$RES/spawn.json" "box-")" "$(median_of "$RES/spawn.json" "crun run")" 1 crun
    fi
    local img
    for img in busybox layered big; do
      f="$RES/unpack-$img.json"; [[ -f "$f" ]] || continue
      goal "unpack $img at least as fast as GNU tar" "$(median_of "$f" "box-")" "$(median_of "$f" "GNU tar")" 1 "GNU tar"
      goal "unpack $img 3x faster than umoci" "$(median_of "$f" "box-")" "$(median_of "$f" "umoci")" 3 umoci
    done
    echo
    echo "## Checks (untimed)"
    echo
    sed 's/^/- /' "$RES/checks.txt"
    echo
    echo "## Caveats"
    echo
    echo "- box-spawn, runc and crun each create and remove a cgroup for the container (cgroup v1 here: one group per hierarchy), which is part of their time; the \`crun --cgroup-manager=disabled\` row shows what that costs crun. All three drop capabilities, set rlimits, no_new_privs, a seccomp filter, masked and read-only paths per config.json."
    echo "- The runc/crun config.json is a copy of the one box-unpack wrote for the same rootfs, with args [\"/bin/true\"], terminal false and an absolute root.path; spawn-config.diff holds the exact difference."
    echo "- box-spawn and runc/crun \`run\` all wait for the process and clean up after it; runc/crun also write and delete a state directory (on the tmpfs)."
    echo "- The GNU tar loop applies no whiteouts (on layered it leaves .wh.* files) and verifies no digest: it is a speed reference, not a correct unpack. box-unpack verifies every blob digest and DiffID; umoci unpack also writes an mtree manifest of the rootfs."
    echo "- box-unpack --layout reads the OCI layout directly; the boxkit store is the same kind of layout opened by the same code, so a separate store row would measure the same path."
    echo "- Unpack commands run under hyperfine's default shell (sh -c, spawn time subtracted); spawn commands run with -N (no shell). Output dirs are on a tmpfs: on this VM's ext4 root, file creation dominates and is very noisy."
    echo "- Everything shares the machine's cores with whatever else runs on it. hyperfine runs all runs of one command, then the next, so a burst of other work hits one row more than the others: see \"Other CPU use\" under each table (CPU time of the whole machine minus this script's own; it includes kernel worker threads, e.g. the network namespace teardown after each spawn)."
    echo
    echo "Results: $RES"
  } >"$RES/summary.md"
  for f in "$RES"/*.json; do
    [[ -f "$f" ]] || continue
    jq -r --arg b "$(basename "$f" .json)" '.results[] | [$b, .command, .median, .mean, (.stddev // 0), .min, .max, (.times|length)] | @tsv' "$f"
  done >"$RES/summary.tsv"
  cat "$RES/summary.md"
}

# ---------------------------------------------------------------- main
ln -sfn "$STAMP" "$BENCH_WORK/results/latest"
for t in "${TASKS[@]}"; do "task_$t"; done
summarize
[[ $FAILED == 0 ]] || { log "$FAILED check(s)/benchmark(s) failed; see $RES"; exit 1; }
