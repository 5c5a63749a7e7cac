//! Union mounts: a container's root filesystem as an overlay of the image's cached layers
//! and a writable directory of its own, so no container copies its image.
//!
//! Reference: the kernel's Documentation/filesystems/overlayfs.rst (lowerdir, upperdir,
//! workdir, whiteouts, opaque directories, `redirect_dir`, `index`, `metacopy`,
//! `userxattr`, "lowerdir+"); fsopen(2), fsconfig(2), fsmount(2), move_mount(2) for the new
//! mount API; mount(2) for the old one.
//!
//! ```text
//! BUNDLE/                  mode 0700
//!   config.json            as box-unpack writes it
//!   boxkit.json            {"storage": "overlay", …}
//!   rootfs/                overlay: lowerdir = the image's layers in $BOXKIT_ROOT/layers
//!   upper/                 the container's changes: new files, whiteouts, opaque markers
//!   work/                  overlayfs's scratch space (same filesystem as upper/)
//! ```
//!
//! The mount keeps `upper/` a plain diff, so box-commit can read it as a layer:
//! `redirect_dir=off` (a renamed directory is copied up whole, not recorded as a redirect
//! xattr), `metacopy=off` (a chmod copies the data up too) and `index=off`. These are the
//! kernel's defaults unless the overlay module was built or loaded otherwise; boxkit says
//! them anyway so the result never depends on the host.

use crate::bundle::{self, BundleInfo, Storage};
use crate::error::{Context, Error, Result};
use crate::explain;
use crate::layer::OverlayForm;
use crate::layercache;
use crate::runtime;
use crate::store::{Image, Store};
use std::ffi::{CString, OsStr};
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// statfs(2) `f_type` of an overlayfs.
pub const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;
/// The most lower layers one overlay can stack (`OVL_MAX_STACK` in fs/overlayfs).
pub const MAX_LOWERS: usize = 500;

/// Which mount API to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// The new API where the kernel has `lowerdir+` (6.8), else the old one.
    Auto,
    /// fsopen/fsconfig/fsmount/move_mount, one `lowerdir+` per layer.
    Fsconfig,
    /// mount(2) with all options in one page of data.
    Legacy,
}

/// What [`mount_bundle`] made.
pub enum Made {
    /// The bundle, with its rootfs mounted.
    Overlay(BundleInfo),
    /// Nothing: an overlay cannot be made here, for the reason given.
    Unavailable(String),
}

// ANCHOR: options
/// The options besides the directories: keep `upper/` a plain diff (see the module doc).
fn fixed_options(form: OverlayForm) -> Vec<(&'static str, Option<&'static str>)> {
    let mut v = vec![("redirect_dir", Some("nofollow")), ("index", Some("off")), ("metacopy", Some("off"))];
    if form == OverlayForm::User {
        // Read whiteout and opaque markers from user.overlay.* (an unprivileged mount).
        v.push(("userxattr", None));
    }
    v
}
// ANCHOR_END: options

fn fs_type(p: &Path) -> io::Result<i64> {
    let st = nix::sys::statfs::statfs(p).map_err(io::Error::from)?;
    Ok(st.filesystem_type().0 as i64)
}

/// Why an overlay bundle cannot be made in `bundle_parent` with the layer cache of `root`,
/// if it cannot.
pub fn why_unavailable(root: &Path, bundle_parent: &Path) -> Option<String> {
    if fs_type(bundle_parent).ok() == Some(OVERLAYFS_SUPER_MAGIC) {
        return Some(format!(
            "{} is on overlayfs, which cannot hold another overlay's upper directory",
            bundle_parent.display()
        ));
    }
    // The cache may not exist yet: ask about the nearest directory that does.
    let mut probe = root.join("layers");
    while !probe.exists() {
        match probe.parent() {
            Some(p) => probe = p.to_path_buf(),
            None => break,
        }
    }
    if fs_type(&probe).ok() == Some(OVERLAYFS_SUPER_MAGIC) {
        return Some(format!(
            "the layer cache {} is on overlayfs, which cannot keep whiteouts for another overlay",
            root.join("layers").display()
        ));
    }
    None
}

