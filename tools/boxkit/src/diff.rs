//! What a container changed, as the entries of one layer: from an overlay upper directory,
//! or by comparing a copied root filesystem with the record `box-unpack` wrote.
//!
//! Reference: OCI image spec, layer.md ("Change Types", "Whiteouts", "Opaque Whiteout");
//! the kernel's Documentation/filesystems/overlayfs.rst ("whiteouts and opaque
//! directories"); Docker's archive/changes.go, whose rules for a copied tree boxkit follows:
//! a directory's own mtime is not a change, and every changed path brings its parent
//! directories into the layer (so their modes and owners travel with it).
//!
//! The result is a list of small records (no file data) in the canonical order of
//! [`crate::import`]'s layers: depth-first, names sorted bytewise. Whiteouts and opaque markers
//! take their place in that order by their own names. Regular files with more than one link
//! are grouped by inode: the first path in order carries the data, the others become tar hard
//! links to it.

use crate::error::{Error, Result};
use crate::layer::{self, OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::mtree::{self, Entry, LinkHashes, Node, Type};
use crate::tarstream::{walk_order_cmp, Kind, Meta};
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// One entry of the layer to write.
#[derive(Debug, Clone)]
pub struct Item {
    pub meta: Meta,
    /// For a regular file whose data goes into the layer: its (device, inode), so the writer
    /// can check it reads the same file the diff saw.
    pub inode: Option<(u64, u64)>,
    nlink: u64,
}

/// A diff: its entries in layer order.
#[derive(Debug)]
pub struct Changes {
    pub items: Vec<Item>,
    pub whiteouts: u64,
}

fn show(p: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(p))
}

fn parent(p: &[u8]) -> &[u8] {
    match p.iter().rposition(|&b| b == b'/') {
        Some(i) => &p[..i],
        None => b".",
    }
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir == b"." {
        return name.to_vec();
    }
    [dir, b"/", name].concat()
}

fn base(p: &[u8]) -> &[u8] {
    p.rsplit(|&b| b == b'/').next().unwrap_or(p)
}

// ANCHOR: refuse_whiteout_names
/// A real file named `.wh.*` cannot be written into a layer: every reader would take it for a
/// whiteout and delete something instead (THREATS.md, "committing a rootfs that holds a real
/// file named .wh.foo").
fn refuse_whiteout_name(path: &[u8]) -> Result<()> {
    if layer::is_whiteout_name(path) {
        return Err(Error::invalid(format!(
            "{}: a file named {WHITEOUT_PREFIX}* cannot be committed (a layer would read it as a whiteout); rename or remove it",
            show(path)
        )));
    }
    Ok(())
}
// ANCHOR_END: refuse_whiteout_names

fn meta_of(e: &Entry, xattrs: Vec<(OsString, Vec<u8>)>) -> Meta {
    let kind = match e.kind {
        Type::File => Kind::File,
        Type::Dir => Kind::Dir,
        Type::Link => Kind::Symlink(e.link.clone()),
        Type::Char => Kind::Char(e.rdev.0, e.rdev.1),
        Type::Block => Kind::Block(e.rdev.0, e.rdev.1),
        Type::Fifo | Type::Socket => Kind::Fifo,
    };
    Meta { path: e.path.clone(), kind, mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime.0, mtime_nsec: 0, size: e.size, xattrs }
}

/// A whiteout or opaque marker: an empty regular file, 0600, owned by root, at the epoch.
fn marker(path: Vec<u8>) -> Item {
    let meta = Meta { path, kind: Kind::File, mode: 0o600, uid: 0, gid: 0, mtime: 0, mtime_nsec: 0, size: 0, xattrs: Vec::new() };
    Item { meta, inode: None, nlink: 1 }
}

fn item(e: &Entry, st: &libc::stat, xattrs: Vec<(OsString, Vec<u8>)>) -> Item {
    let inode = (e.kind == Type::File).then_some((st.st_dev, st.st_ino));
    Item { meta: meta_of(e, xattrs), inode, nlink: e.nlink }
}

