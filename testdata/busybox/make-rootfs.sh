#!/bin/bash
# make-rootfs.sh OUT.tar
#
# Builds a small root filesystem tarball around the host's static busybox, for tests
# that need a real userland to spawn (box-spawn) or a realistic layer to import, unpack
# and export - without any network access or registry.
#
# Content:
#   /bin/busybox (0755) and one absolute symlink per applet (target /bin/busybox), placed
#   where `busybox --list-full` says (bin/, sbin/, usr/bin/, usr/sbin/, /linuxrc);
#   directories /bin /sbin /usr/bin /usr/sbin /etc /root(0700) /home /tmp(1777)
#   /var/tmp(1777) /proc /sys /dev /run;
#   /etc/passwd (root, nobody), /etc/group (root, nogroup), /etc/hosts (localhost),
#   an empty /etc/resolv.conf and /etc/os-release naming it "boxkit busybox".
#
# The output is deterministic: every mtime is SOURCE_DATE_EPOCH (default 0), owners are
# 0:0 numeric, entries are sorted by name and the PAX headers carry no atime, ctime or
# PID, so two runs on the same busybox binary give byte-identical tars.
#
# Requirements: bash, GNU tar >= 1.28, coreutils, and a *static* busybox at
# /usr/bin/busybox or /bin/busybox (Debian package busybox-static); set BUSYBOX=/path to
# use another one. The static check parses the ELF program headers with python3 (no
# PT_INTERP means no dynamic loader), falling back to readelf, then ldd.
#
# Only the tar is written to OUT.tar; progress messages go to stderr.

set -euo pipefail
umask 022
export LC_ALL=C

die() { echo "make-rootfs.sh: $*" >&2; exit 1; }
log() { echo "make-rootfs.sh: $*" >&2; }

[ $# -eq 1 ] || die "usage: make-rootfs.sh OUT.tar"
out=$1
[ -n "$out" ] || die "usage: make-rootfs.sh OUT.tar"

# --- find busybox -----------------------------------------------------------------------
bb=${BUSYBOX:-}
if [ -z "$bb" ]; then
    for c in /usr/bin/busybox /bin/busybox; do
        if [ -f "$c" ] && [ -x "$c" ]; then bb=$c; break; fi
    done
fi
[ -n "$bb" ] || die "no busybox found at /usr/bin/busybox or /bin/busybox (apt-get install busybox-static)"
[ -f "$bb" ] && [ -x "$bb" ] || die "$bb is not an executable file"

# --- make sure it is static -------------------------------------------------------------
# Returns 0 if static, 1 if dynamic, 2 if this method cannot tell.
static_by_python() {
    command -v python3 >/dev/null 2>&1 || return 2
    python3 - "$1" <<'PY'
import struct, sys
try:
    with open(sys.argv[1], "rb") as f:
        ident = f.read(16)
        if ident[:4] != b"\x7fELF" or ident[4] not in (1, 2) or ident[5] not in (1, 2):
            sys.exit(1)                       # not ELF: certainly not a usable static binary
        is64, end = ident[4] == 2, "<" if ident[5] == 1 else ">"
        if is64:
            hdr = f.read(48)
            phoff, = struct.unpack(end + "Q", hdr[16:24])
            phentsize, phnum = struct.unpack(end + "HH", hdr[38:42])
        else:
            hdr = f.read(36)
            phoff, = struct.unpack(end + "I", hdr[12:16])
            phentsize, phnum = struct.unpack(end + "HH", hdr[26:30])
        if phnum == 0 or phentsize < 4:
            sys.exit(1)
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            p_type, = struct.unpack(end + "I", f.read(4))
            if p_type == 3:                   # PT_INTERP: needs a dynamic loader
                sys.exit(1)
        sys.exit(0)
except (OSError, struct.error):
    sys.exit(2)
PY
}
static_by_readelf() {
    command -v readelf >/dev/null 2>&1 || return 2
    local ph
    ph=$(readelf -lW "$1" 2>/dev/null) || return 2
    if grep -q 'INTERP' <<<"$ph"; then return 1; fi
    return 0
}
static_by_ldd() {
    command -v ldd >/dev/null 2>&1 || return 2
    local o
    o=$(ldd "$1" 2>&1 || true)
    case $o in
        *"not a dynamic executable"*|*"statically linked"*) return 0 ;;
        *"=>"*|*"ld-linux"*|*"ld-musl"*) return 1 ;;
    esac
    return 2
}
is_static() {
    local m rc
    [ "$(head -c 4 -- "$1" | od -An -c | tr -d ' \n')" = '177ELF' ] || return 1
    for m in static_by_python static_by_readelf static_by_ldd; do
        rc=0; "$m" "$1" || rc=$?
        [ "$rc" -eq 2 ] || return "$rc"
    done
    die "cannot tell whether $1 is static (need python3, readelf or ldd)"
}
is_static "$bb" || die "$bb is not a static executable (apt-get install busybox-static)"

