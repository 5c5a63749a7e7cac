#!/usr/bin/env bash
# Lesson 02: layers are applied one over another; whiteouts delete what lower layers made.
#
# Needs: the box-* tools on PATH, BOXKIT_ROOT and LESSON_TMP (empty directories), BOXKIT_SRC
# (the boxkit source tree, for testdata/layers/make-fixtures.py), python3, GNU tar,
# sha256sum. The multi-layer images are written by hand, with the shell, as an OCI image
# layout in $LESSON_TMP/layout: box-import only ever makes one-layer images.
set -euo pipefail
export LC_ALL=C TZ=UTC
unset SOURCE_DATE_EPOCH
: "${BOXKIT_ROOT:?set BOXKIT_ROOT to an empty directory}"
: "${LESSON_TMP:?set LESSON_TMP to an empty directory}"
: "${BOXKIT_SRC:?set BOXKIT_SRC to the boxkit source tree}"
cd "$LESSON_TMP"

step() { printf '\n== %s ==\n' "$*"; }

# Every path under DIR, sorted: directories end in /, symlinks show their target,
# files their content.
show_tree() {
    (cd "$1" && find . -mindepth 1 | sort | while read -r p; do
        p=${p#./}
        if [ -L "$p" ]; then
            printf '  %s -> %s\n' "$p" "$(readlink "$p")"
        elif [ -d "$p" ]; then
            printf '  %s/\n' "$p"
        else
            printf '  %-16s "%s"\n' "$p" "$(cat "$p")"
        fi
    done)
}

step "1. the layers: tar files made by testdata/layers/make-fixtures.py"
python3 "$BOXKIT_SRC/testdata/layers/make-fixtures.py" fixtures >/dev/null
for t in base whiteout opaque opaque-last; do
    echo "tar -tvf $t.tar:"
    tar -tvf "fixtures/$t.tar" | sed 's/^/  /'
done

step "2. an OCI image layout written by hand"
# The OCI name of this machine's architecture, as box-import writes it.
case $(uname -m) in
    x86_64) arch=amd64 ;;
    aarch64) arch=arm64 ;;
    *) arch=$(uname -m) ;;
esac
mkdir -p layout/blobs/sha256
printf '{"imageLayoutVersion":"1.0.0"}' >layout/oci-layout
names=()      # "digest  file" for every blob, to show digests by the name of what they hash
entries=()    # the descriptors that go into index.json

# put FILE: store FILE as a blob; prints "sha256:<hex> <size>".
put() {
    local hex size
    hex=$(sha256sum "$1" | cut -d' ' -f1)
    size=$(wc -c <"$1")
    cp "$1" "layout/blobs/sha256/$hex"
    echo "sha256:$hex $size"
}

# image TAG LAYER.tar…: a config and a manifest for these (uncompressed) layers, base first.
image() {
    local tag=$1 diff_ids="" layers="" d s f
    shift
    for f in "$@"; do
        read -r d s < <(put "fixtures/$f")
        names+=("$d {$f}")
        # An uncompressed layer's digest is also its diff_id.
        diff_ids+="${diff_ids:+,}\"$d\""
        layers+="${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"$d\",\"size\":$s}"
    done
    printf '{"architecture":"%s","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[%s]}}' \
        "$arch" "$diff_ids" >"config-$tag.json"
    read -r d s < <(put "config-$tag.json")
    names+=("$d {config-$tag.json}")
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[%s]}' \
        "$d" "$s" "$layers" >"manifest-$tag.json"
    read -r d s < <(put "manifest-$tag.json")
    names+=("$d {manifest-$tag.json}")
    entries+=("{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"$d\",\"size\":$s,\"annotations\":{\"org.opencontainers.image.ref.name\":\"docker.io/library/layers-demo:$tag\"}}")
}

image base base.tar
image whiteout base.tar whiteout.tar
image opaque base.tar opaque.tar
image opaque-last base.tar opaque-last.tar
image whiteout-after-file base.tar whiteout-after-file.tar
image bad-whiteout base.tar attack-whiteout-names.dotdot.tar
image symlink-escape attack-symlink-dir.tar
(IFS=,; printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}' "${entries[*]}") >layout/index.json

# Show a document with each digest replaced by {the file it is the sha256 of}.
by_name() {
    local n sed_args=()
    for n in "${names[@]}"; do sed_args+=(-e "s/${n%% *}/sha256:${n#* }/g"); done
    sed "${sed_args[@]}" "$1"
}
echo "layout/ holds oci-layout, index.json and $(ls layout/blobs/sha256 | wc -l) blobs."
echo "The manifest of layers-demo:whiteout (each digest shown as {the file it hashes}):"
by_name manifest-whiteout.json | python3 -m json.tool --indent 2
echo "Its config:"
by_name config-whiteout.json | sed "s/\"$arch\"/\"<this machine>\"/" | python3 -m json.tool --indent 2

step "3. the base image alone"
box-unpack --layout layout layers-demo:base b-base >/dev/null
show_tree b-base/rootfs

step "4. base + whiteout.tar: .wh.b deletes data/b, .wh.keep deletes the directory data/keep"
box-unpack --layout layout layers-demo:whiteout b-whiteout >/dev/null
show_tree b-whiteout/rootfs
echo "what changed, as diff -r sees it:"
diff -r b-base/rootfs b-whiteout/rootfs | sed "s|b-base/rootfs|base|g; s|b-whiteout/rootfs|whiteout|g; s/^/  /" || true

step "5. base + opaque.tar: .wh..wh..opq hides everything lower layers put in data/dir"
box-unpack --layout layout layers-demo:opaque b-opaque >/dev/null
show_tree b-opaque/rootfs/data/dir

step "6. order inside a tar does not matter"
box-unpack --layout layout layers-demo:opaque-last b-opaque-last >/dev/null
if diff -r b-opaque/rootfs b-opaque-last/rootfs >/dev/null; then
    echo "opaque marker first or last: identical trees"
else
    echo "opaque marker first or last: DIFFERENT trees"
fi
box-unpack --layout layout layers-demo:whiteout-after-file b-after >/dev/null
echo "whiteout-after-file.tar writes data/b, then data/.wh.b; the result:"
echo "  data/b \"$(cat b-after/rootfs/data/b)\"  (a whiteout only hides what lower layers made)"

step "7. the markers never reach the root filesystem"
for b in b-whiteout b-opaque b-opaque-last b-after; do
    echo "$b: $(find "$b/rootfs" -name '.wh.*' | wc -l) .wh.* files"
done

step "8. hostile layers"
echo "a whiteout named .wh.. (it would delete the directory holding it):"
if box-unpack --layout layout layers-demo:bad-whiteout b-bad >/dev/null 2>err.txt; then
    echo "  unpacked (it should not have been)"
else
    echo "  box-unpack refused, exit $?: $(sed 's/.*: entry/entry/' err.txt)"
fi
echo "  bundle left behind: $(if [ -e b-bad ]; then echo yes; else echo no; fi)"
echo "a symlink loop -> ../../../../../../tmp/boxkit-victim, then a file loop/pwned:"
box-unpack --layout layout layers-demo:symlink-escape b-escape >/dev/null
show_tree b-escape/rootfs

step "9. box-import takes a root filesystem, not a layer"
if box-import fixtures/whiteout.tar not-a-rootfs >/dev/null 2>err.txt; then
    echo "imported (it should not have been)"
else
    echo "box-import fixtures/whiteout.tar: exit $?"
    sed 's/^/  /' err.txt
fi
