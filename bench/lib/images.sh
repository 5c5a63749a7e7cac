#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Build the benchmark images offline, as OCI image layouts (tag "latest"), with
# umoci, GNU tar and the host's static busybox. No network.
#
#   bench/lib/images.sh build [busybox layered big]   (default: all three)
#   bench/lib/images.sh list                           digests, layers, sizes
#   bench/lib/images.sh clean                          remove the built layouts
#
# Output: $BENCH_WORK/images/<name>/. An image already built is reused; FORCE=1
# rebuilds. All three are byte-for-byte reproducible: fixed mtimes, fixed
# "created"/history timestamps, pseudo-random content from a fixed seed.
#
#   busybox  1 layer: static busybox + applet symlinks, /etc/passwd, /etc/group
#   layered  6 layers on busybox: added tree, whiteouts (.wh.), an opaque
#            directory (.wh..wh..opq), hardlink, symlinks, fifo, setuid file,
#            a chmod/chown-only change
#   big      3 layers, ~340 MiB unpacked: busybox, 10,000 small files
#            (1/4/16/64 KiB, half random, half base64), 3 x 64 MiB random
#            + 32 MiB of zeros

# shellcheck source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ALL_IMAGES=(busybox layered big)
mkdir -p "$IMG_DIR"

H=() # history flags, fixed timestamps
_hist() { H=(--history.created="$BENCH_CREATED" --history.author=bench --history.created_by="bench: $1"); }

# _repack <layout> <bundle> <what>: normalize mtimes, then commit the bundle's
# rootfs changes as one new layer (and refresh the bundle for the next step).
_repack() {
  normalize_mtimes "$2/rootfs"
  _hist "$3"
  umoci repack "${H[@]}" --refresh-bundle --image "$1:latest" "$2"
}

_finish_config() { # layout cmd...
  local l="$1"; shift
  local args=(--no-history --created="$BENCH_CREATED" --author=bench
    --architecture=amd64 --os=linux
    --config.env="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
  local c; for c in "$@"; do args+=(--config.cmd="$c"); done
  umoci config "${args[@]}" --image "$l:latest"
  umoci gc --layout "$l"
}

# ---- busybox: one layer ------------------------------------------------------
_make_busybox_rootfs() { # rootfs-dir (exists, may be empty)
  local r="$1"
  mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc,root,home,tmp,var/tmp,proc,sys,dev,run}
  chmod 1777 "$r/tmp" "$r/var/tmp"; chmod 700 "$r/root"
  install -m 0755 "$(command -v busybox)" "$r/bin/busybox"
  chroot "$r" /bin/busybox --install -s   # symlinks -> /bin/busybox, per applet dir
  cat >"$r/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
  cat >"$r/etc/group" <<'G'
root:x:0:
nogroup:x:65534:
G
  echo "bench" >"$r/etc/hostname"
  : >"$r/etc/hosts"; : >"$r/etc/resolv.conf"
}

build_busybox() { # out-layout
  local l="$1" b; b="$(mktemp -d "$BENCH_WORK/bundle.XXXXXX")"
  umoci init --layout "$l"
  umoci new --image "$l:latest"
  umoci unpack --image "$l:latest" "$b/bundle"
  _make_busybox_rootfs "$b/bundle/rootfs"
  _repack "$l" "$b/bundle" "busybox rootfs"
  _finish_config "$l" /bin/sh
  rm -rf "$b"
}

# ---- layered: 6 layers, whiteouts, opaque dir, links, metadata change ----------
build_layered() {
  local l="$1" b r f; b="$(mktemp -d "$BENCH_WORK/bundle.XXXXXX")"
  _base_from busybox "$l"
  umoci unpack --image "$l:latest" "$b/bundle"; r="$b/bundle/rootfs"
  # L2: add files and a directory tree
  mkdir -p "$r/data/dir/sub" "$r/data/keep"
  for f in a b c; do printf 'file %s v1\n' "$f" >"$r/data/$f"; done
  printf 'x\n' >"$r/data/dir/x"; printf 'y\n' >"$r/data/dir/sub/y"
  printf 'keep\n' >"$r/data/keep/k"
  printf 'setting=1\n' >"$r/etc/layered.conf"
  _repack "$l" "$b/bundle" "L2 add /data tree"
  # L3: delete a file (whiteout .wh.b) and a directory, modify another file
  rm -f "$r/data/b"; rm -rf "$r/data/keep"
  printf 'file a v2 (modified in L3)\n' >"$r/data/a"
  _repack "$l" "$b/bundle" "L3 delete /data/b and /data/keep, modify /data/a"
  # L4: replace /data/dir wholesale -> opaque whiteout (.wh..wh..opq). Made with
  # GNU tar + `umoci raw add-layer`, not `umoci insert --opaque`: umoci 0.4.7's
  # insert writes a layer tar with no final padding / end-of-archive blocks.
  local o; o="$(mktemp -d "$BENCH_WORK/opq.XXXXXX")"
  mkdir -p "$o/data/dir/newsub"
  printf 'new z\n' >"$o/data/dir/z"; printf 'w\n' >"$o/data/dir/newsub/w"
  : >"$o/data/dir/.wh..wh..opq"
  chmod 0755 "$o/data" "$o/data/dir" "$o/data/dir/newsub"
  chmod 0644 "$o/data/dir/z" "$o/data/dir/newsub/w" "$o/data/dir/.wh..wh..opq"
  tar --format=ustar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 \
    --numeric-owner -cf "$o/layer.tar" -C "$o" data
  _hist "L4 opaque replace /data/dir"
  umoci raw add-layer "${H[@]}" --image "$l:latest" "$o/layer.tar"
  rm -rf "$o" "$b/bundle"
  umoci unpack --image "$l:latest" "$b/bundle"; r="$b/bundle/rootfs"
  [[ -f "$r/data/dir/z" && ! -e "$r/data/dir/x" && ! -e "$r/data/dir/sub" ]] ||
    die "opaque whiteout not applied by umoci unpack"
  # L5: links, odd names, special modes, empty dir, fifo
  ln "$r/data/a" "$r/data/a.hardlink"
  ln -s ../data/c "$r/data/c.symlink"
  ln -s /nonexistent "$r/data/dangling"
  printf 'spaces\n' >"$r/data/name with spaces"
  printf '#!/bin/sh\necho hello from layered\n' >"$r/usr/bin/hello"; chmod 0755 "$r/usr/bin/hello"
  printf 'suid\n' >"$r/data/suid"; chmod 4755 "$r/data/suid"
  mkdir -p "$r/data/empty"; mkfifo "$r/data/fifo"
  _repack "$l" "$b/bundle" "L5 hardlink, symlinks, spaces, suid, empty dir, fifo"
  # L6: metadata-only change (mode + owner) of a file from a lower layer
  chmod 0600 "$r/data/c"; chown 65534:65534 "$r/data/c"
  _repack "$l" "$b/bundle" "L6 chmod/chown /data/c"
  _finish_config "$l" /usr/bin/hello
  rm -rf "$b"
}

