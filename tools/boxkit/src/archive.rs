//! Image archives: the tar files `docker save`, `box-save` and skopeo write, and the one
//! pass that reads such a stream's members into a store.
//!
//! Reference: OCI image spec image-layout.md; the docker-archive format of moby
//! `image/tarexport` (`manifest.json`: Config, RepoTags, Layers), in its old form
//! (`<id>/layer.tar`, `<id>.json`) and Docker 25's (`blobs/sha256/…`); what skopeo's
//! `docker-archive:` writer makes (`<diff_id>.tar`, legacy links).
//!
//! A tar stream cannot be read twice, and its members come in any order (`manifest.json`
//! may be last), so [`read_archive`] does not interpret anything while reading:
//!
//! - every regular member goes straight into the store through a blob writer (a temporary
//!   file, hashed while written, renamed to its digest); a member named
//!   `blobs/sha256/<hex>` must hash to that name;
//! - only `index.json`, `manifest.json` and `oci-layout` are held in memory, at most
//!   `MAX_DOCUMENT` each;
//! - links are never followed: one that points out of the archive is refused, one that a
//!   document names is refused when looked up, the rest (skopeo writes
//!   `<id>/layer.tar -> ../<diff_id>.tar` for old readers) are skipped; member names that
//!   are absolute or hold `..` are refused;
//! - the stream must end with tar's end-of-archive marker, then nothing but zeros.

use crate::compress::{self, Compression};
use crate::digest::Digest;
use crate::error::{Context, Error, Result};
use crate::explain;
use crate::explain::human_size;
use crate::store::{Store, MAX_DOCUMENT};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{self, Read, Write};

/// The annotation containerd (and so Docker 25+) uses for an image's full name.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";

/// One entry of a docker-archive's `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DockerManifestItem {
    #[serde(rename = "Config")]
    pub config: String,
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
}

/// The path of a blob inside the archive: `blobs/sha256/<hex>`.
pub fn blob_member(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm(), d.hex())
}

/// Names an archive member must never have: absolute, or climbing out with `..`.
/// Returns the cleaned name (`./a//b` → `a/b`).
pub fn clean_member_name(raw: &[u8]) -> Result<String> {
    let name = std::str::from_utf8(raw)
        .map_err(|_| Error::invalid(format!("archive member {:?}: name is not UTF-8", String::from_utf8_lossy(raw))))?;
    if name.starts_with('/') {
        return Err(Error::invalid(format!("archive member {name:?}: an absolute name")));
    }
    let mut parts = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(Error::invalid(format!("archive member {name:?}: a name with '..'"))),
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

/// What the archive held under one name.
enum Member {
    Blob { digest: Digest, size: u64, compression: Compression },
    /// Not read: a symlink, a hard link, a device…
    Unread(&'static str),
}

/// What one pass over an archive found: where each member went, and the documents.
#[derive(Default)]
pub struct Archive {
    members: HashMap<String, Member>,
    pub index: Option<Vec<u8>>,
    pub docker: Option<Vec<u8>>,
    pub layout: Option<Vec<u8>>,
}

// ANCHOR: read_archive
/// Pass 1: every member into the store (or, for the three documents, into memory).
pub fn read_archive(store: &Store, input: impl Read + Send + 'static) -> Result<Archive> {
    let (kind, decoded) = compress::decoder(input).ctx(|| "read the archive")?;
    explain!("read the archive ({}); each member goes to blobs/.tmp-*, hashed, then renamed", kind.name());
    let bad = |e: io::Error| Error::invalid(format!("the archive is truncated or not a tar stream: {e}"));
    let mut tar = tar::Archive::new(EofWatch { inner: compress::pipelined(decoded), eof: false });
    let mut a = Archive::default();
    for entry in tar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let name = clean_member_name(&entry.path_bytes())?;
        let size = entry.size();
        let what = || format!("archive member {name:?}");
        use tar::EntryType as T;
        let hard = match entry.header().entry_type() {
            T::Regular | T::Continuous => None,
            T::Directory | T::XGlobalHeader => continue,
            T::Symlink => Some(false),
            T::Link => Some(true),
            _ => {
                a.members.insert(name, Member::Unread("not a regular file"));
                continue;
            }
        };
        if let Some(hard) = hard {
            let target = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
            if !link_stays_inside(&name, &target, hard) {
                return Err(Error::invalid(format!(
                    "{}: a link to {:?}, outside the archive",
                    what(),
                    String::from_utf8_lossy(&target)
                )));
            }
            a.members.insert(name, Member::Unread(if hard { "a hard link" } else { "a symlink" }));
            continue;
        }
        match name.as_str() {
            "index.json" | "manifest.json" | "oci-layout" => {
                if size > MAX_DOCUMENT {
                    return Err(Error::invalid(format!("{}: {} is too large for a document", what(), human_size(size))));
                }
                let mut bytes = Vec::with_capacity(size as usize);
                entry.read_to_end(&mut bytes).map_err(bad)?;
                if bytes.len() as u64 != size {
                    return Err(Error::invalid(format!("{}: truncated ({} of {size} bytes)", what(), bytes.len())));
                }
                let slot = match name.as_str() {
                    "index.json" => &mut a.index,
                    "manifest.json" => &mut a.docker,
                    _ => &mut a.layout,
                };
                *slot = Some(bytes);
            }
            // Docker's oldest index, and the per-layer v1 documents: names and configs come
            // from manifest.json, so these are not needed.
            "repositories" => {}
            n if is_legacy_document(n) => {}
            n => {
                let expect = match n.strip_prefix("blobs/") {
                    Some(rest) => Some(rest.replacen('/', ":", 1).parse::<Digest>().map_err(|e| e.context(what()))?),
                    None => None,
                };
                let m = spool(store, &mut entry, size, expect).ctx(what)?;
                a.members.insert(name, m);
            }
        }
    }
    let rest = tar.into_inner();
    if rest.eof {
        return Err(Error::invalid("the archive is truncated: it ends without tar's end-of-archive marker"));
    }
    crate::tarstream::expect_only_padding(rest).map_err(|e| e.context("the archive"))?;
    Ok(a)
}
// ANCHOR_END: read_archive

/// Stream one member into the store; a name that is a digest must match.
fn spool(store: &Store, r: &mut impl Read, size: u64, expect: Option<Digest>) -> Result<Member> {
    let mut w = store.blob_writer()?;
    let mut buf = vec![0u8; 256 << 10];
    let (mut head, mut head_len, mut got) = ([0u8; 4], 0, 0u64);
    loop {
        let n = r.read(&mut buf).map_err(|e| Error::invalid(format!("read: {e}")))?;
        if n == 0 {
            break;
        }
        let k = n.min(4 - head_len);
        head[head_len..head_len + k].copy_from_slice(&buf[..k]);
        head_len += k;
        w.write_all(&buf[..n]).ctx(|| "write blob")?;
        got += n as u64;
    }
    if got != size {
        return Err(Error::invalid(format!("truncated ({got} of {size} bytes)")));
    }
    let (digest, size) = w.commit(expect.as_ref().map(|d| (d, size)))?;
    let compression = Compression::sniff(&mut &head[..head_len]).ctx(|| "sniff")?;
    Ok(Member::Blob { digest, size, compression })
}

/// `<id>/VERSION` and `<id>/json`: the v1 metadata old docker save and skopeo write.
fn is_legacy_document(name: &str) -> bool {
    matches!(name.split_once('/'), Some((dir, "VERSION" | "json")) if !dir.contains('/'))
}

/// Does a link's target name something inside the archive? A symlink's target is relative
/// to its own directory, a hard link's to the archive root.
fn link_stays_inside(name: &str, target: &[u8], hard: bool) -> bool {
    let Ok(target) = std::str::from_utf8(target) else { return false };
    if target.starts_with('/') {
        return false;
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    parts.pop();
    if hard {
        parts.clear();
    }
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return false;
                }
            }
            c => parts.push(c),
        }
    }
    true
}

