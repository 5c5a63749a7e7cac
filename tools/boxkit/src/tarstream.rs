//! Writing tar streams the way every OCI tool can read them: ustar headers, with PAX
//! extended records (POSIX.1-2001) for what ustar cannot hold — long names and link
//! targets, large ids, extended attributes (`SCHILY.xattr.*`, as GNU tar and Go write them).
//!
//! Reference: pax(1) "pax Interchange Format"; OCI image spec layer.md (file attributes a
//! layer must carry). Headers are written from fields boxkit chooses, never copied from the
//! input, so the same tree always gives the same bytes: no atime, no ctime, no user names.

use crate::error::{Error, Result};
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;

// ANCHOR: kind_meta
/// The kind of a tar entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink(Vec<u8>),
    /// A hard link to an earlier entry (its path, relative to the root).
    Hardlink(Vec<u8>),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

/// Everything a header says about one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Relative path without a leading `/` or `./` (`bin/sh`); `.` for the root.
    pub path: Vec<u8>,
    pub kind: Kind,
    /// Permission bits with setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    /// Sub-second part of the modification time, when a PAX record gave one (read only).
    pub mtime_nsec: i64,
    pub size: u64,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<(OsString, Vec<u8>)>,
}
// ANCHOR_END: kind_meta

/// Read the metadata of a tar entry, PAX records included. `None` for entries that only
/// carry headers for others (global PAX headers).
pub fn read_meta<R: Read>(e: &mut tar::Entry<R>) -> Result<Option<Meta>> {
    use tar::EntryType as T;
    let h = e.header();
    let bad = |what: &str, err: io::Error| Error::invalid(format!("bad {what} in tar header: {err}"));
    let link = || -> Result<Vec<u8>> {
        e.link_name_bytes().map(|l| l.into_owned()).ok_or_else(|| Error::invalid("link without a target"))
    };
    let dev = || (h.device_major().ok().flatten().unwrap_or(0), h.device_minor().ok().flatten().unwrap_or(0));
    let kind = match h.entry_type() {
        T::Regular | T::Continuous | T::GNUSparse => Kind::File,
        T::Directory => Kind::Dir,
        T::Symlink => Kind::Symlink(link()?),
        T::Link => Kind::Hardlink(link()?),
        T::Char => Kind::Char(dev().0, dev().1),
        T::Block => Kind::Block(dev().0, dev().1),
        T::Fifo => Kind::Fifo,
        T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => return Ok(None),
        other => return Err(Error::invalid(format!("unsupported tar entry type {other:?}"))),
    };
    // An empty numeric field reads as 0, as Go's archive/tar (and so Docker) reads it.
    let old = h.as_old();
    let num = |v: io::Result<u64>, field: &[u8], what: &str| match v {
        Err(_) if field.iter().all(|&b| b == 0 || b == b' ') => Ok(0),
        v => v.map_err(|x| bad(what, x)),
    };
    let mut m = Meta {
        path: e.path_bytes().into_owned(),
        kind,
        mode: num(h.mode().map(u64::from), &old.mode, "mode")? as u32 & 0o7777,
        uid: num(h.uid(), &old.uid, "uid")? as u32,
        gid: num(h.gid(), &old.gid, "gid")? as u32,
        mtime: num(h.mtime(), &old.mtime, "mtime")? as i64,
        mtime_nsec: 0,
        size: e.size(),
        xattrs: Vec::new(),
    };
    if let Some(pax) = e.pax_extensions().map_err(|x| bad("PAX header", x))? {
        for ext in pax {
            let ext = ext.map_err(|x| bad("PAX record", x))?;
            let (key, value) = (ext.key_bytes(), ext.value_bytes());
            if let Some(x) = key.strip_prefix(b"SCHILY.xattr.") {
                m.xattrs.push((OsStr::from_bytes(x).to_os_string(), value.to_vec()));
            } else if key == b"uid" || key == b"gid" {
                let id: u32 = std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| Error::invalid("bad uid or gid in PAX header"))?;
                if key == b"uid" { m.uid = id } else { m.gid = id }
            } else if key == b"mtime" {
                (m.mtime, m.mtime_nsec) =
                    parse_pax_time(value).ok_or_else(|| Error::invalid("bad mtime in PAX header"))?;
            }
        }
    }
    m.xattrs.sort();
    Ok(Some(m))
}

/// After the end-of-archive blocks only zero padding may follow; anything else means the
/// stream is not the tar it claims to be.
pub fn expect_only_padding(mut rest: impl Read) -> Result<()> {
    let mut buf = [0u8; 8192];
    loop {
        let n = rest.read(&mut buf).map_err(|e| Error::io("read tar", e))?;
        if n == 0 {
            return Ok(());
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Err(Error::invalid("tar has trailing data after its end-of-archive marker"));
        }
    }
}