# ---- big: ~340 MiB unpacked in 3 layers ---------------------------------------
build_big() {
  local l="$1" b r; b="$(mktemp -d "$BENCH_WORK/bundle.XXXXXX")"
  _base_from busybox "$l"
  umoci unpack --image "$l:latest" "$b/bundle"; r="$b/bundle/rootfs"
  # L2: 10,000 small files (1/4/16/64 KiB), 100 per directory; half
  # incompressible (random), half text-like (base64).
  local spec kib n kind d i
  for spec in 1:4000:b64 4:3000:rnd 16:2000:b64 64:1000:rnd; do
    IFS=: read -r kib n kind <<<"$spec"
    d="$r/small/${kib}k"; mkdir -p "$d"
    if [[ $kind == rnd ]]; then det_random "small$kib" $(( (kib * n + 1023) / 1024 ))
    else det_random "small$kib" $(( (kib * n * 3 / 4 + 1023) / 1024 )) | base64 -w 76
    fi >"$b/blob"
    head -c $((kib * 1024 * n)) "$b/blob" | (cd "$d" && split -a 4 -d -b "$((kib * 1024))" - f)
    rm -f "$b/blob"
    (cd "$d" && for f in f*; do s=$((10#${f#f} / 100)); mkdir -p "d$s"; mv "$f" "d$s/"; done)
  done
  _repack "$l" "$b/bundle" "L2 10000 small files"
  # L3: a few large files: 3 x 64 MiB random + 32 MiB of zeros (compressible)
  mkdir -p "$r/large"
  for i in 1 2 3; do det_random "large$i" 64 >"$r/large/random$i.bin"; done
  head -c $((32 * 1024 * 1024)) /dev/zero >"$r/large/zeros.bin"
  _repack "$l" "$b/bundle" "L3 large files"
  _finish_config "$l" /bin/sh
  rm -rf "$b"
}

# copy a built image's layout as the base of another
_base_from() { FORCE=0 build_one "$1" >/dev/null; cp -a "$IMG_DIR/$1/." "$2/"; }

build_one() { # name -> builds if missing; prints the layout path
  local n="$1" out="$IMG_DIR/$1" tmp
  if [[ -f "$out/index.json" && "${FORCE:-0}" != 1 ]]; then echo "$out"; return 0; fi
  tmp="$IMG_DIR/.$n.tmp"; rm -rf "$tmp"
  log "building image '$n' ..."
  local t0=$SECONDS
  # a child bash, so that `set -e` really applies inside the builder
  if ! bash "$BENCH_DIR/lib/images.sh" _build "$n" "$tmp"; then
    rm -rf "$tmp"; log "building '$n' FAILED"; return 1
  fi
  rm -rf "$out"; mv "$tmp" "$out"
  log "built '$n' in $((SECONDS - t0))s: $(image_digest "$n")"
  echo "$out"
}

images_list() {
  local n m layers csize usize d
  for n in "${ALL_IMAGES[@]}"; do
    have_image "$n" || { printf '%-8s (not built)\n' "$n"; continue; }
    m="$IMG_DIR/$n/blobs/sha256/$(image_digest "$n" | cut -d: -f2)"
    layers="$(jq '.layers|length' "$m")"; csize="$(jq '[.layers[].size]|add' "$m")"
    usize=0
    for d in $(layers_of "$n"); do usize=$((usize + $(gzip -dc "$d" | wc -c))); done
    printf '%-8s %s layers=%s compressed=%sKiB unpacked(tar)=%sKiB\n' "$n" "$(image_digest "$n")" \
      "$layers" "$((csize / 1024))" "$((usize / 1024))"
  done
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  cmd="${1:-build}"; shift || true
  case "$cmd" in
    build)
      need umoci jq tar gzip openssl busybox chroot
      names=("$@"); [[ ${#names[@]} -gt 0 ]] || names=("${ALL_IMAGES[@]}")
      failed=0
      for n in "${names[@]}"; do build_one "$n" >/dev/null || failed=1; done
      exit "$failed" ;;
    list)   images_list ;;
    _build) mkdir -p "$BENCH_WORK"; "build_$1" "$2" ;;   # internal: build_one runs this in a child
    clean)  rm -rf "${IMG_DIR:?}"/* "$IMG_DIR"/.*.tmp "$BENCH_WORK"/bundle.* "$BENCH_WORK"/opq.* ;;
    *) echo "usage: $0 build|list|clean [busybox layered big]" >&2; exit 2 ;;
  esac
fi
