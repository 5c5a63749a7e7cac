#!/usr/bin/env bash
# box-commit against umoci repack on the same change to the same image, on a tmpfs,
# measured in one hyperfine run (so the ratio compares like with like), plus an overlay
# bundle's commit (box-commit reading upper/ instead of comparing with a record).
#
#   bash bench/commit.sh            # 10 runs each
#   QUICK=1 bash bench/commit.sh    # 3 runs each
#
# The image: the busybox rootfs plus 5,000 small files in 50 directories and 64 MiB of
# pseudo-random data in 4 files (openssl AES-CTR over zeros: the same bytes on every run),
# one layer, imported with box-import. The change, the same for every tool: rewrite 100
# small files, delete 100 more and one whole directory, chmod 50, add a 16 MiB file.
# Before each run the prepare step makes a fresh bundle (box-unpack, umoci unpack, or an
# overlay mount over a box-unpack'd lower directory) and applies the change; only the
# commit itself is timed. Results: $BENCH_WORK/results/commit-<time>/.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_WORK="${BENCH_WORK:-/tmp/boxkit-bench}"
QUICK="${QUICK:-0}"
say() { printf 'bench/commit.sh: %s\n' "$*" >&2; }

# shellcheck source=lib/common.sh
source bench/lib/common.sh
unset SOURCE_DATE_EPOCH # common.sh fixes it for the image builders; not wanted here
bench_start commit hyperfine umoci openssl python3

S="$BENCH_WORK/commit-scratch"
mkdir -p "$OUT" "$S"

trap 'unmount_under "$S"' EXIT
mountpoint -q "$S" || mount -t tmpfs -o size=3g tmpfs "$S"
export BOXKIT_ROOT="$S/root"

# ---- the image -------------------------------------------------------------------
say "building the image"
t="$S/build"; mkdir -p "$t/tree"
bash testdata/busybox/make-rootfs.sh "$t/busybox.tar" 2>/dev/null
tar -C "$t/tree" -xf "$t/busybox.tar"
for d in $(seq -w 1 50); do
    mkdir -p "$t/tree/srv/d$d"
    for f in $(seq -w 1 100); do printf 'dir %s file %s\n' "$d" "$f" >"$t/tree/srv/d$d/f$f"; done
done
mkdir -p "$t/tree/data"
for i in 1 2 3 4; do
    openssl enc -aes-256-ctr -nosalt -K "$(printf '%064d' "$i")" -iv "$(printf '%032d' 0)" \
        -in <(head -c $((16 << 20)) /dev/zero) -out "$t/tree/data/blob$i" 2>/dev/null
done
tar --sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner -C "$t/tree" -cf "$t/base.tar" .
"$BIN/box-import" "$t/base.tar" bench-base >/dev/null
rm -rf "$t"
LAYOUT="$BOXKIT_ROOT/images:docker.io/library/bench-base:latest"

# ---- the change (run in a rootfs) ---------------------------------------------------
cat >"$S/change.sh" <<'SH'
set -e
cd "$1"
for d in 01 02 03 04 05 06 07 08 09 10; do for f in 001 002 003 004 005 006 007 008 009 010; do echo changed >"srv/d$d/f$f"; done; done
for d in 11 12 13 14 15 16 17 18 19 20; do for f in 001 002 003 004 005 006 007 008 009 010; do rm "srv/d$d/f$f"; done; done
rm -rf srv/d50
for f in 011 012 013 014 015 016 017 018 019 020; do chmod 600 srv/d0{1,2,3,4,5}/f$f; done
head -c $((16 << 20)) /dev/zero | tr '\0' 'x' >data/new
SH
prep_box="rm -rf $S/box && $BIN/box-unpack bench-base $S/box >/dev/null && bash $S/change.sh $S/box/rootfs"
prep_umoci="rm -rf $S/um && umoci unpack --image $LAYOUT $S/um >/dev/null && bash $S/change.sh $S/um/rootfs"
prep_ov="(umount $S/ov/rootfs 2>/dev/null; true) && rm -rf $S/ov && mkdir -p $S/ov/upper $S/ov/work $S/ov/rootfs \
 && ( [ -d $S/low ] || $BIN/box-unpack bench-base $S/low >/dev/null ) && cp $S/low/config.json $S/ov/ \
 && sed 's/\"copy\"/\"overlay\"/' $S/low/boxkit.json >$S/ov/boxkit.json \
 && mount -t overlay -o lowerdir=$S/low/rootfs,upperdir=$S/ov/upper,workdir=$S/ov/work,redirect_dir=off,metacopy=off,index=off overlay $S/ov/rootfs \
 && bash $S/change.sh $S/ov/rootfs"

# ---- timing ------------------------------------------------------------------------
RUNS=10; [ "$QUICK" = 1 ] && RUNS=3
say "timing ($RUNS runs each)"
hyperfine --runs "$RUNS" --export-json "$OUT/commit.json" \
    --prepare "$prep_box" -n "box-commit (copy)" "$BIN/box-commit $S/box bench-out:box" \
    --prepare "$prep_umoci" -n "umoci repack" "umoci repack --image $BOXKIT_ROOT/images:bench-out-umoci $S/um" \
    --prepare "$prep_ov" -n "box-commit (overlay)" "$BIN/box-commit $S/ov bench-out:ov" >&2

{
    echo "# box-commit vs umoci repack"
    echo
    echo "- date: $(date -u +%FT%TZ); machine: $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB, $(uname -r)"
    echo "- boxkit $(git rev-parse --short HEAD); $(umoci --version); everything on tmpfs"
    echo "- image: busybox + 5,000 small files + 64 MiB; change: 100 rewritten, 100 + a directory of 100 deleted, 50 chmod, a 16 MiB file added"
    echo
    python3 - "$OUT/commit.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
fmt = lambda t: f"{t*1000:.0f} ms" if t < 1 else f"{t:.3f} s"
u = r["umoci repack"]["median"]
print("| command | median | min | max | umoci repack / this |")
print("|---|---:|---:|---:|---:|")
for name, x in r.items():
    print(f"| {name} | {fmt(x['median'])} | {fmt(x['min'])} | {fmt(x['max'])} | {u / x['median']:.2f}x |")
PY
} >"$OUT/summary.md"
ln -sfn "commit-$STAMP" "$BENCH_WORK/results/commit-latest"
cat "$OUT/summary.md"
