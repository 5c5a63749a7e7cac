//! The record of what `box-unpack` wrote: one line per path of a root filesystem, in an
//! mtree(5)-style text file, so `box-commit` can later tell what a container changed.
//!
//! Reference: mtree(5) (BSD, libarchive): "full path" form, `keyword=value` pairs, names
//! encoded with strvis(3) octal escapes (every byte outside printable ASCII, and `\`, `#`,
//! `=`). umoci keeps the same kind of record for the same purpose (`umoci unpack` writes
//! `sha256_<digest>.mtree`, `umoci repack` compares against it).
//!
//! ```text
//! #mtree v2.0 boxkit rootfs record
//! . type=dir mode=0755 uid=0 gid=0 time=0.000000000 inode=2 ctime=1700000000.5
//! ./bin/sh type=file mode=0755 uid=0 gid=0 size=1024 time=1.0 nlink=2 inode=9 ctime=… sha256digest=…
//! ./etc/link type=link mode=0777 uid=0 gid=0 time=1.0 link=../target inode=… ctime=…
//! ./dev/null type=char mode=0666 uid=0 gid=0 time=1.0 device=native,1,3 inode=… ctime=…
//! ./x type=file … xattr.user.comment=aGVsbG8=
//! ```
//!
//! Keywords are mtree(5)'s (`type mode uid gid size time nlink link device sha256digest`),
//! plus libarchive's `xattr.NAME=base64`, plus two of boxkit's: `inode` and `ctime`. Those two
//! let a commit skip hashing a file whose inode and change time are the ones recorded: the
//! kernel updates ctime on every write and every metadata change, and no program can set it.
//! When they differ (a rewrite, a copied bundle), the sha256 decides.
//!
//! The walk is the one `box-export` does ([`walk`] serves both): depth-first, names sorted
//! bytewise, every entry opened relative to its parent's descriptor with `O_NOFOLLOW`,
//! metadata from `fstat`.

use crate::digest::HashingReader;
use crate::error::{Context, Error, Result};
use crate::fsroot::{self, open_raw};
use base64::Engine;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

/// The record's file name inside a bundle.
pub const RECORD_FILE: &str = "rootfs.mtree";
const HEADER: &str = "#mtree v2.0 boxkit rootfs record";

/// The type of a file, as mtree names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    File,
    Dir,
    Link,
    Char,
    Block,
    Fifo,
    Socket,
}

impl Type {
    pub fn of(mode: u32) -> Type {
        match mode & libc::S_IFMT {
            libc::S_IFDIR => Type::Dir,
            libc::S_IFLNK => Type::Link,
            libc::S_IFCHR => Type::Char,
            libc::S_IFBLK => Type::Block,
            libc::S_IFIFO => Type::Fifo,
            libc::S_IFSOCK => Type::Socket,
            _ => Type::File,
        }
    }
    fn name(self) -> &'static str {
        ["file", "dir", "link", "char", "block", "fifo", "socket"][self as usize]
    }
    fn parse(s: &str) -> Option<Type> {
        [Type::File, Type::Dir, Type::Link, Type::Char, Type::Block, Type::Fifo, Type::Socket].into_iter().find(|t| t.name() == s)
    }
}

// ANCHOR: entry
/// What the record says about one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `.` for the root, else `a/b` (relative, no leading `./`).
    pub path: Vec<u8>,
    pub kind: Type,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: (i64, i64),
    pub nlink: u64,
    pub link: Vec<u8>,
    pub rdev: (u32, u32),
    pub xattrs: Vec<(OsString, Vec<u8>)>,
    pub inode: u64,
    pub ctime: (i64, i64),
    /// Regular files only: the sha256 of the content, hex.
    pub sha256: Option<String>,
}
// ANCHOR_END: entry

impl Entry {
    /// An entry from `lstat` data (without the content hash).
    pub fn from_stat(path: Vec<u8>, st: &libc::stat, link: Vec<u8>, xattrs: Vec<(OsString, Vec<u8>)>) -> Entry {
        let kind = Type::of(st.st_mode);
        Entry {
            path,
            kind,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            size: if kind == Type::File { st.st_size as u64 } else { 0 },
            mtime: (st.st_mtime, st.st_mtime_nsec),
            nlink: st.st_nlink as u64,
            link,
            rdev: (libc::major(st.st_rdev), libc::minor(st.st_rdev)),
            xattrs,
            inode: st.st_ino,
            ctime: (st.st_ctime, st.st_ctime_nsec),
            sha256: None,
        }
    }

