//! Applying a layer: a tar stream of changes laid over a root filesystem.
//!
//! Reference: OCI image spec, layer.md ("Applying Changesets", "Whiteouts"):
//! <https://github.com/opencontainers/image-spec/blob/main/layer.md>.
//!
//! - A directory over a directory keeps it and takes the new attributes; anything else
//!   replaces what was there.
//! - `.wh.NAME` deletes NAME of the layers below; `.wh..wh..opq` hides every lower child of
//!   its directory. Both apply to *lower* layers only, so their place in the tar does not
//!   matter: boxkit remembers which paths this layer wrote and never hides those.
//! - Every path is found with [`Root`] (openat2 `RESOLVE_IN_ROOT`) and every change is made
//!   with an `*at` call that does not follow a final symlink: a hostile layer cannot reach
//!   outside the root filesystem (THREATS.md, layer section).
//!
//! - In overlay form ([`Whiteouts::Overlay`], for the layer cache) the layer goes into a
//!   directory of its own and its markers are kept in the form overlayfs reads in a lower
//!   directory: `.wh.NAME` becomes a character device 0:0 named NAME, `.wh..wh..opq` the
//!   xattr `trusted.overlay.opaque=y` (`user.overlay.opaque` in the user form). Reference:
//!   the kernel's Documentation/filesystems/overlayfs.rst, "whiteouts and opaque directories".
//!
//! Memory: file data streams through a fixed buffer; what grows is one small record per
//! path (to honour whiteouts), never anything in proportion to file sizes.

use crate::error::{Context, Error, Result};
use crate::explain;
use crate::fsroot::{self, CleanPath, Root};
use crate::tarstream::{self, Kind, Meta};
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;

// ANCHOR: whiteout_names
pub const WHITEOUT_PREFIX: &str = ".wh.";
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
// ANCHOR_END: whiteout_names

// ANCHOR: whiteout_form
/// What a layer's whiteouts become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteouts {
    /// Applied to a flat root filesystem: they delete what lower layers made.
    Apply,
    /// Kept as overlayfs markers, in a directory holding this layer alone.
    Overlay(OverlayForm),
}

/// Which xattr namespace overlayfs reads its markers from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlayForm {
    /// `trusted.overlay.*`: the default; only the initial user namespace's root may set it.
    Trusted,
    /// `user.overlay.*`: read by a mount with the `userxattr` option (an unprivileged
    /// overlay in a user namespace, Linux 5.11).
    User,
}

impl OverlayForm {
    /// `trusted.overlay.` or `user.overlay.`.
    pub fn prefix(self) -> &'static str {
        match self {
            OverlayForm::Trusted => "trusted.overlay.",
            OverlayForm::User => "user.overlay.",
        }
    }
    /// The xattr that makes a directory opaque.
    pub fn opaque_xattr(self) -> String {
        format!("{}opaque", self.prefix())
    }
}
// ANCHOR_END: whiteout_form

/// Does `key` belong to overlayfs (in either form)? A layer may not set these: they would
/// steer the overlay (redirects, metacopy, opaque) rather than describe a file.
pub fn is_overlay_xattr(key: &[u8]) -> bool {
    overlay_xattr_name(key).is_some()
}

/// An overlayfs xattr's name without its namespace prefix (`opaque`, `redirect` …), in
/// either form; `None` for any other xattr.
pub fn overlay_xattr_name(key: &[u8]) -> Option<&[u8]> {
    [OverlayForm::Trusted, OverlayForm::User].into_iter().find_map(|f| key.strip_prefix(f.prefix().as_bytes()))
}

/// Is the last component of `path` named like a whiteout (`.wh.*`, the opaque marker
/// included)?
pub fn is_whiteout_name(path: &[u8]) -> bool {
    path.rsplit(|&b| b == b'/').next().unwrap_or_default().starts_with(WHITEOUT_PREFIX.as_bytes())
}

/// What one layer did.
#[derive(Debug, Default, Clone, Copy)]
pub struct ApplyStats {
    pub entries: u64,
    pub bytes: u64,
    pub whiteouts: u64,
}