// ANCHOR: mount_bundle
/// Make the bundle `bundle` (which must not exist) for `image`: its layers from the cache
/// (extracted first where missing), an overlay of them on `rootfs/`, config.json and
/// boxkit.json. Keep `store` open meanwhile.
pub fn mount_bundle(store: &Store, image: &Image, name: &str, root: &Path, bundle: &Path, api: Api) -> Result<Made> {
    if bundle.symlink_metadata().is_ok() {
        return Err(Error::invalid(format!("bundle {} already exists", bundle.display())));
    }
    let parent = match bundle.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let parent = fs::canonicalize(&parent).ctx(|| format!("bundle directory {}", parent.display()))?;
    let base = bundle.file_name().ok_or_else(|| Error::invalid(format!("bad bundle path {}", bundle.display())))?;
    if let Some(why) = why_unavailable(root, &parent) {
        return Ok(Made::Unavailable(why));
    }
    let n = image.manifest.layers.len();
    if n > MAX_LOWERS {
        return Err(Error::invalid(format!("the image has {n} layers; an overlay stacks at most {MAX_LOWERS}")));
    }
    let form = layercache::form_for_this_process();
    let mut lowers = Vec::with_capacity(n.max(1));
    for (i, (desc, diff_id)) in image.manifest.layers.iter().zip(&image.config.rootfs.diff_ids).enumerate() {
        let dir = layercache::ensure(store, root, desc, diff_id, form)
            .map_err(|e| e.context(format!("layer {}/{n}", i + 1)))?;
        lowers.push(dir);
    }
    if lowers.is_empty() {
        lowers.push(layercache::empty_dir(root)?);
    }
    lowers.reverse(); // overlayfs names the top layer first

    // The skeleton is built aside and renamed into place before the mount, because
    // overlayfs records upperdir and workdir as the paths it was given (mountinfo shows
    // them): they must be the final ones. config.json and boxkit.json come last.
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.tmp-", base.to_string_lossy()))
        .tempdir_in(&parent)
        .ctx(|| format!("create a temporary bundle in {}", parent.display()))?;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o700)).ctx(|| "chmod bundle")?;
    explain!("mkdir {} (mode 0700: no other user may reach into the bundle), rootfs/, upper/, work/", bundle.display());
    for (dir, mode) in [("rootfs", 0o755), ("upper", 0o755), ("work", 0o700)] {
        fs::create_dir(tmp.path().join(dir)).ctx(|| format!("create {dir}/"))?;
        fs::set_permissions(tmp.path().join(dir), fs::Permissions::from_mode(mode)).ctx(|| format!("chmod {dir}/"))?;
    }
    copy_root_attributes(&lowers[0], &tmp.path().join("upper"))?;
    let tmp = tmp.keep();
    if let Err(e) = crate::unpack::rename_noreplace(&tmp, bundle) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(Error::io(format!("rename into {}", bundle.display()), e));
    }
    let bundle = parent.join(base);
    let rootfs = bundle.join("rootfs");
    // Never remove_dir_all a bundle with its rootfs still mounted: it would descend into it.
    let remove = |mounted: bool| {
        if mounted {
            let _ = nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = fs::remove_dir_all(&bundle);
    };
    if let Err(e) = mount_overlay(&lowers, &bundle.join("upper"), &bundle.join("work"), &rootfs, form, api) {
        remove(false);
        return Ok(Made::Unavailable(format!("the overlay mount failed: {e}")));
    }
    let finish = || -> Result<BundleInfo> {
        let spec = runtime::spec_from_image(&image.config, &rootfs, &runtime::hostname_for(&bundle))?;
        let json = serde_json::to_vec_pretty(&spec).expect("serializing a spec cannot fail");
        write_new(&bundle, "config.json", &json)?;
        explain!("write config.json: args {:?}", spec.process.as_ref().map(|p| &p.args));
        let info = BundleInfo {
            image: name.to_string(),
            manifest: image.descriptor.digest.clone(),
            storage: Storage::Overlay,
            layers: image.config.rootfs.diff_ids.clone(),
        };
        bundle::write_info(&bundle, &info)?;
        Ok(info)
    };
    match finish() {
        Ok(info) => Ok(Made::Overlay(info)),
        Err(e) => {
            remove(true);
            Err(e)
        }
    }
}
// ANCHOR_END: mount_bundle

