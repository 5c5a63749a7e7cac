//! `box-commit`: a bundle's changes become a new layer on top of the image it came from.
//!
//! Reference: `docker commit`; OCI image spec, layer.md, config.md (`rootfs.diff_ids`,
//! `history`, `empty_layer`), manifest.md, annotations.md (`org.opencontainers.image.base.*`).
//!
//! 1. [`crate::diff`] lists the changes: from `upper/` for an overlay bundle, against
//!    `rootfs.mtree` (what box-unpack wrote) for a copied one. A running container is frozen
//!    ([`crate::freeze`]) from the first read to the last.
//! 2. The entries stream into a tar, gzip-compressed into a store blob, hashing the tar (the
//!    diff_id) and the gzip (the digest) on the way: file data never sits in memory.
//! 3. The new config is the parent's with the `--change`s applied, the diff_id appended and
//!    one history entry appended; the manifest is the parent's layers plus the new one. The
//!    tag is written last, so a failed commit names nothing.
//!
//! Reproducible: entries in canonical order, headers rebuilt from their fields, whole-second
//! mtimes clamped to `$SOURCE_DATE_EPOCH` when it is set (as BuildKit's
//! `rewrite-timestamp`), gzip at a fixed level with no name and no time in its header. The
//! same changes give the same layer digest. The image's `created` is `$SOURCE_DATE_EPOCH` or
//! the current time (a commit is an event, as `docker commit` records it).

use crate::bundle::{self, Storage};
use crate::changes;
use crate::diff::{self, Changes};
use crate::error::{Context, Error, Result};
use crate::explain;
use crate::freeze;
use crate::fsroot;
use crate::mtree;
use crate::oci::{self, Descriptor, History, Manifest};
use crate::reference::Reference;
use crate::store::{Image, Store};
use crate::import::LayerWriter;
use crate::tarstream::Kind;
use std::ffi::OsStr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What `docker commit` takes besides the container and the name.
#[derive(Debug, Clone)]
pub struct CommitOptions {
    /// Dockerfile instructions applied to the new config (`CMD ["sh"]`, `ENV A=1` …).
    pub changes: Vec<String>,
    /// The history comment.
    pub message: Option<String>,
    pub author: Option<String>,
    /// Freeze the container's processes while its files are read.
    pub pause: bool,
}

impl Default for CommitOptions {
    fn default() -> Self {
        CommitOptions { changes: Vec::new(), message: None, author: None, pause: true }
    }
}

/// The new layer: its descriptor (gzip) and its diff_id.
struct Layer {
    desc: Descriptor,
    diff_id: crate::digest::Digest,
}

// ANCHOR: commit_fn
/// Commit `bundle` as a new image tagged `reference`; returns the manifest's descriptor.
pub fn commit(store: &Store, bundle: &Path, reference: &Reference, opts: &CommitOptions) -> Result<Descriptor> {
    let info = bundle::read_info(bundle)?;
    let parent = parent_image(store, &info.manifest)?;
    if parent.config.rootfs.diff_ids != info.layers {
        return Err(Error::invalid(format!(
            "{}: boxkit.json lists other layers than image {} has",
            bundle.display(),
            info.manifest
        )));
    }
    let mut run = parent.config.config.clone();
    for c in &opts.changes {
        changes::apply(&mut run, c)?;
    }
    let sde = oci::source_date_epoch_opt()?;
    let (source, read_from) = match info.storage {
        Storage::Overlay => ("upper", bundle.join("upper")),
        Storage::Copy => ("rootfs", bundle.join("rootfs")),
    };
    if !read_from.is_dir() {
        return Err(Error::not_found(format!("{}: no {source}/ directory", bundle.display())));
    }

    // 1 and 2: read the changes and write the layer, with the container held still.
    let layer = {
        let _frozen = if opts.pause { Some(freeze::freeze(&bundle.join("rootfs"))?) } else { None };
        let mut changes = match info.storage {
            Storage::Overlay => {
                explain!("overlay bundle: the changes are {}", read_from.display());
                diff::from_upper(&read_from)?
            }
            Storage::Copy => {
                let record = bundle.join(mtree::RECORD_FILE);
                if !record.is_file() {
                    return Err(Error::not_found(format!(
                        "{}: no {} (the record of what box-unpack wrote); unpack the bundle again with this box-unpack",
                        bundle.display(),
                        mtree::RECORD_FILE
                    )));
                }
                explain!("copied bundle: compare {} with {}", read_from.display(), record.display());
                diff::from_record(&read_from, &record)?
            }
        };
        // A bundle for a user namespace holds its owners shifted: store the container's ids.
        let spec = crate::runtime::load(bundle).ok();
        if let Some(Some(Some(m))) = spec.as_ref().map(crate::userns::from_spec).transpose()? {
            crate::rootless::unshift_changes(&mut changes, &m);
        }
        explain!("{} entries, {} of them whiteouts", changes.items.len(), changes.whiteouts);
        write_layer(store, &read_from, &changes, sde)?
    };

    // 3: config, manifest, tag.
    let now = sde.unwrap_or_else(oci::unix_now);
    let created = oci::rfc3339(now);
    let mut config = parent.config.clone();
    config.config = run;
    config.created = Some(created.clone());
    config.author = opts.author.clone();
    config.extra.remove("container");
    config.extra.remove("container_config");
    config.history = history(&parent, History {
        created: Some(created),
        created_by: Some(created_by(bundle)),
        author: opts.author.clone(),
        comment: opts.message.clone(),
        empty_layer: false,
    });
    config.rootfs.diff_ids.push(layer.diff_id.clone());
    let config_desc = store.put_json(oci::MEDIA_OCI_CONFIG, &config)?;
    let mut layers: Vec<Descriptor> = parent.manifest.layers.iter().map(as_oci).collect();
    layers.push(layer.desc);
    let mut annotations = std::collections::BTreeMap::new();
    annotations.insert("org.opencontainers.image.base.digest".to_string(), parent.descriptor.digest.to_string());
    annotations.insert("org.opencontainers.image.base.name".to_string(), info.image.clone());
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(oci::MEDIA_OCI_MANIFEST.to_string()),
        config: config_desc,
        layers,
        annotations,
        extra: Default::default(),
    };
    let desc = store.put_json(oci::MEDIA_OCI_MANIFEST, &manifest)?;
    store.tag(reference, &desc)?;
    Ok(desc)
}
// ANCHOR_END: commit_fn

