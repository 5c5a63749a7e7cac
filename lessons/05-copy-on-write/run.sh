#!/usr/bin/env bash
# Lesson 05: two containers from one image share its layers; each writes to its own upper/.
#
# Needs: the box-* tools on PATH, BOXKIT_ROOT and LESSON_TMP (empty directories, not on
# overlayfs), BOXKIT_SRC (the boxkit source tree, for testdata/busybox/make-rootfs.sh, which
# wants a static busybox on the host), root (box-mount-layers and box-spawn mount).
set -euo pipefail
export LC_ALL=C TZ=UTC
unset SOURCE_DATE_EPOCH
: "${BOXKIT_ROOT:?set BOXKIT_ROOT to an empty directory}"
: "${LESSON_TMP:?set LESSON_TMP to an empty directory}"
: "${BOXKIT_SRC:?set BOXKIT_SRC to the boxkit source tree}"
cd "$LESSON_TMP"
here=$(pwd -P)
BOXKIT_ROOT=$(cd "$BOXKIT_ROOT" && pwd -P)

step() { printf '\n== %s ==\n' "$*"; }

# The overlay mounted on DIR, from /proc/self/mountinfo: "lower" lines (top first), then
# upper and work. Kernels from 6.8 list each layer as lowerdir+=…, older ones as one
# lowerdir=a:b; both are shown the same way. Paths are shown relative to $BOXKIT_ROOT and
# $LESSON_TMP, and the layer's digest as {busybox layer}.
overlay_of() {
    local opts
    opts=$(awk -v t="$1" '$5 == t { print $NF }' /proc/self/mountinfo)
    [ -n "$opts" ] || { echo "  (not mounted)"; return; }
    tr ',' '\n' <<<"$opts" | while IFS= read -r o; do
        case $o in
            lowerdir+=*) echo "  lower  ${o#lowerdir+=}" ;;
            lowerdir=*) tr ':' '\n' <<<"${o#lowerdir=}" | sed 's/^/  lower  /' ;;
            upperdir=*) echo "  upper  ${o#upperdir=}" ;;
            workdir=*) echo "  work   ${o#workdir=}" ;;
        esac
    done | sed -e "s|$BOXKIT_ROOT|\$BOXKIT_ROOT|; s|$here|\$LESSON_TMP|; s|sha256/$layer|sha256/{busybox layer}|"
}

