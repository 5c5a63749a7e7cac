//! What changes when a container's root is not the host's root: a helper process that is
//! root of a user namespace (to lay out files owned by mapped ids), ownership shifted into a
//! mapped range, the mounts a user namespace may not make, and cgroups only when delegated.
//!
//! Reference: user_namespaces(7); mount_namespaces(7) ("Restrictions on mount namespaces":
//! mounts inherited from a more privileged namespace are locked); sysfs needs the network
//! namespace's owner (sysfs(5), runc's rootless specconv); chown(2) (clears set-user-ID and
//! set-group-ID bits and `security.capability`); the kernel's cgroup-v2.rst "Delegation".
//!
//! Rootless Podman applies image layers in a process that is root of a user namespace with
//! the same maps its containers use (`podman unshare`), so the owners it writes are the
//! image's own ids, mapped. Root instead writes them directly, shifted into the range
//! (containers/storage's chown driver).

use crate::error::{Context, Error, Kind, Result};
use crate::explain;
use crate::fsroot;
use crate::layer;
use crate::runtime::{Mount, Spec};
use crate::userns::{self, Mapping};
use nix::sched::CloneFlags;
use nix::sys::wait::{waitpid, WaitStatus};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

// ANCHOR: as_mapped_root
/// Run `f` in a child process that is root of a new user namespace with the maps `m`, and
/// return its result. The caller must be single-threaded (like fork(2)'s caller).
pub fn as_mapped_root(m: &Mapping, f: impl FnOnce() -> Result<()>) -> Result<()> {
    let sync = userns::Sync::new()?;
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(|| "pipe")?;
    explain!("clone(CLONE_NEWUSER): a helper that is root of a new user namespace");
    // SAFETY: a raw clone without CLONE_VM behaves like fork(2) in a single-threaded process.
    let pid = unsafe { libc::syscall(libc::SYS_clone, libc::CLONE_NEWUSER as libc::c_long | libc::SIGCHLD as libc::c_long, 0, 0, 0, 0) };
    if pid < 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::io("clone(CLONE_NEWUSER) (are user namespaces enabled? /proc/sys/user/max_user_namespaces)", e));
    }
    if pid == 0 {
        drop(err_r);
        // SAFETY: integer-only prctl.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) };
        let result = sync.wait_and_become_root().and_then(|_| f());
        let code = match result {
            Ok(()) => 0,
            Err(e) => {
                let _ = std::fs::File::from(err_w).write_all(&e.to_report());
                1
            }
        };
        // SAFETY: leave the helper without running the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    let child = nix::unistd::Pid::from_raw(pid as i32);
    drop(err_w);
    if let Err(e) = sync.release(pid as i32, m) {
        let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(child, None);
        return Err(e);
    }
    let mut report = Vec::new();
    let _ = std::fs::File::from(err_r).read_to_end(&mut report);
    let status = waitpid(child, None).ctx(|| "wait for the user namespace helper")?;
    if !report.is_empty() {
        return Err(Error::from_report(&report));
    }
    match status {
        WaitStatus::Exited(_, 0) => Ok(()),
        other => Err(Error::new(Kind::System, format!("the user namespace helper ended with {other:?}"))),
    }
}
// ANCHOR_END: as_mapped_root

/// Remove a tree whose files may belong to mapped ids the caller cannot delete as itself.
pub fn remove_tree(path: &Path, m: Option<&Mapping>) -> Result<()> {
    let rm = || std::fs::remove_dir_all(path).or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) }).ctx(|| format!("remove {}", path.display()));
    match m {
        Some(m) if !nix::unistd::geteuid().is_root() => as_mapped_root(m, rm),
        _ => rm(),
    }
}

// ANCHOR: shift_ids
/// Move every owner in the tree at `rootfs` into the range `m` maps it to (uid 0 becomes
/// the host id of the container's root, and so on), keeping the modes and file
/// capabilities that chown(2) clears. Nothing is followed through a symlink; a hard-linked
/// inode is shifted once. An id the mapping does not cover is an error.
pub fn shift_ids(rootfs: &Path, m: &Mapping) -> Result<()> {
    let parent = rootfs.parent().unwrap_or(Path::new("/"));
    let name = rootfs.file_name().ok_or_else(|| Error::invalid(format!("bad rootfs {}", rootfs.display())))?;
    let pfd = fsroot::open_raw(libc::AT_FDCWD, parent.as_os_str(), libc::O_RDONLY | libc::O_DIRECTORY)
        .ctx(|| format!("open {}", parent.display()))?;
    let mut seen = HashSet::new();
    shift_one(pfd.as_raw_fd(), name, m, &mut seen, Path::new("/"))?;
    explain!("chowned {} into the mapped range (uid 0 is host uid {:?})", rootfs.display(), userns::to_host(&m.uids, 0));
    Ok(())
}

