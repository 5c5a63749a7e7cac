#!/usr/bin/env bash
# Lesson 09: root in a container is not root on the host. Capabilities, no_new_privs,
# seccomp, the device filter and the cgroup namespace, seen from inside; then --privileged.
#
# Needs: the box-* tools on PATH, BOXKIT_ROOT and LESSON_TMP (empty directories), BOXKIT_SRC
# (the boxkit source tree, for testdata/busybox/make-rootfs.sh, which wants a static
# busybox on the host), python3, root (box-spawn creates namespaces, mounts and a cgroup).
set -euo pipefail
export LC_ALL=C TZ=UTC
unset SOURCE_DATE_EPOCH
: "${BOXKIT_ROOT:?set BOXKIT_ROOT to an empty directory}"
: "${LESSON_TMP:?set LESSON_TMP to an empty directory}"
: "${BOXKIT_SRC:?set BOXKIT_SRC to the boxkit source tree}"
cd "$LESSON_TMP"

step() { printf '\n== %s ==\n' "$*"; }
row() { printf '%-58s %s\n' "$1" "$2"; }

# Say whether a command in the container succeeded (busybox's messages and exit statuses
# differ between versions, so only the outcome is shown).
try() {
    if box-spawn "$@" >/dev/null 2>&1; then echo "succeeded"; else echo "refused"; fi
}

# decode: read "Name:<tab>hex" lines of /proc/self/status and name the capabilities in
# each set (numbers from linux/capability.h).
decode() {
    python3 -c '
import sys
names = """CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP
LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER
SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE
SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP
MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF
CHECKPOINT_RESTORE""".split()
for line in sys.stdin:
    key, value = line.rstrip("\n").split(":\t")
    bits = int(value, 16)
    held = [n for i, n in enumerate(names) if bits >> i & 1]
    shown = " ".join(held) if held else "(none)"
    print(f"  {key}  {value}  {len(held):2d}: {shown}")
'
}

step "1. a bundle"
bash "$BOXKIT_SRC/testdata/busybox/make-rootfs.sh" busybox.tar 2>/dev/null
box-import --change 'CMD ["sh"]' busybox.tar busybox >/dev/null
box-unpack busybox demo >/dev/null
python3 - demo/config.json <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["process"]
print("config.json process.capabilities.bounding:")
print("  " + " ".join(x[4:] for x in c["capabilities"]["bounding"]))
print("process.noNewPrivileges:", json.dumps(c["noNewPrivileges"]))
PY

step "2. the capability sets of root in the container (/proc/self/status, decoded)"
box-spawn demo -- grep '^Cap' /proc/self/status | decode
echo "The same sets, as a user with uid 65534 (nothing effective, the same bound):"
python3 - demo/config.json <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["process"]["user"] = {"uid": 65534, "gid": 65534}
json.dump(c, open(sys.argv[1], "w"))
PY
box-spawn demo -- grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status | decode
python3 - demo/config.json <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["process"]["user"] = {"uid": 0, "gid": 0}
json.dump(c, open(sys.argv[1], "w"))
PY

step "3. no_new_privs and seccomp mode"
box-spawn demo -- grep -E '^(NoNewPrivs|Seccomp|Seccomp_filters):' /proc/self/status | sed 's/^/  /'
echo "(Seccomp: 2 means a filter is installed; 0 none.)"

step "4. what capabilities refuse, and what only seccomp refuses"
row "mount a tmpfs (CAP_SYS_ADMIN, not held):" "$(try demo -- mount -t tmpfs none /tmp)"
row "raise its own priority (CAP_SYS_NICE, not held):" "$(try demo -- sh -c 'renice -n -5 $$')"
row "unshare a user namespace (no capability needed; seccomp):" "$(try demo -- unshare -Ur true)"
row "the same with --seccomp unconfined:" "$(try --seccomp unconfined demo -- unshare -Ur true)"
row "chroot (CAP_SYS_CHROOT is held, seccomp allows it):" "$(try demo -- chroot / true)"

step "5. the device filter: CAP_MKNOD makes nodes, the cgroup refuses to open them"
# /tmp is the bundle's own directory here, so each command removes the node it made.
row "mknod /tmp/sda b 8 0 (the host's first disk):" "$(try demo -- sh -c 'mknod /tmp/sda b 8 0 && rm /tmp/sda')"
row "mknod it, then read it:" "$(try demo -- sh -c 'mknod /tmp/sda b 8 0 && { head -c1 /tmp/sda; r=$?; rm /tmp/sda; exit $r; }')"
row "  the error:" "$(box-spawn demo -- sh -c 'mknod /tmp/sda b 8 0; head -c1 /tmp/sda 2>&1 | grep -o "Operation not permitted"; rm /tmp/sda')"
row "read /dev/zero (allowed):" "$(try demo -- head -c1 /dev/zero)"

step "6. the cgroup namespace and a read-only /sys/fs/cgroup"
row "every line of /proc/self/cgroup ends in:" "$(box-spawn demo -- cut -d: -f3 /proc/self/cgroup | sort -u)"
row "create a file in /sys/fs/cgroup:" "$(try demo -- touch /sys/fs/cgroup/x)"
row "write /proc/sys/kernel/core_pattern:" "$(try demo -- sh -c 'echo x >/proc/sys/kernel/core_pattern')"
row "mounts hiding /sys/firmware (masked):" "$(box-spawn demo -- grep -c ' /sys/firmware ' /proc/mounts)"

step "7. --privileged: the walls come down"
own=$(grep '^CapBnd:' /proc/self/status | cut -f2)
box-spawn --privileged demo -- grep -E '^(CapEff|Seccomp):' /proc/self/status >priv.txt
if grep -q "^CapEff:	$own\$" priv.txt; then
    echo "CapEff: every capability box-spawn itself holds"
else
    row "CapEff:" "$(grep CapEff priv.txt) (box-spawn holds $own)"
fi
grep '^Seccomp:' priv.txt
row "mount a tmpfs:" "$(try --privileged demo -- mount -t tmpfs none /tmp)"
row "unshare a user namespace:" "$(try --privileged demo -- unshare -Ur true)"
row "mounts hiding /sys/firmware:" "$(box-spawn --privileged demo -- sh -c "grep -c ' /sys/firmware ' /proc/mounts || true")"
row "/sys mounted:" "$(box-spawn --privileged demo -- sh -c "grep ' /sys ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1")"
