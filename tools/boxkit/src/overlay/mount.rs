//! Mounting an overlay: the new mount API (fsopen, fsconfig with one `lowerdir+` per layer,
//! fsmount, move_mount) where the kernel has it, else mount(2) with the options in one page.
//!
//! Reference: fsopen(2), fsconfig(2), fsmount(2), move_mount(2), mount(2); the kernel's
//! Documentation/filesystems/overlayfs.rst ("lowerdir+", escaping of `,` and `:`).

use super::{Api, MAX_LOWERS};
use crate::error::{Context, Error, Result};
use crate::explain;
use crate::layer::OverlayForm;
use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

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
