//! The image store: an OCI image layout on disk.
//!
//! Reference: OCI image spec, image-layout.md
//! (<https://github.com/opencontainers/image-spec/blob/main/image-layout.md>).
//!
//! ```text
//! images/
//!   oci-layout          {"imageLayoutVersion":"1.0.0"}
//!   index.json          the tagged images: descriptors annotated with
//!                       org.opencontainers.image.ref.name = docker.io/library/busybox:latest
//!   blobs/sha256/<hex>  every manifest, config and layer, named by the digest of its bytes
//! ```
//!
//! Invariants, which hold after any failure or kill:
//! - a file under `blobs/sha256/` always holds exactly the bytes its name promises: blobs are
//!   written to a temporary file in `blobs/`, hashed while streaming, fsynced, checked, and only
//!   then renamed into place;
//! - `index.json` is replaced by rename, never edited in place, and writers take an exclusive
//!   `flock` on the layout directory so two processes never lose each other's tags;
//! - everything `index.json` names is present before `index.json` names it;
//! - a blob that `index.json` does not (yet) reach is only removed by a collector holding the
//!   exclusive lock on `blobs/`, which no writer can be between its first blob and its tag.

use crate::digest::{Digest, HashingWriter};
use crate::error::{Context, Error, Result};
use crate::explain;
use crate::explain::human_size;
use crate::oci::{self, Descriptor, Index, ImageConfig, Manifest, Platform, ANNOTATION_REF_NAME};
use crate::reference::Reference;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const LAYOUT_FILE: &str = "oci-layout";
pub(crate) const LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
/// Largest manifest, config or index.json boxkit reads into memory.
pub const MAX_DOCUMENT: u64 = 16 << 20;

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    /// A `flock` on `blobs/`, shared by every process using the store and exclusive for the
    /// garbage collector, held as long as any clone of this `Store` lives.
    _gc: Arc<File>,
}

// ANCHOR: image_struct
/// An image found in a store: its manifest descriptor, manifest and config.
#[derive(Debug, Clone)]
pub struct Image {
    pub descriptor: Descriptor,
    pub manifest: Manifest,
    pub config: ImageConfig,
}
// ANCHOR_END: image_struct

impl Store {
    /// Open an existing layout (made by boxkit, skopeo, umoci, buildah …).
    pub fn open(dir: &Path) -> Result<Store> {
        let marker = dir.join(LAYOUT_FILE);
        let bytes = fs::read(&marker).ctx(|| format!("{} is not an OCI image layout", dir.display()))?;
        check_layout_version(&bytes, &marker.display().to_string(), |other| {
            format!("{}: unsupported imageLayoutVersion {other:?}", marker.display())
        })?;
        Ok(Store { dir: dir.to_path_buf(), _gc: gc_lock(dir, libc::LOCK_SH)? })
    }

    /// Open a layout, creating an empty one if the directory has none.
    pub fn init(dir: &Path) -> Result<Store> {
        if dir.join(LAYOUT_FILE).exists() {
            return Store::open(dir);
        }
        fs::create_dir_all(dir.join("blobs/sha256")).ctx(|| format!("create {}", dir.display()))?;
        let store = Store { dir: dir.to_path_buf(), _gc: gc_lock(dir, libc::LOCK_SH)? };
        let _lock = store.lock()?;
        if !dir.join("index.json").exists() {
            store.write_atomic("index.json", &oci::to_canonical_json(&Index::default()))?;
        }
        store.write_atomic(LAYOUT_FILE, LAYOUT_CONTENT)?;
        explain!("init OCI image layout {} (oci-layout, index.json, blobs/sha256/)", dir.display());
        Ok(store)
    }

    /// Open a layout for garbage collection: waits until no other process has the store open,
    /// and keeps every other process out (they wait in [`Store::open`]) until dropped. Open
    /// no second `Store` on the same layout while holding this one: it would wait for itself.
    pub fn open_exclusive(dir: &Path) -> Result<Store> {
        let shared = Store::open(dir)?;
        drop(shared);
        Ok(Store { dir: dir.to_path_buf(), _gc: gc_lock(dir, libc::LOCK_EX)? })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.dir.join("blobs").join(d.algorithm()).join(d.hex())
    }

