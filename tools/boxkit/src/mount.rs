//! Building the container's view of the filesystem: its mounts, its /dev, and the switch of
//! root with pivot_root.
//!
//! Reference: mount(2), mount_namespaces(7) (propagation: why everything is made private
//! first), pivot_root(2) (including the `pivot_root(".", ".")` idiom), the OCI runtime spec
//! config.md "Mounts" and config-linux.md "Default Devices", "Masked Paths", "Readonly Paths".
//!
//! Mount targets are found inside the rootfs with openat2 `RESOLVE_IN_ROOT` and mounted on
//! through `/proc/self/fd/N`, so a rootfs that makes `/proc` a symlink to a host path cannot
//! redirect a mount (runc CVE-2019-19921). Kernel filesystems (proc, sysfs, tmpfs, devpts,
//! mqueue) refuse any symlink in their target path at all.

use crate::error::{Context, Error, Result};
use crate::explain;
use crate::fsroot::{self, CleanPath, Root};
use crate::runtime::Mount;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::ffi::OsStr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

// ANCHOR: make_private
/// Make every mount in this (new) mount namespace private: nothing done from now on
/// propagates back to the host.
pub fn make_private() -> Result<()> {
    explain!("mount(NULL, \"/\", NULL, MS_REC|MS_PRIVATE): no mount event leaves this namespace");
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .ctx(|| "make / private")
}

/// pivot_root needs the new root to be a mount point: bind it onto itself. With `nodev`
/// (when no device filter guards the container) a device node shipped in an image is inert;
/// only the fresh /dev holds live ones.
pub fn bind_self(rootfs: &Path, nodev: bool) -> Result<()> {
    explain!("mount({0:?}, {0:?}, MS_BIND|MS_REC): the rootfs becomes a mount point", rootfs);
    mount(Some(rootfs), rootfs, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .ctx(|| format!("bind {} onto itself", rootfs.display()))?;
    if !nodev {
        return Ok(());
    }
    explain!("remount it MS_NODEV: device files in the image cannot be opened");
    remount_bind(rootfs, MsFlags::MS_NODEV).ctx(|| format!("remount {} nodev", rootfs.display()))
}
// ANCHOR_END: make_private

/// Split `["nosuid","ro","mode=755"]` into mount flags and the data string.
fn parse_options(opts: &[String]) -> (MsFlags, Vec<String>, bool) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    let mut ro = false;
    for o in opts {
        match o.as_str() {
            "ro" => ro = true,
            "rw" | "defaults" => {}
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "sync" => flags |= MsFlags::MS_SYNCHRONOUS,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "private" | "rprivate" | "slave" | "rslave" | "shared" | "rshared" => {}
            other => data.push(other.to_string()),
        }
    }
    (flags, data, ro)
}

/// Apply one mount of config.json under `root`.
pub fn mount_one(root: &Root, m: &Mount, bundle: &Path) -> Result<()> {
    let kind = m.kind.as_deref().unwrap_or("none");
    let (mut flags, data, ro) = parse_options(&m.options);
    let is_bind = kind == "bind" || flags.contains(MsFlags::MS_BIND);
    if kind == "cgroup" || kind == "cgroup2" {
        explain!("skip {kind} mount on {}: needs a cgroup namespace", m.destination);
        return Ok(());
    }
    let dest = CleanPath::new(m.destination.as_bytes());
    if dest.is_root() {
        return Err(Error::invalid("a mount over / is not allowed"));
    }
    let source = m.source.clone().unwrap_or_else(|| kind.to_string());
    // A bind of a file needs a file to mount on; everything else a directory.
    let src_path = if is_bind {
        let p = PathBuf::from(&source);
        Some(if p.is_relative() { bundle.join(p) } else { p })
    } else {
        None
    };
    let want_file = src_path.as_ref().map(|p| !p.is_dir()).unwrap_or(false);
    let target = mount_target(root, &dest, want_file, !is_bind)?;
    let target_path = format!("/proc/self/fd/{}", target.as_raw_fd());
    let data = data.join(",");
    explain!(
        "mount({:?}, {:?}, {:?}, {}{})",
        src_path.as_ref().map(|p| p.display().to_string()).unwrap_or(source.clone()),
        m.destination,
        if is_bind { "bind" } else { kind },
        flag_names(if ro { flags | MsFlags::MS_RDONLY } else { flags }),
        if data.is_empty() { String::new() } else { format!(", \"{data}\"") }
    );
    if is_bind {
        let src = src_path.unwrap();
        mount(Some(&src), target_path.as_str(), None::<&str>, flags, None::<&str>)
            .ctx(|| format!("bind {} on {}", src.display(), m.destination))?;
        let extra = flags & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
        if ro || !extra.is_empty() {
            // The descriptor opened before the bind names the directory underneath: open
            // the target again to reach the new mount.
            let fresh = mount_target(root, &dest, want_file, false)?;
            let fresh_path = format!("/proc/self/fd/{}", fresh.as_raw_fd());
            let add = if ro { extra | MsFlags::MS_RDONLY } else { extra };
            remount_bind(Path::new(&fresh_path), add).ctx(|| format!("remount {} with {}", m.destination, flag_names(add)))?;
        }
    } else {
        if ro {
            flags |= MsFlags::MS_RDONLY;
        }
        let data = if data.is_empty() { None } else { Some(data.as_str()) };
        mount(Some(source.as_str()), target_path.as_str(), Some(kind), flags, data)
            .ctx(|| format!("mount {kind} on {}", m.destination))?;
    }
    Ok(())
}

