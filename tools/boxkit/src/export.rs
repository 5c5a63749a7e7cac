//! `box-export`: a root filesystem as one tar stream, in a deterministic order.
//!
//! Reference: `docker export`; tar(5). The walk is depth-first with names sorted bytewise,
//! the same order `box-import` writes, so `box-export B | box-import - x` reproduces the tree.
//!
//! The walk never follows a path string twice: each directory is opened relative to its
//! parent's descriptor with `O_NOFOLLOW`, each file is opened the same way and its metadata
//! read from the open descriptor (`fstat`). A container that swaps a directory for a symlink
//! while it is exported cannot make the tar include a host file (docker cp CVE-2018-15664).
//! Hard links are found by (device, inode) and written as links to the first path seen.

use crate::error::{Context, Error, Result};
use crate::explain;
use crate::fsroot::{self, open_raw};
use crate::mtree::{self, Node};
use crate::tarstream::{Kind, Meta, TarWriter};
use std::collections::HashMap;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;

// ANCHOR: export_fn
/// Write the tree at `rootfs` as a tar stream to `out`.
pub fn export(rootfs: &Path, out: impl Write) -> Result<u64> {
    let root = open_raw(libc::AT_FDCWD, rootfs.as_os_str(), libc::O_RDONLY | libc::O_DIRECTORY)
        .ctx(|| format!("open {}", rootfs.display()))?;
    explain!("walk {} depth-first, names sorted; open each entry with openat(O_NOFOLLOW)", rootfs.display());
    let mut w = Walker { tar: TarWriter::new(out), links: HashMap::new(), count: 0 };
    mtree::walk_at(&root, "/", &mut |node| w.entry(node))?;
    w.tar.finish().ctx(|| "finish tar")?;
    explain!("{} entries written", w.count);
    Ok(w.count)
}
// ANCHOR_END: export_fn

struct Walker<W: Write> {
    tar: TarWriter<W>,
    links: HashMap<(u64, u64), Vec<u8>>,
    count: u64,
}

// ANCHOR: walker
impl<W: Write> Walker<W> {
    /// One path met by [`mtree::walk_at`], which opened every directory relative to its
    /// parent's descriptor with `O_NOFOLLOW` and skipped names that vanished meanwhile.
    fn entry(&mut self, node: &Node) -> Result<()> {
        if node.path == b"." {
            let meta = meta_from_stat(b".".to_vec(), node.st, Kind::Dir, fsroot::lxattrsat(node.dir, node.name).unwrap_or_default());
            self.tar.append(&meta, None).ctx(|| "write /")?;
            self.count += 1;
            return Ok(());
        }
        let (dir, name, path) = (node.dir, node.name, node.path.to_vec());
        let at = || format!("/{}", String::from_utf8_lossy(&path));
        let st = node.st;
        let xattrs = fsroot::lxattrsat(dir, name).ctx(|| format!("xattrs of {}", at()))?;
        let fmt = st.st_mode & libc::S_IFMT;
        match fmt {
            libc::S_IFDIR => {
                let sub = node.sub.expect("the walk opens every directory");
                let st = fsroot::fstat(sub).ctx(|| format!("stat {}", at()))?;
                self.tar.append(&meta_from_stat(path.clone(), &st, Kind::Dir, xattrs), None).ctx(|| format!("write {}", at()))?;
            }
            libc::S_IFREG => {
                let f = open_raw(dir, name, libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_NONBLOCK)
                    .ctx(|| format!("open {}", at()))?;
                let st = fsroot::fstat(f.as_raw_fd()).ctx(|| format!("stat {}", at()))?;
                if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                    return Err(Error::invalid(format!("{} changed type while being exported", at())));
                }
                let key = (st.st_dev, st.st_ino);
                if st.st_nlink > 1 {
                    if let Some(first) = self.links.get(&key) {
                        let mut m = meta_from_stat(path.clone(), &st, Kind::Hardlink(first.clone()), xattrs);
                        m.size = 0;
                        self.tar.append(&m, None).ctx(|| format!("write {}", at()))?;
                        self.count += 1;
                        return Ok(());
                    }
                    self.links.insert(key, path.clone());
                }
                let mut file = std::fs::File::from(f);
                self.tar
                    .append(&meta_from_stat(path.clone(), &st, Kind::File, xattrs), Some(&mut file))
                    .ctx(|| format!("write {}", at()))?;
            }
            libc::S_IFLNK => {
                let target = fsroot::readlinkat(dir, name).ctx(|| format!("readlink {}", at()))?;
                self.tar.append(&meta_from_stat(path.clone(), st, Kind::Symlink(target), xattrs), None).ctx(|| format!("write {}", at()))?;
            }
            libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO => {
                let (ma, mi) = (libc::major(st.st_rdev), libc::minor(st.st_rdev));
                let kind = match fmt {
                    libc::S_IFCHR => Kind::Char(ma, mi),
                    libc::S_IFBLK => Kind::Block(ma, mi),
                    _ => Kind::Fifo,
                };
                self.tar.append(&meta_from_stat(path.clone(), st, kind, xattrs), None).ctx(|| format!("write {}", at()))?;
            }
            _ => {
                explain!("skip socket {} (tar cannot hold one)", at());
                return Ok(());
            }
        }
        self.count += 1;
        Ok(())
    }
}
// ANCHOR_END: walker

// ANCHOR: meta_from_stat
fn meta_from_stat(path: Vec<u8>, st: &libc::stat, kind: Kind, xattrs: Vec<(std::ffi::OsString, Vec<u8>)>) -> Meta {
    Meta {
        path,
        size: if kind == Kind::File { st.st_size as u64 } else { 0 },
        kind,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime: st.st_mtime,
        mtime_nsec: 0,
        xattrs,
    }
}
// ANCHOR_END: meta_from_stat