/// Write a file by rename, so nobody reads half of it.
fn write_new(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.tmp-"))
        .tempfile_in(dir)
        .ctx(|| format!("create a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes).ctx(|| format!("write {name}"))?;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o644)).ctx(|| format!("chmod {name}"))?;
    tmp.persist(dir.join(name)).map_err(|e| Error::io(format!("rename {name} into {}", dir.display()), e.error))?;
    Ok(())
}

/// The merged root directory takes its owner, mode and times from `upper/`: give it those
/// of the top layer's root, as a copy would have.
fn copy_root_attributes(top: &Path, upper: &Path) -> Result<()> {
    let m = fs::metadata(top).ctx(|| format!("stat {}", top.display()))?;
    std::os::unix::fs::chown(upper, Some(m.uid()), Some(m.gid())).ctx(|| format!("chown {}", upper.display()))?;
    fs::set_permissions(upper, fs::Permissions::from_mode(m.mode() & 0o7777)).ctx(|| format!("chmod {}", upper.display()))?;
    crate::fsroot::lutimesat(libc::AT_FDCWD, upper.as_os_str(), m.mtime(), m.mtime_nsec())
        .ctx(|| format!("set times of {}", upper.display()))
}

// ANCHOR: mount_overlay
/// Mount an overlay of `lowers` (top layer first) with `upper` and `work` on `target`.
pub fn mount_overlay(lowers: &[PathBuf], upper: &Path, work: &Path, target: &Path, form: OverlayForm, api: Api) -> Result<()> {
    if lowers.is_empty() || lowers.len() > MAX_LOWERS {
        return Err(Error::invalid(format!("an overlay needs 1 to {MAX_LOWERS} lower layers, not {}", lowers.len())));
    }
    let opts = fixed_options(form);
    if api != Api::Legacy {
        explain!(
            "fsopen(\"overlay\"); fsconfig: {} × lowerdir+ (top first), upperdir, workdir, {}; fsmount; move_mount to {}",
            lowers.len(),
            opts.iter().map(|(k, v)| v.map(|v| format!("{k}={v}")).unwrap_or(k.to_string())).collect::<Vec<_>>().join(","),
            target.display()
        );
        match mount_fsconfig(lowers, upper, work, target, &opts) {
            Ok(()) => return Ok(()),
            // ENOSYS: no new mount API; EINVAL from "lowerdir+": a kernel before 6.8.
            Err(Failure::Unsupported(why)) if api == Api::Auto => {
                explain!("{why}: fall back to mount(2)");
            }
            Err(Failure::Unsupported(why)) => return Err(Error::invalid(why)),
            Err(Failure::Failed(e)) => return Err(e),
        }
    }
    mount_legacy(lowers, upper, work, target, &opts)
}
// ANCHOR_END: mount_overlay

enum Failure {
    Unsupported(String),
    Failed(Error),
}

fn cstring(s: &OsStr) -> Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| Error::invalid(format!("{:?} holds a NUL byte", s)))
}

// Constants of linux/mount.h.
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

/// The messages the kernel logged on an fs context (fsopen(2), "Message retrieval").
fn context_log(fd: &OwnedFd) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        // SAFETY: reading into a buffer we own; ENODATA ends the log.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.push(String::from_utf8_lossy(&buf[..n as usize]).trim_end().to_string());
    }
    out.join("; ")
}

