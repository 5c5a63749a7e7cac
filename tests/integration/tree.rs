//! A tree listing to compare root filesystems: one line per path with type, mode, owner,
//! size, content hash, link target and xattrs. Two trees are equal when their listings are.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// What to leave out of a listing.
#[derive(Default, Clone, Copy)]
pub struct Ignore {
    pub mtime: bool,
    /// The root directory's own attributes.
    pub root: bool,
}

pub fn listing(root: &Path, ignore: Ignore) -> String {
    let mut lines = Vec::new();
    let mut inodes: HashMap<(u64, u64), String> = HashMap::new();
    walk(root, root, &mut lines, &mut inodes, ignore);
    lines.sort();
    lines.join("\n")
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>, inodes: &mut HashMap<(u64, u64), String>, ig: Ignore) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    if dir == root && !ig.root {
        out.push(line(root, dir, inodes, ig));
    }
    for p in entries {
        out.push(line(root, &p, inodes, ig));
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            walk(root, &p, out, inodes, ig);
        }
    }
}

fn line(root: &Path, p: &Path, inodes: &mut HashMap<(u64, u64), String>, ig: Ignore) -> String {
    let m = std::fs::symlink_metadata(p).unwrap();
    let rel = format!("/{}", p.strip_prefix(root).unwrap().display());
    let ft = m.file_type();
    let (kind, extra) = if ft.is_dir() {
        ("dir", String::new())
    } else if ft.is_symlink() {
        ("symlink", format!("-> {}", std::fs::read_link(p).unwrap().display()))
    } else if ft.is_file() {
        let hash = format!("{:x}", Sha256::digest(std::fs::read(p).unwrap()));
        let mut s = format!("size={} sha256={}", m.len(), &hash[..16]);
        if m.nlink() > 1 {
            let first = inodes.entry((m.dev(), m.ino())).or_insert_with(|| rel.clone());
            if first != &rel {
                s.push_str(&format!(" link={first}"));
            }
        }
        ("file", s)
    } else if ft.is_char_device() {
        ("char", format!("{}:{}", libc::major(m.rdev()), libc::minor(m.rdev())))
    } else if ft.is_block_device() {
        ("block", format!("{}:{}", libc::major(m.rdev()), libc::minor(m.rdev())))
    } else if ft.is_fifo() {
        ("fifo", String::new())
    } else {
        ("socket", String::new())
    };
    let mode = if ft.is_symlink() { String::from("-") } else { format!("{:04o}", m.mode() & 0o7777) };
    let mut s = format!("{rel} {kind} {mode} {}:{} {extra}", m.uid(), m.gid());
    if !ig.mtime && !ft.is_symlink() {
        s.push_str(&format!(" mtime={}", m.mtime()));
    }
    for (k, v) in xattrs(p) {
        s.push_str(&format!(" xattr:{k}={}", v.iter().map(|b| format!("{b:02x}")).collect::<String>()));
    }
    s.trim_end().to_string()
}

fn xattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut buf = vec![0u8; 65536];
    let n = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n <= 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for k in buf[..n as usize].split(|&b| b == 0).filter(|k| !k.is_empty()) {
        let kc = std::ffi::CString::new(k).unwrap();
        let mut v = vec![0u8; 65536];
        let m = unsafe { libc::lgetxattr(c.as_ptr(), kc.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        if m >= 0 {
            v.truncate(m as usize);
            out.push((String::from_utf8_lossy(k).into_owned(), v));
        }
    }
    out.sort();
    out
}
