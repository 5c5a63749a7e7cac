//! Path resolution that never leaves a root directory.
//!
//! Reference: openat2(2), `RESOLVE_IN_ROOT` (Linux 5.6): the kernel resolves a path as if the
//! given directory were `/`, so `..` and absolute symlinks stop at it, and
//! `RESOLVE_NO_MAGICLINKS` refuses `/proc/self/fd/…` jumps. This is how boxkit contains hostile
//! layers (THREATS.md, layer section): every file is created relative to a directory
//! descriptor found this way, with `*at` system calls that do not follow a final symlink, so
//! no `chmod`, `chown` or `utimes` ever reaches through a link.

use crate::error::{Context, Error, Result};
use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A directory treated as `/`.
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// A path inside a root after lexical cleaning: components, none of them `.` or `..`.
/// The empty path is the root itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CleanPath(Vec<OsString>);

impl CleanPath {
    // ANCHOR: clean_path_new
    /// Clean a name as if it were rooted at `/` (as containerd and Docker do): `..` at the top
    /// stays at the top, so `../x`, `/../x` and `a/../../x` all mean `/x`.
    pub fn new(name: &[u8]) -> CleanPath {
        let mut out: Vec<OsString> = Vec::new();
        for c in name.split(|&b| b == b'/') {
            match c {
                b"" | b"." => {}
                b".." => {
                    out.pop();
                }
                c => out.push(OsStr::from_bytes(c).to_os_string()),
            }
        }
        CleanPath(out)
    }
    // ANCHOR_END: clean_path_new
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
    pub fn components(&self) -> &[OsString] {
        &self.0
    }
    /// The last component, if any.
    pub fn file_name(&self) -> Option<&OsStr> {
        self.0.last().map(|s| s.as_os_str())
    }
    pub fn parent(&self) -> CleanPath {
        let mut v = self.0.clone();
        v.pop();
        CleanPath(v)
    }
    pub fn join(&self, name: &OsStr) -> CleanPath {
        let mut v = self.0.clone();
        v.push(name.to_os_string());
        CleanPath(v)
    }
    /// `a/b/c`, relative (empty for the root).
    pub fn to_path(&self) -> PathBuf {
        self.0.iter().collect()
    }
}

impl std::fmt::Display for CleanPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "/{}", self.to_path().display())
    }
}