// ANCHOR: from_upper
/// The changes an overlay mount recorded in its upper directory: everything there is new or
/// changed; a character device 0:0 is a deletion; a directory marked opaque replaced the one
/// below it entirely. The overlay's own xattrs never reach the layer.
pub fn from_upper(upper: &Path) -> Result<Changes> {
    let mut items = Vec::new();
    let mut whiteouts = 0;
    mtree::walk(upper, &mut |node: &Node| {
        if node.path == b"." {
            return Ok(()); // the upper root is the mount's, not the image's
        }
        let e = mtree::entry_of(node)?;
        if e.kind == Type::Char && e.rdev == (0, 0) {
            let name = [WHITEOUT_PREFIX.as_bytes(), base(node.path)].concat();
            items.push(marker(join(parent(node.path), &name)));
            whiteouts += 1;
            return Ok(());
        }
        refuse_whiteout_name(node.path)?;
        if e.kind == Type::Socket {
            return Ok(()); // tar cannot hold a socket
        }
        let mut opaque = false;
        let mut xattrs = Vec::new();
        for (k, v) in &e.xattrs {
            let key = k.as_bytes();
            let Some(what) = layer::overlay_xattr_name(key) else {
                xattrs.push((k.clone(), v.clone()));
                continue;
            };
            match what {
                b"opaque" => opaque = v.as_slice() == b"y",
                b"redirect" | b"metacopy" => {
                    return Err(Error::invalid(format!(
                        "{}: the overlay {} it with {} (mounted with redirect_dir or metacopy on): its content lives in a lower layer under another name, which a layer cannot say; mount with redirect_dir=off,metacopy=off",
                        show(node.path),
                        if what == b"redirect" { "renamed" } else { "copied up only the metadata of" },
                        String::from_utf8_lossy(key)
                    )))
                }
                _ => {} // origin, impure, nlink, upper, uuid: the overlay's bookkeeping
            }
        }
        items.push(item(&e, node.st, xattrs));
        if opaque && e.kind == Type::Dir {
            items.push(marker(join(node.path, OPAQUE_MARKER.as_bytes())));
            whiteouts += 1;
        }
        Ok(())
    })?;
    Ok(Changes { items: finish(items), whiteouts })
}
// ANCHOR_END: from_upper

// ANCHOR: unchanged
/// Is the path as the record saw it? A directory's mtime is not compared (it changes with
/// its children, which are compared themselves). A file whose inode and ctime are the
/// recorded ones was not written since; otherwise its content hash decides.
fn unchanged(old: &Entry, new: &Entry, node: &Node, linked: &mut LinkHashes) -> Result<bool> {
    let same_meta = old.kind == new.kind
        && old.mode == new.mode
        && old.uid == new.uid
        && old.gid == new.gid
        && old.xattrs == new.xattrs
        && (new.kind == Type::Dir || (old.mtime == new.mtime && old.size == new.size && old.link == new.link && old.rdev == new.rdev));
    if !same_meta {
        return Ok(false);
    }
    if new.kind != Type::File || (old.inode == new.inode && old.ctime == new.ctime) {
        return Ok(true);
    }
    Ok(old.sha256.as_deref() == Some(linked.hash(node)?.as_str()))
}
// ANCHOR_END: unchanged