impl Archive {
    /// A member a document names, which must be a regular file the archive held: its blob
    /// digest, size, and what its first bytes said about compression.
    pub fn member(&self, path: &str) -> Result<(&Digest, u64, Compression)> {
        let name = clean_member_name(path.as_bytes())?;
        match self.members.get(&name) {
            Some(Member::Blob { digest, size, compression }) => Ok((digest, *size, *compression)),
            Some(Member::Unread(what)) => {
                Err(Error::invalid(format!("{path:?} is {what} in the archive; box-load reads only regular files")))
            }
            None => Err(Error::invalid(format!("{path:?} is not in the archive"))),
        }
    }
}

/// Remembers whether the stream ran out: a tar reader that meets the end of its input
/// before a zero block saw an archive cut short.
struct EofWatch<R> {
    inner: R,
    eof: bool,
}

impl<R: Read> Read for EofWatch<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof = true;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_are_cleaned_and_escapes_refused() {
        assert_eq!(clean_member_name(b"./blobs//sha256/x").unwrap(), "blobs/sha256/x");
        assert!(clean_member_name(b"../x").unwrap_err().to_string().contains("'..'"));
        assert!(clean_member_name(b"a/../../x").is_err());
        assert!(clean_member_name(b"/etc/passwd").unwrap_err().to_string().contains("absolute"));
    }

    #[test]
    fn links_inside_and_outside() {
        assert!(link_stays_inside("abc/layer.tar", b"../x.tar", false));
        assert!(!link_stays_inside("abc/layer.tar", b"../../x.tar", false));
        assert!(!link_stays_inside("l", b"/etc/passwd", false));
        assert!(link_stays_inside("a/b", b"blobs/sha256/x", true));
        assert!(!link_stays_inside("a/b", b"../x", true));
    }

    #[test]
    fn legacy_documents() {
        assert!(is_legacy_document("0123/json"));
        assert!(is_legacy_document("0123/VERSION"));
        assert!(!is_legacy_document("0123/layer.tar"));
        assert!(!is_legacy_document("a/b/json"));
    }
}