impl Root {
    pub fn open(path: &Path) -> Result<Root> {
        let fd = open_raw(libc::AT_FDCWD, path.as_os_str(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .ctx(|| format!("open {}", path.display()))?;
        Ok(Root { fd, path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    // ANCHOR: open_in
    /// Open `p` inside the root (symlinks followed, but never out of the root).
    pub fn open_in(&self, p: &CleanPath, flags: i32) -> io::Result<OwnedFd> {
        let rel = if p.is_root() { OsString::from(".") } else { p.to_path().into_os_string() };
        openat2(self.fd(), &rel, flags | libc::O_CLOEXEC, libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS)
    }
    // ANCHOR_END: open_in

    // ANCHOR: root_dir
    /// Open directory `p` inside the root for `*at` calls; with `create`, make missing
    /// directories (mode 0755, owned by root) on the way, as tar does. A symlink on the way
    /// whose target is missing is followed (inside the root) and its target created, as
    /// `mkdir -p` run in a chroot would.
    pub fn dir(&self, p: &CleanPath, create: bool) -> Result<OwnedFd> {
        self.dir_depth(p, create, 0)
    }

    fn dir_depth(&self, p: &CleanPath, create: bool, depth: u32) -> Result<OwnedFd> {
        let flags = libc::O_PATH | libc::O_DIRECTORY;
        match self.open_in(p, flags) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create => {}
            Err(e) => return Err(Error::io(format!("directory {p}"), e)),
        }
        let mut cur = CleanPath(Vec::new());
        let mut fd = self.open_in(&cur, flags).ctx(|| "the root directory")?;
        for c in p.components() {
            let next = cur.join(c);
            fd = match self.open_in(&next, flags) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    if let Ok(target) = readlinkat(fd.as_raw_fd(), c) {
                        if depth >= 40 {
                            return Err(Error::invalid(format!("{next}: too many levels of symlinks")));
                        }
                        // Re-resolve with the link replaced by its target, relative to the
                        // link's directory (or to the root, for an absolute target).
                        let mut joined = if target.first() == Some(&b'/') { Vec::new() } else { cur.to_path().into_os_string().into_vec() };
                        joined.push(b'/');
                        joined.extend_from_slice(&target);
                        for rest in &p.components()[cur.components().len() + 1..] {
                            joined.push(b'/');
                            joined.extend_from_slice(rest.as_bytes());
                        }
                        return self.dir_depth(&CleanPath::new(&joined), create, depth + 1);
                    }
                    // A parent the layer never named: 0755 like Docker and umoci, whatever
                    // the caller's umask, so every machine makes the same tree.
                    mkdirat(fd.as_raw_fd(), c, 0o755).ctx(|| format!("create directory {next}"))?;
                    let made = self.open_in(&next, flags).ctx(|| format!("directory {next}"))?;
                    // `made` is an O_PATH fd, which fchmod refuses; its /proc magic link
                    // names exactly that inode, never a path an attacker could swap.
                    let magic = format!("/proc/self/fd/{}", made.as_raw_fd());
                    std::fs::set_permissions(magic, std::fs::Permissions::from_mode(0o755))
                        .ctx(|| format!("chmod directory {next}"))?;
                    made
                }
                Err(e) => return Err(Error::io(format!("directory {next}"), e)),
            };
            cur = next;
        }
        Ok(fd)
    }
    // ANCHOR_END: root_dir
}

fn cstr(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name holds a NUL byte"))
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Replace `DIR/NAME` with `bytes`: a temporary file beside it is written, given `mode`,
/// fsynced and renamed over the old one (rename(2)), so a reader sees the old content or the
/// new, never a mix, and a kill leaves at most a `.NAME.tmp-*` behind.
pub fn replace_file(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.tmp-"))
        .tempfile_in(dir)
        .ctx(|| format!("create a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes).ctx(|| format!("write {name}"))?;
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode)).ctx(|| format!("chmod {name}"))?;
    tmp.as_file().sync_all().ctx(|| format!("fsync {name}"))?;
    tmp.persist(dir.join(name)).map_err(|e| Error::io(format!("rename {name} into {}", dir.display()), e.error))?;
    Ok(())
}

pub fn open_raw(dirfd: RawFd, name: &OsStr, flags: i32) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    // SAFETY: a valid C string; the returned descriptor is ours.
    let fd = unsafe { libc::openat(dirfd, c.as_ptr(), flags | libc::O_CLOEXEC, 0o600) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

// ANCHOR: openat2
/// openat2(2) with a resolve mask.
pub fn openat2(dirfd: RawFd, name: &OsStr, flags: i32, resolve: u64) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    how.resolve = resolve;
    loop {
        // SAFETY: `how` is a properly sized open_how; the result is a new descriptor or -1.
        let fd = unsafe {
            libc::syscall(libc::SYS_openat2, dirfd, c.as_ptr(), &how as *const libc::open_how, std::mem::size_of::<libc::open_how>())
        };
        if fd >= 0 {
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
        }
        let e = io::Error::last_os_error();
        // EAGAIN: a concurrent rename raced the lookup; the kernel asks us to retry.
        if e.raw_os_error() != Some(libc::EAGAIN) {
            return Err(e);
        }
    }
}
// ANCHOR_END: openat2

/// Create a file exclusively, never through a symlink.
pub fn create_file(dirfd: RawFd, name: &OsStr, mode: u32) -> io::Result<std::fs::File> {
    let fd = {
        let c = cstr(name)?;
        // SAFETY: plain openat; O_EXCL|O_NOFOLLOW guarantee a new regular file.
        let fd = unsafe {
            libc::openat(dirfd, c.as_ptr(), libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC, mode)
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        unsafe { OwnedFd::from_raw_fd(fd) }
    };
    Ok(std::fs::File::from(fd))
}

pub fn readlinkat(dirfd: RawFd, name: &OsStr) -> io::Result<Vec<u8>> {
    let c = cstr(name)?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: the buffer holds PATH_MAX bytes, the most a link target can be.
    let n = unsafe { libc::readlinkat(dirfd, c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

pub fn mkdirat(dirfd: RawFd, name: &OsStr, mode: u32) -> io::Result<()> {
    let c = cstr(name)?;
    check(unsafe { libc::mkdirat(dirfd, c.as_ptr(), mode) })
}

pub fn symlinkat(target: &OsStr, dirfd: RawFd, name: &OsStr) -> io::Result<()> {
    let (t, c) = (cstr(target)?, cstr(name)?);
    check(unsafe { libc::symlinkat(t.as_ptr(), dirfd, c.as_ptr()) })
}

/// A hard link; `flags` 0 links a symlink itself, never what it points to.
pub fn linkat(olddir: RawFd, old: &OsStr, newdir: RawFd, new: &OsStr) -> io::Result<()> {
    let (o, n) = (cstr(old)?, cstr(new)?);
    check(unsafe { libc::linkat(olddir, o.as_ptr(), newdir, n.as_ptr(), 0) })
}

pub fn mknodat(dirfd: RawFd, name: &OsStr, mode: u32, dev: libc::dev_t) -> io::Result<()> {
    let c = cstr(name)?;
    check(unsafe { libc::mknodat(dirfd, c.as_ptr(), mode, dev) })
}

pub fn lstatat(dirfd: RawFd, name: &OsStr) -> io::Result<libc::stat> {
    let c = cstr(name)?;
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    check(unsafe { libc::fstatat(dirfd, c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) })?;
    Ok(st)
}

pub fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    check(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(st)
}

pub fn lchownat(dirfd: RawFd, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
    let c = cstr(name)?;
    check(unsafe { libc::fchownat(dirfd, c.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) })
}

/// chmod of a name that the caller has checked is not a symlink (fchmodat cannot refuse one).
pub fn chmodat(dirfd: RawFd, name: &OsStr, mode: u32) -> io::Result<()> {
    let c = cstr(name)?;
    check(unsafe { libc::fchmodat(dirfd, c.as_ptr(), mode, 0) })
}

/// Set access and modification times without following a final symlink.
pub fn lutimesat(dirfd: RawFd, name: &OsStr, sec: i64, nsec: i64) -> io::Result<()> {
    let c = cstr(name)?;
    let t = libc::timespec { tv_sec: sec as libc::time_t, tv_nsec: nsec as _ };
    let times = [t, t];
    check(unsafe { libc::utimensat(dirfd, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) })
}

/// `/proc/self/fd/N/name`: a path that reaches `name` in an open directory without a walk.
fn fd_path(dirfd: RawFd, name: &OsStr) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{dirfd}")).join(name)
}

/// Set an extended attribute on `name` itself (lsetxattr: a symlink is not followed).
pub fn lsetxattrat(dirfd: RawFd, name: &OsStr, key: &OsStr, value: &[u8]) -> io::Result<()> {
    let p = cstr(fd_path(dirfd, name).as_os_str())?;
    let k = cstr(key)?;
    check(unsafe { libc::lsetxattr(p.as_ptr(), k.as_ptr(), value.as_ptr().cast(), value.len(), 0) })
}

/// List and read every extended attribute of `name` (not following a symlink), sorted by key.
pub fn lxattrsat(dirfd: RawFd, name: &OsStr) -> io::Result<Vec<(OsString, Vec<u8>)>> {
    let p = cstr(fd_path(dirfd, name).as_os_str())?;
    let mut keys = vec![0u8; 4096];
    let n = loop {
        let n = unsafe { libc::llistxattr(p.as_ptr(), keys.as_mut_ptr().cast(), keys.len()) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) => keys.resize(keys.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            _ => return Err(e),
        }
    };
    let mut out = Vec::new();
    for k in keys[..n].split(|&b| b == 0).filter(|k| !k.is_empty()) {
        let kc = CString::new(k).unwrap();
        let mut val = vec![0u8; 256];
        loop {
            let m = unsafe { libc::lgetxattr(p.as_ptr(), kc.as_ptr(), val.as_mut_ptr().cast(), val.len()) };
            if m >= 0 {
                val.truncate(m as usize);
                break;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ERANGE) => val.resize(val.len() * 4, 0),
                Some(libc::ENODATA) => {
                    val.clear();
                    break;
                }
                _ => return Err(e),
            }
        }
        out.push((OsString::from_vec(k.to_vec()), val));
    }
    out.sort();
    Ok(out)
}

/// Remove `name` in `dirfd`, and everything below it if it is a directory. Symlinks are
/// removed, never followed. A missing name is not an error.
pub fn remove_all_at(dirfd: RawFd, name: &OsStr) -> io::Result<()> {
    let st = match lstatat(dirfd, name) {
        Ok(st) => st,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    let c = cstr(name)?;
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        let fd = open_raw(dirfd, name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW)?;
        for child in list_dir(fd.as_raw_fd())? {
            remove_all_at(fd.as_raw_fd(), &child)?;
        }
        check(unsafe { libc::unlinkat(dirfd, c.as_ptr(), libc::AT_REMOVEDIR) })
    } else {
        check(unsafe { libc::unlinkat(dirfd, c.as_ptr(), 0) })
    }
}

// ANCHOR: list_dir
/// The names in an open directory (without `.` and `..`), sorted bytewise.
pub fn list_dir(fd: RawFd) -> io::Result<Vec<OsString>> {
    // Duplicate: closedir closes the descriptor it was given.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    let dir = unsafe { libc::fdopendir(dup) };
    if dir.is_null() {
        let e = io::Error::last_os_error();
        unsafe { libc::close(dup) };
        return Err(e);
    }
    unsafe { libc::rewinddir(dir) };
    let mut names = Vec::new();
    loop {
        // SAFETY: readdir on a stream we own; the entry is copied before the next call.
        let ent = unsafe { libc::readdir(dir) };
        if ent.is_null() {
            break;
        }
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) }.to_bytes();
        if name != b"." && name != b".." {
            names.push(OsString::from_vec(name.to_vec()));
        }
    }
    unsafe { libc::closedir(dir) };
    names.sort();
    Ok(names)
}
// ANCHOR_END: list_dir


/// flock(2) on `fd` (`LOCK_SH`, `LOCK_EX`, with `LOCK_NB` or not), again when a signal
/// interrupts the wait.
pub fn flock(fd: &impl AsRawFd, op: i32) -> io::Result<()> {
    loop {
        // SAFETY: flock(2) on a descriptor the caller owns.
        if unsafe { libc::flock(fd.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(s: &str) -> String {
        CleanPath::new(s.as_bytes()).to_string()
    }

    #[test]
    fn cleaning_never_climbs_above_the_root() {
        assert_eq!(clean("../x"), "/x");
        assert_eq!(clean("/../x"), "/x");
        assert_eq!(clean("a/../../x"), "/x");
        assert_eq!(clean("./a/./b/"), "/a/b");
        assert_eq!(clean("./"), "/");
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("abs")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("dangling")).unwrap();
        std::os::unix::fs::symlink("../../../..", root.join("up")).unwrap();
        let r = Root::open(&root).unwrap();
        let d = r.dir(&CleanPath::new(b"abs/new"), true).unwrap();
        mkdirat(d.as_raw_fd(), OsStr::new("leaf"), 0o755).unwrap();
        let d = r.dir(&CleanPath::new(b"up/etc"), true).unwrap();
        mkdirat(d.as_raw_fd(), OsStr::new("leaf2"), 0o755).unwrap();
        // A dangling link is followed inside the root and its target created there.
        r.dir(&CleanPath::new(b"dangling/x"), true).unwrap();
        assert!(root.join(outside.path().strip_prefix("/").unwrap()).join("x").is_dir());
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none(), "escaped the root");
        std::os::unix::fs::symlink("loop2", root.join("loop1")).unwrap();
        std::os::unix::fs::symlink("loop1", root.join("loop2")).unwrap();
        assert!(r.dir(&CleanPath::new(b"loop1/x"), true).is_err());
        assert!(root.join("etc/new/leaf").is_dir());
        assert!(root.join("etc/leaf2").is_dir());
    }
}
