//! `box-save`: images with all their layers, config and history, as one tar stream.
//!
//! Reference: OCI image spec image-layout.md; the `docker save` archive as Docker 25 and
//! later write it (moby `image/tarexport`): one tar that is at once an OCI image layout and
//! a docker-archive.
//!
//! ```text
//! blobs/                 directories first, as a walk of the tree would list them
//! blobs/sha256/<hex>     every manifest, config and layer blob exactly as stored, sorted
//! index.json             OCI: one descriptor per name, annotated as Docker writes it:
//!                          io.containerd.image.name = docker.io/library/busybox:latest
//!                          org.opencontainers.image.ref.name = latest
//! manifest.json          docker: [{"Config": "blobs/sha256/…", "RepoTags": ["busybox:latest"],
//!                          "Layers": ["blobs/sha256/…", …]}] pointing at the same blobs
//! oci-layout             {"imageLayoutVersion":"1.0.0"}
//! repositories           docker's oldest index: {"busybox": {"latest": "<top layer hex>"}}
//! ```
//!
//! Layers stay as stored (gzip here): `docker load`, skopeo's `docker-archive:` reader and
//! box-load all decompress what manifest.json names. Nothing is held in memory but the small
//! JSON documents; blobs stream from the store, hashed on the way out, so a blob that rotted
//! on disk stops the stream before the end-of-archive marker and no reader accepts it.
//! The same images give the same bytes: fixed owners, modes and times (`$SOURCE_DATE_EPOCH`
//! or the epoch), entries in a fixed order.

use crate::digest::{Digest, HashingReader};
use crate::error::{Error, Result};
use crate::explain;
use crate::explain::human_size;
use crate::oci::{self, Descriptor, Index, Platform};
use crate::reference::Reference;
use crate::store::{Image, Store};
use crate::archive::{blob_member, DockerManifestItem, ANNOTATION_IMAGE_NAME};
use crate::tarstream::{Kind, Meta, TarWriter};
use std::collections::BTreeMap;
use std::io::Write;

/// An image to save and the names it is saved under.
struct Entry {
    image: Image,
    names: Vec<Reference>,
}

// ANCHOR: save_fn
/// Write the images `names` name, with every blob they reach, as one archive to `out`.
/// Everything is checked to be in the store before the first byte is written.
pub fn save(store: &Store, names: &[String], out: impl Write) -> Result<()> {
    let entries = collect(store, names)?;
    let mut blobs: BTreeMap<Digest, u64> = BTreeMap::new();
    for e in &entries {
        let m = &e.image.manifest;
        for d in [&e.image.descriptor, &m.config].into_iter().chain(&m.layers) {
            let len = store
                .blob_len(&d.digest)
                .ok_or_else(|| Error::not_found(format!("image {}: blob {} is not in the store", show(e), d.digest)))?;
            if len != d.size {
                return Err(Error::invalid(format!("image {}: blob {} is {len} bytes, not {}", show(e), d.digest, d.size)));
            }
            blobs.insert(d.digest.clone(), d.size);
        }
    }
    let docs = documents(&entries);
    let total: u64 = blobs.values().sum();
    explain!("save {} image(s): {} blobs ({}), index.json, manifest.json", entries.len(), blobs.len(), human_size(total));

    let mtime = oci::source_date_epoch()?;
    let meta = |path: &str, kind: Kind, size: u64| Meta {
        path: path.as_bytes().to_vec(),
        mode: if kind == Kind::Dir { 0o755 } else { 0o644 },
        kind,
        uid: 0,
        gid: 0,
        mtime,
        mtime_nsec: 0,
        size,
        xattrs: Vec::new(),
    };
    let mut tar = TarWriter::new(out);
    let io = |e| Error::io("write the archive", e);
    tar.append(&meta("blobs", Kind::Dir, 0), None).map_err(io)?;
    tar.append(&meta("blobs/sha256", Kind::Dir, 0), None).map_err(io)?;
    for (digest, size) in &blobs {
        let mut r = HashingReader::new(store.open_blob(digest)?);
        tar.append(&meta(&blob_member(digest), Kind::File, *size), Some(&mut r)).map_err(io)?;
        let (got, _) = r.finish();
        if &got != digest {
            // The stream ends here, without an end-of-archive marker: readers refuse it.
            return Err(Error::invalid(format!("blob {digest} is corrupt in the store: its content hashes to {got}")));
        }
        explain!("blobs/sha256/{}… ({}, verified while streaming)", digest.short(), human_size(*size));
    }
    for (name, bytes) in &docs {
        tar.append(&meta(name, Kind::File, bytes.len() as u64), Some(&mut &bytes[..])).map_err(io)?;
    }
    tar.finish().map_err(io)?;
    Ok(())
}
// ANCHOR_END: save_fn