/// Apply one uncompressed layer tar to `root`.
pub fn apply(root: &Root, tar: impl Read) -> Result<ApplyStats> {
    apply_as(root, tar, Whiteouts::Apply)
}

/// Apply one uncompressed layer tar to `root`, its whiteouts handled as `mode` says.
pub fn apply_as(root: &Root, tar: impl Read, mode: Whiteouts) -> Result<ApplyStats> {
    let mut a = Applier {
        root,
        mode,
        written: HashSet::new(),
        whited: HashSet::new(),
        dir_times: HashMap::new(),
        stats: ApplyStats::default(),
    };
    let mut archive = tar::Archive::new(tar);
    let entries = archive.entries().map_err(|e| Error::io("read tar", e))?;
    let mut buf = vec![0u8; 256 << 10];
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::io("read tar entry", e))?;
        let name = entry.path_bytes().into_owned();
        let meta = tarstream::read_meta(&mut entry)
            .map_err(|e| e.context(format!("entry {:?}", String::from_utf8_lossy(&name))))?;
        if let Some(meta) = meta {
            a.entry(&mut entry, &meta, &mut buf)
                .map_err(|e| e.context(format!("entry {:?}", String::from_utf8_lossy(&name))))?;
        }
    }
    tarstream::expect_only_padding(archive.into_inner())?;
    a.finish()?;
    Ok(a.stats)
}

struct Applier<'r> {
    root: &'r Root,
    mode: Whiteouts,
    /// Overlay form: the whiteout devices this layer made. A directory the layer then
    /// creates at one of these paths replaces the lower one, so it is made opaque.
    whited: HashSet<CleanPath>,
    /// Every path this layer wrote, with all its ancestors: whiteouts never hide these.
    written: HashSet<CleanPath>,
    /// Directory mtimes, set last, once nothing more changes inside them: the layer's own
    /// for directories it lists (`true`), the old ones for directories it only writes into.
    dir_times: HashMap<CleanPath, ((i64, i64), bool)>,
    stats: ApplyStats,
}

