#!/usr/bin/env bash
# Lesson 06: change a file in a container, delete another, and commit the bundle as a new
# image; find the whiteout that records the deletion in the new layer.
#
# Needs: the box-* tools on PATH, BOXKIT_ROOT and LESSON_TMP (empty directories), BOXKIT_SRC
# (the boxkit source tree, for testdata/busybox/make-rootfs.sh, which wants a static busybox
# on the host), python3, GNU tar, root (box-spawn creates namespaces and mounts).
#
# The output is the same on every machine: SOURCE_DATE_EPOCH is set for the commits, so
# the new layer's times (and so its digest) do not depend on when the lesson runs; digests
# that depend on this machine's busybox binary are not printed.
set -euo pipefail
export LC_ALL=C TZ=UTC
unset SOURCE_DATE_EPOCH
: "${BOXKIT_ROOT:?set BOXKIT_ROOT to an empty directory}"
: "${LESSON_TMP:?set LESSON_TMP to an empty directory}"
: "${BOXKIT_SRC:?set BOXKIT_SRC to the boxkit source tree}"
cd "$LESSON_TMP"

step() { printf '\n== %s ==\n' "$*"; }
blobs=$BOXKIT_ROOT/images/blobs/sha256

# json FILE EXPR: print a Python expression over the JSON document in FILE (as d).
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
# manifest REF: the path of an image's manifest blob.
manifest() { local d; d=$(python3 -c "import json,sys; print([m['digest'] for m in json.load(open(sys.argv[1]))['manifests'] if m.get('annotations',{}).get('org.opencontainers.image.ref.name')==sys.argv[2]][0])" "$BOXKIT_ROOT/images/index.json" "docker.io/library/$1"); echo "$blobs/${d#sha256:}"; }
# layer REF: the digest of an image's last layer.
layer() { json "$(manifest "$1")" "d['layers'][-1]['digest']"; }

step "1. an image, and a container made from it"
bash "$BOXKIT_SRC/testdata/busybox/make-rootfs.sh" busybox.tar 2>/dev/null
box-import --change 'CMD ["sh"]' busybox.tar busybox >/dev/null
box-unpack busybox box1 >/dev/null
echo "ls box1: $(ls box1 | tr '\n' ' ')"
echo "box-unpack recorded every path it wrote in box1/rootfs.mtree (mtree(5) style), e.g.:"
grep -E '^\./etc/(hosts|passwd) ' box1/rootfs.mtree | sed -E 's/ inode=[0-9]+ ctime=[0-9.]+//; s/^/  /'
echo "  (one line per path; inode and ctime, which differ on every machine, left out here)"

step "2. in the container: write /etc/motd, delete /etc/hosts"
box-spawn box1 -- sh -c 'echo "hello from lesson 06" > /etc/motd; rm /etc/hosts'
echo "the rootfs now differs from the record in two places; box-commit finds them."

step "3. box-commit box1 greeted:1"
export SOURCE_DATE_EPOCH=1700000000
box-commit -m "add motd, drop hosts" -a "A. Learner <learner@example.org>" -c 'ENV GREETING=hello' box1 greeted:1 >/dev/null
m=$(manifest greeted:1)
echo "layers in the manifest: $(json "$m" "len(d['layers'])") (busybox's one, plus the new one)"
echo "media type of the new layer: $(json "$m" "d['layers'][-1]['mediaType']")"
echo "new layer: $(layer greeted:1)"

step "4. the new layer, with tar -tvf"
l=$(layer greeted:1)
tar -tvzf "$blobs/${l#sha256:}" | sed 's/^/  /'
echo "etc/.wh.hosts is the whiteout: an empty file whose name says 'delete hosts from the layers below'."
echo "etc/ is there because something in it changed (its mode and owner travel with it)."

step "5. the new config: history and diff_ids"
c=$(json "$m" "d['config']['digest'][7:]")
json "$blobs/$c" "'diff_ids: %d' % len(d['rootfs']['diff_ids'])"
json "$blobs/$c" "'\n'.join('history[%d]: created_by=%r comment=%r author=%r' % (i, h.get('created_by'), h.get('comment'), h.get('author')) for i, h in enumerate(d['history']))"
json "$blobs/$c" "'created: %s  Env: %s' % (d['created'], d['config'].get('Env'))"

step "6. a container of the committed image"
box-unpack greeted:1 box2 >/dev/null
box-spawn box2 -- sh -c 'cat /etc/motd; test -e /etc/hosts || echo "no /etc/hosts"; echo "GREETING=$GREETING"'

step "7. the same changes give the same layer"
box-unpack busybox box3 >/dev/null
box-spawn box3 -- sh -c 'echo "hello from lesson 06" > /etc/motd; rm /etc/hosts'
box-commit -m "add motd, drop hosts" -a "A. Learner <learner@example.org>" -c 'ENV GREETING=hello' box3 greeted:2 >/dev/null
if [ "$(layer greeted:1)" = "$(layer greeted:2)" ]; then echo "same layer digest: yes"; else echo "same layer digest: NO"; fi
if [ "$(manifest greeted:1)" = "$(manifest greeted:2)" ]; then echo "same image digest: yes"; else echo "same image digest: NO"; fi

step "8. a real file named .wh.* cannot be committed"
touch box3/rootfs/tmp/.wh.secret
if box-commit box3 sneaky:1 >/dev/null 2>err.txt; then
    echo "committed (it should not have been)"
else
    echo "box-commit exit $?:"
    sed 's/^/  /' err.txt
fi
echo "sneaky:1 in the store: $(grep -c sneaky "$BOXKIT_ROOT/images/index.json" || true)"