    /// The size of a blob's file, if the store has it.
    pub fn blob_len(&self, d: &Digest) -> Option<u64> {
        fs::metadata(self.blob_path(d)).ok().map(|m| m.len())
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    pub fn open_blob(&self, d: &Digest) -> Result<File> {
        File::open(self.blob_path(d)).ctx(|| format!("blob {d}"))
    }

    /// Read a small blob (a manifest or config), checking its digest; at most `MAX_DOCUMENT`.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let f = self.open_blob(d)?;
        let bytes = read_limited(f, MAX_DOCUMENT).ctx(|| format!("blob {d}"))?;
        let got = Digest::of(&bytes);
        if &got != d {
            return Err(Error::invalid(format!("blob {d} is corrupt: its content hashes to {got}")));
        }
        Ok(bytes)
    }

    /// Start writing a blob; nothing is visible until [`BlobWriter::commit`].
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(self.dir.join("blobs"))
            .ctx(|| format!("create a temporary blob in {}", self.dir.join("blobs").display()))?;
        Ok(BlobWriter { store: self.clone(), w: HashingWriter::new(BufWriter::with_capacity(256 << 10, tmp)) })
    }

    /// Store bytes held in memory as a blob; returns its descriptor.
    pub fn put_bytes(&self, media_type: &str, bytes: &[u8]) -> Result<Descriptor> {
        let mut w = self.blob_writer()?;
        w.write_all(bytes).ctx(|| "write blob")?;
        let (digest, size) = w.commit(None)?;
        Ok(Descriptor::new(media_type, digest, size))
    }

    /// Store a JSON document canonically serialized.
    pub fn put_json<T: serde::Serialize>(&self, media_type: &str, doc: &T) -> Result<Descriptor> {
        self.put_bytes(media_type, &oci::to_canonical_json(doc))
    }

    pub fn index(&self) -> Result<Index> {
        let path = self.dir.join("index.json");
        let f = File::open(&path).ctx(|| path.display().to_string())?;
        let bytes = read_limited(f, MAX_DOCUMENT).ctx(|| path.display().to_string())?;
        oci::from_json(&bytes, &path.display().to_string())
    }

    /// Change `index.json` under the layout's lock; the new file replaces the old by rename.
    pub fn update_index<T>(&self, change: impl FnOnce(&mut Index) -> Result<T>) -> Result<T> {
        let _lock = self.lock()?;
        let mut index = self.index()?;
        let out = change(&mut index)?;
        self.write_atomic("index.json", &oci::to_canonical_json(&index))?;
        explain!("rename index.json.tmp -> index.json (under flock on {})", self.dir.display());
        Ok(out)
    }

    // ANCHOR: store_tag
    /// Name an image: its descriptor goes into `index.json` annotated with the full reference.
    /// An image that loses its last name stays in the index without one (dangling).
    pub fn tag(&self, reference: &Reference, manifest: &Descriptor) -> Result<()> {
        let name = reference.to_string();
        self.update_index(|index| {
            for d in index.manifests.iter_mut() {
                if d.ref_name() == Some(name.as_str()) {
                    d.annotations.remove(ANNOTATION_REF_NAME);
                }
            }
            let mut d = manifest.clone();
            d.annotations.insert(ANNOTATION_REF_NAME.to_string(), name.clone());
            index.manifests.push(d);
            // Drop an unnamed entry when another entry still holds the same image.
            let named: Vec<Digest> =
                index.manifests.iter().filter(|d| d.ref_name().is_some()).map(|d| d.digest.clone()).collect();
            let mut seen = std::collections::HashSet::new();
            index.manifests.retain(|d| {
                d.ref_name().is_some() || (!named.contains(&d.digest) && seen.insert(d.digest.clone()))
            });
            Ok(())
        })?;
        explain!("tag {name} -> {}", manifest.digest);
        Ok(())
    }
    // ANCHOR_END: store_tag

    /// Find the descriptor an image name points at: the annotation exactly as written, then the
    /// normalized reference, then (for `name@sha256:…`) the manifest blob itself.
    pub fn resolve(&self, name: &str) -> Result<Descriptor> {
        let index = self.index()?;
        if let Some(d) = index.manifests.iter().find(|d| d.ref_name() == Some(name)) {
            return Ok(d.clone());
        }
        let reference = Reference::parse(name)?;
        if let Some(digest) = reference.digest() {
            if let Some(d) = index.manifests.iter().find(|d| &d.digest == digest) {
                return Ok(d.clone());
            }
            if self.has_blob(digest) {
                return self.describe(digest);
            }
        } else {
            let full = reference.to_string();
            if let Some(d) = index.manifests.iter().find(|d| d.ref_name() == Some(full.as_str())) {
                return Ok(d.clone());
            }
        }
        Err(Error::not_found(format!("image {name:?} not found in {}", self.dir.display())))
    }

    /// A descriptor for a bare digest, its media type read from the document itself: its
    /// `mediaType`, else an index if it has `manifests`, else a manifest.
    pub fn describe(&self, digest: &Digest) -> Result<Descriptor> {
        let bytes = self.read_blob(digest)?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let media = match v.get("mediaType").and_then(|m| m.as_str()) {
            Some(m) => m,
            None if v.get("manifests").is_some() => oci::MEDIA_OCI_INDEX,
            None => oci::MEDIA_OCI_MANIFEST,
        };
        Ok(Descriptor::new(media, digest.clone(), bytes.len() as u64))
    }

    /// Load an image by name; an index is narrowed to the host's platform.
    pub fn image(&self, name: &str) -> Result<Image> {
        let d = self.resolve(name)?;
        self.image_at(d, &host_platform()).ctx(|| format!("image {name:?}"))
    }

    /// Load the image a descriptor points at, choosing `platform` from an index.
    pub fn image_at(&self, mut d: Descriptor, platform: &Platform) -> Result<Image> {
        for _ in 0..8 {
            let bytes = self.read_blob(&d.digest)?;
            check_not_ambiguous(&bytes, &d.digest)?;
            let media = d.media_type.clone();
            match media.as_str() {
                oci::MEDIA_OCI_INDEX | oci::MEDIA_DOCKER_LIST => {
                    let index: Index = oci::from_json(&bytes, &format!("index {}", d.digest))?;
                    d = pick_platform(&index, platform)
                        .ok_or_else(|| {
                            Error::not_found(format!(
                                "index {} has no manifest for {}/{}",
                                d.digest, platform.os, platform.architecture
                            ))
                        })?
                        .clone();
                }
                oci::MEDIA_OCI_MANIFEST | oci::MEDIA_DOCKER_MANIFEST => {
                    let manifest: Manifest = oci::from_json(&bytes, &format!("manifest {}", d.digest))?;
                    check_body_media_type(&manifest.media_type, &media, &d.digest)?;
                    let cbytes = self.read_blob(&manifest.config.digest)?;
                    let config: ImageConfig = oci::from_json(&cbytes, &format!("config {}", manifest.config.digest))?;
                    if config.rootfs.diff_ids.len() != manifest.layers.len() {
                        return Err(Error::invalid(format!(
                            "manifest {} has {} layers but its config lists {} diff_ids",
                            d.digest,
                            manifest.layers.len(),
                            config.rootfs.diff_ids.len()
                        )));
                    }
                    return Ok(Image { descriptor: d, manifest, config });
                }
                oci::MEDIA_DOCKER_SCHEMA1 | oci::MEDIA_DOCKER_SCHEMA1_SIGNED => {
                    return Err(Error::invalid(format!(
                        "manifest {} is Docker schema 1, which is obsolete and not supported",
                        d.digest
                    )))
                }
                other => return Err(Error::invalid(format!("{}: unsupported media type {other:?}", d.digest))),
            }
        }
        Err(Error::invalid("indexes nested more than 8 deep"))
    }

    fn lock(&self) -> Result<File> {
        let f = File::open(&self.dir).ctx(|| format!("open {}", self.dir.display()))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(Error::io(format!("lock {}", self.dir.display()), io::Error::last_os_error()));
        }
        Ok(f)
    }

    fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<()> {
        crate::fsroot::replace_file(&self.dir, name, bytes, 0o644)?;
        sync_dir(&self.dir)
    }
}

