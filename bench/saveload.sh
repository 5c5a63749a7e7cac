#!/usr/bin/env bash
# box-save and box-load against `skopeo copy` to and from docker-archive:, on the same
# images, measured in one hyperfine run per direction and image, plus each tool's peak RSS.
#
#   bash bench/saveload.sh           # layered (7 layers, 2 MiB) and big (3 layers, 295 MiB)
#   QUICK=1 bash bench/saveload.sh   # fewer runs, no big image
#
# The images are bench/lib/images.sh's (built offline, reproducible), copied with skopeo
# into a boxkit store. Everything the tools write goes to a tmpfs. Rows:
#   save: box-save  | skopeo copy oci:STORE docker-archive:FILE | skopeo copy … oci-archive:FILE
#         | ref: tar -cf of the store's blobs (the cost of copying the bytes)
#   load: box-load  | skopeo copy docker-archive:FILE oci:DIR  | skopeo copy oci-archive:FILE oci:DIR
#         | ref: tar -xf of the archive (GNU tar --one-top-level)
# The archive loaded is box-save's, for every row. Results: $BENCH_WORK/results/saveload-<time>/.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_WORK="${BENCH_WORK:-/tmp/boxkit-bench}"
QUICK="${QUICK:-0}"
say() { printf 'bench/saveload.sh: %s\n' "$*" >&2; }

# shellcheck source=lib/common.sh
source bench/lib/common.sh
bench_start saveload hyperfine skopeo umoci jq python3 openssl

IMAGES=(layered)
[ "$QUICK" = 1 ] || IMAGES+=(big)
bash bench/lib/images.sh build "${IMAGES[@]}"
S="$BENCH_WORK/saveload-scratch"
mkdir -p "$OUT" "$S"

trap 'unmount_under "$S"' EXIT
mountpoint -q "$S" || mount -t tmpfs -o size=6g tmpfs "$S"

RUNS=10; [ "$QUICK" = 1 ] && RUNS=3
peak() { # command... -> KiB of the largest process of the command
    python3 -c 'import resource,subprocess,sys; subprocess.run(sys.argv[1:],check=True,stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "$@"
}
{
    echo "# box-save / box-load vs skopeo copy"
    echo
    echo "- date: $(date -u +%FT%TZ); machine: $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB, $(uname -r)"
    echo "- boxkit $(git rev-parse --short HEAD); $(skopeo --version); everything written to a tmpfs"
    echo
    echo "| image | direction | boxkit | skopeo docker-archive | skopeo oci-archive | ref: tar | docker-archive / boxkit | boxkit peak RSS | skopeo docker-archive peak RSS |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
} >"$OUT/summary.md"

for i in "${IMAGES[@]}"; do
    R="$S/store-$i"       # the boxkit store holding the image
    A="$S/$i.tar"         # box-save's archive of it
    rm -rf "$R" && mkdir -p "$R"
    skopeo copy -q "oci:$BENCH_WORK/images/$i:latest" "oci:$R/images:docker.io/library/$i:latest"
    "$BIN/box-save" --root "$R" -o "$A" "$i"
    # Every tool reads the archive before it is timed.
    skopeo inspect "docker-archive:$A" >/dev/null
    "$BIN/box-load" --root "$S/check" -i "$A" >/dev/null && rm -rf "$S/check"

    hyperfine -N --warmup 1 --runs "$RUNS" --export-json "$OUT/save-$i.json" \
        --prepare "rm -f $S/out.tar" \
        -n box-save "$BIN/box-save --root $R -o $S/out.tar $i" \
        -n skopeo-docker "skopeo copy -q oci:$R/images:docker.io/library/$i:latest docker-archive:$S/out.tar:$i:latest" \
        -n skopeo-oci "skopeo copy -q oci:$R/images:docker.io/library/$i:latest oci-archive:$S/out.tar:$i:latest" \
        -n tar "tar -C $R/images -cf $S/out.tar ." >&2
    rm -f "$S/out.tar"
    save_box="$(peak "$BIN/box-save" --root "$R" -o "$S/out.tar" "$i")"; rm -f "$S/out.tar"
    save_sk="$(peak skopeo copy -q "oci:$R/images:docker.io/library/$i:latest" "docker-archive:$S/out.tar:$i:latest")"; rm -f "$S/out.tar"

    hyperfine -N --warmup 1 --runs "$RUNS" --export-json "$OUT/load-$i.json" \
        --prepare "rm -rf $S/in" \
        -n box-load "$BIN/box-load --root $S/in -i $A" \
        -n skopeo-docker "skopeo copy -q docker-archive:$A oci:$S/in:$i" \
        -n skopeo-oci "skopeo copy -q oci-archive:$A:latest oci:$S/in:$i" \
        -n tar "tar -C $S --one-top-level=in -xf $A" >&2
    rm -rf "$S/in"
    load_box="$(peak "$BIN/box-load" --root "$S/in" -i "$A")"; rm -rf "$S/in"
    load_sk="$(peak skopeo copy -q "docker-archive:$A" "oci:$S/in:$i")"; rm -rf "$S/in"

    for dir in save load; do
        if [ $dir = save ]; then kb="$save_box"; ks="$save_sk"; else kb="$load_box"; ks="$load_sk"; fi
        python3 - "$OUT/$dir-$i.json" "$i" "$dir" "$kb" "$ks" >>"$OUT/summary.md" <<'PY'
import json, sys
r = {x["command"]: x["median"] for x in json.load(open(sys.argv[1]))["results"]}
fmt = lambda t: f"{t*1000:.1f} ms" if t < 1 else f"{t:.3f} s"
b = r[[k for k in r if k.startswith("box-")][0]]
d, o, t = r["skopeo-docker"], r["skopeo-oci"], r["tar"]
print(f"| {sys.argv[2]} | {sys.argv[3]} | {fmt(b)} | {fmt(d)} | {fmt(o)} | {fmt(t)} | {d/b:.2f}x | {int(sys.argv[4])/1024:.1f} MiB | {int(sys.argv[5])/1024:.1f} MiB |")
PY
    done
    rm -rf "$R" "$A"
done
ln -sfn "saveload-$STAMP" "$BENCH_WORK/results/saveload-latest"
cat "$OUT/summary.md"
