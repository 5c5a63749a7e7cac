#!/bin/bash
# PID 1 of the cgroup v2 guest (tests/cgroup-v2/run-vm.sh boots it): the host's userland
# read-only, the guest's own kernel with only cgroup v2. Sets up what the tests need, runs
# the selected integration tests, prints "RESULT status=PASS|FAIL" and powers off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp LC_ALL=C
cd /tmp/scratch || exit 1
. ./guest.env

result() {
    echo "RESULT status=$1${2:+ reason=$2}"
    sync
    echo o >/proc/sysrq-trigger
    sleep 30
}

mkdir -p /dev/pts /dev/shm /dev/mqueue
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t mqueue mqueue /dev/mqueue
ip link set lo up 2>/dev/null

# cgroup v2 alone, with every controller it has enabled for the children of the root, as
# systemd does on a v2 host.
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup || result FAIL cgroup2-mount
if awk '$3 == "cgroup" { found = 1 } END { exit !found }' /proc/self/mounts || [ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ]; then
    result FAIL not-pure-cgroup-v2
fi
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
    echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control
done

# Writable places the tests expect: cargo's CARGO_TARGET_TMPDIR (fixtures) is under the
# read-only source tree, so it gets a tmpfs; /tmp is one already.
mount -t tmpfs -o mode=755 tmpfs "$TARGET_TMP" || result FAIL target-tmp-mount
export BOXKIT_TEST_BUSYBOX_TAR=/tmp/scratch/busybox.tar

# Some swap (compressed in memory), so that --memory-swap can be seen to let a process
# past its memory limit; and the BFQ scheduler on the scratch disk, so that --io-weight
# has something to act on.
# The kernel's modules come from the extracted package (modprobe -d: its root).
modprobe -d "$KERNEL_ROOT" zram num_devices=1 && echo 256M >/sys/block/zram0/disksize &&
    mkswap /dev/zram0 >/dev/null && swapon /dev/zram0 || result FAIL zram-swap
modprobe -d "$KERNEL_ROOT" virtio_blk && modprobe -d "$KERNEL_ROOT" bfq && udevadm settle 2>/dev/null
for i in $(seq 30); do [ -e /sys/block/vda ] && break; sleep 1; done
echo bfq >/sys/block/vda/queue/scheduler || result FAIL bfq-scheduler

echo "==== guest: begin: $(uname -r), $(nproc) CPUs, cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
echo "swap: $(awk 'NR > 1 { print $1, $3 }' /proc/swaps); vda scheduler: $(cat /sys/block/vda/queue/scheduler)"
cd "$REPO"
[ -f /tmp/scratch/before-tests.sh ] && bash /tmp/scratch/before-tests.sh 2>&1
# One test binary run per filter; --test-threads=2 as on a small CI machine.
rc=0
for f in "${FILTERS[@]}"; do
    echo "---- cargo test filter: $f"
    "$INTEGRATION_BIN" --test-threads=2 "$f" 2>&1 | tee /tmp/scratch/test.out
    r=${PIPESTATUS[0]}
    cat /tmp/scratch/test.out >>/tmp/scratch/test.log
    [ "$r" = 0 ] || rc=$r
    # A filter that matched nothing proves nothing.
    grep -q '^running [1-9]' /tmp/scratch/test.out || { echo "---- no test matched $f"; rc=1; }
done
echo "---- guest uptime $(cut -d' ' -f1 /proc/uptime)s"
echo "==== guest: end"
if [ "$rc" = 0 ]; then result PASS; else result FAIL tests; fi