    fn to_line(&self) -> String {
        let mut s = if self.path == b"." { ".".to_string() } else { format!("./{}", vis(&self.path)) };
        s += &format!(" type={} mode={:04o} uid={} gid={}", self.kind.name(), self.mode, self.uid, self.gid);
        if self.kind == Type::File {
            s += &format!(" size={}", self.size);
        }
        s += &format!(" time={}.{:09} nlink={}", self.mtime.0, self.mtime.1, self.nlink);
        if self.kind == Type::Link {
            s += &format!(" link={}", vis(&self.link));
        }
        if matches!(self.kind, Type::Char | Type::Block) {
            s += &format!(" device=native,{},{}", self.rdev.0, self.rdev.1);
        }
        for (k, v) in &self.xattrs {
            s += &format!(" xattr.{}={}", vis(k.as_bytes()), base64::engine::general_purpose::STANDARD.encode(v));
        }
        s += &format!(" inode={} ctime={}.{:09}", self.inode, self.ctime.0, self.ctime.1);
        if let Some(h) = &self.sha256 {
            s += &format!(" sha256digest={h}");
        }
        s
    }

    fn parse(line: &str) -> Option<Entry> {
        let mut words = line.split(' ');
        let raw = unvis(words.next()?)?;
        let path = if raw == b"." { raw } else { raw.strip_prefix(b"./")?.to_vec() };
        let mut e = Entry {
            path,
            kind: Type::File,
            mode: 0,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: (0, 0),
            nlink: 1,
            link: Vec::new(),
            rdev: (0, 0),
            xattrs: Vec::new(),
            inode: 0,
            ctime: (0, 0),
            sha256: None,
        };
        let time = |v: &str| -> Option<(i64, i64)> {
            let (s, ns) = v.split_once('.').unwrap_or((v, "0"));
            Some((s.parse().ok()?, ns.parse().ok()?))
        };
        for w in words {
            let (k, v) = w.split_once('=')?;
            match k {
                "type" => e.kind = Type::parse(v)?,
                "mode" => e.mode = u32::from_str_radix(v, 8).ok()?,
                "uid" => e.uid = v.parse().ok()?,
                "gid" => e.gid = v.parse().ok()?,
                "size" => e.size = v.parse().ok()?,
                "time" => e.mtime = time(v)?,
                "nlink" => e.nlink = v.parse().ok()?,
                "link" => e.link = unvis(v)?,
                "device" => {
                    let mut p = v.split(',').skip(1);
                    e.rdev = (p.next()?.parse().ok()?, p.next()?.parse().ok()?);
                }
                "inode" => e.inode = v.parse().ok()?,
                "ctime" => e.ctime = time(v)?,
                "sha256digest" => e.sha256 = Some(v.to_string()),
                _ => {
                    let name = k.strip_prefix("xattr.")?;
                    let value = base64::engine::general_purpose::STANDARD.decode(v).ok()?;
                    e.xattrs.push((OsString::from_vec(unvis(name)?), value));
                }
            }
        }
        Some(e)
    }
}

/// strvis(3)-style: every byte outside printable ASCII (space included), and `\`, `#`, `=`, as `\ooo`.
fn vis(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    for &c in b {
        if c.is_ascii_graphic() && c != b'\\' && c != b'#' && c != b'=' {
            s.push(c as char);
        } else {
            s += &format!("\\{c:03o}");
        }
    }
    s
}

fn unvis(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            let oct = std::str::from_utf8(b.get(i + 1..i + 4)?).ok()?;
            out.push(u8::from_str_radix(oct, 8).ok()?);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// One path met by [`walk`]: its parent's descriptor and its name there, and its metadata.
pub struct Node<'a> {
    pub path: &'a [u8],
    pub dir: RawFd,
    pub name: &'a OsStr,
    pub st: &'a libc::stat,
    /// For a directory: the directory itself, opened (with `O_NOFOLLOW` below the root).
    pub sub: Option<RawFd>,
}

