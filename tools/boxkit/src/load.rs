//! `box-load`: images from a `docker save` or OCI archive into the store, verified.
//!
//! Reference: OCI image spec image-layout.md (`index.json`, `blobs/`); the docker-archive
//! format of moby `image/tarexport` (`manifest.json`: Config, RepoTags, Layers), both the
//! old form (`<id>/layer.tar`, `<id>.json`) and Docker 25's (`blobs/sha256/…`), and what
//! skopeo's `docker-archive:` writer makes (`<diff_id>.tar`, legacy links).
//!
//! A tar stream cannot be read twice and its members come in any order (`manifest.json`
//! may be last), so box-load reads it once, front to back:
//!
//! 1. Every regular member goes straight into the store through a blob writer (a temporary
//!    file, hashed while written, renamed to its digest). A member named `blobs/sha256/<hex>`
//!    must hash to that name. Only `index.json`, `manifest.json` and `oci-layout` are held
//!    in memory, at most `MAX_DOCUMENT` each. Links are never followed: one that points out
//!    of the archive is refused, one that a document names is refused, the rest (skopeo
//!    writes `<id>/layer.tar -> ../<diff_id>.tar` for old readers) are skipped.
//! 2. The archive must end with tar's end-of-archive marker, followed by nothing but zeros.
//! 3. The images are checked: every manifest, config and layer present with the right size;
//!    configs as many diff_ids as layers; docker-form layers hash (uncompressed) to their
//!    diff_id. A docker-form image gets a new OCI manifest; an OCI one keeps its own, so its
//!    digest survives the trip.
//! 4. Only then are the names written to `index.json`. A load that fails leaves no name; the
//!    verified blobs it stored stay unreferenced until box-prune removes them.

use crate::compress::{self, Compression};
use crate::digest::{Digest, HashingWriter};
use crate::error::{Context, Error, Result};
use crate::explain;
use crate::explain::human_size;
use crate::oci::{self, Descriptor, ImageConfig, Index, Manifest};
use crate::reference::Reference;
use crate::save::{clean_member_name, DockerManifestItem, ANNOTATION_IMAGE_NAME};
use crate::store::{host_platform, Store, MAX_DOCUMENT};
use std::collections::HashMap;
use std::io::{self, Read, Write};

/// One image written to the store.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The manifest (or index) descriptor the names point at.
    pub descriptor: Descriptor,
    /// The names it was given; empty when the archive names it with none.
    pub names: Vec<Reference>,
    /// A `org.opencontainers.image.ref.name` that was only a tag (`latest`): not a name.
    pub bare_tag: Option<String>,
    config: Vec<Digest>,
}