/// `MS_NOSUID|MS_NODEV|MS_RDONLY`, as the man page writes mount flags.
fn flag_names(f: MsFlags) -> String {
    let names = [
        (MsFlags::MS_RDONLY, "MS_RDONLY"),
        (MsFlags::MS_NOSUID, "MS_NOSUID"),
        (MsFlags::MS_NODEV, "MS_NODEV"),
        (MsFlags::MS_NOEXEC, "MS_NOEXEC"),
        (MsFlags::MS_SYNCHRONOUS, "MS_SYNCHRONOUS"),
        (MsFlags::MS_BIND, "MS_BIND"),
        (MsFlags::MS_REC, "MS_REC"),
        (MsFlags::MS_NOATIME, "MS_NOATIME"),
        (MsFlags::MS_RELATIME, "MS_RELATIME"),
        (MsFlags::MS_STRICTATIME, "MS_STRICTATIME"),
    ];
    let v: Vec<&str> = names.iter().filter(|(x, _)| f.contains(*x)).map(|(_, n)| *n).collect();
    if v.is_empty() { "0".to_string() } else { v.join("|") }
}

/// Remount a bind mount adding `add`, keeping the flags it has (a remount replaces them
/// all: without this, `ro` would silently drop a host's `nosuid,nodev,noexec`).
fn remount_bind(target: &Path, add: MsFlags) -> nix::Result<()> {
    let keep = current_flags(target)?;
    mount(None::<&str>, target, None::<&str>, keep | add | MsFlags::MS_BIND | MsFlags::MS_REMOUNT, None::<&str>)
}

/// The mount flags of the mount holding `path`, from statvfs(3).
fn current_flags(path: &Path) -> nix::Result<MsFlags> {
    use nix::sys::statvfs::FsFlags;
    let f = nix::sys::statvfs::statvfs(path)?.flags();
    let map = [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ];
    Ok(map.iter().filter(|(st, _)| f.contains(*st)).fold(MsFlags::empty(), |acc, (_, ms)| acc | *ms))
}

// ANCHOR: mount_target
/// Find (or create) a mount point inside the root. With `strict`, no symlink may appear
/// anywhere in the path.
pub(crate) fn mount_target(root: &Root, dest: &CleanPath, file: bool, strict: bool) -> Result<OwnedFd> {
    let resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS | if strict { libc::RESOLVE_NO_SYMLINKS } else { 0 };
    let open = |p: &CleanPath| {
        fsroot::openat2(root.fd(), p.to_path().as_os_str(), libc::O_PATH | libc::O_CLOEXEC, resolve)
    };
    match open(dest) {
        Ok(fd) => {
            refuse_proc(&fd, dest)?;
            let st = fsroot::fstat(fd.as_raw_fd()).ctx(|| format!("stat {dest}"))?;
            let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
            if is_dir == file {
                return Err(Error::invalid(format!(
                    "mount destination {dest} is a {} but the mount needs a {}",
                    if is_dir { "directory" } else { "file" },
                    if file { "file" } else { "directory" }
                )));
            }
            Ok(fd)
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) || e.raw_os_error() == Some(libc::EXDEV) => Err(Error::invalid(
            format!("mount destination {dest} is or passes through a symlink; refusing to mount there"),
        )),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            let parent = root.dir(&dest.parent(), true)?;
            let name = dest.file_name().unwrap();
            if file {
                fsroot::create_file(parent.as_raw_fd(), name, 0o644).ctx(|| format!("create mount point {dest}"))?;
            } else {
                fsroot::mkdirat(parent.as_raw_fd(), name, 0o755).ctx(|| format!("create mount point {dest}"))?;
            }
            open(dest).ctx(|| format!("mount point {dest}"))
        }
        Err(e) => Err(Error::io(format!("mount point {dest}"), e)),
    }
}
// ANCHOR_END: mount_target