// ANCHOR: mount_fsconfig
fn mount_fsconfig(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    opts: &[(&str, Option<&str>)],
) -> Result<(), Failure> {
    let overlay = CString::new("overlay").unwrap();
    // SAFETY: fsopen with a valid name; the result is a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_fsopen, overlay.as_ptr(), FSOPEN_CLOEXEC) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ENOSYS) => Failure::Unsupported("no fsopen(2) on this kernel".into()),
            _ => Failure::Failed(Error::io("fsopen(\"overlay\")", e)),
        });
    }
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let set = |key: &str, value: Option<&OsStr>| -> Result<(), (io::Error, String)> {
        let k = CString::new(key).unwrap();
        let v = value.map(cstring).transpose().map_err(|e| (io::Error::other(e.to_string()), String::new()))?;
        let (cmd, vp) = match &v {
            Some(v) => (FSCONFIG_SET_STRING, v.as_ptr()),
            None => (FSCONFIG_SET_FLAG, std::ptr::null()),
        };
        // SAFETY: fsconfig with valid C strings (or NULL for a flag).
        if unsafe { libc::syscall(libc::SYS_fsconfig, fd.as_raw_fd(), cmd, k.as_ptr(), vp, 0) } != 0 {
            let e = io::Error::last_os_error();
            return Err((e, context_log(&fd)));
        }
        Ok(())
    };
    let fail = |what: String, (e, log): (io::Error, String)| {
        let what = if log.is_empty() { what } else { format!("{what} ({log})") };
        Failure::Failed(Error::io(what, e))
    };
    for (i, l) in lowers.iter().enumerate() {
        if let Err((e, log)) = set("lowerdir+", Some(l.as_os_str())) {
            if i == 0 && e.raw_os_error() == Some(libc::EINVAL) {
                return Err(Failure::Unsupported(format!("overlayfs here has no \"lowerdir+\" ({log})")));
            }
            return Err(fail(format!("fsconfig lowerdir+ {}", l.display()), (e, log)));
        }
    }
    set("upperdir", Some(upper.as_os_str())).map_err(|e| fail(format!("fsconfig upperdir {}", upper.display()), e))?;
    set("workdir", Some(work.as_os_str())).map_err(|e| fail(format!("fsconfig workdir {}", work.display()), e))?;
    for (k, v) in opts {
        set(k, v.map(OsStr::new)).map_err(|e| fail(format!("fsconfig {k}"), e))?;
    }
    // SAFETY: FSCONFIG_CMD_CREATE takes no key or value.
    if unsafe { libc::syscall(libc::SYS_fsconfig, fd.as_raw_fd(), FSCONFIG_CMD_CREATE, std::ptr::null::<u8>(), std::ptr::null::<u8>(), 0) } != 0 {
        let e = io::Error::last_os_error();
        return Err(fail("create the overlay".into(), (e, context_log(&fd))));
    }
    // SAFETY: fsmount on the configured context; the result is a new descriptor or -1.
    let m = unsafe { libc::syscall(libc::SYS_fsmount, fd.as_raw_fd(), FSMOUNT_CLOEXEC, 0) };
    if m < 0 {
        return Err(Failure::Failed(Error::io("fsmount", io::Error::last_os_error())));
    }
    let m = unsafe { OwnedFd::from_raw_fd(m as i32) };
    let empty = CString::new("").unwrap();
    let t = cstring(target.as_os_str()).map_err(Failure::Failed)?;
    // SAFETY: move_mount of the detached mount onto the target path.
    let r = unsafe {
        libc::syscall(libc::SYS_move_mount, m.as_raw_fd(), empty.as_ptr(), libc::AT_FDCWD, t.as_ptr(), MOVE_MOUNT_F_EMPTY_PATH)
    };
    if r != 0 {
        return Err(Failure::Failed(Error::io(format!("move_mount onto {}", target.display()), io::Error::last_os_error())));
    }
    Ok(())
}
// ANCHOR_END: mount_fsconfig