/// The image a bundle was made from, by its manifest digest (OCI or Docker schema 2).
fn parent_image(store: &Store, digest: &crate::digest::Digest) -> Result<Image> {
    if !store.has_blob(digest) {
        return Err(Error::not_found(format!("image {digest}, which the bundle was made from, is no longer in the store")));
    }
    store.image_at(store.describe(digest)?, &crate::store::host_platform())
}

// ANCHOR: as_oci
/// The committed image is always OCI: a Docker schema 2 parent's layers keep their bytes and
/// digests under the OCI names of the same formats (what `skopeo copy --format oci` does).
fn as_oci(d: &Descriptor) -> Descriptor {
    let mut d = d.clone();
    d.media_type = match d.media_type.as_str() {
        oci::MEDIA_DOCKER_LAYER_GZIP => oci::MEDIA_OCI_LAYER_GZIP.to_string(),
        oci::MEDIA_DOCKER_FOREIGN_LAYER => "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip".to_string(),
        other => other.to_string(),
    };
    d
}
// ANCHOR_END: as_oci

// ANCHOR: history
/// The parent's history plus `entry`. History must have one non-empty entry per layer; a
/// parent with fewer (no history at all, say) gets blank entries in front, as BuildKit does,
/// so the new entry lines up with the new layer.
fn history(parent: &Image, entry: History) -> Vec<History> {
    let mut h = parent.config.history.clone();
    let layers = parent.config.rootfs.diff_ids.len();
    let non_empty = h.iter().filter(|e| !e.empty_layer).count();
    if non_empty < layers {
        let blank = History { created: parent.config.created.clone(), ..Default::default() };
        h.splice(0..0, std::iter::repeat(blank).take(layers - non_empty));
    }
    h.push(entry);
    h
}
// ANCHOR_END: history

/// What the container ran, as `docker commit` records it (the command, space-joined).
fn created_by(bundle: &Path) -> String {
    let spec: Option<serde_json::Value> = std::fs::read(bundle.join("config.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let args: Vec<String> = spec
        .as_ref()
        .and_then(|s| s["process"]["args"].as_array())
        .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
        .unwrap_or_default();
    if args.is_empty() { "box-commit".to_string() } else { args.join(" ") }
}

// ANCHOR: write_layer
/// Stream the entries into a gzip blob; file data is read from `dir`, never through a
/// symlink (openat2 `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), and must be the inode the diff
/// saw.
fn write_layer(store: &Store, dir: &Path, changes: &Changes, sde: Option<i64>) -> Result<Layer> {
    let root = fsroot::open_raw(libc::AT_FDCWD, dir.as_os_str(), libc::O_PATH | libc::O_DIRECTORY)
        .ctx(|| format!("open {}", dir.display()))?;
    let mut tar = LayerWriter::new(store)?;
    for item in &changes.items {
        let mut meta = item.meta.clone();
        if let Some(t) = sde {
            meta.mtime = meta.mtime.min(t);
        }
        let at = || format!("/{}", String::from_utf8_lossy(&meta.path));
        if let (Kind::File, Some(id), true) = (&meta.kind, item.inode, meta.size > 0) {
            let mut f = open_data(&root, &meta.path, id).ctx(at)?;
            tar.append(&meta, Some(&mut f)).ctx(|| format!("write {}", at()))?;
        } else {
            tar.append(&meta, None).ctx(|| format!("write {}", at()))?;
        }
    }
    let (diff_id, desc) = tar.finish()?;
    Ok(Layer { desc, diff_id })
}
// ANCHOR_END: write_layer

fn open_data(root: &OwnedFd, path: &[u8], id: (u64, u64)) -> Result<std::fs::File> {
    let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    let fd = fsroot::openat2(root.as_raw_fd(), OsStr::from_bytes(path), libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY, resolve)
        .ctx(|| "open")?;
    let st = fsroot::fstat(fd.as_raw_fd()).ctx(|| "stat")?;
    if (st.st_dev, st.st_ino) != id || st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(Error::invalid("changed while being committed (commit with --pause, the default)"));
    }
    Ok(std::fs::File::from(fd))
}