/// What the archive held under one name.
enum Member {
    Blob { digest: Digest, size: u64, compression: Compression },
    /// Not read: a symlink, a hard link, a device…
    Unread(&'static str),
}

#[derive(Default)]
struct Archive {
    members: HashMap<String, Member>,
    index: Option<Vec<u8>>,
    docker: Option<Vec<u8>>,
    layout: Option<Vec<u8>>,
}

// ANCHOR: load_fn
/// Read an archive (plain, gzip or zstd) from `input`, store its images and name them.
pub fn load(store: &Store, input: impl Read + Send + 'static) -> Result<Vec<Loaded>> {
    let a = read_archive(store, input)?;
    let mut loaded: Vec<Loaded> = Vec::new();
    if let Some(bytes) = &a.index {
        if let Some(l) = &a.layout {
            let v: serde_json::Value = oci::from_json(l, "oci-layout")?;
            if !v.get("imageLayoutVersion").and_then(|v| v.as_str()).is_some_and(|v| v.starts_with("1.")) {
                return Err(Error::invalid(format!("oci-layout: unsupported {}", String::from_utf8_lossy(l))));
            }
        }
        let index: Index = oci::from_json(bytes, "index.json")?;
        for d in &index.manifests {
            let image = check_oci(store, d).ctx(|| format!("index.json: image {}", d.digest))?;
            merge(&mut loaded, image);
        }
    }
    if let Some(bytes) = &a.docker {
        let items: Vec<DockerManifestItem> = oci::from_json(bytes, "manifest.json")?;
        for item in &items {
            let what = || format!("manifest.json: image {}", item.config);
            let (config, _, _) = member(&a, &item.config).ctx(what)?;
            // The same image in index.json (Docker 25's and box-save's archives): its
            // manifest is kept, and RepoTags only add names.
            let image = match loaded.iter().find(|l| l.config.contains(config)) {
                Some(l) => Loaded { names: repo_tags(item).ctx(what)?, bare_tag: None, ..l.clone() },
                None => check_docker(store, &a, item).ctx(what)?,
            };
            merge(&mut loaded, image);
        }
    }
    if a.index.is_none() && a.docker.is_none() {
        return Err(Error::invalid(
            "the archive holds neither index.json nor manifest.json: not an image archive (the pre-1.10 docker save form is not supported)",
        ));
    }
    // Everything verified: now, and only now, name the images.
    for l in &loaded {
        for n in &l.names {
            store.tag(n, &l.descriptor)?;
        }
        if l.names.is_empty() {
            keep_untagged(store, &l.descriptor)?;
        }
    }
    Ok(loaded)
}
// ANCHOR_END: load_fn

/// One image reached twice (index.json and manifest.json, or two tags) is one image with
/// every name.
fn merge(loaded: &mut Vec<Loaded>, image: Loaded) {
    match loaded.iter_mut().find(|l| l.descriptor.digest == image.descriptor.digest) {
        Some(l) => {
            for n in image.names {
                if !l.names.contains(&n) {
                    l.names.push(n);
                }
            }
            if l.names.is_empty() && l.bare_tag.is_none() {
                l.bare_tag = image.bare_tag;
            }
        }
        None => loaded.push(image),
    }
}

// ANCHOR: read_archive
/// Pass 1: every member into the store (or, for the three documents, into memory).
fn read_archive(store: &Store, input: impl Read + Send + 'static) -> Result<Archive> {
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

/// A member a document names, which must be a regular file the archive held.
fn member<'a>(a: &'a Archive, path: &str) -> Result<(&'a Digest, u64, Compression)> {
    let name = clean_member_name(path.as_bytes())?;
    match a.members.get(&name) {
        Some(Member::Blob { digest, size, compression }) => Ok((digest, *size, *compression)),
        Some(Member::Unread(what)) => {
            Err(Error::invalid(format!("{path:?} is {what} in the archive; box-load reads only regular files")))
        }
        None => Err(Error::invalid(format!("{path:?} is not in the archive"))),
    }
}

/// A blob a document names must be in the store (from this archive or before) at its size.
fn present(store: &Store, what: &str, d: &Descriptor) -> Result<()> {
    match std::fs::metadata(store.blob_path(&d.digest)) {
        Ok(m) if m.len() == d.size => Ok(()),
        Ok(m) => Err(Error::invalid(format!("{what} {} is {} bytes, not the {} its descriptor says", d.digest, m.len(), d.size))),
        Err(_) => Err(Error::invalid(format!("{what} {} is not in the archive", d.digest))),
    }
}

// ANCHOR: check_oci
/// An index.json entry: a manifest (or an index of them) whose blobs are all present.
fn check_oci(store: &Store, d: &Descriptor) -> Result<Loaded> {
    present(store, "manifest", d)?;
    let clean = Descriptor::new(&d.media_type, d.digest.clone(), d.size);
    let config = match d.media_type.as_str() {
        oci::MEDIA_OCI_INDEX | oci::MEDIA_DOCKER_LIST => {
            // A multi-platform image: the platforms the archive carries must be whole.
            let bytes = store.read_blob(&d.digest)?;
            crate::store::check_not_ambiguous(&bytes, &d.digest)?;
            let index: Index = oci::from_json(&bytes, &format!("index {}", d.digest))?;
            let mut configs = Vec::new();
            for child in index.manifests.iter().filter(|c| store.has_blob(&c.digest)) {
                configs.push(check_manifest(store, child)?);
            }
            if configs.is_empty() {
                return Err(Error::invalid(format!("index {} names no manifest that is in the archive", d.digest)));
            }
            configs
        }
        _ => vec![check_manifest(store, &clean)?],
    };
    let mut names = Vec::new();
    let mut bare_tag = None;
    if let Some(n) = d.annotations.get(ANNOTATION_IMAGE_NAME) {
        names.push(Reference::parse(n)?);
    } else if let Some(n) = d.ref_name() {
        // boxkit and skopeo write a whole reference; Docker and others often a tag alone.
        if n.contains([':', '/', '@']) {
            names.push(Reference::parse(n)?);
        } else {
            bare_tag = Some(n.to_string());
        }
    }
    Ok(Loaded { descriptor: clean, names, bare_tag, config })
}
// ANCHOR_END: check_oci

/// A manifest, its config and every layer present and consistent; returns the config digest.
fn check_manifest(store: &Store, d: &Descriptor) -> Result<Digest> {
    let image = store.image_at(d.clone(), &host_platform())?;
    present(store, "config", &image.manifest.config)?;
    for l in &image.manifest.layers {
        oci::layer_compression(&l.media_type).map_err(|e| e.context(format!("layer {}", l.digest)))?;
        present(store, "layer", l)?;
    }
    explain!("manifest {}: config and {} layers present and verified", d.digest, image.manifest.layers.len());
    Ok(image.manifest.config.digest)
}

// ANCHOR: check_docker
/// A manifest.json entry: its config and layers become an OCI manifest in the store.
fn check_docker(store: &Store, a: &Archive, item: &DockerManifestItem) -> Result<Loaded> {
    let (cdigest, csize, _) = member(a, &item.config)?;
    // Before Docker 25 the config was `<image id>.json`, and the image ID is its digest.
    let base = item.config.rsplit('/').next().unwrap_or_default();
    if let Some(hex) = base.strip_suffix(".json").filter(|h| h.len() == 64) {
        if hex != cdigest.hex() {
            return Err(Error::invalid(format!("config {:?} hashes to {cdigest}", item.config)));
        }
    }
    let config: ImageConfig = oci::from_json(&store.read_blob(cdigest)?, &format!("config {:?}", item.config))?;
    if config.rootfs.diff_ids.len() != item.layers.len() {
        return Err(Error::invalid(format!(
            "{} layers, but the config lists {} diff_ids",
            item.layers.len(),
            config.rootfs.diff_ids.len()
        )));
    }
    let mut layers = Vec::new();
    for (path, diff_id) in item.layers.iter().zip(&config.rootfs.diff_ids) {
        let (digest, size, compression) = member(a, path)?;
        let (media, uncompressed) = match compression {
            Compression::None => (oci::MEDIA_OCI_LAYER, digest.clone()),
            Compression::Gzip => (oci::MEDIA_OCI_LAYER_GZIP, uncompressed_digest(store, digest)?),
            Compression::Zstd => (oci::MEDIA_OCI_LAYER_ZSTD, uncompressed_digest(store, digest)?),
        };
        if &uncompressed != diff_id {
            return Err(Error::invalid(format!("layer {path:?} is the tar {uncompressed}, but the config's diff_id is {diff_id}")));
        }
        layers.push(Descriptor::new(media, digest.clone(), size));
    }
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(oci::MEDIA_OCI_MANIFEST.to_string()),
        config: Descriptor::new(oci::MEDIA_OCI_CONFIG, cdigest.clone(), csize),
        layers,
        annotations: Default::default(),
        extra: Default::default(),
    };
    let descriptor = store.put_json(oci::MEDIA_OCI_MANIFEST, &manifest)?;
    explain!("manifest.json entry {}: new OCI manifest {}", item.config, descriptor.digest);
    Ok(Loaded { descriptor, names: repo_tags(item)?, bare_tag: None, config: vec![cdigest.clone()] })
}

fn repo_tags(item: &DockerManifestItem) -> Result<Vec<Reference>> {
    item.repo_tags.iter().flatten().map(|t| Reference::parse(t)).collect()
}
// ANCHOR_END: check_docker

/// The digest of a stored compressed layer once decompressed: its diff_id.
fn uncompressed_digest(store: &Store, d: &Digest) -> Result<Digest> {
    let (_, mut r) = compress::decoder(store.open_blob(d)?).ctx(|| format!("layer {d}"))?;
    let mut w = HashingWriter::new(io::sink());
    io::copy(&mut r, &mut w).map_err(|e| Error::invalid(format!("layer {d}: cannot decompress: {e}")))?;
    Ok(w.finish().0)
}

/// An image without a name stays listed in index.json, without a ref.name (dangling).
fn keep_untagged(store: &Store, d: &Descriptor) -> Result<()> {
    store.update_index(|index| {
        if !index.manifests.iter().any(|m| m.digest == d.digest) {
            index.manifests.push(d.clone());
        }
        Ok(())
    })
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