fn shift_one(dirfd: i32, name: &OsStr, m: &Mapping, seen: &mut HashSet<(u64, u64)>, path: &Path) -> Result<()> {
    let st = fsroot::lstatat(dirfd, name).ctx(|| format!("stat {}", path.display()))?;
    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    let is_link = st.st_mode & libc::S_IFMT == libc::S_IFLNK;
    if is_dir || st.st_nlink < 2 || seen.insert((st.st_dev, st.st_ino)) {
        let uid = userns::to_host(&m.uids, st.st_uid)
            .ok_or_else(|| Error::invalid(format!("{}: owner uid {} is outside the mapped range", path.display(), st.st_uid)))?;
        let gid = userns::to_host(&m.gids, st.st_gid)
            .ok_or_else(|| Error::invalid(format!("{}: group gid {} is outside the mapped range", path.display(), st.st_gid)))?;
        let caps = if is_link { None } else { file_caps(dirfd, name) };
        fsroot::lchownat(dirfd, name, uid, gid).ctx(|| format!("chown {}", path.display()))?;
        if !is_link {
            fsroot::chmodat(dirfd, name, st.st_mode & 0o7777).ctx(|| format!("chmod {}", path.display()))?;
        }
        if let Some(v) = caps {
            fsroot::lsetxattrat(dirfd, name, OsStr::new("security.capability"), &v).ctx(|| format!("restore file capabilities of {}", path.display()))?;
        }
    }
    if is_dir {
        let fd = fsroot::open_raw(dirfd, name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW).ctx(|| format!("open {}", path.display()))?;
        for child in fsroot::list_dir(fd.as_raw_fd()).ctx(|| format!("list {}", path.display()))? {
            shift_one(fd.as_raw_fd(), &child, m, seen, &path.join(&child))?;
        }
    }
    Ok(())
}

fn file_caps(dirfd: i32, name: &OsStr) -> Option<Vec<u8>> {
    fsroot::lxattrsat(dirfd, name).ok()?.into_iter().find(|(k, _)| k == "security.capability").map(|(_, v)| v)
}
// ANCHOR_END: shift_ids

// ANCHOR: unshift
/// The inverse of [`shift_ids`] for a layer: the owners of a container's changes, read on
/// the host, as the container sees them (host uid 1000 back to 0 when 0 maps to it), so an
/// image committed from a user namespace's bundle holds the image's own ids. Whiteout
/// markers (`.wh.*`, made by the diff, not read from disk) and ids outside the maps keep
/// theirs.
pub fn unshift_changes(changes: &mut crate::diff::Changes, m: &Mapping) {
    for item in changes.items.iter_mut() {
        if layer::is_whiteout_name(&item.meta.path) {
            continue;
        }
        if let Some(u) = userns::to_container(&m.uids, item.meta.uid) {
            item.meta.uid = u;
        }
        if let Some(g) = userns::to_container(&m.gids, item.meta.gid) {
            item.meta.gid = g;
        }
    }
    explain!("owners mapped back through the user namespace's maps (host uid {:?} is uid 0)", userns::to_host(&m.uids, 0));
}
// ANCHOR_END: unshift

// ANCHOR: check_reachable
/// The container's root is an ordinary host id: it must be able to reach its rootfs (every
/// directory on the way searchable by that id), or the mounts fail with a bare EACCES.
pub fn check_reachable(rootfs: &Path, m: &Mapping) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let (Some(uid), Some(gid)) = (userns::to_host(&m.uids, 0), userns::to_host(&m.gids, 0)) else {
        return Err(Error::invalid("the user namespace maps no uid 0 or no gid 0: the container would have no root"));
    };
    if uid == nix::unistd::geteuid().as_raw() {
        return Ok(());
    }
    for dir in rootfs.ancestors().collect::<Vec<_>>().into_iter().rev() {
        let md = std::fs::metadata(dir).ctx(|| format!("stat {}", dir.display()))?;
        let bits = if md.uid() == uid { 0o100 } else if md.gid() == gid { 0o010 } else { 0o001 };
        if md.mode() & bits == 0 {
            return Err(Error::invalid(format!(
                "the container's root is host uid {uid}, which cannot enter {} (mode {:o}, owner {}:{}): make the bundle with box-unpack --userns",
                dir.display(),
                md.mode() & 0o7777,
                md.uid(),
                md.gid()
            )));
        }
    }
    Ok(())
}
// ANCHOR_END: check_reachable