/// A blob being written: hashed as it streams, renamed into place only once verified.
pub struct BlobWriter {
    store: Store,
    w: HashingWriter<BufWriter<tempfile::NamedTempFile>>,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.w.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

impl BlobWriter {
    // ANCHOR: blob_commit
    /// Finish the blob. With `expect`, a digest or size that differs is an error and the
    /// temporary file is removed; otherwise the blob is fsynced and renamed to its digest.
    pub fn commit(self, expect: Option<(&Digest, u64)>) -> Result<(Digest, u64)> {
        let (digest, size, buf) = self.w.finish();
        let tmp = buf.into_inner().map_err(|e| Error::io("flush blob", e.into_error()))?;
        if let Some((want, want_size)) = expect {
            if &digest != want || size != want_size {
                return Err(Error::invalid(format!(
                    "content did not verify: expected {want} ({want_size} bytes), got {digest} ({size} bytes)"
                )));
            }
        }
        let path = self.store.blob_path(&digest);
        if path.exists() {
            explain!("blob {digest} already present ({})", human_size(size));
            return Ok((digest, size));
        }
        tmp.as_file().sync_all().ctx(|| "fsync blob")?;
        set_mode(tmp.path(), 0o644)?;
        tmp.persist(&path).map_err(|e| Error::io(format!("rename blob into {}", path.display()), e.error))?;
        sync_dir(path.parent().unwrap())?;
        explain!("write blobs/sha256/{}… ({}, verified)", &digest.hex()[..12], human_size(size));
        Ok((digest, size))
    }
    // ANCHOR_END: blob_commit
}

/// Check the `oci-layout` file `bytes` (named `what` in errors) declares a layout version
/// boxkit reads (1.x); `unsupported` words the error for any other (given the version found).
pub(crate) fn check_layout_version(bytes: &[u8], what: &str, unsupported: impl FnOnce(Option<&str>) -> String) -> Result<()> {
    let v: serde_json::Value = oci::from_json(bytes, what)?;
    match v.get("imageLayoutVersion").and_then(|v| v.as_str()) {
        Some(ver) if ver.starts_with("1.") => Ok(()),
        other => Err(Error::invalid(unsupported(other))),
    }
}

/// Take a `flock` on the layout's `blobs/` directory: `LOCK_SH` for users, `LOCK_EX` for
/// the garbage collector, so a blob written but not yet named by `index.json` is never
/// collected. (`index.json` has its own lock, on the layout directory.)
fn gc_lock(dir: &Path, how: libc::c_int) -> Result<Arc<File>> {
    let blobs = dir.join("blobs");
    let f = File::open(&blobs).ctx(|| format!("{} is not an OCI image layout", dir.display()))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), how | libc::LOCK_NB) } != 0 {
        explain!("waiting for the lock on {} (another boxkit process is using the store)", blobs.display());
        // SAFETY: as above.
        if unsafe { libc::flock(f.as_raw_fd(), how) } != 0 {
            return Err(Error::io(format!("lock {}", blobs.display()), io::Error::last_os_error()));
        }
    }
    Ok(Arc::new(f))
}

