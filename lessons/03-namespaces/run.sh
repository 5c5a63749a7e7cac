#!/usr/bin/env bash
# Lesson 03: a container is a process with its own view of the system.
#
# Needs: the box-* tools on PATH, BOXKIT_ROOT and LESSON_TMP (empty directories), BOXKIT_SRC
# (the boxkit source tree, for testdata/busybox/make-rootfs.sh, which wants a static
# busybox on the host), python3, root (box-spawn creates namespaces and mounts).
set -euo pipefail
export LC_ALL=C TZ=UTC
unset SOURCE_DATE_EPOCH
: "${BOXKIT_ROOT:?set BOXKIT_ROOT to an empty directory}"
: "${LESSON_TMP:?set LESSON_TMP to an empty directory}"
: "${BOXKIT_SRC:?set BOXKIT_SRC to the boxkit source tree}"
cd "$LESSON_TMP"
here=$(pwd -P)

step() { printf '\n== %s ==\n' "$*"; }

# Run a command in the container and print its exit status (box-spawn's own).
status_of() {
    local rc=0
    box-spawn "$@" >/dev/null 2>&1 || rc=$?
    echo "$rc"
}

# Run a command in the container and say whether it succeeded (the exit status of a
# failing busybox applet differs between busybox versions, so only success is shown).
try() {
    if box-spawn "$@" >/dev/null 2>&1; then echo "succeeded"; else echo "refused"; fi
}

step "1. an image and a bundle"
bash "$BOXKIT_SRC/testdata/busybox/make-rootfs.sh" busybox.tar 2>/dev/null
box-import --change 'CMD ["sh"]' busybox.tar busybox >/dev/null
echo "box-unpack busybox demo  ->  $(box-unpack busybox demo)"
echo "the bundle: $(cd demo && echo *)"
python3 - demo/config.json <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
show = lambda k, v: print(f"  {k:<17}{json.dumps(v)}")
print("config.json says:")
show("process.args", c["process"]["args"])
show("process.user", c["process"]["user"])
show("hostname", c["hostname"])
show("namespaces", [n["type"] for n in c["linux"]["namespaces"]])
show("mounts", [m["destination"] for m in c["mounts"]])
show("noNewPrivileges", c["process"]["noNewPrivileges"])
PY

step "2. what box-spawn does, step by step (--explain, on stderr)"
# The cgroup, device-filter and seccomp steps depend on the host (cgroup v1 or v2, its
# paths, the CPU architecture): lesson 09 shows them. They are left out here.
box-spawn --explain demo -- true 2>&1 >/dev/null | grep -vE 'cgroup|devices|seccomp|boxkit/' | sed "s|$here/||g; s|$LESSON_TMP/||g"

step "3. UTS namespace: its own hostname"
echo "hostname inside: $(box-spawn demo -- hostname)"

step "4. PID namespace: the first process is PID 1"
box-spawn demo -- sh -c 'echo "my PID is $$"'
echo "ps inside (the whole process table):"
box-spawn demo -- ps -o pid,comm | awk '{ printf "  %-5s %s\n", $1, $2 }'

step "5. mount namespace and pivot_root: a different /"
echo "directories in the container's /:"
box-spawn demo -- sh -c 'ls -d /*/' | sed 's/^/  /'
echo "a file on the host" >host-only.txt
echo "\$LESSON_TMP/host-only.txt seen from the host:   $(cat host-only.txt)"
box-spawn demo -- sh -c "if [ -e '$here/host-only.txt' ]; then echo 'the same path seen from inside: it exists'; else echo 'the same path seen from inside: no such file'; fi"

step "6. network namespace: only a loopback interface"
box-spawn demo -- ls /sys/class/net | sed 's/^/  /'

step "7. capabilities and no_new_privs"
box-spawn demo -- sh -c "grep -E '^(Cap|NoNewPrivs)' /proc/self/status" | sed 's/^/  /'
echo "mount a tmpfs on /tmp (needs CAP_SYS_ADMIN):  $(try demo -- mount -t tmpfs none /tmp)"
echo "write /proc/sys/kernel/hostname (read-only):  $(try demo -- sh -c 'echo x >/proc/sys/kernel/hostname')"
echo "create a file in /sys (read-only):            $(try demo -- touch /sys/x)"
echo "create a file in /tmp:                        $(try demo -- touch /tmp/x)"

step "8. exit codes"
echo "sh -c 'exit 3'                 -> $(status_of demo -- sh -c 'exit 3')"
echo "no-such-command                -> $(status_of demo -- no-such-command)"
echo "/etc/passwd (not executable)   -> $(status_of demo -- /etc/passwd)"
echo "a bundle that does not exist   -> $(status_of no-such-bundle -- true)"
echo "sh -c 'kill -KILL \$\$'          -> $(status_of demo -- sh -c 'kill -KILL $$; echo still alive')"
echo "--init, sh -c 'kill -KILL \$\$'  -> $(status_of --init demo -- sh -c 'kill -KILL $$; echo still alive')"
echo "what the container printed, without and with --init:"
box-spawn demo -- sh -c 'echo "  I am PID $$ and send myself SIGKILL"; kill -KILL $$; echo "  ...and I am still alive"'
box-spawn --init demo -- sh -c 'echo "  I am PID $$ and send myself SIGKILL"; kill -KILL $$; echo "  ...and I am still alive"' || true
echo "box-spawn's messages on stderr:"
box-spawn demo -- no-such-command 2>&1 | sed 's/^/  /' || true
box-spawn demo -- /etc/passwd 2>&1 | sed 's/^/  /' || true
