#!/usr/bin/env bash
# Build boxkit, make the offline busybox image, and run a real container from it.
# Run as root on Debian: sudo bash lessons/quickstart.sh
# or as an ordinary user (rootless: a user namespace; needs busybox-static, and uidmap with
# a range in /etc/subuid for more than one id inside): bash lessons/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'; then
        echo "quickstart: busybox-static is missing: sudo apt-get install busybox-static uidmap" >&2
        exit 1
    fi
    echo "quickstart: not root: the container runs rootless, in a user namespace" >&2
elif [ ! -x /bin/busybox ] || ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'; then
    echo "quickstart: installing busybox-static (the offline image is built from it)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
fi
export PATH="$HOME/.cargo/bin:$PATH"
command -v cargo >/dev/null || { echo "quickstart: cargo is missing: install Rust with rustup first" >&2; exit 1; }

echo "== building boxkit (cargo build --release)" >&2
cargo build --release --workspace --locked -q
export PATH="$PWD/target/release:$PATH"
if [ "$(id -u)" = 0 ]; then
    export BOXKIT_ROOT="${BOXKIT_ROOT:-/var/lib/boxkit}"
    work=/tmp/boxkit-quickstart
else
    # The tools' default for a user: ${XDG_DATA_HOME:-~/.local/share}/boxkit.
    export BOXKIT_ROOT="${BOXKIT_ROOT:-${XDG_DATA_HOME:-$HOME/.local/share}/boxkit}"
    work=/tmp/boxkit-quickstart-$(id -u)
fi
# A rootless bundle may hold directories of subordinate ids: remove those from a user namespace.
{ rm -rf "$work" 2>/dev/null || unshare --user --map-auto --map-root-user rm -rf "$work"; } && mkdir -p "$work"

echo "== 1. a root filesystem tar, built offline from busybox-static" >&2
bash testdata/busybox/make-rootfs.sh "$work/busybox.tar"

echo "== 2. box import: the tar becomes an image in $BOXKIT_ROOT/images (prints its digest)" >&2
box import --change 'CMD ["sh"]' --message "busybox from the quickstart" "$work/busybox.tar" busybox

echo "== 3. box unpack: the image becomes a runtime bundle (config.json + rootfs/)" >&2
box unpack busybox "$work/demo"

echo "== 4. box spawn: a process in new namespaces with that rootfs as /" >&2
box spawn "$work/demo" -- sh -c '
  echo "hostname:   $(hostname)"
  echo "my PID:     $$"
  echo "processes:"; ps -o pid,user,comm
  echo "/ holds:    $(ls / | tr "\n" " ")"
  if [ -e /etc/debian_version ]; then echo "the host is visible"; else echo "the host'"'"'s files (/etc/debian_version, /home, /work) are not here"; fi
  cat /etc/os-release | head -1'

echo >&2
echo "Try it yourself:  export PATH=$PWD/target/release:\$PATH" >&2
echo "                  box spawn $work/demo            # an interactive shell" >&2
echo "                  box spawn --explain $work/demo -- true   # every system call, narrated" >&2
