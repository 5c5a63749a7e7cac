#!/usr/bin/env bash
# Lesson 01: an image is a tarball plus a few JSON documents.
#
# Needs: the box-* tools on PATH, BOXKIT_ROOT (an empty directory: the image store goes in
# $BOXKIT_ROOT/images) and LESSON_TMP (an empty scratch directory). Uses GNU tar, gzip and
# sha256sum; jq when installed, python3 otherwise, only to pretty-print JSON.
set -euo pipefail
export LC_ALL=C TZ=UTC
unset SOURCE_DATE_EPOCH
: "${BOXKIT_ROOT:?set BOXKIT_ROOT to an empty directory}"
: "${LESSON_TMP:?set LESSON_TMP to an empty directory}"
cd "$LESSON_TMP"
images=$BOXKIT_ROOT/images

step() { printf '\n== %s ==\n' "$*"; }

# Pretty-print JSON (2-space indent, keys in document order).
pretty() {
    if command -v jq >/dev/null 2>&1; then
        jq .
    else
        python3 -m json.tool --indent 2
    fi
}

# The digest of the first descriptor under KEY in a compact JSON document, e.g.
# `first_digest config manifest.json`. boxkit writes canonical JSON without spaces,
# which keeps this sed expression simple.
first_digest() {
    sed -n "s/.*\"$1\":[[{]*{[^}]*\"digest\":\"\(sha256:[0-9a-f]*\)\".*/\1/p" "$2"
}

# A path inside the store for a digest: sha256:abc… -> $images/blobs/sha256/abc…
blob() { printf '%s/blobs/sha256/%s' "$images" "${1#sha256:}"; }

step "1. a root filesystem is a directory tree"
mkdir -p rootfs/bin rootfs/etc
printf 'hello from inside an image\n' >rootfs/hello.txt
printf 'NAME=tiny\n' >rootfs/etc/os-release
printf '#!/bin/sh\necho hi\n' >rootfs/bin/hi
ln -s ../hello.txt rootfs/etc/motd
chmod 0755 rootfs rootfs/bin rootfs/etc rootfs/bin/hi
chmod 0644 rootfs/hello.txt rootfs/etc/os-release
tar --format=pax --pax-option=delete=atime,delete=ctime --sort=name \
    --mtime=@1700000000 --owner=0 --group=0 --numeric-owner \
    -C rootfs -cf tiny.tar .
echo "tar -tvf tiny.tar:"
tar -tvf tiny.tar

step "2. box-import turns the tar into an image and prints the manifest digest"
digest=$(box-import tiny.tar tiny)
echo "box-import tiny.tar tiny  ->  $digest"

step "3. the image store is an OCI image layout: plain files"
(cd "$images" && find . -type f | sort | while read -r f; do printf '%6s bytes  %s\n' "$(wc -c <"$f")" "${f#./}"; done)
echo
echo "oci-layout:"
cat "$images/oci-layout"
echo
echo
echo "index.json (the list of tagged images):"
pretty <"$images/index.json"

step "4. the manifest: one config and the layers, each named by digest"
cp "$(blob "$digest")" manifest.json
pretty <manifest.json
config=$(first_digest config manifest.json)
layer=$(first_digest layers manifest.json)

step "5. the config: runtime defaults and the diff_ids of the layers"
cp "$(blob "$config")" config.json
pretty <config.json
diff_id=$(sed -n 's/.*"diff_ids":\["\(sha256:[0-9a-f]*\)".*/\1/p' config.json)

step "6. content addressing: every blob's name is the sha256 of its bytes"
(cd "$images" && sha256sum blobs/sha256/* | while read -r sum path; do
    if [ "$sum" = "${path##*/}" ]; then verdict=ok; else verdict=MISMATCH; fi
    printf 'sha256sum %s…  ->  %s…  %s\n' "${path:0:25}" "${sum:0:12}" "$verdict"
done)
echo
echo "the layer blob is gzip-compressed; its uncompressed tar is what diff_ids name:"
echo "  layer digest (compressed):  $layer"
echo "  sha256 of gzip -dc layer:   sha256:$(gzip -dc <"$(blob "$layer")" | sha256sum | cut -d' ' -f1)"
echo "  diff_id in the config:      $diff_id"
echo
echo "tar -tvzf <layer blob>  (box-import rewrote the entries in sorted order):"
tar -tvzf "$(blob "$layer")"

step "7. the same input gives the same digest, in any store, in any entry order"
again=$(box-import tiny.tar tiny-again)
echo "same tar, imported again:           $again"
other=$(BOXKIT_ROOT="$LESSON_TMP/other-store" box-import tiny.tar tiny)
echo "same tar, into another store:       $other"
(cd rootfs && find . | sort -r) >reversed.list
tar --no-recursion --mtime=@1700000000 --owner=0 --group=0 --numeric-owner \
    -C rootfs -czf reordered.tar.gz -T reversed.list
reordered=$(box-import reordered.tar.gz tiny-reordered)
echo "entries reversed, gzip-compressed:  $reordered"
printf 'hello from inside an image!\n' >rootfs/hello.txt
tar --sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner -C rootfs -cf changed.tar .
changed=$(box-import changed.tar tiny-changed)
echo "one byte added to hello.txt:        $changed"

step "8. references are normalized before they are stored"
box-import tiny.tar tiny:v1 >/dev/null
box-import tiny.tar alice/tiny >/dev/null
box-import tiny.tar localhost:5000/team/tiny:dev >/dev/null
echo "names in index.json (org.opencontainers.image.ref.name):"
grep -o '"org.opencontainers.image.ref.name":"[^"]*"' "$images/index.json" | cut -d'"' -f4

step "9. the round trip: image -> bundle -> tar -> image"
echo "box-unpack tiny bundle  ->  $(box-unpack tiny bundle)"
echo "box-export bundle | tar -tvf -:"
box-export bundle | tar -tvf -
copy=$(box-export bundle | box-import - tiny-copy)
echo "box-export bundle | box-import - tiny-copy  ->  $copy"
if [ "$copy" = "$digest" ]; then
    echo "the same digest as tiny: the tree survived the round trip unchanged"
else
    echo "a different digest from tiny's $digest"
fi
