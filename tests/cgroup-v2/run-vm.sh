#!/usr/bin/env bash
# Run boxkit's cgroup tests on a pure cgroup v2 kernel, whatever the host has.
#
# Boots Debian's stock kernel under QEMU with every v1 controller disabled
# (cgroup_no_v1=all), the host's / shared read-only over virtio-9p and a scratch
# directory shared read-write, and runs tests/cgroup-v2/guest.sh as PID 1. The guest
# runs the already-built integration test binary (filtered to the cgroup tests) and
# box-cgroup-limit/box-spawn from target/debug, then powers off. The host's own
# cgroups are never touched.
#
#   bash tests/cgroup-v2/run-vm.sh                 # the default filters (see FILTERS)
#   bash tests/cgroup-v2/run-vm.sh cgroups::cpu    # only tests whose name contains this
#
# Needs: qemu-system-x86_64 (KVM is used when it works, software emulation otherwise),
# a static /bin/busybox, depmod and xz (kmod, xz-utils), jq, apt-get (the kernel package is
# fetched once with `apt-get download` and cached under target/), and the built tools and
# test binary (`cargo build --workspace && cargo test`, as tests/run.sh does first). The
# guest has no network: the tests it runs need none.
#
# Environment:
#   ACCEL=auto|kvm|tcg   auto (default): KVM when it boots a kernel, TCG otherwise
#   VM_WORK=DIR          cache and run directories (default target/cgroup-v2)
#   VM_MEM=MiB VM_SMP=N  guest memory (default 1024) and CPUs (default 2)
#   VM_TIMEOUT=SECONDS   give up on the guest after this long (default 240)
#   KPKG=linux-image-…   the kernel package (default: what linux-image-amd64 depends on,
#                        or the one already cached)
#   INTEGRATION_BIN=…    the integration test binary (default: asked of cargo)
#   VERBOSE=1            print the whole guest console, not only the test output
#   GUEST_SCRIPT=FILE    a bash script for the guest to run before the tests (to look
#                        around: its output is part of the test output)
#
# Exit status: 0 when the guest ran every selected test and all passed; 1 otherwise
# (the VM did not boot, a test failed, nothing ran, or the guest timed out).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd -P)
repo=$(cd "$here/../.." && pwd -P)
cd "$repo"