// ANCHOR: walk
/// Walk the tree at `root` depth-first, names sorted bytewise, calling `f` for the root
/// (path `.`) and then every path below it. Directories are entered through descriptors
/// opened with `O_NOFOLLOW` relative to their parent's; nothing is resolved by path string.
pub fn walk(root: &Path, f: &mut dyn FnMut(&Node) -> Result<()>) -> Result<()> {
    let fd = open_raw(libc::AT_FDCWD, root.as_os_str(), libc::O_RDONLY | libc::O_DIRECTORY)
        .ctx(|| format!("open {}", root.display()))?;
    walk_at(&fd, &root.display().to_string(), f)
}

/// [`walk`] from a directory already open, `shown` as its name in errors.
pub fn walk_at(root: &OwnedFd, shown: &str, f: &mut dyn FnMut(&Node) -> Result<()>) -> Result<()> {
    let st = fsroot::fstat(root.as_raw_fd()).ctx(|| format!("stat {shown}"))?;
    f(&Node { path: b".", dir: root.as_raw_fd(), name: OsStr::new("."), st: &st, sub: Some(root.as_raw_fd()) })?;
    walk_dir(root, b"", f)
}

fn walk_dir(dir: &OwnedFd, prefix: &[u8], f: &mut dyn FnMut(&Node) -> Result<()>) -> Result<()> {
    let show = |p: &[u8]| format!("/{}", String::from_utf8_lossy(p));
    for name in fsroot::list_dir(dir.as_raw_fd()).ctx(|| format!("list {}", show(prefix)))? {
        let mut path = prefix.to_vec();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(name.as_bytes());
        let st = match fsroot::lstatat(dir.as_raw_fd(), &name) {
            Ok(st) => st,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue, // removed meanwhile
            Err(e) => return Err(Error::io(format!("stat {}", show(&path)), e)),
        };
        let sub = if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            Some(open_raw(dir.as_raw_fd(), &name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW).ctx(|| format!("open {}", show(&path)))?)
        } else {
            None
        };
        f(&Node { path: &path, dir: dir.as_raw_fd(), name: &name, st: &st, sub: sub.as_ref().map(|d| d.as_raw_fd()) })?;
        if let Some(sub) = sub {
            walk_dir(&sub, &path, f)?;
        }
    }
    Ok(())
}
// ANCHOR_END: walk

/// Everything the record keeps about `node`, except the content hash.
pub fn entry_of(node: &Node) -> Result<Entry> {
    let at = || format!("/{}", String::from_utf8_lossy(node.path));
    let link = if Type::of(node.st.st_mode) == Type::Link {
        fsroot::readlinkat(node.dir, node.name).ctx(|| format!("readlink {}", at()))?
    } else {
        Vec::new()
    };
    let xattrs = fsroot::lxattrsat(node.dir, node.name).ctx(|| format!("xattrs of {}", at()))?;
    Ok(Entry::from_stat(node.path.to_vec(), node.st, link, xattrs))
}

/// The sha256 of a regular file, opened with `O_NOFOLLOW` and checked to be the inode `st`
/// describes.
pub fn hash_file(node: &Node) -> Result<String> {
    let at = || format!("/{}", String::from_utf8_lossy(node.path));
    let fd = open_raw(node.dir, node.name, libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .ctx(|| format!("open {}", at()))?;
    let st = fsroot::fstat(fd.as_raw_fd()).ctx(|| format!("stat {}", at()))?;
    if st.st_ino != node.st.st_ino || st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(Error::invalid(format!("{} changed while being read", at())));
    }
    let mut r = BufReader::with_capacity(128 << 10, HashingReader::new(std::fs::File::from(fd)));
    io::copy(&mut r, &mut io::sink()).ctx(|| format!("read {}", at()))?;
    Ok(r.into_inner().finish().0.hex().to_string())
}

/// The content hashes of the inodes with more than one name met so far, by (device, inode):
/// a hard-linked file is read once, however many names it has.
#[derive(Default)]
pub struct LinkHashes(HashMap<(u64, u64), String>);

impl LinkHashes {
    /// [`hash_file`], remembered for a file with more than one link.
    pub fn hash(&mut self, node: &Node) -> Result<String> {
        if node.st.st_nlink <= 1 {
            return hash_file(node);
        }
        let id = (node.st.st_dev, node.st.st_ino);
        if let Some(h) = self.0.get(&id) {
            return Ok(h.clone());
        }
        let h = hash_file(node)?;
        self.0.insert(id, h.clone());
        Ok(h)
    }
}