// ANCHOR: from_record
/// The changes between a root filesystem and the record of what was unpacked into it.
pub fn from_record(rootfs: &Path, record: &Path) -> Result<Changes> {
    let mut old = mtree::read(record)?;
    // Pass 1: one small record per path of the tree as it is now.
    let mut now: Vec<(Item, bool)> = Vec::new();
    let mut dirs: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut linked = LinkHashes::default();
    mtree::walk(rootfs, &mut |node: &Node| {
        if node.path != b"." {
            refuse_whiteout_name(node.path)?;
        }
        let e = mtree::entry_of(node)?;
        if e.kind == Type::Socket {
            return Ok(());
        }
        let changed = match old.remove(node.path) {
            Some(o) => !unchanged(&o, &e, node, &mut linked)?,
            None => true,
        };
        if e.kind == Type::Dir {
            dirs.insert(node.path.to_vec(), now.len());
        }
        now.push((item(&e, node.st, e.xattrs.clone()), changed));
        Ok(())
    })?;
    // A new link to an unchanged file: every name of that inode goes in, linked, so the
    // layer recreates one inode with its content (as an overlay's copy-up would).
    let mut groups: HashMap<(u64, u64), Vec<usize>> = HashMap::new();
    for (i, (it, _)) in now.iter().enumerate() {
        if let (Some(id), true) = (it.inode, it.nlink > 1) {
            groups.entry(id).or_default().push(i);
        }
    }
    for members in groups.values() {
        if members.iter().any(|&i| now[i].1) {
            members.iter().for_each(|&i| now[i].1 = true);
        }
    }
    // Whatever the record has and the tree lost: one whiteout at the top of each deleted
    // subtree (a path whose parent is still a directory).
    let mut items = Vec::new();
    let mut whiteouts = 0;
    for path in old.keys() {
        let dir = parent(path);
        if dirs.contains_key(dir) {
            let name = [WHITEOUT_PREFIX.as_bytes(), base(path)].concat();
            items.push(marker(join(dir, &name)));
            whiteouts += 1;
        }
    }
    // Every changed path and whiteout brings its parent directories (but not the root,
    // which goes in only when it changed itself).
    let mut wanted: HashSet<usize> = (0..now.len()).filter(|&i| now[i].1).collect();
    let paths: Vec<Vec<u8>> = wanted.iter().map(|&i| now[i].0.meta.path.clone()).chain(items.iter().map(|m| m.meta.path.clone())).collect();
    for p in paths {
        let mut d = parent(&p);
        while d != b"." {
            match dirs.get(d) {
                Some(&i) if wanted.insert(i) => d = parent(d),
                _ => break,
            }
        }
    }
    items.extend(now.into_iter().enumerate().filter(|(i, _)| wanted.contains(i)).map(|(_, (it, _))| it));
    Ok(Changes { items: finish(items), whiteouts })
}
// ANCHOR_END: from_record

// ANCHOR: finish
/// Canonical order, then hard links: the first name of an inode (in that order) carries the
/// data, the later ones are tar hard links to it.
fn finish(mut items: Vec<Item>) -> Vec<Item> {
    items.sort_by(|a, b| walk_order_cmp(&a.meta.path, &b.meta.path));
    let mut first: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    for it in items.iter_mut() {
        let (Some(id), true) = (it.inode, it.nlink > 1) else { continue };
        match first.get(&id) {
            Some(leader) => {
                it.meta.kind = Kind::Hardlink(leader.clone());
                it.meta.size = 0;
                it.inode = None;
            }
            None => {
                first.insert(id, it.meta.path.clone());
            }
        }
    }
    items
}
// ANCHOR_END: finish

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn names(c: &Changes) -> Vec<String> {
        c.items
            .iter()
            .map(|i| {
                let p = String::from_utf8_lossy(&i.meta.path).into_owned();
                match &i.meta.kind {
                    Kind::Hardlink(t) => format!("{p} link={}", String::from_utf8_lossy(t)),
                    _ => p,
                }
            })
            .collect()
    }

    #[test]
    fn a_copied_tree_against_its_record() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().join("rootfs");
        fs::create_dir_all(r.join("etc/sub")).unwrap();
        fs::create_dir_all(r.join("gone/deep")).unwrap();
        fs::write(r.join("etc/a"), b"1").unwrap();
        fs::write(r.join("etc/b"), b"2").unwrap();
        fs::write(r.join("etc/sub/c"), b"3").unwrap();
        fs::write(r.join("gone/deep/x"), b"4").unwrap();
        fs::write(r.join("keep"), b"5").unwrap();
        let rec = t.path().join("rec");
        mtree::record(&r, &rec).unwrap();
        assert!(from_record(&r, &rec).unwrap().items.is_empty());

        fs::write(r.join("etc/a"), b"changed").unwrap();
        fs::remove_file(r.join("etc/b")).unwrap();
        fs::remove_dir_all(r.join("gone")).unwrap();
        fs::hard_link(r.join("keep"), r.join("etc/sub/keep2")).unwrap();
        let c = from_record(&r, &rec).unwrap();
        assert_eq!(names(&c), [".wh.gone", "etc", "etc/.wh.b", "etc/a", "etc/sub", "etc/sub/keep2", "keep link=etc/sub/keep2"]);
        assert_eq!(c.whiteouts, 2);

        fs::write(r.join(".wh.evil"), b"").unwrap();
        let e = from_record(&r, &rec).unwrap_err().to_string();
        assert!(e.contains("/.wh.evil") && e.contains("cannot be committed"), "{e}");
    }
}