/// The platform of this machine, as an index names it.
pub fn host_platform() -> Platform {
    Platform {
        architecture: oci::host_architecture().to_string(),
        os: "linux".to_string(),
        os_version: None,
        variant: if oci::host_architecture() == "arm64" { Some("v8".to_string()) } else { None },
    }
}

/// The manifest in an index that matches a platform (a missing variant matches any).
pub fn pick_platform<'a>(index: &'a Index, want: &Platform) -> Option<&'a Descriptor> {
    index.manifests.iter().find(|d| match &d.platform {
        Some(p) => {
            p.os == want.os
                && p.architecture == want.architecture
                && (want.variant.is_none() || p.variant.is_none() || p.variant == want.variant)
        }
        None => false,
    })
}

/// A manifest or index body names its own media type; it must agree with the descriptor,
/// and no document may hold both `manifests` and `layers` or `config`: one that could be
/// read as either is refused (CVE-2021-41190).
pub fn check_body_media_type(body: &Option<String>, descriptor: &str, digest: &Digest) -> Result<()> {
    match body {
        Some(b) if b != descriptor => Err(Error::invalid(format!(
            "{digest}: body says mediaType {b:?} but it was described as {descriptor:?}"
        ))),
        _ => Ok(()),
    }
}

/// Refuse a document that is both an index and a manifest (CVE-2021-41190).
pub fn check_not_ambiguous(bytes: &[u8], digest: &Digest) -> Result<()> {
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    if v.get("manifests").is_some() && (v.get("layers").is_some() || v.get("config").is_some()) {
        return Err(Error::invalid(format!("{digest}: document holds both manifests and layers/config; refusing an ambiguous manifest")));
    }
    Ok(())
}