applets=$("$bb" --list-full) || die "$bb --list-full failed"
[ -n "$applets" ] || die "$bb --list-full printed nothing"

# --- build the tree ---------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/boxkit-rootfs.XXXXXXXX")
trap 'rm -rf -- "$work"' EXIT
trap 'exit 130' INT TERM HUP
r=$work/root
mkdir "$r"

for d in bin sbin usr usr/bin usr/sbin etc root home tmp var var/tmp proc sys dev run; do
    mkdir -p "$r/$d"
done

install -m 0755 "$bb" "$r/bin/busybox"

n=0
while IFS= read -r a; do
    [ -n "$a" ] || continue
    # Refuse anything that could leave the tree: relative, no "..", no empty components.
    [[ $a =~ ^[A-Za-z0-9_.+\[-]+(/[A-Za-z0-9_.+\[-]+)*$ ]] || die "odd applet path from busybox: '$a'"
    case /$a/ in */../*|*/./*) die "odd applet path from busybox: '$a'" ;; esac
    [ "$a" = bin/busybox ] && continue
    dir=$(dirname -- "$a")
    [ "$dir" = . ] || mkdir -p "$r/$dir"
    if [ -e "$r/$a" ] || [ -L "$r/$a" ]; then
        log "skipping duplicate applet $a"
        continue
    fi
    ln -s /bin/busybox "$r/$a"
    n=$((n + 1))
done <<<"$applets"
log "$n applet links"

cat >"$r/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$r/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
cat >"$r/etc/hosts" <<'EOF'
127.0.0.1 localhost
::1 localhost
EOF
: >"$r/etc/resolv.conf"
bbver=$("$bb" 2>&1 | head -n 1 | sed -n 's/^BusyBox v\([^ ]*\).*/\1/p' || true)
cat >"$r/etc/os-release" <<EOF
NAME="boxkit busybox"
PRETTY_NAME="boxkit busybox${bbver:+ (BusyBox $bbver)}"
ID=boxkit-busybox
VERSION_ID="${bbver:-unknown}"
EOF

# Explicit modes, independent of the caller's umask.
find "$r" -type d -exec chmod 0755 {} +
find "$r" -type f -exec chmod 0644 {} +
chmod 0755 "$r/bin/busybox"
chmod 0700 "$r/root"
chmod 1777 "$r/tmp" "$r/var/tmp"

# --- write the tar ----------------------------------------------------------------------
tmpout=$work/out.tar
tar --format=pax --sort=name \
    --mtime="@${SOURCE_DATE_EPOCH:-0}" \
    --owner=0 --group=0 --numeric-owner \
    --pax-option='exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime' \
    --no-acls --no-xattrs --no-selinux \
    -C "$r" -cf "$tmpout" .
mv -f -- "$tmpout" "$out"
log "wrote $out ($(wc -c <"$out") bytes)"