// ANCHOR: refuse_proc
/// Nothing is mounted on a procfs inode, however the target was reached (a symlink to
/// /proc/sys included): a mount there could hide what the LSM profile guards (runc
/// CVE-2019-16884).
fn refuse_proc(fd: &OwnedFd, dest: &CleanPath) -> Result<()> {
    let st = nix::sys::statfs::fstatfs(fd).ctx(|| format!("statfs {dest}"))?;
    if st.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC {
        return Err(Error::invalid(format!("mount destination {dest} is inside /proc: refused (runc CVE-2019-16884)")));
    }
    Ok(())
}
// ANCHOR_END: refuse_proc

/// The devices every container gets (OCI runtime spec, "Default Devices"), made in the fresh
/// /dev tmpfs, plus the usual symlinks into /proc.
pub fn populate_dev(root: &Root) -> Result<()> {
    let dev = root.dir(&CleanPath::new(b"/dev"), false)?;
    let fd = dev.as_raw_fd();
    let devices: [(&str, u32, u32); 6] =
        [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];
    for (name, major, minor) in devices {
        let n = OsStr::new(name);
        match fsroot::mknodat(fd, n, libc::S_IFCHR | 0o666, libc::makedev(major, minor)) {
            Ok(()) => {
                // The umask may have trimmed the mode.
                fsroot::chmodat(fd, n, 0o666).ctx(|| format!("chmod /dev/{name}"))?;
            }
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                // Without CAP_MKNOD (a user namespace): bind the host's device instead.
                fsroot::create_file(fd, n, 0o666).ctx(|| format!("create /dev/{name}"))?;
                let target = format!("/proc/self/fd/{fd}/{name}");
                mount(Some(format!("/dev/{name}").as_str()), target.as_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>)
                    .ctx(|| format!("bind /dev/{name}"))?;
            }
            Err(e) => return Err(Error::io(format!("mknod /dev/{name}"), e)),
        }
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
        ("core", "/proc/kcore"),
    ] {
        match fsroot::symlinkat(OsStr::new(target), fd, OsStr::new(name)) {
            Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(Error::io(format!("symlink /dev/{name}"), e)),
            _ => {}
        }
    }
    explain!("mknod /dev/{{null,zero,full,random,urandom,tty}}; symlink /dev/{{fd,stdin,stdout,stderr,ptmx}}");
    Ok(())
}

// ANCHOR: pivot_root
/// Switch the root: `pivot_root(".", ".")` stacks the old root on top of the new one at `/`,
/// and a lazy unmount of `.` then detaches it, so no path leads back to the host.
pub fn pivot_root(rootfs: &Path) -> Result<()> {
    nix::unistd::chdir(rootfs).ctx(|| format!("chdir {}", rootfs.display()))?;
    explain!("pivot_root(\".\", \".\") in {}", rootfs.display());
    nix::unistd::pivot_root(".", ".").ctx(|| "pivot_root")?;
    // The old root may hold shared mounts: make it private before detaching it.
    mount(None::<&str>, ".", None::<&str>, MsFlags::MS_SLAVE | MsFlags::MS_REC, None::<&str>).ctx(|| "make old root a slave")?;
    explain!("umount2(\".\", MNT_DETACH): the host's root is gone from this namespace");
    umount2(".", MntFlags::MNT_DETACH).ctx(|| "detach the old root")?;
    nix::unistd::chdir("/").ctx(|| "chdir /")
}
// ANCHOR_END: pivot_root

// ANCHOR: mask_paths
/// Hide paths (runc's masked paths): a file gets /dev/null bound over it, a directory an
/// empty read-only tmpfs. Called after pivot_root, on the container's own /proc and /sys.
pub fn mask_paths(paths: &[String]) -> Result<()> {
    for p in paths {
        let Ok(meta) = std::fs::symlink_metadata(p) else { continue };
        if meta.is_dir() {
            mount(Some("tmpfs"), p.as_str(), Some("tmpfs"), MsFlags::MS_RDONLY, Some("size=0"))
        } else {
            mount(Some("/dev/null"), p.as_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>)
        }
        .ctx(|| format!("mask {p}"))?;
    }
    explain!("masked {} paths (/proc/kcore, /proc/keys, /sys/firmware …)", paths.len());
    Ok(())
}

/// Make paths read-only (runc's readonly paths): bind each onto itself, then remount it ro.
pub fn readonly_paths(paths: &[String]) -> Result<()> {
    for p in paths {
        if std::fs::symlink_metadata(p).is_err() {
            continue;
        }
        mount(Some(p.as_str()), p.as_str(), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
            .ctx(|| format!("bind {p}"))?;
        remount_bind(Path::new(p), MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC)
            .ctx(|| format!("remount {p} read-only"))?;
    }
    explain!("read-only: {}", paths.join(" "));
    Ok(())
}
// ANCHOR_END: mask_paths

/// Remount the container's root read-only (`root.readonly` in config.json).
pub fn readonly_root() -> Result<()> {
    remount_bind(Path::new("/"), MsFlags::MS_RDONLY).ctx(|| "remount / read-only")
}