// ANCHOR: adapt_spec
/// The config.json a process in a new user namespace can apply: a user namespace may mount
/// sysfs only when it owns the network namespace too (otherwise the host's /sys is bound,
/// read-only, as runc does for rootless containers), and devpts's `gid=` must name a
/// mapped group.
pub fn adapt_spec(spec: &Spec, m: &Mapping, flags: CloneFlags) -> Spec {
    let mut spec = spec.clone();
    let own_net = flags.contains(CloneFlags::CLONE_NEWNET);
    for mnt in spec.mounts.iter_mut() {
        match mnt.kind.as_deref() {
            Some("sysfs") if !own_net => {
                explain!("{}: no network namespace of our own: bind the host's /sys instead of mounting sysfs", mnt.destination);
                *mnt = Mount {
                    destination: mnt.destination.clone(),
                    kind: Some("bind".into()),
                    source: Some("/sys".into()),
                    options: ["rbind", "nosuid", "noexec", "nodev", "ro"].iter().map(|s| s.to_string()).collect(),
                };
            }
            Some("devpts") => mnt.options.retain(|o| match o.strip_prefix("gid=").and_then(|g| g.parse().ok()) {
                Some(g) if userns::to_host(&m.gids, g).is_none() => {
                    explain!("devpts: drop {o}: that group is not mapped");
                    false
                }
                _ => true,
            }),
            _ => {}
        }
    }
    spec
}
// ANCHOR_END: adapt_spec

// ANCHOR: delegated
/// Whether this process may move itself into the cgroup of `procs` (its `cgroup.procs`):
/// root may; anyone else only where that subtree was delegated to them (systemd's
/// `Delegate=yes` chowns it to the user).
pub fn may_join_cgroup(procs: &Path) -> bool {
    nix::unistd::access(procs, nix::unistd::AccessFlags::W_OK).is_ok()
}
// ANCHOR_END: delegated

#[cfg(test)]
mod tests {
    use super::*;
    use crate::userns::IdMap;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn sysfs_becomes_a_bind_without_a_network_namespace_and_devpts_loses_unmapped_gids() {
        let m = Mapping { uids: vec![IdMap { container_id: 0, host_id: 1000, size: 1 }], gids: vec![IdMap { container_id: 0, host_id: 1000, size: 1 }] };
        let spec = Spec {
            oci_version: "1.1.0".into(),
            process: None,
            root: None,
            hostname: None,
            mounts: crate::runtime::default_mounts(),
            linux: None,
            annotations: Default::default(),
            extra: Default::default(),
        };
        let a = adapt_spec(&spec, &m, CloneFlags::CLONE_NEWNS);
        let sys = a.mounts.iter().find(|x| x.destination == "/sys").unwrap();
        assert_eq!((sys.kind.as_deref(), sys.source.as_deref()), (Some("bind"), Some("/sys")));
        assert!(sys.options.contains(&"ro".to_string()));
        let pts = a.mounts.iter().find(|x| x.destination == "/dev/pts").unwrap();
        assert!(!pts.options.iter().any(|o| o.starts_with("gid=")));
        let b = adapt_spec(&spec, &m, CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWNET);
        assert_eq!(b.mounts.iter().find(|x| x.destination == "/sys").unwrap().kind.as_deref(), Some("sysfs"));
    }

    #[test]
    fn ids_shift_into_the_range_keeping_modes() {
        if !nix::unistd::geteuid().is_root() {
            return; // chown to other ids needs root
        }
        let t = tempfile::tempdir().unwrap();
        let r = t.path().join("rootfs");
        std::fs::create_dir(&r).unwrap();
        std::fs::write(r.join("suid"), b"x").unwrap();
        std::os::unix::fs::chown(r.join("suid"), Some(0), Some(0)).unwrap();
        std::fs::set_permissions(r.join("suid"), std::os::unix::fs::PermissionsExt::from_mode(0o4755)).unwrap();
        std::fs::hard_link(r.join("suid"), r.join("link")).unwrap();
        std::os::unix::fs::symlink("suid", r.join("sym")).unwrap();
        std::fs::create_dir(r.join("d")).unwrap();
        std::os::unix::fs::chown(r.join("d"), Some(5), Some(6)).unwrap();
        let m = Mapping { uids: vec![IdMap { container_id: 0, host_id: 700000, size: 100 }], gids: vec![IdMap { container_id: 0, host_id: 800000, size: 100 }] };
        shift_ids(&r, &m).unwrap();
        let md = std::fs::metadata(r.join("suid")).unwrap();
        assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (700000, 800000, 0o4755));
        let d = std::fs::metadata(r.join("d")).unwrap();
        assert_eq!((d.uid(), d.gid()), (700005, 800006));
        assert_eq!(std::fs::symlink_metadata(r.join("sym")).unwrap().uid(), 700000);
        std::os::unix::fs::chown(r.join("d"), Some(500), None).unwrap();
        assert!(shift_ids(&r, &m).unwrap_err().to_string().contains("outside the mapped range"));
    }
}
