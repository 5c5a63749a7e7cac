//! Filling an empty volume with what the image holds at the mount point ("copy-up"), as
//! Docker does the first time a volume is mounted.
//!
//! Reference: docker-run(1) "--volume" ("the volume is populated with the content of the
//! image at the mount point"), openat2(2) `RESOLVE_IN_ROOT`. The image side is hostile: the
//! starting directory is found inside the rootfs (an image volume of `/../../etc/shadow` is
//! the rootfs's `/etc/shadow`, containerd CVE-2022-23648), and every entry below is opened
//! with `O_NOFOLLOW` relative to its parent's descriptor, so no symlink is followed at all;
//! symlinks are copied as symlinks. Regular files stream through a fixed buffer.

use crate::error::{Context, Error, Result};
use crate::explain;
use crate::fsroot::{self, CleanPath, Root};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

/// Deeper trees are refused rather than recursed into without end.
const MAX_DEPTH: u32 = 256;

// ANCHOR: fill_if_empty
/// If `data` is empty, copy the image's directory `target` (if it is one) into it, with
/// owners, modes and modification times; `data` takes the directory's own owner and mode.
pub fn fill_if_empty(image: &Root, target: &CleanPath, data: &Path) -> Result<()> {
    let dst = fsroot::open_raw(libc::AT_FDCWD, data.as_os_str(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .ctx(|| format!("open {}", data.display()))?;
    // One filler at a time: a second container starting on the same new volume waits,
    // then finds it full.
    // Released when `dst` is closed.
    fsroot::flock(&dst, libc::LOCK_EX).ctx(|| format!("lock {}", data.display()))?;
    if !fsroot::list_dir(dst.as_raw_fd()).ctx(|| format!("read {}", data.display()))?.is_empty() {
        return Ok(());
    }
    let src = match image.open_in(target, libc::O_RDONLY | libc::O_DIRECTORY) {
        Ok(fd) => fd,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => return Ok(()),
        Err(e) => return Err(Error::io(format!("open the image's {target}"), e)),
    };
    explain!("copy the image's {target} into the empty volume {}", data.display());
    let st = fsroot::fstat(src.as_raw_fd()).ctx(|| format!("stat {target}"))?;
    copy_dir(&src, &dst, 0)?;
    set_owner_mode(&dst, &st).ctx(|| format!("chown {}", data.display()))
}
// ANCHOR_END: fill_if_empty

fn set_owner_mode(fd: &OwnedFd, st: &libc::stat) -> std::io::Result<()> {
    // SAFETY: fchown/fchmod on a descriptor we own.
    unsafe {
        if libc::fchown(fd.as_raw_fd(), st.st_uid, st.st_gid) != 0 || libc::fchmod(fd.as_raw_fd(), st.st_mode & 0o7777) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn copy_dir(src: &OwnedFd, dst: &OwnedFd, depth: u32) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(Error::invalid(format!("more than {MAX_DEPTH} nested directories")));
    }
    for name in fsroot::list_dir(src.as_raw_fd()).ctx(|| "read directory")? {
        copy_entry(src.as_raw_fd(), dst.as_raw_fd(), &name, depth).ctx(|| format!("copy {}", name.to_string_lossy()))?;
    }
    Ok(())
}

fn copy_entry(src: RawFd, dst: RawFd, name: &OsStr, depth: u32) -> Result<()> {
    let st = fsroot::lstatat(src, name).ctx(|| "stat")?;
    let nofollow = libc::O_NOFOLLOW | libc::O_NONBLOCK;
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => {
            fsroot::mkdirat(dst, name, 0o700).ctx(|| "mkdir")?;
            let s = fsroot::open_raw(src, name, libc::O_RDONLY | libc::O_DIRECTORY | nofollow).ctx(|| "open")?;
            let d = fsroot::open_raw(dst, name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW).ctx(|| "open")?;
            copy_dir(&s, &d, depth + 1)?;
            set_owner_mode(&d, &st).ctx(|| "chown")?;
        }
        libc::S_IFREG => {
            let s = fsroot::open_raw(src, name, libc::O_RDONLY | nofollow).ctx(|| "open")?;
            // The name may have been swapped since lstat: copy only what is still a file.
            if fsroot::fstat(s.as_raw_fd()).map(|x| x.st_mode & libc::S_IFMT != libc::S_IFREG).unwrap_or(true) {
                return Ok(());
            }
            let mut out = fsroot::create_file(dst, name, 0o600).ctx(|| "create")?;
            std::io::copy(&mut std::fs::File::from(s), &mut out).ctx(|| "copy data")?;
            set_owner_mode(&OwnedFd::from(out), &st).ctx(|| "chown")?;
        }
        libc::S_IFLNK => {
            let target = fsroot::readlinkat(src, name).ctx(|| "readlink")?;
            fsroot::symlinkat(OsStr::from_bytes(&target), dst, name).ctx(|| "symlink")?;
            fsroot::lchownat(dst, name, st.st_uid, st.st_gid).ctx(|| "chown")?;
            return Ok(());
        }
        libc::S_IFIFO => {
            fsroot::mknodat(dst, name, libc::S_IFIFO | 0o600, 0).ctx(|| "mkfifo")?;
            fsroot::lchownat(dst, name, st.st_uid, st.st_gid).ctx(|| "chown")?;
            fsroot::chmodat(dst, name, st.st_mode & 0o7777).ctx(|| "chmod")?;
        }
        // Devices and sockets are not copied: a volume is mounted nodev, and a socket is
        // only meaningful to the process that bound it.
        _ => return Ok(()),
    }
    fsroot::lutimesat(dst, name, st.st_mtime, st.st_mtime_nsec).ctx(|| "set times")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn copies_the_tree_without_following_links() {
        let t = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("secret"), "host").unwrap();
        let rootfs = t.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc/app/sub")).unwrap();
        std::fs::write(rootfs.join("etc/app/conf"), "image").unwrap();
        std::fs::write(rootfs.join("etc/app/sub/deep"), "deep").unwrap();
        std::os::unix::fs::symlink(host.path().join("secret"), rootfs.join("etc/app/link")).unwrap();
        std::os::unix::fs::symlink(host.path(), rootfs.join("etc/app/dirlink")).unwrap();
        std::os::unix::fs::chown(rootfs.join("etc/app/conf"), Some(1000), Some(1001)).unwrap();
        // A path climbing out resolves inside the root: /../../etc/app is the rootfs's.
        std::os::unix::fs::symlink(host.path(), rootfs.join("escape")).unwrap();
        let data = t.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let root = Root::open(&rootfs).unwrap();
        fill_if_empty(&root, &CleanPath::new(b"/../../etc/app"), &data).unwrap();
        assert_eq!(std::fs::read_to_string(data.join("conf")).unwrap(), "image");
        assert_eq!(std::fs::read_to_string(data.join("sub/deep")).unwrap(), "deep");
        assert_eq!(std::fs::metadata(data.join("conf")).unwrap().uid(), 1000);
        assert!(std::fs::symlink_metadata(data.join("link")).unwrap().file_type().is_symlink());
        // Not empty any more: a second fill changes nothing.
        std::fs::remove_file(data.join("conf")).unwrap();
        fill_if_empty(&root, &CleanPath::new(b"/etc/app"), &data).unwrap();
        assert!(!data.join("conf").exists());
        // An absolute symlink out of the root is followed inside it: nothing of the host.
        let data2 = t.path().join("data2");
        std::fs::create_dir(&data2).unwrap();
        fill_if_empty(&root, &CleanPath::new(b"/escape"), &data2).unwrap();
        assert!(!data2.join("secret").exists());
    }
}