/// A path as one item of overlayfs's option string: `\`, `,` and `:` escaped.
fn escape(p: &OsStr) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in p.as_bytes() {
        if matches!(b, b'\\' | b',' | b':') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

fn legacy_data(lowers: &[Vec<u8>], upper: &[u8], work: &[u8], opts: &[(&str, Option<&str>)]) -> Vec<u8> {
    let mut d = b"lowerdir=".to_vec();
    d.extend(lowers.join(&b':'));
    d.extend(b",upperdir=");
    d.extend(upper);
    d.extend(b",workdir=");
    d.extend(work);
    for (k, v) in opts {
        d.push(b',');
        d.extend(k.as_bytes());
        if let Some(v) = v {
            d.push(b'=');
            d.extend(v.as_bytes());
        }
    }
    d
}

// ANCHOR: mount_legacy
/// mount(2): every option in one string, which the kernel copies into a single page. With
/// absolute paths about 40 layers fit in 4096 bytes; beyond that, as Docker's overlay2 does
/// with its `l/` links, the layers are named by short symlinks (`0`, `1`, …) in a scratch
/// directory, and the mount is made from a child process whose working directory is that
/// directory, so the option string holds only the short relative names.
fn mount_legacy(lowers: &[PathBuf], upper: &Path, work: &Path, target: &Path, opts: &[(&str, Option<&str>)]) -> Result<()> {
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().unwrap_or(4096) as usize;
    let abs: Vec<Vec<u8>> = lowers.iter().map(|l| escape(l.as_os_str())).collect();
    let data = legacy_data(&abs, &escape(upper.as_os_str()), &escape(work.as_os_str()), opts);
    let t = cstring(target.as_os_str())?;
    if data.len() < page {
        explain!("mount(\"overlay\", {:?}, \"overlay\", 0, \"{}\")", target, String::from_utf8_lossy(&data));
        return legacy_mount_in(None, &t, &data).ctx(|| format!("mount overlay on {}", target.display()));
    }
    // Short names: a scratch directory beside upper/ with one symlink per directory.
    let scratch = tempfile::Builder::new()
        .prefix(".lower-")
        .tempdir_in(upper.parent().unwrap_or(Path::new("/")))
        .ctx(|| "create a directory for short layer names")?;
    for (i, l) in lowers.iter().enumerate() {
        std::os::unix::fs::symlink(l, scratch.path().join(i.to_string())).ctx(|| "symlink a layer")?;
    }
    std::os::unix::fs::symlink(upper, scratch.path().join("u")).ctx(|| "symlink upper")?;
    std::os::unix::fs::symlink(work, scratch.path().join("w")).ctx(|| "symlink work")?;
    let short: Vec<Vec<u8>> = (0..lowers.len()).map(|i| i.to_string().into_bytes()).collect();
    let data = legacy_data(&short, b"u", b"w", opts);
    if data.len() >= page {
        return Err(Error::invalid(format!("{} layers do not fit in one page of mount options", lowers.len())));
    }
    explain!(
        "in {}: mount(\"overlay\", {:?}, \"overlay\", 0, \"{}\")",
        scratch.path().display(),
        target,
        String::from_utf8_lossy(&data)
    );
    let dir = cstring(scratch.path().as_os_str())?;
    // The kernel resolves the names at mount time; the links can go right after.
    legacy_mount_in(Some(&dir), &t, &data).ctx(|| format!("mount overlay on {}", target.display()))
}
// ANCHOR_END: mount_legacy

/// mount(2) of an overlay, from `dir` when given (in a child process, so this process's
/// working directory never changes).
fn legacy_mount_in(dir: Option<&CString>, target: &CString, data: &[u8]) -> io::Result<()> {
    let data = CString::new(data).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let overlay = CString::new("overlay").unwrap();
    let mount = || unsafe {
        libc::mount(overlay.as_ptr(), target.as_ptr(), overlay.as_ptr(), 0, data.as_ptr().cast())
    };
    let Some(dir) = dir else {
        return if mount() == 0 { Ok(()) } else { Err(io::Error::last_os_error()) };
    };
    // SAFETY: the child calls only chdir, mount and _exit (async-signal-safe) on memory
    // prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        unsafe {
            if libc::chdir(dir.as_ptr()) != 0 || mount() != 0 {
                libc::_exit(*libc::__errno_location());
            }
            libc::_exit(0);
        }
    }
    let mut status = 0;
    // SAFETY: waiting for the child we just made.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
    match (libc::WIFEXITED(status), libc::WEXITSTATUS(status)) {
        (true, 0) => Ok(()),
        (true, errno) => Err(io::Error::from_raw_os_error(errno)),
        _ => Err(io::Error::other("the mounting process died")),
    }
}

// ANCHOR: unmount_bundle
/// Unmount an overlay bundle's rootfs. `upper/` stays, so its changes can still be
/// committed. Unmounting a bundle that is not mounted is not an error.
pub fn unmount_bundle(bundle: &Path) -> Result<BundleInfo> {
    let info = bundle::read_info(bundle)?;
    if info.storage != Storage::Overlay {
        return Err(Error::invalid(format!(
            "{} is a copy (made by box-unpack), not an overlay: there is nothing to unmount",
            bundle.display()
        )));
    }
    let rootfs = bundle.join("rootfs");
    explain!("umount2({:?}, UMOUNT_NOFOLLOW)", rootfs);
    match nix::mount::umount2(&rootfs, nix::mount::MntFlags::UMOUNT_NOFOLLOW) {
        Ok(()) => Ok(info),
        Err(nix::errno::Errno::EINVAL) => {
            explain!("{} was not mounted", rootfs.display());
            Ok(info)
        }
        Err(nix::errno::Errno::EBUSY) => Err(Error::invalid(format!(
            "{} is busy: a container still runs in it (stop it first)",
            rootfs.display()
        ))),
        Err(e) => Err(Error::io(format!("unmount {}", rootfs.display()), io::Error::from(e))),
    }
}
// ANCHOR_END: unmount_bundle

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_strings_escape_separators() {
        assert_eq!(escape(OsStr::new("/a:b,c\\d")), b"/a\\:b\\,c\\\\d".to_vec());
        let d = legacy_data(&[b"1".to_vec(), b"0".to_vec()], b"u", b"w", &fixed_options(OverlayForm::User));
        assert_eq!(
            String::from_utf8(d).unwrap(),
            "lowerdir=1:0,upperdir=u,workdir=w,redirect_dir=nofollow,index=off,metacopy=off,userxattr"
        );
    }
}