/// PAX times are decimal seconds with an optional fraction: `1700000000.123456789`.
fn parse_pax_time(v: &[u8]) -> Option<(i64, i64)> {
    let s = std::str::from_utf8(v).ok()?;
    let (sec, frac) = s.split_once('.').unwrap_or((s, ""));
    let sec: i64 = sec.parse().ok()?;
    let mut ns: i64 = 0;
    for (i, c) in frac.bytes().take(9).enumerate() {
        if !c.is_ascii_digit() {
            return None;
        }
        ns += (c - b'0') as i64 * 10i64.pow(8 - i as u32);
    }
    Some((sec, if sec < 0 && ns > 0 { -ns } else { ns }))
}

const USTAR_ID_MAX: u32 = 0o7777777;

/// A tar stream being written.
pub struct TarWriter<W: Write> {
    out: W,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> Self {
        TarWriter { out }
    }

    /// Append one entry; `data` must yield exactly `meta.size` bytes for a file.
    pub fn append(&mut self, meta: &Meta, data: Option<&mut dyn Read>) -> io::Result<()> {
        let mut name = meta.path.clone();
        if meta.kind == Kind::Dir && !name.ends_with(b"/") {
            name.push(b'/');
        }
        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        if name.len() > 100 || !name.is_ascii() {
            pax.push((b"path".to_vec(), name.clone()));
        }
        let link: &[u8] = match &meta.kind {
            Kind::Symlink(t) | Kind::Hardlink(t) => t,
            _ => b"",
        };
        if link.len() > 100 || !link.is_ascii() {
            pax.push((b"linkpath".to_vec(), link.to_vec()));
        }
        if meta.uid > USTAR_ID_MAX {
            pax.push((b"uid".to_vec(), meta.uid.to_string().into_bytes()));
        }
        if meta.gid > USTAR_ID_MAX {
            pax.push((b"gid".to_vec(), meta.gid.to_string().into_bytes()));
        }
        for (k, v) in &meta.xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(k.as_bytes());
            pax.push((key, v.clone()));
        }
        if !pax.is_empty() {
            self.write_pax(&name, &pax)?;
        }

        let mut h = tar::Header::new_ustar();
        set_bytes(&mut h.as_old_mut().name, &name);
        set_bytes(&mut h.as_old_mut().linkname, link);
        h.set_mode(meta.mode & 0o7777);
        h.set_uid(meta.uid.min(USTAR_ID_MAX) as u64);
        h.set_gid(meta.gid.min(USTAR_ID_MAX) as u64);
        h.set_mtime(meta.mtime.max(0) as u64);
        let size = if meta.kind == Kind::File { meta.size } else { 0 };
        h.set_size(size);
        h.set_entry_type(match meta.kind {
            Kind::File => tar::EntryType::Regular,
            Kind::Dir => tar::EntryType::Directory,
            Kind::Symlink(_) => tar::EntryType::Symlink,
            Kind::Hardlink(_) => tar::EntryType::Link,
            Kind::Char(..) => tar::EntryType::Char,
            Kind::Block(..) => tar::EntryType::Block,
            Kind::Fifo => tar::EntryType::Fifo,
        });
        if let Kind::Char(ma, mi) | Kind::Block(ma, mi) = meta.kind {
            h.set_device_major(ma)?;
            h.set_device_minor(mi)?;
        }
        h.set_cksum();
        self.out.write_all(h.as_bytes())?;
        if size > 0 {
            let data = data.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "file entry without data"))?;
            let n = io::copy(&mut data.take(size), &mut self.out)?;
            if n != size {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} changed size while being read ({n} of {size} bytes)", String::from_utf8_lossy(&meta.path)),
                ));
            }
            self.pad(size)?;
        }
        Ok(())
    }

    /// The end-of-archive marker: two zero blocks.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 1024])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn write_pax(&mut self, name: &[u8], records: &[(Vec<u8>, Vec<u8>)]) -> io::Result<()> {
        let mut body = Vec::new();
        for (k, v) in records {
            // "LEN KEY=VALUE\n" where LEN counts itself.
            let rest = k.len() + v.len() + 3;
            let mut len = rest + rest.to_string().len();
            if len.to_string().len() != rest.to_string().len() {
                len = rest + len.to_string().len();
            }
            body.extend_from_slice(format!("{len} ").as_bytes());
            body.extend_from_slice(k);
            body.push(b'=');
            body.extend_from_slice(v);
            body.push(b'\n');
        }
        let mut h = tar::Header::new_ustar();
        let mut pname = b"PaxHeaders/".to_vec();
        let base = name.rsplit(|&b| b == b'/').find(|s| !s.is_empty()).unwrap_or(b".");
        pname.extend_from_slice(&base[..base.len().min(88)]);
        set_bytes(&mut h.as_old_mut().name, &pname);
        h.set_mode(0o644);
        h.set_size(body.len() as u64);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_cksum();
        self.out.write_all(h.as_bytes())?;
        self.out.write_all(&body)?;
        self.pad(body.len() as u64)
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let rem = (size % 512) as usize;
        if rem != 0 {
            self.out.write_all(&[0u8; 512][..512 - rem])?;
        }
        Ok(())
    }
}

