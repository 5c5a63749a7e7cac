#!/usr/bin/env bash
# Lesson 10: the busybox container run by an ordinary user, in a user namespace.
#
# Needs: the box-* tools on PATH, LESSON_TMP (an empty directory), BOXKIT_SRC (the boxkit
# source tree, for testdata/busybox/make-rootfs.sh, which wants a static busybox on the
# host), python3, setpriv (util-linux), newuidmap/newgidmap (package uidmap) and a range
# for the user in /etc/subuid and /etc/subgid.
#
# Run as an ordinary user, it does the lesson as that user. Run as root, it does it as the
# user $LESSON_USER (default boxkit-test; created, with subordinate ids, when missing),
# with copies of the tools in LESSON_TMP, which that user can read.
# BOXKIT_ROOT is not used: the point is the default store of an ordinary user.
set -euo pipefail
export LC_ALL=C TZ=UTC
unset SOURCE_DATE_EPOCH
: "${LESSON_TMP:?set LESSON_TMP to an empty directory}"
user=${LESSON_USER:-boxkit-test}

if [ "$(id -u)" = 0 ] && [ -z "${LESSON_AS_USER:-}" ]; then
    : "${BOXKIT_SRC:?set BOXKIT_SRC to the boxkit source tree}"
    if ! id -u "$user" >/dev/null 2>&1; then
        useradd --create-home --shell /bin/sh "$user" 2>/dev/null || id -u "$user" >/dev/null
    fi
    if ! grep -q "^$user:" /etc/subuid || ! grep -q "^$user:" /etc/subgid; then
        start=$(cat /etc/subuid /etc/subgid 2>/dev/null | awk -F: 'BEGIN { m = 100000 } $2 + $3 > m { m = $2 + $3 } END { print m }')
        usermod --add-subuids "$start-$((start + 65535))" --add-subgids "$start-$((start + 65535))" "$user"
    fi
    work="$LESSON_TMP/as-$user"
    mkdir -p "$work/bin" "$work/home"
    chmod 755 "$LESSON_TMP" "$work" "$work/bin"
    for t in box-import box-unpack box-spawn box-mount-layers; do
        install -m 0755 "$(command -v "$t")" "$work/bin/$t"
    done
    install -m 0644 "$0" "$work/lesson.sh"
    bash "$BOXKIT_SRC/testdata/busybox/make-rootfs.sh" "$work/busybox.tar" 2>/dev/null
    chmod 644 "$work/busybox.tar"
    chown "$user:" "$work/home"
    cd "$work/home"
    exec setpriv --reuid "$user" --regid "$user" --init-groups -- \
        env -i HOME="$work/home" PATH="$work/bin:/usr/bin:/bin:/usr/sbin:/sbin" LESSON_TMP="$work/home" \
        LESSON_AS_USER=1 BUSYBOX_TAR="$work/busybox.tar" bash "$work/lesson.sh"
fi

# ---- from here on, an ordinary user ----------------------------------------------------
export LC_ALL=C TZ=UTC
unset BOXKIT_ROOT
cd "$LESSON_TMP"
if [ -z "${BUSYBOX_TAR:-}" ]; then
    : "${BOXKIT_SRC:?set BOXKIT_SRC to the boxkit source tree}"
    bash "$BOXKIT_SRC/testdata/busybox/make-rootfs.sh" busybox.tar 2>/dev/null
    BUSYBOX_TAR=$PWD/busybox.tar
fi

step() { printf '\n== %s ==\n' "$*"; }

