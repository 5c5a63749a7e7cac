#!/usr/bin/env bash
# Lesson 07: box-save writes images with everything they are made of; box-load reads them
# back into another store. Compare with box-export | box-import, which keeps only files.
#
# Needs: the box-* tools on PATH, BOXKIT_ROOT and LESSON_TMP (empty directories). Uses GNU
# tar, gzip, sha256sum, cmp; jq when installed, python3 otherwise, to pretty-print JSON.
set -euo pipefail
export LC_ALL=C TZ=UTC
unset SOURCE_DATE_EPOCH
: "${BOXKIT_ROOT:?set BOXKIT_ROOT to an empty directory}"
: "${LESSON_TMP:?set LESSON_TMP to an empty directory}"
cd "$LESSON_TMP"

step() { printf '\n== %s ==\n' "$*"; }
pretty() {
    if command -v jq >/dev/null 2>&1; then jq .; else python3 -m json.tool --indent 2; fi
}
# The value of a top-level-ish JSON field, good enough for boxkit's compact documents.
field() { sed -n "s/.*\"$1\":\(\[[^]]*\]\|\"[^\"]*\"\).*/\1/p"; }
# An image's config, read back out of a box-save archive: manifest.json names it.
config_of() { # STORE REF
    local c
    BOXKIT_ROOT=$1 box-save "$2" >config-of.tar
    c=$(tar -xOf config-of.tar manifest.json | sed -n 's/.*"Config":"\([^"]*\)".*/\1/p')
    tar -xOf config-of.tar "$c"
}
# What an image's config says beyond its files.
show_meta() { # STORE REF
    local c; c=$(config_of "$1" "$2")
    for f in Cmd created_by comment; do
        v=$(printf '%s' "$c" | field "$f")
        printf '  %-11s %s\n' "$f:" "${v:-(none)}"
    done
}

step "1. an image with a command and a history comment"
mkdir -p rootfs/etc
printf 'hello from inside an image\n' >rootfs/hello.txt
printf 'NAME=tiny\n' >rootfs/etc/os-release
chmod 0755 rootfs rootfs/etc
chmod 0644 rootfs/hello.txt rootfs/etc/os-release
tar --format=pax --pax-option=delete=atime,delete=ctime --sort=name \
    --mtime=@1700000000 --owner=0 --group=0 --numeric-owner -C rootfs -cf tiny.tar .
digest=$(box-import --change 'CMD ["/bin/cat", "/hello.txt"]' -m "built in lesson 07" tiny.tar tiny:1)
echo "box-import ... tiny:1  ->  $digest"

step "2. box-save: every blob as stored, plus index.json and manifest.json"
box-save tiny:1 >saved.tar
tar -tvf saved.tar
echo
echo "index.json (the OCI view):"
tar -xOf saved.tar index.json | pretty
echo
echo "manifest.json (the docker save view of the same blobs):"
tar -xOf saved.tar manifest.json | pretty

step "3. the same images give the same bytes"
box-save tiny:1 >again.tar
cmp saved.tar again.tar && echo "two saves are identical: $(sha256sum <saved.tar | cut -c1-16)…"

step "4. box-load into another store: same name, same manifest digest"
other=$LESSON_TMP/other-store
BOXKIT_ROOT=$other box-load -i saved.tar
BOXKIT_ROOT=$other box-save tiny:1 | cmp - saved.tar && echo "saved again from the other store: identical"
echo "tiny:1 in the other store:"
show_meta "$other" tiny:1

step "5. export and import instead: the files survive, the metadata does not"
box-unpack tiny:1 bundle >/dev/null
box-export bundle | box-import - tiny:flat
echo "tiny:flat:"
show_meta "$BOXKIT_ROOT" tiny:flat
echo "the files are the same:"
echo "  box-export --image tiny:1    | sha256sum  ->  $(box-export --image tiny:1 | sha256sum | cut -c1-16)…"
echo "  box-export --image tiny:flat | sha256sum  ->  $(box-export --image tiny:flat | sha256sum | cut -c1-16)…"

step "6. compressed archives load too"
gzip -n <saved.tar >saved.tar.gz
BOXKIT_ROOT=$LESSON_TMP/third-store box-load -i saved.tar.gz

step "7. a damaged archive is refused, and nothing is named"
cp saved.tar damaged.tar
# Flip one byte inside the first blob (the first file after the two directories).
printf 'X' | dd of=damaged.tar bs=1 seek=$((3 * 512 + 100)) conv=notrunc status=none
if BOXKIT_ROOT=$LESSON_TMP/fourth-store box-load -i damaged.tar 2>err.txt; then
    echo "loaded?!"
else
    sed -e "s/expected sha256:[0-9a-f]*/expected sha256:…/" -e "s/got sha256:[0-9a-f]*/got sha256:…/" \
        -e 's/"blobs\/sha256\/[0-9a-f]*"/"blobs\/sha256\/…"/' err.txt
fi
echo "images named in the fourth store: $(grep -o 'ref.name' "$LESSON_TMP/fourth-store/images/index.json" | wc -l)"