fn read_limited(f: impl Read, limit: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    f.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("larger than {}", human_size(limit))));
    }
    Ok(bytes)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).ctx(|| format!("chmod {}", path.display()))
}

/// The digests an `…/sha256/` directory names (`blobs/sha256/`, `layers/sha256/`), sorted;
/// entries whose names are not digests are skipped, and a missing directory names none.
pub fn digests_in(dir: &Path) -> Result<Vec<Digest>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("read {}", dir.display()), e)),
    };
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.ctx(|| format!("read {}", dir.display()))?;
        if let Ok(d) = format!("sha256:{}", ent.file_name().to_string_lossy()).parse::<Digest>() {
            out.push(d);
        }
    }
    out.sort();
    Ok(out)
}

/// fsync a directory so a rename in it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).ctx(|| format!("fsync {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_that_does_not_verify_is_never_visible() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::init(t.path()).unwrap();
        let mut w = s.blob_writer().unwrap();
        w.write_all(b"hello").unwrap();
        let wrong = Digest::of(b"other");
        assert!(w.commit(Some((&wrong, 5))).is_err());
        let names: Vec<_> = fs::read_dir(t.path().join("blobs/sha256")).unwrap().collect();
        assert!(names.is_empty());
        assert!(fs::read_dir(t.path().join("blobs")).unwrap().count() == 1, "temp file left behind");
        let d = s.put_bytes("text/plain", b"hello").unwrap();
        assert_eq!(fs::read(s.blob_path(&d.digest)).unwrap(), b"hello");
    }

    #[test]
    fn tags_move_and_leave_dangling_images() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::init(t.path()).unwrap();
        let a = s.put_bytes(oci::MEDIA_OCI_MANIFEST, b"{\"a\":1}").unwrap();
        let b = s.put_bytes(oci::MEDIA_OCI_MANIFEST, b"{\"b\":1}").unwrap();
        let r = Reference::parse("x:1").unwrap();
        s.tag(&r, &a).unwrap();
        s.tag(&r, &a).unwrap();
        assert_eq!(s.index().unwrap().manifests.len(), 1);
        s.tag(&r, &b).unwrap();
        let idx = s.index().unwrap();
        assert_eq!(idx.manifests.len(), 2);
        assert_eq!(s.resolve("x:1").unwrap().digest, b.digest);
        assert_eq!(s.resolve("docker.io/library/x:1").unwrap().digest, b.digest);
        assert!(idx.manifests.iter().any(|d| d.digest == a.digest && d.ref_name().is_none()));
        assert!(s.resolve("y").unwrap_err().to_string().contains("not found"));
    }

    #[test]
    fn concurrent_taggers_lose_nothing() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::init(t.path()).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let s = s.clone();
                std::thread::spawn(move || {
                    let d = s.put_bytes(oci::MEDIA_OCI_MANIFEST, format!("{{\"n\":{i}}}").as_bytes()).unwrap();
                    s.tag(&Reference::parse(&format!("img{i}")).unwrap(), &d).unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(s.index().unwrap().manifests.len(), 8);
    }
}