# Host ids differ from machine to machine: show them relative to the user's own id and
# the first id of its subordinate range, so the output is the same everywhere.
uid=$(id -u) gid=$(id -g) me=$(id -un)
subuid=$(awk -F: -v u="$me" -v n="$uid" '$1 == u || $1 == n { print $2; exit }' /etc/subuid)
subgid=$(awk -F: -v u="$me" -v n="$uid" '$1 == u || $1 == n { print $2; exit }' /etc/subgid)
subcount=$(awk -F: -v u="$me" -v n="$uid" '$1 == u || $1 == n { print $3; exit }' /etc/subuid)
uid_name() { if [ "$1" = "$uid" ]; then echo "MYUID"; elif [ "$1" -ge "$subuid" ] && [ "$1" -lt $((subuid + subcount)) ]; then echo "SUBUID+$(($1 - subuid))"; else echo "$1"; fi; }
gid_name() { if [ "$1" = "$gid" ]; then echo "MYGID"; elif [ "$1" -ge "$subgid" ] && [ "$1" -lt $((subgid + subcount)) ]; then echo "SUBGID+$(($1 - subgid))"; else echo "$1"; fi; }
# "inside outside count" lines of a uid_map or gid_map, with the outside id named.
show_map() { while read -r inside outside count; do printf '  %-6s %-9s %s\n' "$inside" "$("$1" "$outside")" "$count"; done; }
# Owner of host files, named.
owners() { for f in "$@"; do printf '  %-26s %s\n' "$(uid_name "$(stat -c %u "$f")"):$(gid_name "$(stat -c %g "$f")")" "$f"; done; }

step "1. an ordinary user"
echo "id -u: MYUID (not 0)"
echo "/etc/subuid grants: $subcount ids from SUBUID"
echo "newuidmap installed: $(command -v newuidmap >/dev/null && echo yes || echo no)"

step "2. box-import and box-unpack, without root"
box-import --change 'CMD ["sh"]' "$BUSYBOX_TAR" busybox >/dev/null
echo "the default store: ~/.local/share/boxkit/ holds: $(ls ~/.local/share/boxkit)"
echo "box-unpack busybox demo  ->  $(box-unpack busybox demo)"
python3 - demo/config.json <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
l = c["linux"]
print("config.json says:")
print("  namespaces   ", json.dumps([n["type"] for n in l["namespaces"]]))
print("  uidMappings  ", len(l["uidMappings"]), "ranges; gidMappings", len(l["gidMappings"]), "ranges")
PY
echo "owners on the host (the image says 0:0 for every file):"
owners demo demo/rootfs demo/rootfs/bin/busybox demo/rootfs/etc/passwd

step "3. the busybox example"
box-spawn demo -- sh -c 'id; hostname; ps -o pid,user,comm' | sed 's/^/  /'

step "4. the maps, read from inside"
echo "/proc/self/uid_map (inside, outside, count):"
box-spawn demo -- cat /proc/self/uid_map | show_map uid_name
echo "/proc/self/gid_map:"
box-spawn demo -- cat /proc/self/gid_map | show_map gid_name

step "5. the same files, inside and outside"
box-spawn demo -- sh -c '
  cd /tmp
  touch by-root
  touch by-uid-1000 && chown 1000:1000 by-uid-1000
  touch by-nobody && chown nobody:nogroup by-nobody'
echo "inside (ls -ln /tmp):"
box-spawn demo -- ls -ln /tmp | awk 'NR > 1 { printf "  %-12s %s\n", $3 ":" $4, $9 }'
echo "outside (stat on the host):"
owners demo/rootfs/tmp/by-nobody demo/rootfs/tmp/by-root demo/rootfs/tmp/by-uid-1000

step "6. root inside, an ordinary user outside"
try() { if box-spawn demo -- sh -c "$1" >/dev/null 2>&1; then echo "succeeded"; else echo "refused"; fi; }
echo "chown to uid 1000 (mapped):              $(try 'chown 1000 /tmp/by-root')"
echo "chown to uid 70000 (not mapped):         $(try 'chown 70000 /tmp/by-root')"
echo "mknod /tmp/null c 1 3:                   $(try 'mknod /tmp/null c 1 3')"
echo "a host file owned by host root, inside:  $(box-spawn demo -- stat -c '%u (%U)' /proc/sys/kernel/hostname)"

step "7. an overlay bundle: box-spawn mounts it inside the container"
box-mount-layers busybox ovl 2>&1 >/dev/null | sed 's/^/  /'
echo "ovl/rootfs on the host: $(ls -A ovl/rootfs | wc -l) entries (nothing is mounted here)"
echo "inside, the root mount (/proc/self/mounts):"
box-spawn ovl -- sh -c 'echo hi > /new; awk "\$2 == \"/\" { o = (\$4 ~ /userxattr/) ? \"userxattr\" : \"no userxattr\"; print \"  \" \$3, o }" /proc/self/mounts'
echo "the write, on the host:"
owners ovl/upper/new
