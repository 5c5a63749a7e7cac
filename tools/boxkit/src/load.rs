//! `box-load`: images from a `docker save` or OCI archive into the store, verified.
//!
//! Reference: OCI image spec image-layout.md and manifest.md; the docker-archive
//! `manifest.json` of moby `image/tarexport`. The archive's members are first read into the
//! store in one pass (`archive::read_archive`); then:
//!
//! 1. `index.json`'s images are checked: every manifest, config and layer present with the
//!    size its descriptor gives, one diff_id per layer. They keep their manifests, so their
//!    digests survive the trip.
//! 2. `manifest.json`'s images that index.json did not already hold get a new OCI manifest;
//!    their layers must hash (uncompressed) to the config's diff_ids.
//! 3. Only then are the names written to `index.json`. A load that fails leaves no name; the
//!    verified blobs it stored stay unreferenced until box-prune removes them.

use crate::compress::{self, Compression};
use crate::digest::{Digest, HashingWriter};
use crate::error::{Context, Error, Result};
use crate::explain;
use crate::oci::{self, Descriptor, ImageConfig, Index, Manifest};
use crate::reference::Reference;
use crate::archive::{read_archive, Archive, DockerManifestItem, ANNOTATION_IMAGE_NAME};
use crate::store::{check_layout_version, host_platform, Store};
use std::io::{self, Read};

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

// ANCHOR: load_fn
/// Read an archive (plain, gzip or zstd) from `input`, store its images and name them.
pub fn load(store: &Store, input: impl Read + Send + 'static) -> Result<Vec<Loaded>> {
    let a = read_archive(store, input)?;
    let mut loaded: Vec<Loaded> = Vec::new();
    if let Some(bytes) = &a.index {
        if let Some(l) = &a.layout {
            check_layout_version(l, "oci-layout", |_| format!("oci-layout: unsupported {}", String::from_utf8_lossy(l)))?;
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
            let (config, _, _) = a.member(&item.config).ctx(what)?;
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

/// A blob a document names must be in the store (from this archive or before) at its size.
fn present(store: &Store, what: &str, d: &Descriptor) -> Result<()> {
    match store.blob_len(&d.digest) {
        Some(len) if len == d.size => Ok(()),
        Some(len) => Err(Error::invalid(format!("{what} {} is {len} bytes, not the {} its descriptor says", d.digest, d.size))),
        None => Err(Error::invalid(format!("{what} {} is not in the archive", d.digest))),
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
    let (cdigest, csize, _) = a.member(&item.config)?;
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
        let (digest, size, compression) = a.member(path)?;
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
