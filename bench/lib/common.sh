#!/usr/bin/env bash
# Shared helpers for the boxkit benchmarks. Source, don't execute.
# All state lives under $BENCH_WORK (default /tmp/boxkit-bench); nothing outside
# it and the repository's target/ directory is written.

[[ -n "${_BOXKIT_BENCH_COMMON:-}" ]] && return 0
_BOXKIT_BENCH_COMMON=1

BENCH_DIR="${BENCH_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
BENCH_WORK="${BENCH_WORK:-/tmp/boxkit-bench}"
IMG_DIR="$BENCH_WORK/images"
# Fixed timestamp for every file mtime and image "created" field, so that the
# images are reproducible (2024-01-01T00:00:00Z).
SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1704067200}"
export SOURCE_DATE_EPOCH
# shellcheck disable=SC2034  # used by images.sh
BENCH_CREATED="$(date -u -d "@${SOURCE_DATE_EPOCH}" +%Y-%m-%dT%H:%M:%SZ)"
# Seed of the deterministic "random" file contents of the big image. The value
# matches the one of the peer measurements this harness was derived from, so the
# busybox, layered and big images have the same digests there and here.
BENCH_SEED="${BENCH_SEED:-bench-peers-seed-v1}"

log()  { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die()  { log "ERROR: $*"; exit 1; }

# need CMD... : fail with the Debian package to install for whatever is missing
need() {
  local c missing=() pkgs=()
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 && continue
    missing+=("$c")
    case "$c" in
      busybox) pkgs+=(busybox-static) ;;
      unshare|mountpoint) pkgs+=(util-linux) ;;
      cargo) ;;
      *) pkgs+=("$c") ;;
    esac
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  log "missing tools: ${missing[*]}"
  [[ ${#pkgs[@]} -gt 0 ]] && log "install them with:  apt-get install -y ${pkgs[*]}"
  [[ " ${missing[*]} " == *" cargo "* ]] && log "cargo: install a Rust toolchain (rustup, or apt-get install -y cargo)"
  exit 1
}

# bench_start NAME TOOL... : as root, with the tools (else the packages to install), after a
# release build: sets BIN (the built tools), STAMP and OUT ($BENCH_WORK/results/NAME-STAMP).
bench_start() {
  local name=$1; shift
  [[ "$(id -u)" = 0 ]] || die "run as root"
  need "$@"
  cargo build --release --workspace --locked -q
  BIN="${CARGO_TARGET_DIR:-$PWD/target}/release"
  STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
  OUT="$BENCH_WORK/results/$name-$STAMP"
  mkdir -p "$OUT"
}

# unmount_under DIR : unmount everything mounted at or below DIR (deepest first), remove DIR.
unmount_under() {
  local m
  set +e # at exit: every step runs, whatever the one before returned
  for m in $(awk -v p="$1" '$5 == p || index($5, p "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
    umount "$m"
  done
  rm -rf "$1"
}

# Set every mtime/atime under a tree (without following symlinks) to
# SOURCE_DATE_EPOCH, so layer tarballs do not depend on build time.
normalize_mtimes() {
  find "$1" -exec touch -h -d "@${SOURCE_DATE_EPOCH}" {} + 2>/dev/null || true
}

# Deterministic pseudo-random bytes: N MiB from a seed, via an AES-CTR keystream.
det_random() { # det_random <seed> <MiB> > file
  local seed="$1" mib="$2"
  head -c "$((mib * 1024 * 1024))" /dev/zero |
    openssl enc -aes-256-ctr -nosalt -pass "pass:${BENCH_SEED}-${seed}" -pbkdf2 -iter 1 2>/dev/null
}

image_digest() { jq -r '.manifests[0].digest' "$IMG_DIR/$1/index.json"; }
have_image() { [[ -f "$IMG_DIR/$1/index.json" ]]; }

layers_of() { # layers_of <image> -> layer blob paths, base first
  local l="$IMG_DIR/$1" m
  m="$l/blobs/sha256/$(image_digest "$1" | cut -d: -f2)"
  jq -r '.layers[].digest|sub("sha256:";"")' "$m" | sed "s|^|$l/blobs/sha256/|"
}