// ANCHOR: record
/// Write the record of the tree at `rootfs` to `out` (a temporary file renamed into place).
pub fn record(rootfs: &Path, out: &Path) -> Result<u64> {
    let dir = out.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".mtree.tmp-").tempfile_in(dir).ctx(|| format!("create a file in {}", dir.display()))?;
    let mut w = BufWriter::new(tmp.as_file_mut());
    writeln!(w, "{HEADER}").ctx(|| "write record")?;
    let mut n = 0u64;
    let mut linked = LinkHashes::default();
    walk(rootfs, &mut |node| {
        let mut e = entry_of(node)?;
        if e.kind == Type::File {
            e.sha256 = Some(linked.hash(node)?);
        }
        n += 1;
        writeln!(w, "{}", e.to_line()).ctx(|| "write record")
    })?;
    w.flush().ctx(|| "write record")?;
    drop(w);
    tmp.persist(out).map_err(|e| Error::io(format!("rename into {}", out.display()), e.error))?;
    Ok(n)
}
// ANCHOR_END: record

/// Read a record: path → entry.
pub fn read(path: &Path) -> Result<HashMap<Vec<u8>, Entry>> {
    let f = std::fs::File::open(path).ctx(|| format!("open {}", path.display()))?;
    let mut r = BufReader::new(f);
    let mut line = String::new();
    let mut map = HashMap::new();
    let mut no = 0;
    loop {
        line.clear();
        if r.read_line(&mut line).ctx(|| format!("read {}", path.display()))? == 0 {
            break;
        }
        no += 1;
        let l = line.trim_end_matches('\n');
        if no == 1 {
            if l != HEADER {
                return Err(Error::invalid(format!("{}: not a boxkit rootfs record (first line {l:?})", path.display())));
            }
            continue;
        }
        let e = Entry::parse(l).ok_or_else(|| Error::invalid(format!("{}:{no}: malformed line", path.display())))?;
        map.insert(e.path.clone(), e);
    }
    if no == 0 {
        return Err(Error::invalid(format!("{}: empty record", path.display())));
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_with_odd_names() {
        let e = Entry {
            path: b"a b/\\x#=\xff".to_vec(),
            kind: Type::Link,
            mode: 0o777,
            uid: 1,
            gid: 2,
            size: 0,
            mtime: (-5, 7),
            nlink: 1,
            link: b"../t q".to_vec(),
            rdev: (0, 0),
            xattrs: vec![(OsString::from("user.a b"), b"\0v".to_vec())],
            inode: 9,
            ctime: (3, 4),
            sha256: None,
        };
        let line = e.to_line();
        assert!(!line.contains("a b"), "{line}");
        assert_eq!(Entry::parse(&line), Some(e));
    }

    #[test]
    fn record_of_a_tree() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        std::fs::write(t.path().join("d/f"), b"hello").unwrap();
        std::os::unix::fs::symlink("/etc", t.path().join("l")).unwrap();
        let out = t.path().join("rec");
        std::fs::create_dir(t.path().join("root")).unwrap();
        std::fs::rename(t.path().join("d"), t.path().join("root/d")).unwrap();
        std::fs::rename(t.path().join("l"), t.path().join("root/l")).unwrap();
        assert_eq!(record(&t.path().join("root"), &out).unwrap(), 4);
        let m = read(&out).unwrap();
        assert_eq!(m[&b"d/f".to_vec()].sha256.as_deref(), Some("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"));
        assert_eq!(m[&b"l".to_vec()].link, b"/etc");
        assert_eq!(m[&b".".to_vec()].kind, Type::Dir);
    }

    #[test]
    fn every_name_of_a_hard_linked_file_has_its_hash() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("a"), b"hello").unwrap();
        std::fs::hard_link(root.join("a"), root.join("b")).unwrap();
        let out = t.path().join("rec");
        assert_eq!(record(&root, &out).unwrap(), 3);
        let m = read(&out).unwrap();
        let h = Some("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_eq!(m[&b"a".to_vec()].sha256.as_deref(), h);
        assert_eq!(m[&b"b".to_vec()].sha256.as_deref(), h);
        assert_eq!(m[&b"b".to_vec()].nlink, 2);
    }
}