say() { printf 'cgroup-v2-vm: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# The tests that need a real cgroup hierarchy: the cgroup tests themselves and the
# lessons built on cgroups.
FILTERS=("$@")
[ ${#FILTERS[@]} -gt 0 ] || FILTERS=(cgroups:: lessons::lesson_08 hardening:: commit::a_running_container_in_a_boxkit_cgroup spawn::proc_sys_dev_and_capabilities spawn::device_nodes)

WORK=${VM_WORK:-$repo/target/cgroup-v2}
MEM=${VM_MEM:-1024}
SMP=${VM_SMP:-2}
TIMEOUT=${VM_TIMEOUT:-240}
ACCEL=${ACCEL:-auto}
mkdir -p "$WORK"

command -v depmod >/dev/null || die "depmod is missing: apt-get install kmod"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 is missing: apt-get install qemu-system-x86"
{ ldd /bin/busybox 2>&1 || true; } | grep -q 'not a dynamic' ||
    die "/bin/busybox is missing or not static: apt-get install busybox-static"

# ------------------------------------------------------------------ the test binaries
if [ -z "${INTEGRATION_BIN:-}" ]; then
    INTEGRATION_BIN=$(cargo test --test integration --no-run --locked --message-format=json 2>/dev/null |
        jq -r 'select(.reason == "compiler-artifact" and .target.name == "integration" and .profile.test) | .executable' |
        tail -1)
fi
[ -x "${INTEGRATION_BIN:-}" ] || die "no integration test binary: run cargo build --workspace && cargo test first"
bindir=$(dirname "$(dirname "$INTEGRATION_BIN")")
for t in box-cgroup-limit box-spawn box-import box-unpack; do
    [ -x "$bindir/$t" ] || die "$bindir/$t is missing: run cargo build --workspace first"
done

# ------------------------------------------------------------------ the kernel
# Debian's generic flavour (the -cloud one has no 9p). Extracted under $WORK only:
# nothing goes into the host's /boot or /lib/modules.
if [ -z "${KPKG:-}" ]; then
    cached=$(ls -d "$WORK"/kernel/lib/modules/*-amd64 2>/dev/null | sort -V | tail -1 || true)
    if [ -n "$cached" ]; then
        KPKG=linux-image-$(basename "$cached")
    else
        KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
        if [ -z "$KPKG" ]; then
            apt-get update -qq
            KPKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
        fi
    fi
fi
[ -n "$KPKG" ] || die "cannot tell which kernel package to fetch (apt-cache depends linux-image-amd64)"
KVER=${KPKG#linux-image-}
KDIR=$WORK/kernel
VMLINUZ=$KDIR/boot/vmlinuz-$KVER
if [ ! -f "$VMLINUZ" ]; then
    say "fetching $KPKG (once; cached in $KDIR)"
    dl=$(mktemp -d "$WORK/dl.XXXXXX")
    chmod 777 "$dl" # apt's _apt user downloads into it
    if ! (cd "$dl" && apt-get download -q "$KPKG" >/dev/null); then
        # Old package lists may name a kernel Debian has since replaced: refresh, ask again.
        apt-get update -qq
        KPKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
        KVER=${KPKG#linux-image-}
        VMLINUZ=$KDIR/boot/vmlinuz-$KVER
        (cd "$dl" && apt-get download -q "$KPKG" >/dev/null) || die "apt-get download $KPKG failed"
    fi
    rm -rf "$KDIR.tmp" && mkdir -p "$KDIR.tmp"
    dpkg-deb -x "$dl"/"$KPKG"_*.deb "$KDIR.tmp"
    rm -rf "$dl"
    [ -f "$KDIR.tmp/boot/vmlinuz-$KVER" ] || die "$KPKG holds no boot/vmlinuz-$KVER"
    # The package has no modules.dep (its postinst makes it): make it for the copy here.
    depmod -b "$KDIR.tmp" "$KVER" || die "depmod -b $KDIR.tmp $KVER failed"
    rm -rf "$KDIR" && mv "$KDIR.tmp" "$KDIR"
fi
MODROOT=$KDIR/lib/modules/$KVER

# ------------------------------------------------------------------ the initramfs
# busybox, the modules for virtio-pci and 9p (with their dependencies, in load order,
# from modules.dep), and tests/cgroup-v2/initrd-init.
INITRD=$WORK/initrd-$KVER.cpio.gz
if [ ! -f "$INITRD" ] || [ "$here/initrd-init" -nt "$INITRD" ] || [ "$0" -nt "$INITRD" ]; then
    ir=$(mktemp -d "$WORK/initrd.XXXXXX")
    mkdir -p "$ir"/{bin,proc,sys,dev,newroot,mods}
    cp /bin/busybox "$ir/bin/busybox"
    ln -s busybox "$ir/bin/sh"
    order=()
    for want in virtio_pci 9pnet_virtio 9p; do
        line=$(grep -E "/$want\.ko(\.xz|\.zst)?:" "$MODROOT/modules.dep") || die "module $want is not in $KPKG"
        deps=(${line#*:})
        # modules.dep lists a module's dependencies (all of them) in reverse load order.
        for ((i = ${#deps[@]} - 1; i >= 0; i--)); do order+=("${deps[$i]}"); done
        order+=("${line%%:*}")
    done
    : >"$ir/mods/order"
    for m in "${order[@]}"; do
        name=$(basename "$m"); name=${name%%.ko*}
        grep -qx "$name" "$ir/mods/order" && continue
        case "$m" in
        *.xz) xz -dc "$MODROOT/$m" >"$ir/mods/$name.ko" ;;
        *.zst) zstd -qdc "$MODROOT/$m" >"$ir/mods/$name.ko" ;;
        *) cp "$MODROOT/$m" "$ir/mods/$name.ko" ;;
        esac
        echo "$name" >>"$ir/mods/order"
    done
    cp "$here/initrd-init" "$ir/init"
    chmod 755 "$ir/init"
    (cd "$ir" && find . | /bin/busybox cpio -o -H newc 2>/dev/null | gzip -1 >"$INITRD.tmp")
    mv "$INITRD.tmp" "$INITRD"
    rm -rf "$ir"
fi

# ------------------------------------------------------------------ the run directory
# Shared read-write with the guest as /tmp/scratch: the guest script, what it should run,
# and what it leaves (the test log).
mkdir -p "$WORK/runs"
RUN=$(mktemp -d "$WORK/runs/run.XXXXXX")
chmod 755 "$RUN"
cp "$here/guest.sh" "$RUN/guest.sh"
# The busybox rootfs tar the tests import: built here, where it takes a second (in the
# guest, 268 applet links under emulation take minutes).
bash "$repo/testdata/busybox/make-rootfs.sh" "$RUN/busybox.tar" 2>/dev/null ||
    die "testdata/busybox/make-rootfs.sh failed"
if [ -n "${GUEST_SCRIPT:-}" ]; then cp "$GUEST_SCRIPT" "$RUN/before-tests.sh"; fi
# A small disk, so that --io-weight has a device to act on (the guest gives it BFQ).
truncate -s 64M "$RUN/disk.img"
chmod 755 "$RUN/guest.sh"
{
    printf 'REPO=%q\n' "$repo"
    printf 'INTEGRATION_BIN=%q\n' "$INTEGRATION_BIN"
    printf 'TARGET_TMP=%q\n' "$(dirname "$bindir")/tmp"
    printf 'KERNEL_ROOT=%q\n' "$KDIR"
    printf 'FILTERS=(%s)\n' "$(printf '%q ' "${FILTERS[@]}")"
} >"$RUN/guest.env"

# ------------------------------------------------------------------ accelerator
kvm_works() { # a /dev/kvm that cannot run a stock kernel exists (PVM hosts): boot to be sure
    [ -r /dev/kvm ] && [ -w /dev/kvm ] || return 1
    timeout 20 qemu-system-x86_64 -accel kvm -cpu host -m 128 -nodefaults -no-user-config \
        -display none -no-reboot -serial stdio -kernel "$VMLINUZ" \
        -append 'console=ttyS0 panic=-1 rdinit=/nonexistent' </dev/null 2>&1 | grep -q 'Linux version'
}
if [ "$ACCEL" = auto ]; then # probed once per machine (remove $WORK/accel to probe again)
    [ -s "$WORK/accel" ] || { if kvm_works; then echo kvm; else echo tcg; fi >"$WORK/accel"; }
    ACCEL=$(cat "$WORK/accel")
fi
case "$ACCEL" in
kvm) acc=(-accel kvm -cpu host) ;;
tcg) acc=(-accel tcg,thread=multi -cpu max) ;;
*) die "ACCEL must be auto, kvm or tcg" ;;
esac

# ------------------------------------------------------------------ boot
say "booting $KVER ($ACCEL, $SMP CPUs, $MEM MiB, cgroup v2 only) for: ${FILTERS[*]}"
CMDLINE="console=ttyS0 quiet loglevel=3 panic=-1 cgroup_no_v1=all mitigations=off"
LOG=$RUN/console.log
start=$(date +%s)
qrc=0
timeout "$TIMEOUT" qemu-system-x86_64 "${acc[@]}" -smp "$SMP" -m "$MEM" \
    -nodefaults -no-user-config -display none -no-reboot -serial stdio \
    -kernel "$VMLINUZ" -initrd "$INITRD" -append "$CMDLINE" \
    -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
    -virtfs local,path="$RUN",mount_tag=scratch,security_model=none,multidevs=remap \
    -drive file="$RUN/disk.img",format=raw,if=virtio,cache=unsafe \
    </dev/null >"$LOG" 2>&1 || qrc=$?
secs=$(($(date +%s) - start))
tr -d '\r' <"$LOG" >"$LOG.txt"

if [ "${VERBOSE:-0}" = 1 ]; then
    cat "$LOG.txt"
else
    # What the guest's tests printed, between the markers guest.sh writes.
    sed -n '/^==== guest: begin/,/^==== guest: end/p' "$LOG.txt"
fi
result=$(grep -a '^RESULT ' "$LOG.txt" | tail -1 || true)
[ $qrc = 124 ] && say "the guest did not finish within ${TIMEOUT}s"
say "qemu exit $qrc after ${secs}s; ${result:-no RESULT line from the guest}; log: $LOG.txt"
if [ "$result" != "RESULT status=PASS" ]; then
    if [ -z "$result" ] && [ "${VERBOSE:-0}" != 1 ]; then
        say "the guest never reported: its console follows"
        tail -n 60 "$LOG.txt" >&2
    fi
    say "FAILED"
    exit 1
fi
rm -rf "$RUN"
say "PASSED: every selected test passed on pure cgroup v2"
