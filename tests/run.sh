#!/usr/bin/env bash
# The whole test suite: installs what a fresh Debian machine lacks (the peers the tests
# compare against), builds every tool, runs the unit and integration tests, and builds the
# book. Run as root: the tests create namespaces, mounts and device nodes.
#
#   bash tests/run.sh            # everything (this is what CI runs)
#   BOXKIT_SKIP_BOOK=1 bash tests/run.sh
#   BOXKIT_SKIP_CGROUP_V2_VM=1 bash tests/run.sh   # not the cgroup v2 run under QEMU
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'tests/run.sh: %s\n' "$*" >&2; }

if [ "$(id -u)" != 0 ]; then
    say "run as root: the tests create namespaces, mounts and device nodes"
    exit 1
fi

# Debian packages: the peers (runc, crun, umoci, skopeo, docker-registry), the offline
# busybox image, and the tools the fixture scripts and lessons use.
packages=(busybox-static runc crun umoci skopeo docker-registry apache2-utils openssl python3 tar gzip zstd jq util-linux iproute2 ca-certificates)
# newuidmap/newgidmap: user namespaces with the caller's /etc/subuid and /etc/subgid ranges
packages+=(uidmap)
packages+=(e2fsprogs)  # chattr: the prune test gives a cached layer immutable files
packages+=(time)  # /usr/bin/time: peak memory in the commit test
# The cgroup v2 run (tests/cgroup-v2/run-vm.sh): QEMU, and depmod/modprobe and xz for the
# kernel's modules.
packages+=(qemu-system-x86 kmod xz-utils)
# A C compiler: the zstd and ring crates build C code, and rustup brings none.
packages+=(gcc libc6-dev)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo >/dev/null; then
    say "cargo is missing: install Rust (1.80 or newer) with rustup, then run this again"
    exit 1
fi

# The tests' scratch directories need a filesystem overlayfs accepts as an upper layer: not
# overlayfs itself (as /tmp is when this runs inside a container). Use a tmpfs then.
if [ "$(stat -f -c %T "${TMPDIR:-/tmp}")" = overlayfs ]; then
    say "${TMPDIR:-/tmp} is on overlayfs: the tests use a tmpfs instead"
    scratch=$(mktemp -d /dev/shm/boxkit-tests.XXXXXX 2>/dev/null) || scratch=$(mktemp -d)
    mount -t tmpfs -o mode=1777 tmpfs "$scratch"
    trap 'umount -l "$scratch"; rmdir "$scratch"' EXIT
    export TMPDIR=$scratch
fi

cargo build --workspace --locked
cargo test --workspace --locked
# The cgroup tests again on a kernel with only cgroup v2 (Debian's amd64 kernel, under QEMU),
# whatever this machine runs: about a minute and a half under software emulation.
if [ -n "${BOXKIT_SKIP_CGROUP_V2_VM:-}" ]; then
    say "BOXKIT_SKIP_CGROUP_V2_VM is set: no cgroup v2 run"
elif [ "$(dpkg --print-architecture)" != amd64 ]; then
    say "the cgroup v2 run boots Debian's amd64 kernel: skipped on $(dpkg --print-architecture)"
else
    bash tests/cgroup-v2/run-vm.sh
fi

if [ -z "${BOXKIT_SKIP_BOOK:-}" ]; then
    if ! command -v mdbook >/dev/null; then
        say "installing mdbook"
        cargo install mdbook --locked --no-default-features --version '^0.5' >/dev/null 2>&1 ||
            cargo install mdbook --locked --no-default-features
    fi
    mdbook build book
fi