/// Resolve every name to an image; one image named twice is saved once, with both names.
fn collect(store: &Store, names: &[String]) -> Result<Vec<Entry>> {
    let mut entries: Vec<Entry> = Vec::new();
    for name in names {
        let image = store.image(name)?;
        // A name with a digest, or one that is not a reference, is saved without a tag.
        let tag = Reference::parse(name).ok().filter(|r| r.digest().is_none() && r.tag().is_some());
        let i = match entries.iter().position(|e| e.image.descriptor.digest == image.descriptor.digest) {
            Some(i) => i,
            None => {
                entries.push(Entry { image, names: Vec::new() });
                entries.len() - 1
            }
        };
        if let Some(t) = tag {
            if !entries[i].names.contains(&t) {
                entries[i].names.push(t);
            }
        }
    }
    Ok(entries)
}

fn show(e: &Entry) -> String {
    e.names.first().map(|r| r.to_string()).unwrap_or_else(|| e.image.descriptor.digest.to_string())
}

/// `busybox:latest`, `alice/app:v1`, `localhost:5000/x:t`: the names `docker images` shows.
fn familiar(r: &Reference) -> String {
    format!("{}:{}", r.familiar_repository(), r.tag().unwrap_or(crate::reference::DEFAULT_TAG))
}

// ANCHOR: documents
/// index.json, manifest.json, oci-layout and repositories, in archive order.
fn documents(entries: &[Entry]) -> Vec<(&'static str, Vec<u8>)> {
    let mut index = Index::default();
    let mut docker = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for e in entries {
        let (m, c) = (&e.image.manifest, &e.image.config);
        let mut d = Descriptor::new(&e.image.descriptor.media_type, e.image.descriptor.digest.clone(), e.image.descriptor.size);
        d.platform = Some(Platform { architecture: c.architecture.clone(), os: c.os.clone(), os_version: None, variant: c.variant.clone() });
        if e.names.is_empty() {
            index.manifests.push(d.clone()); // listed without a name, as OCI allows
        }
        for r in &e.names {
            let mut d = d.clone();
            d.annotations.insert(ANNOTATION_IMAGE_NAME.to_string(), r.to_string());
            d.annotations.insert(oci::ANNOTATION_REF_NAME.to_string(), r.tag().unwrap_or_default().to_string());
            index.manifests.push(d);
            if let Some(top) = m.layers.last() {
                repositories.entry(r.familiar_repository()).or_default().insert(r.tag().unwrap_or_default().to_string(), top.digest.hex().to_string());
            }
        }
        docker.push(DockerManifestItem {
            config: blob_member(&m.config.digest),
            repo_tags: if e.names.is_empty() { None } else { Some(e.names.iter().map(familiar).collect()) },
            layers: m.layers.iter().map(|l| blob_member(&l.digest)).collect(),
        });
    }
    let mut docker_json = oci::to_canonical_json(&docker);
    docker_json.push(b'\n');
    let mut docs = vec![
        ("index.json", oci::to_canonical_json(&index)),
        ("manifest.json", docker_json),
        ("oci-layout", crate::store::LAYOUT_CONTENT.to_vec()),
    ];
    if !repositories.is_empty() {
        let mut r = oci::to_canonical_json(&repositories);
        r.push(b'\n');
        docs.push(("repositories", r));
    }
    docs
}
// ANCHOR_END: documents

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn familiar_names_are_what_docker_shows() {
        assert_eq!(familiar(&Reference::parse("busybox").unwrap()), "busybox:latest");
        assert_eq!(familiar(&Reference::parse("localhost:5000/a/b:t").unwrap()), "localhost:5000/a/b:t");
    }
}