impl Applier<'_> {
    // ANCHOR: layer_entry
    fn entry(&mut self, data: &mut impl Read, meta: &Meta, buf: &mut [u8]) -> Result<()> {
        self.stats.entries += 1;
        let path = CleanPath::new(&meta.path);
        let Some(file_name) = path.file_name() else {
            // "./": the root directory's own attributes.
            if meta.kind == Kind::Dir {
                let p = self.root.path();
                std::os::unix::fs::lchown(p, Some(meta.uid), Some(meta.gid)).ctx(|| "chown /")?;
                std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(meta.mode))
                    .ctx(|| "chmod /")?;
                self.dir_times.insert(path, ((meta.mtime, meta.mtime_nsec), true));
            }
            return Ok(());
        };
        let file_name = file_name.to_os_string();
        self.keep_time(&path.parent());
        if let Some(target) = file_name.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            return match self.mode {
                Whiteouts::Apply => self.whiteout(&path, target),
                Whiteouts::Overlay(form) => self.overlay_whiteout(&path, target, form),
            };
        }
        if let Whiteouts::Overlay(form) = self.mode {
            self.check_overlay_entry(&path, meta, form)?;
        }
        let parent = self.root.dir(&path.parent(), true)?;
        let pfd = parent.as_raw_fd();
        let fname = file_name.as_os_str();

        // Replace what is there, except a directory over a directory.
        match fsroot::lstatat(pfd, fname) {
            Ok(st) if meta.kind == Kind::Dir && st.st_mode & libc::S_IFMT == libc::S_IFDIR => {}
            Ok(_) => fsroot::remove_all_at(pfd, fname).ctx(|| format!("remove {path}"))?,
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {}
            Err(err) => return Err(Error::io(format!("stat {path}"), err)),
        }

        let perm = meta.mode & 0o7777;
        match &meta.kind {
            Kind::File => {
                let mut f = fsroot::create_file(pfd, fname, 0o600).ctx(|| format!("create {path}"))?;
                self.stats.bytes += copy(data, &mut f, buf).ctx(|| format!("write {path}"))?;
            }
            Kind::Dir => match fsroot::mkdirat(pfd, fname, 0o700) {
                Err(err) if err.raw_os_error() != Some(libc::EEXIST) => {
                    return Err(Error::io(format!("mkdir {path}"), err))
                }
                _ => {}
            },
            Kind::Symlink(target) => {
                fsroot::symlinkat(OsStr::from_bytes(target), pfd, fname).ctx(|| format!("symlink {path}"))?;
            }
            Kind::Hardlink(target) => {
                let target = CleanPath::new(target);
                let tname = target.file_name().ok_or_else(|| Error::invalid("hardlink to the root directory"))?;
                let own_layer = || match self.mode {
                    Whiteouts::Apply => "",
                    // Each layer has a directory of its own: a link cannot reach a lower one.
                    Whiteouts::Overlay(_) => " (in overlay form a hard link can only point into its own layer)",
                };
                let tdir = self.root.dir(&target.parent(), false).ctx(|| format!("hardlink target {target}{}", own_layer()))?;
                fsroot::linkat(tdir.as_raw_fd(), tname, pfd, fname)
                    .ctx(|| format!("hardlink {path} to {target}{}", own_layer()))?;
                // A hard link shares its target's inode: its attributes are the target's.
                self.mark_written(&path);
                return Ok(());
            }
            Kind::Char(major, minor) | Kind::Block(major, minor) => {
                let fmt = if matches!(meta.kind, Kind::Char(..)) { libc::S_IFCHR } else { libc::S_IFBLK };
                match fsroot::mknodat(pfd, fname, fmt | perm, libc::makedev(*major, *minor)) {
                    // No CAP_MKNOD in a user namespace: leave the node out, as Docker's and
                    // Podman's archive code do (a container there could not open it anyway).
                    Err(e) if e.raw_os_error() == Some(libc::EPERM) && crate::userns::in_user_namespace() => {
                        explain!("skip device {path}: mknod is not allowed in a user namespace");
                        return Ok(());
                    }
                    r => r.ctx(|| format!("mknod {path}"))?,
                }
            }
            Kind::Fifo => fsroot::mknodat(pfd, fname, libc::S_IFIFO | perm, 0).ctx(|| format!("mkfifo {path}"))?,
        }

        // Owner before mode: chown clears setuid and setgid bits.
        fsroot::lchownat(pfd, fname, meta.uid, meta.gid).ctx(|| format!("chown {path}"))?;
        if !matches!(meta.kind, Kind::Symlink(_)) {
            fsroot::chmodat(pfd, fname, perm).ctx(|| format!("chmod {path}"))?;
        }
        for (k, v) in &meta.xattrs {
            if self.mode != Whiteouts::Apply && is_overlay_xattr(k.as_bytes()) {
                explain!("drop xattr {} on {path}: overlayfs's own", k.to_string_lossy());
                continue;
            }
            match fsroot::lsetxattrat(pfd, fname, k, v) {
                Err(err) if err.raw_os_error() == Some(libc::ENOTSUP) => {
                    explain!("skip xattr {} on {path}: not supported here", k.to_string_lossy())
                }
                r => r.ctx(|| format!("set xattr {} on {path}", k.to_string_lossy()))?,
            }
        }
        if let Whiteouts::Overlay(form) = self.mode {
            if self.whited.remove(&path) && meta.kind == Kind::Dir {
                // This layer deleted the lower directory and made a new one.
                fsroot::lsetxattrat(pfd, fname, OsStr::new(&form.opaque_xattr()), b"y")
                    .ctx(|| format!("make {path} opaque"))?;
            }
        }
        if meta.kind == Kind::Dir {
            self.dir_times.insert(path.clone(), ((meta.mtime, meta.mtime_nsec), true));
        } else {
            fsroot::lutimesat(pfd, fname, meta.mtime, meta.mtime_nsec).ctx(|| format!("set times of {path}"))?;
        }
        self.mark_written(&path);
        Ok(())
    }
    // ANCHOR_END: layer_entry

    fn mark_written(&mut self, path: &CleanPath) {
        let mut p = path.clone();
        while !p.is_root() && self.written.insert(p.clone()) {
            p = p.parent();
        }
    }

    // ANCHOR: whiteout
    fn whiteout(&mut self, marker: &CleanPath, target: &[u8]) -> Result<()> {
        self.stats.whiteouts += 1;
        let dir = marker.parent();
        if marker.file_name() == Some(OsStr::new(OPAQUE_MARKER)) {
            explain!("opaque directory {dir}: hide everything lower layers put in it");
            let Ok(fd) = self.root.open_in(&dir, libc::O_RDONLY | libc::O_DIRECTORY) else {
                return Ok(()); // nothing below to hide
            };
            for child in fsroot::list_dir(fd.as_raw_fd()).ctx(|| format!("list {dir}"))? {
                self.hide_lower(&dir.join(&child))?;
            }
            return Ok(());
        }
        if !names_a_file(marker, target)? {
            return Ok(());
        }
        let victim = dir.join(OsStr::from_bytes(target));
        explain!("whiteout {marker}: delete {victim} of lower layers");
        self.hide_lower(&victim)
    }
    // ANCHOR_END: whiteout

    // ANCHOR: hide_lower
    /// Remove what lower layers put at `p`, keeping whatever this layer wrote.
    fn hide_lower(&mut self, p: &CleanPath) -> Result<()> {
        let Some(name) = p.file_name() else { return Ok(()) };
        let Ok(parent) = self.root.dir(&p.parent(), false) else { return Ok(()) };
        if !self.written.contains(p) {
            return fsroot::remove_all_at(parent.as_raw_fd(), name).ctx(|| format!("remove {p}"));
        }
        let is_dir = fsroot::lstatat(parent.as_raw_fd(), name)
            .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
            .unwrap_or(false);
        if is_dir {
            let fd = fsroot::open_raw(parent.as_raw_fd(), name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW)
                .ctx(|| format!("open {p}"))?;
            for child in fsroot::list_dir(fd.as_raw_fd()).ctx(|| format!("list {p}"))? {
                self.hide_lower(&p.join(&child))?;
            }
        }
        Ok(())
    }
    // ANCHOR_END: hide_lower

    // ANCHOR: overlay_whiteout
    /// Overlay form: keep the marker as overlayfs reads it in a lower directory.
    fn overlay_whiteout(&mut self, marker: &CleanPath, target: &[u8], form: OverlayForm) -> Result<()> {
        self.stats.whiteouts += 1;
        let dir = marker.parent();
        let opaque = OsStr::new(&form.opaque_xattr()).to_os_string();
        if marker.file_name() == Some(OsStr::new(OPAQUE_MARKER)) {
            explain!("opaque directory {dir}: xattr {}=y", opaque.to_string_lossy());
            let fd = self.root.dir(&dir, true)?;
            // `/proc/self/fd/N/.`: the directory the descriptor holds, never a symlink.
            fsroot::lsetxattrat(fd.as_raw_fd(), OsStr::new("."), &opaque, b"y").ctx(|| format!("make {dir} opaque"))?;
            self.mark_written(&dir);
            return Ok(());
        }
        if !names_a_file(marker, target)? {
            return Ok(());
        }
        let victim = dir.join(OsStr::from_bytes(target));
        let parent = self.root.dir(&dir, true)?;
        let name = OsStr::from_bytes(target);
        if self.written.contains(&victim) {
            // The layer wrote this path itself: a whiteout only hides what is lower. A
            // directory of this layer must still hide the lower one's children.
            let is_dir = fsroot::lstatat(parent.as_raw_fd(), name).map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
            if is_dir.unwrap_or(false) {
                fsroot::lsetxattrat(parent.as_raw_fd(), name, &opaque, b"y").ctx(|| format!("make {victim} opaque"))?;
            }
            return Ok(());
        }
        explain!("whiteout {marker}: mknod {victim} c 0 0");
        match fsroot::mknodat(parent.as_raw_fd(), name, libc::S_IFCHR, libc::makedev(0, 0)) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {} // the same whiteout twice
            r => r.ctx(|| format!("mknod whiteout {victim}"))?,
        }
        self.whited.insert(victim);
        Ok(())
    }

    /// Overlay form: a 0:0 character device would read as a whiteout, and an entry below a
    /// path this layer whited out needs that path to become an (opaque) directory again.
    fn check_overlay_entry(&mut self, path: &CleanPath, meta: &Meta, form: OverlayForm) -> Result<()> {
        if meta.kind == Kind::Char(0, 0) {
            return Err(Error::invalid(format!(
                "{path} is a 0:0 character device, which overlayfs reads as a whiteout; use a copy (box-unpack)"
            )));
        }
        if self.whited.is_empty() {
            return Ok(());
        }
        let mut p = CleanPath::new(b"");
        for c in path.parent().components() {
            p = p.join(c);
            if self.whited.remove(&p) {
                let parent = self.root.dir(&p.parent(), false)?;
                let name = p.file_name().unwrap();
                fsroot::remove_all_at(parent.as_raw_fd(), name).ctx(|| format!("remove whiteout {p}"))?;
                fsroot::mkdirat(parent.as_raw_fd(), name, 0o755).ctx(|| format!("mkdir {p}"))?;
                fsroot::chmodat(parent.as_raw_fd(), name, 0o755).ctx(|| format!("chmod {p}"))?;
                fsroot::lsetxattrat(parent.as_raw_fd(), name, OsStr::new(&form.opaque_xattr()), b"y")
                    .ctx(|| format!("make {p} opaque"))?;
            }
        }
        Ok(())
    }
    // ANCHOR_END: overlay_whiteout

    /// Remember the mtime of an existing directory this layer is about to change without
    /// listing it, so it keeps the time the lower layer gave it. A directory that does not
    /// exist yet is one the layer implies without naming (`a/b/file` with no `a/`): it will
    /// get the epoch, not the hour of the unpack, so every unpack gives the same tree.
    fn keep_time(&mut self, dir: &CleanPath) {
        if self.dir_times.contains_key(dir) {
            return;
        }
        match self.root.open_in(dir, libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW) {
            Ok(fd) => {
                if let Ok(st) = fsroot::fstat(fd.as_raw_fd()) {
                    self.dir_times.insert(dir.clone(), ((st.st_mtime, st.st_mtime_nsec), false));
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && dir.file_name().is_some() => {
                self.dir_times.insert(dir.clone(), ((0, 0), false));
                self.keep_time(&dir.parent());
            }
            Err(_) => {}
        }
    }

    fn finish(&mut self) -> Result<()> {
        for (path, ((s, ns), _)) in self.dir_times.drain() {
            match path.file_name() {
                None => fsroot::lutimesat(libc::AT_FDCWD, self.root.path().as_os_str(), s, ns),
                Some(name) => match self.root.dir(&path.parent(), false) {
                    // Only a directory: an implied path may have been made through a symlink.
                    Ok(fd) => match fsroot::lstatat(fd.as_raw_fd(), name) {
                        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => fsroot::lutimesat(fd.as_raw_fd(), name, s, ns),
                        _ => continue,
                    },
                    Err(_) => continue, // removed by a later whiteout
                },
            }
            .or_else(|e| if e.raw_os_error() == Some(libc::ENOENT) { Ok(()) } else { Err(e) })
            .ctx(|| format!("set times of {path}"))?;
        }
        Ok(())
    }
}

/// Whether the whiteout `marker` (not the opaque marker) deletes a file: false for aufs
/// bookkeeping (`.wh..wh.*`, meaningless here), an error where it names nothing (`.wh.`,
/// `.wh..`, `.wh...`, a name with `/`).
fn names_a_file(marker: &CleanPath, target: &[u8]) -> Result<bool> {
    if target.starts_with(WHITEOUT_PREFIX.as_bytes()) {
        explain!("ignore aufs metadata {marker}");
        return Ok(false);
    }
    if matches!(target, b"" | b"." | b"..") || target.contains(&b'/') {
        return Err(Error::invalid(format!("invalid whiteout {marker}: it names no file")));
    }
    Ok(true)
}

fn copy(r: &mut impl Read, w: &mut impl Write, buf: &mut [u8]) -> io::Result<u64> {
    let mut n = 0u64;
    loop {
        let k = match r.read(buf) {
            Ok(0) => return Ok(n),
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..k])?;
        n += k as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tarstream::{Kind, Meta, TarWriter};

    fn entry(path: &str, kind: Kind, data: &[u8]) -> (Meta, Vec<u8>) {
        let mode = if kind == Kind::Dir { 0o755 } else { 0o644 };
        let size = data.len() as u64;
        (Meta { path: path.into(), kind, mode, uid: 0, gid: 0, mtime: 5, mtime_nsec: 0, size, xattrs: vec![] }, data.to_vec())
    }

    fn layer(entries: &[(Meta, Vec<u8>)]) -> Vec<u8> {
        let mut w = TarWriter::new(Vec::new());
        for (m, d) in entries {
            w.append(m, Some(&mut &d[..])).unwrap();
        }
        w.finish().unwrap()
    }

    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        v.sort();
        v
    }

    #[test]
    fn whiteouts_apply_to_lower_layers_only() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::open(t.path()).unwrap();
        apply(&root, &layer(&[
            entry("d", Kind::Dir, b""),
            entry("d/old", Kind::File, b"1"),
            entry("d/sub", Kind::Dir, b""),
            entry("d/sub/deep", Kind::File, b"2"),
            entry("gone", Kind::File, b"3"),
        ])[..]).unwrap();
        // Layer 2: opaque marker last, a file of its own under the opaque dir, a whiteout
        // that follows a file of the same name in this layer.
        let stats = apply(&root, &layer(&[
            entry("d/new", Kind::File, b"4"),
            entry("d/sub/kept", Kind::File, b"5"),
            entry("gone", Kind::File, b"6"),
            entry(".wh.gone", Kind::File, b""),
            entry("d/.wh..wh..opq", Kind::File, b""),
        ])[..]).unwrap();
        assert_eq!(stats.whiteouts, 2);
        assert_eq!(names(&t.path().join("d")), ["new", "sub"]);
        assert_eq!(names(&t.path().join("d/sub")), ["kept"]);
        assert_eq!(std::fs::read(t.path().join("gone")).unwrap(), b"6");
    }

    #[test]
    fn directories_keep_their_times_when_a_later_layer_writes_inside() {
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        let root = Root::open(t.path()).unwrap();
        apply(&root, &layer(&[entry("d", Kind::Dir, b""), entry("d/a", Kind::File, b"1"), entry("d/b", Kind::File, b"2")])[..]).unwrap();
        apply(&root, &layer(&[entry("d/new", Kind::File, b"3"), entry("d/.wh.a", Kind::File, b"")])[..]).unwrap();
        assert_eq!(std::fs::metadata(t.path().join("d")).unwrap().mtime(), 5);
    }

    #[test]
    fn a_file_replaces_a_directory_and_back() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::open(t.path()).unwrap();
        apply(&root, &layer(&[entry("x", Kind::Dir, b""), entry("x/in", Kind::File, b"a")])[..]).unwrap();
        apply(&root, &layer(&[entry("x", Kind::File, b"file now")])[..]).unwrap();
        assert_eq!(std::fs::read(t.path().join("x")).unwrap(), b"file now");
        apply(&root, &layer(&[entry("x", Kind::Dir, b"")])[..]).unwrap();
        assert!(t.path().join("x").is_dir() && names(&t.path().join("x")).is_empty());
    }

    #[test]
    fn invalid_whiteouts_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::open(t.path()).unwrap();
        for bad in [".wh.", ".wh..", "a/.wh.."] {
            let e = apply(&root, &layer(&[entry(bad, Kind::File, b"")])[..]).unwrap_err();
            assert!(e.to_string().contains("invalid whiteout"), "{bad}: {e}");
        }
    }

    fn xattr(p: &std::path::Path, key: &str) -> Option<Vec<u8>> {
        let parent = std::fs::File::open(p.parent().unwrap()).unwrap();
        fsroot::lxattrsat(parent.as_raw_fd(), p.file_name().unwrap())
            .unwrap()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    fn is_whiteout(p: &std::path::Path) -> bool {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let m = std::fs::symlink_metadata(p).unwrap();
        m.file_type().is_char_device() && m.rdev() == 0
    }

    #[test]
    fn overlay_form_keeps_markers_as_overlayfs_reads_them() {
        for form in [OverlayForm::Trusted, OverlayForm::User] {
            let t = tempfile::tempdir().unwrap();
            let root = Root::open(t.path()).unwrap();
            let stats = apply_as(&root, &layer(&[
                entry("d", Kind::Dir, b""),
                entry("d/.wh..wh..opq", Kind::File, b""),
                entry("d/new", Kind::File, b"1"),
                entry(".wh.gone", Kind::File, b""),
                // Written by this layer, then whited out: the file stays.
                entry("kept", Kind::File, b"2"),
                entry(".wh.kept", Kind::File, b""),
                // Whited out, then made again as a directory: it must hide the lower one.
                entry(".wh.re", Kind::File, b""),
                entry("re", Kind::Dir, b""),
                // Whited out, then written below without a directory entry.
                entry(".wh.im", Kind::File, b""),
                entry("im/f", Kind::File, b"3"),
                // A directory of this layer, then its whiteout: opaque, its children kept.
                entry("own", Kind::Dir, b""),
                entry("own/x", Kind::File, b"4"),
                entry(".wh.own", Kind::File, b""),
            ])[..], Whiteouts::Overlay(form)).unwrap();
            let key = form.opaque_xattr();
            assert_eq!(stats.whiteouts, 6);
            assert_eq!(xattr(&t.path().join("d"), &key).as_deref(), Some(&b"y"[..]), "{form:?}");
            assert!(is_whiteout(&t.path().join("gone")));
            assert_eq!(std::fs::read(t.path().join("kept")).unwrap(), b"2");
            assert_eq!(xattr(&t.path().join("re"), &key).as_deref(), Some(&b"y"[..]));
            assert_eq!(xattr(&t.path().join("im"), &key).as_deref(), Some(&b"y"[..]));
            assert_eq!(std::fs::read(t.path().join("im/f")).unwrap(), b"3");
            assert_eq!(xattr(&t.path().join("own"), &key).as_deref(), Some(&b"y"[..]));
            assert_eq!(names(&t.path().join("own")), ["x"]);
            assert_eq!(names(t.path()), ["d", "gone", "im", "kept", "own", "re"]);
        }
    }

    #[test]
    fn overlay_form_refuses_what_overlayfs_would_misread() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::open(t.path()).unwrap();
        let mode = Whiteouts::Overlay(OverlayForm::Trusted);
        let e = apply_as(&root, &layer(&[entry("dev0", Kind::Char(0, 0), b"")])[..], mode).unwrap_err();
        assert!(e.to_string().contains("reads as a whiteout"), "{e}");
        let e = apply_as(&root, &layer(&[entry("h", Kind::Hardlink(b"lower".to_vec()), b"")])[..], mode).unwrap_err();
        assert!(e.to_string().contains("its own layer"), "{e}");
        // A layer cannot set overlayfs's own xattrs (a redirect or an opaque by hand).
        let (mut m, d) = entry("f", Kind::File, b"");
        m.xattrs = vec![("trusted.overlay.redirect".into(), b"/etc".to_vec()), ("user.x".into(), b"1".to_vec())];
        apply_as(&root, &layer(&[(m, d)])[..], mode).unwrap();
        assert!(xattr(&t.path().join("f"), "trusted.overlay.redirect").is_none());
        assert_eq!(xattr(&t.path().join("f"), "user.x").as_deref(), Some(&b"1"[..]));
    }
}
