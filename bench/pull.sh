#!/usr/bin/env bash
# box-pull against skopeo copy, on the same images from the same loopback registry,
# measured in one hyperfine run per image, plus each tool's peak memory.
#
#   bash bench/pull.sh            # small, many-layer and large images
#   QUICK=1 bash bench/pull.sh    # fewer runs, no large image
#
# Images are built offline: "small" is the busybox rootfs (1 layer), "layers" is 40 layers
# of 200 small files each, "large" is 3 layers of 64 MiB of pseudo-random data (openssl
# AES-CTR over zeros, so it is the same on every run). They live in $BENCH_WORK/pull-images
# as OCI layouts and are pushed with skopeo to a docker-registry on 127.0.0.1 that this
# script starts and stops. Pull targets are on a tmpfs. Results: $BENCH_WORK/results/pull-<time>/.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_WORK="${BENCH_WORK:-/tmp/boxkit-bench}"
QUICK="${QUICK:-0}"
say() { printf 'bench/pull.sh: %s\n' "$*" >&2; }

# shellcheck source=lib/common.sh
source bench/lib/common.sh
bench_start pull hyperfine skopeo docker-registry umoci openssl python3

IMG="$BENCH_WORK/pull-images"
SCRATCH="$BENCH_WORK/pull-scratch"
mkdir -p "$IMG" "$OUT" "$SCRATCH"

REG_PID=""
cleanup() {
    set +e # every step runs, whatever the one before returned
    if [ -n "$REG_PID" ]; then kill "$REG_PID" 2>/dev/null; wait "$REG_PID" 2>/dev/null; fi
    unmount_under "$SCRATCH"
    rm -rf "$BENCH_WORK/pull-registry"
}
trap cleanup EXIT
mountpoint -q "$SCRATCH" || mount -t tmpfs -o size=4g tmpfs "$SCRATCH"

# ---- images ------------------------------------------------------------------
layer_tar() { # dir out.tar
    tar --format=pax --pax-option=delete=atime,delete=ctime --sort=name --mtime=@1700000000 \
        --owner=0 --group=0 --numeric-owner -C "$1" -cf "$2" .
}
build() { # name
    local name="$1" l="$IMG/$1" t; t="$(mktemp -d)"
    [ -f "$l/index.json" ] && return 0
    say "building image $name"
    umoci init --layout "$l" && umoci new --image "$l:latest"
    case "$name" in
        small)
            bash testdata/busybox/make-rootfs.sh "$t/rootfs.tar"
            umoci raw add-layer --image "$l:latest" "$t/rootfs.tar" ;;
        layers)
            for i in $(seq -w 1 40); do
                mkdir -p "$t/$i/layer$i"
                for f in $(seq 1 200); do printf 'layer %s file %s\n' "$i" "$f" >"$t/$i/layer$i/f$f"; done
                layer_tar "$t/$i" "$t/$i.tar"
                umoci raw add-layer --image "$l:latest" "$t/$i.tar"
            done ;;
        large)
            for i in 1 2 3; do
                mkdir -p "$t/$i/data"
                openssl enc -aes-256-ctr -nosalt -K "$(printf '%064d' "$i")" -iv "$(printf '%032d' 0)" \
                    -in <(head -c $((64 << 20)) /dev/zero) -out "$t/$i/data/blob$i" 2>/dev/null
                layer_tar "$t/$i" "$t/$i.tar"
                umoci raw add-layer --image "$l:latest" "$t/$i.tar"
            done ;;
    esac
    umoci config --image "$l:latest" --config.cmd=/bin/sh --architecture=amd64 --os=linux
    umoci gc --layout "$l"
    rm -rf "$t"
}
IMAGES=(small layers)
[ "$QUICK" = 1 ] || IMAGES+=(large)
for i in "${IMAGES[@]}"; do build "$i"; done

# ---- registry ----------------------------------------------------------------
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
mkdir -p "$BENCH_WORK/pull-registry"
cat >"$BENCH_WORK/pull-registry/config.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $BENCH_WORK/pull-registry/data}}
http: {addr: "127.0.0.1:$PORT", secret: bench}
YML
docker-registry serve "$BENCH_WORK/pull-registry/config.yml" >/dev/null 2>&1 &
REG_PID=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
for i in "${IMAGES[@]}"; do
    skopeo copy -q --dest-tls-verify=false "oci:$IMG/$i:latest" "docker://127.0.0.1:$PORT/bench/$i:latest"
done

# ---- timing --------------------------------------------------------------------
RUNS=10; [ "$QUICK" = 1 ] && RUNS=3
peak() { # command... -> KiB of the largest child
    python3 -c 'import resource,subprocess,sys; subprocess.run(sys.argv[1:],check=True,stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "$@"
}
{
    echo "# box-pull vs skopeo copy"
    echo
    echo "- date: $(date -u +%FT%TZ); machine: $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB, $(uname -r)"
    echo "- boxkit $(git rev-parse --short HEAD); $(skopeo --version); registry: docker-registry on 127.0.0.1 (plain HTTP)"
    echo "- targets on tmpfs, removed before each run; registry storage in the page cache"
    echo
    echo "| image | box-pull median | skopeo median | skopeo / box-pull | box-pull peak RSS | skopeo peak RSS |"
    echo "|---|---:|---:|---:|---:|---:|"
} >"$OUT/summary.md"
for i in "${IMAGES[@]}"; do
    ref="127.0.0.1:$PORT/bench/$i:latest"
    hyperfine -N --warmup 1 --runs "$RUNS" --export-json "$OUT/$i.json" \
        --prepare "rm -rf $SCRATCH/box $SCRATCH/sk" \
        -n box-pull "$BIN/box-pull --root $SCRATCH/box -q $ref" \
        -n skopeo "skopeo copy -q --src-tls-verify=false docker://$ref oci:$SCRATCH/sk:latest" >&2
    rm -rf "$SCRATCH/box" "$SCRATCH/sk"
    box_kib="$(peak "$BIN/box-pull" --root "$SCRATCH/box" -q "$ref")"
    sk_kib="$(peak skopeo copy -q --src-tls-verify=false "docker://$ref" "oci:$SCRATCH/sk:latest")"
    rm -rf "$SCRATCH/box" "$SCRATCH/sk"
    python3 - "$OUT/$i.json" "$i" "$box_kib" "$sk_kib" >>"$OUT/summary.md" <<'PY'
import json, sys
r = {x["command"]: x["median"] for x in json.load(open(sys.argv[1]))["results"]}
b, s = r["box-pull"], r["skopeo"]
fmt = lambda t: f"{t*1000:.1f} ms" if t < 1 else f"{t:.3f} s"
print(f"| {sys.argv[2]} | {fmt(b)} | {fmt(s)} | {s/b:.2f}x | {int(sys.argv[3])/1024:.1f} MiB | {int(sys.argv[4])/1024:.1f} MiB |")
PY
done
{
    echo
    echo "Goals: at least 1.5x skopeo's speed on the many-layer image; peak memory under 30 MiB whatever the size."
} >>"$OUT/summary.md"
ln -sfn "pull-$STAMP" "$BENCH_WORK/results/pull-latest"
cat "$OUT/summary.md"