fn set_bytes(field: &mut [u8], value: &[u8]) {
    field.fill(0);
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

// ANCHOR: walk_order_cmp
/// The order of a depth-first walk with names sorted bytewise, for layer paths (`a/b`, `.`
/// for the root): compare component by component, the root before everything.
pub fn walk_order_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    fn components(p: &[u8]) -> impl Iterator<Item = &[u8]> {
        (p != b".").then_some(p).into_iter().flat_map(|p| p.split(|&c| c == b'/'))
    }
    components(a).cmp(components(b))
}
// ANCHOR_END: walk_order_cmp

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(path: &str, kind: Kind, size: u64) -> Meta {
        Meta { path: path.as_bytes().to_vec(), kind, mode: 0o4755, uid: 3_000_000, gid: 5, mtime: 1_700_000_000, mtime_nsec: 0, size, xattrs: vec![(OsString::from("user.k"), b"v".to_vec())] }
    }

    #[test]
    fn long_names_large_ids_and_xattrs_survive() {
        let long = format!("{}/file", "d".repeat(150));
        let mut w = TarWriter::new(Vec::new());
        w.append(&meta(&long, Kind::File, 3), Some(&mut &b"abc"[..])).unwrap();
        w.append(&meta("l", Kind::Symlink(long.clone().into_bytes()), 0), None).unwrap();
        let bytes = w.finish().unwrap();
        let mut ar = tar::Archive::new(&bytes[..]);
        let mut it = ar.entries().unwrap();
        let mut e = it.next().unwrap().unwrap();
        assert_eq!(e.path_bytes().as_ref(), long.as_bytes());
        assert_eq!(e.header().mode().unwrap(), 0o4755);
        let pax: Vec<(String, Vec<u8>)> = e
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|x| x.unwrap())
            .map(|x| (x.key().unwrap().to_string(), x.value_bytes().to_vec()))
            .collect();
        assert!(pax.contains(&("uid".to_string(), b"3000000".to_vec())));
        assert!(pax.contains(&("SCHILY.xattr.user.k".to_string(), b"v".to_vec())));
        let mut s = String::new();
        e.read_to_string(&mut s).unwrap();
        assert_eq!(s, "abc");
        let e = it.next().unwrap().unwrap();
        assert_eq!(e.link_name_bytes().unwrap().as_ref(), long.as_bytes());
    }

    #[test]
    fn empty_numeric_fields_read_as_zero() {
        let mut h = tar::Header::new_ustar();
        h.set_path("f").unwrap();
        h.set_size(0);
        h.set_cksum();
        let mut bytes = h.as_bytes().to_vec();
        bytes.extend_from_slice(&[0u8; 1024]);
        let mut ar = tar::Archive::new(&bytes[..]);
        let mut e = ar.entries().unwrap().next().unwrap().unwrap();
        let m = read_meta(&mut e).unwrap().unwrap();
        assert_eq!((m.uid, m.gid, m.mtime), (0, 0, 0));
    }

    #[test]
    fn pax_times() {
        assert_eq!(parse_pax_time(b"12.5"), Some((12, 500_000_000)));
        assert_eq!(parse_pax_time(b"7"), Some((7, 0)));
        assert_eq!(parse_pax_time(b"x"), None);
    }

    #[test]
    fn pax_record_length_counts_itself() {
        let mut w = TarWriter::new(Vec::new());
        // 'path' records of every length across the 2→3 digit boundary parse back.
        for n in 85..110 {
            let p = "x".repeat(n + 1);
            w.append(&meta(&p, Kind::Fifo, 0), None).unwrap();
        }
        let bytes = w.finish().unwrap();
        let mut ar = tar::Archive::new(&bytes[..]);
        assert_eq!(ar.entries().unwrap().map(|e| e.unwrap().path_bytes().len()).collect::<Vec<_>>(), (86..111).collect::<Vec<_>>());
    }

    #[test]
    fn walk_order_is_component_by_component() {
        // The key it replaces: the components, collected.
        let key = |p: &[u8]| -> Vec<Vec<u8>> {
            if p == b"." { Vec::new() } else { p.split(|&b| b == b'/').map(|c| c.to_vec()).collect() }
        };
        let names: [&[u8]; 20] = [
            b".", b"", b"a", b"a/", b"a//b", b"a/b", b"a-b", b"a.b", b"a/b/c", b"a/b-c", b"ab", b"b",
            b"./a", b"a/.", b"..", b".wh.a", b"a/.wh..wh..opq", b"\xff", b"\xff/a", b"A",
        ];
        for a in names {
            for b in names {
                assert_eq!(walk_order_cmp(a, b), key(a).cmp(&key(b)), "{:?} vs {:?}", show(a), show(b));
            }
        }
        let mut sorted = vec![&b"a-b"[..], b"a/b", b"a", b".", b"a/b/c", b"ab"];
        sorted.sort_by(|a, b| walk_order_cmp(a, b));
        assert_eq!(sorted, [&b"."[..], b"a", b"a/b", b"a/b/c", b"a-b", b"ab"]);
    }

    fn show(p: &[u8]) -> String {
        String::from_utf8_lossy(p).into_owned()
    }
}
