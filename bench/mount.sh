#!/usr/bin/env bash
# box-mount-layers against box-unpack: how long it takes to make a container's root
# filesystem from an image whose layers are already cached, for a small and a big image of
# 10 layers each, and how long the first extraction into the cache takes.
#
#   bash bench/mount.sh            # small and big 10-layer images
#   QUICK=1 bash bench/mount.sh    # fewer runs, a smaller "big" image
#
# Images are built offline with umoci and copied into a boxkit store with skopeo: "small"
# is 10 layers of 20 small files each; "big" is 10 layers of 1,000 small files and 16 MiB of
# pseudo-random data each (160 MiB, 10,000 files; QUICK=1: 4 MiB each). The store, the
# layer cache and the bundles are on a tmpfs ($BENCH_WORK/mount-scratch), unmounted and
# removed on exit. Results: $BENCH_WORK/results/mount-<time>/.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_WORK="${BENCH_WORK:-/tmp/boxkit-bench}"
QUICK="${QUICK:-0}"
say() { printf 'bench/mount.sh: %s\n' "$*" >&2; }

# shellcheck source=lib/common.sh
source bench/lib/common.sh
bench_start mount hyperfine skopeo umoci openssl python3 mountpoint

W="$BENCH_WORK/mount-scratch"
export BOXKIT_ROOT="$W/root"
mkdir -p "$OUT" "$W"

trap 'unmount_under "$W"' EXIT
mountpoint -q "$W" || mount -t tmpfs -o size=3g tmpfs "$W"

# ---- images ------------------------------------------------------------------
layer_tar() { # dir out.tar
    tar --format=pax --pax-option=delete=atime,delete=ctime --sort=name --mtime=@1700000000 \
        --owner=0 --group=0 --numeric-owner -C "$1" -cf "$2" .
}
MIB=16; [ "$QUICK" = 1 ] && MIB=4
build() { # name files-per-layer MiB-per-layer
    local name="$1" files="$2" mib="$3" l="$W/layouts/$1" t="$W/tmp" i f
    say "building image $name"
    mkdir -p "$t" && umoci init --layout "$l" && umoci new --image "$l:latest"
    for i in $(seq -w 1 10); do
        mkdir -p "$t/$i/layer$i"
        for f in $(seq 1 "$files"); do printf 'layer %s file %s\n' "$i" "$f" >"$t/$i/layer$i/f$f"; done
        if [ "$mib" -gt 0 ]; then
            openssl enc -aes-256-ctr -nosalt -K "$(printf '%064d' "$i")" -iv "$(printf '%032d' 0)" \
                -in <(head -c $((mib << 20)) /dev/zero) -out "$t/$i/layer$i/blob" 2>/dev/null
        fi
        layer_tar "$t/$i" "$t/$i.tar"
        umoci raw add-layer --image "$l:latest" "$t/$i.tar"
        rm -rf "$t/$i" "$t/$i.tar"
    done
    umoci config --image "$l:latest" --config.cmd=/bin/sh --architecture=amd64 --os=linux
    umoci gc --layout "$l"
    mkdir -p "$BOXKIT_ROOT/images"
    skopeo copy -q "oci:$l:latest" "oci:$BOXKIT_ROOT/images:$name"
}
build small 20 0
build big 1000 "$MIB"
rm -rf "$W/layouts"

# ---- timing --------------------------------------------------------------------
RUNS=50; [ "$QUICK" = 1 ] && RUNS=10
CRUNS=10; [ "$QUICK" = 1 ] && CRUNS=3
# Fill the cache once (this is what every later container of these images reuses), and
# check the mount really is an overlay.
for i in small big; do
    "$BIN/box-mount-layers" "$i" "$W/check-$i" >/dev/null
    grep -q '"storage": "overlay"' "$W/check-$i/boxkit.json" || { say "$i: not an overlay bundle"; exit 1; }
    "$BIN/box-mount-layers" --unmount "$W/check-$i" >/dev/null
done
unmount_b="$BIN/box-mount-layers --unmount $W/b >/dev/null 2>&1; rm -rf $W/b"
hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$OUT/mount.json" \
    --prepare "sh -c '$unmount_b'" \
    -n "mount small" "$BIN/box-mount-layers small $W/b" \
    -n "mount big" "$BIN/box-mount-layers big $W/b" >&2
sh -c "$unmount_b"
hyperfine -N --warmup 1 --runs "$CRUNS" --export-json "$OUT/copy.json" \
    --prepare "rm -rf $W/b" \
    -n "unpack small" "$BIN/box-unpack small $W/b" \
    -n "unpack big" "$BIN/box-unpack big $W/b" >&2
rm -rf "$W/b"
# The first container of an image: every layer extracted into the cache, then mounted.
hyperfine -N --warmup 1 --runs "$CRUNS" --export-json "$OUT/cold.json" \
    --prepare "sh -c '$unmount_b; rm -rf $BOXKIT_ROOT/layers'" \
    -n "cold big" "$BIN/box-mount-layers big $W/b" >&2
sh -c "$unmount_b"
used() { du -skx "$1" | cut -f1; }
"$BIN/box-mount-layers" big "$W/b1" >/dev/null
"$BIN/box-mount-layers" big "$W/b2" >/dev/null
"$BIN/box-unpack" big "$W/u1" >/dev/null
DISK="$(used "$W/b2") KiB per overlay bundle, $(used "$W/u1") KiB per copy, $(used "$BOXKIT_ROOT/layers") KiB of cache shared by all"

python3 - "$OUT" "$(uname -r)" "$(nproc)" "$(git rev-parse --short HEAD)" "$DISK" "$MIB" >"$OUT/summary.md" <<'PY'
import json, sys
out, kernel, cores, rev, disk, mib = sys.argv[1:]
r = {}
for f in ("mount", "copy", "cold"):
    for x in json.load(open(f"{out}/{f}.json"))["results"]:
        r[x["command"]] = x["median"]
fmt = lambda t: f"{t*1000:.1f} ms" if t < 1 else f"{t:.2f} s"
print("# box-mount-layers vs box-unpack (10-layer images, all on tmpfs)\n")
print(f"- kernel {kernel}, {cores} cores; boxkit {rev}; big = 10 x (1,000 files + {mib} MiB)\n")
print("| image | mount (cached layers) | copy (box-unpack) | copy / mount |")
print("|---|---:|---:|---:|")
for i in ("small", "big"):
    m, c = r[f"mount {i}"], r[f"unpack {i}"]
    print(f"| {i} | {fmt(m)} | {fmt(c)} | {c/m:.0f}x |")
print(f"\nFirst container of big (extract 10 layers into the cache, then mount): {fmt(r['cold big'])}.")
print(f"\nDisk: {disk}.\n")
ok = lambda b: "PASS" if b else "FAIL"
print(f"- {ok(r['mount small'] < 0.020 and r['mount big'] < 0.020)}: mount median under 20 ms")
print(f"- {ok(r['mount big'] < 1.5 * r['mount small'])}: constant in image size (big within 1.5x of small: {r['mount big']/r['mount small']:.2f}x)")
PY
ln -sfn "mount-$STAMP" "$BENCH_WORK/results/mount-latest"
cat "$OUT/summary.md"