# What a directory holds, as a layer would say it: files, directories, whiteouts.
show_upper() {
    (cd "$1" && find . -mindepth 1 | sort | while read -r p; do
        p=${p#./}
        if [ -c "$p" ] && [ "$(stat -c %t:%T "$p")" = 0:0 ]; then
            printf '  %-12s character device 0:0: a whiteout, %s is deleted\n' "$p" "/$p"
        elif [ -d "$p" ]; then
            printf '  %-12s directory\n' "$p/"
        else
            printf '  %-12s file, %s lines\n' "$p" "$(wc -l <"$p")"
        fi
    done)
}

# Disk use of a tree in KiB, not crossing into mounts.
kib() { du -skx "$1" | cut -f1; }

step "1. one image, two containers"
bash "$BOXKIT_SRC/testdata/busybox/make-rootfs.sh" busybox.tar 2>/dev/null
box-import --change 'CMD ["sh"]' busybox.tar busybox >/dev/null
echo "box-mount-layers busybox c1  ->  $(box-mount-layers busybox c1 | sed "s|$here|\$LESSON_TMP|")"
echo "box-mount-layers busybox c2  ->  $(box-mount-layers busybox c2 | sed "s|$here|\$LESSON_TMP|")"
echo "c1 holds: $(cd c1 && echo *)"
python3 -c 'import json,sys; i=json.load(open(sys.argv[1])); print("c1/boxkit.json: storage", i["storage"] + ",", len(i["layers"]), "layer")' c1/boxkit.json

step "2. the layer cache: each layer extracted once"
layer=$(ls "$BOXKIT_ROOT/layers/sha256")
echo "\$BOXKIT_ROOT/layers/sha256/ holds $(ls "$BOXKIT_ROOT/layers/sha256" | wc -l) directory: {busybox layer}"
diff_id=$(python3 - "$BOXKIT_ROOT/images" <<'PY'
import json, sys
d = sys.argv[1]
blob = lambda digest: json.load(open(f"{d}/blobs/sha256/{digest.split(':')[1]}"))
manifest = blob(json.load(open(f"{d}/index.json"))["manifests"][0]["digest"])
print(blob(manifest["config"]["digest"])["rootfs"]["diff_ids"][0])
PY
)
if [ "sha256:$layer" = "$diff_id" ]; then
    echo "its name is the layer's diff_id in the image config: the sha256 of the uncompressed tar"
fi
echo "bin/busybox in the cache and in both containers is one inode:"
for f in "$BOXKIT_ROOT/layers/sha256/$layer/bin/busybox" c1/rootfs/bin/busybox c2/rootfs/bin/busybox; do
    stat -c %i "$f"
done | uniq -c | awk '{ print "  " $1 " paths, 1 inode" }'

step "3. the mounts, from /proc/self/mountinfo"
for c in c1 c2; do
    echo "$c/rootfs:"
    overlay_of "$here/$c/rootfs"
done
lower() { overlay_of "$here/$1/rootfs" | grep lower; }
if [ "$(lower c1)" = "$(lower c2)" ]; then echo "c1 and c2 stack the same lower directories"; fi

step "4. what the second container cost"
layer_kib=$(kib "$BOXKIT_ROOT/layers")
for c in c1 c2; do
    if [ $(( $(kib $c) * 20 )) -lt "$layer_kib" ]; then
        echo "$c (without its mount): less than 5% of the layer cache"
    else
        echo "$c (without its mount): $(kib $c) KiB, the cache $layer_kib KiB"
    fi
done
before=$(kib "$BOXKIT_ROOT/layers")
box-mount-layers busybox c3 >/dev/null
echo "a third container: the cache grew by $(( $(kib "$BOXKIT_ROOT/layers") - before )) KiB"
box-mount-layers --unmount c3 >/dev/null

step "5. a write in c1 lands in c1/upper only"
box-spawn c1 -- sh -c 'echo "# edited in c1" >> /etc/passwd; echo hello > /hello; rm /bin/ls'
echo "c1/upper:"
show_upper c1/upper
echo "c2/upper: $(ls c2/upper | wc -l) entries"
echo "in c1: $(box-spawn c1 -- sh -c 'echo "last line of /etc/passwd \"$(tail -1 /etc/passwd)\", /hello $(cat /hello), /bin/ls $(if [ -e /bin/ls ]; then echo exists; else echo absent; fi)"')"
echo "in c2: /hello $(box-spawn c2 -- sh -c 'if [ -e /hello ]; then echo exists; else echo absent; fi'), /bin/ls $(box-spawn c2 -- sh -c 'if [ -e /bin/ls ]; then echo exists; else echo absent; fi')"
echo "in the cache: /hello $(if [ -e "$BOXKIT_ROOT/layers/sha256/$layer/hello" ]; then echo exists; else echo absent; fi), /bin/ls $(if [ -e "$BOXKIT_ROOT/layers/sha256/$layer/bin/ls" ]; then echo exists; else echo absent; fi)"
echo "/etc/passwd was copied up whole: $(cmp -s <(head -n -1 c1/upper/etc/passwd) "$BOXKIT_ROOT/layers/sha256/$layer/etc/passwd" && echo same lines plus one)"

step "6. unmount: the changes stay in upper/"
box-mount-layers --unmount c1 | sed "s|$here|\$LESSON_TMP|"
echo "c1/rootfs is now $(ls -A c1/rootfs | wc -l) entries (an empty mount point)"
echo "c1/upper still holds: $(cd c1/upper && find . -mindepth 1 -maxdepth 1 | sort | tr '\n' ' ')"
box-mount-layers --unmount c2 >/dev/null
echo "mounts left under \$LESSON_TMP: $(awk -v p="$here/" 'index($5, p) == 1' /proc/self/mountinfo | wc -l)"
