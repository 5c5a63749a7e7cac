//! Garbage collection of the image store and the layer cache: reachability from `index.json`.
//!
//! Reference: OCI image spec, image-layout.md ("index.json … the entry point for references
//! and descriptors of the image-layout") and the mark-and-sweep collectors of containerd
//! (`gc/gc.go`) and `umoci gc`: a blob is alive while some path of descriptors leads to it
//! from `index.json` (index → manifests → config and layers, indexes nested at any depth).
//!
//! Roots are the entries of `index.json` and the manifests of live bundles
//! ([`crate::bundle::live`]). A cached layer `$BOXKIT_ROOT/layers/sha256/<diff_id>` is alive
//! while a reachable image config lists its diff_id in `rootfs.diff_ids`, or a live bundle
//! lists it. Sweeping needs [`Store::open_exclusive`]: no other process is then between
//! writing a blob and naming it in `index.json`, nor extracting a layer into the cache.

use crate::bundle::{self, BundleInfo};
use crate::digest::Digest;
use crate::error::{Context, Error, Result};
use crate::explain;
use crate::fsroot;
use crate::layercache;
use crate::oci::{self, Descriptor, Index, Manifest};
use crate::store::{digests_in, Store};
use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// What a walk from some roots reaches.
#[derive(Debug, Default, Clone)]
pub struct Reach {
    /// Every blob a descriptor points at (present in the store or not).
    pub blobs: BTreeSet<Digest>,
    /// The image manifests among them.
    pub manifests: BTreeSet<Digest>,
    /// The diff_ids the reached image configs list.
    pub diff_ids: BTreeSet<Digest>,
}

// ANCHOR: walk
/// Mark `d` and everything it leads to. A missing blob is marked but not followed (an index
/// may list platforms the store never fetched); a present one that does not verify is an
/// error, so nothing is collected on the word of a corrupt document.
pub fn walk(store: &Store, d: &Descriptor, reach: &mut Reach) -> Result<()> {
    walk_depth(store, d, reach, 0)
}

fn walk_depth(store: &Store, d: &Descriptor, reach: &mut Reach, depth: usize) -> Result<()> {
    if depth > 8 {
        return Err(Error::invalid(format!("{}: indexes nested more than 8 deep", d.digest)));
    }
    if !reach.blobs.insert(d.digest.clone()) || !store.has_blob(&d.digest) {
        return Ok(());
    }
    match d.media_type.as_str() {
        oci::MEDIA_OCI_INDEX | oci::MEDIA_DOCKER_LIST => {
            let index: Index = oci::from_json(&store.read_blob(&d.digest)?, &format!("index {}", d.digest))?;
            for child in &index.manifests {
                walk_depth(store, child, reach, depth + 1)?;
            }
        }
        oci::MEDIA_OCI_MANIFEST | oci::MEDIA_DOCKER_MANIFEST => {
            let m: Manifest = oci::from_json(&store.read_blob(&d.digest)?, &format!("manifest {}", d.digest))?;
            reach.manifests.insert(d.digest.clone());
            reach.blobs.insert(m.config.digest.clone());
            reach.blobs.extend(m.layers.iter().map(|l| l.digest.clone()));
            let is_image = matches!(m.config.media_type.as_str(), oci::MEDIA_OCI_CONFIG | oci::MEDIA_DOCKER_CONFIG);
            if is_image && store.has_blob(&m.config.digest) {
                reach.diff_ids.extend(diff_ids(store, &m.config.digest)?);
            }
        }
        _ => {} // a layer, a config, or an artifact boxkit does not know: a leaf
    }
    Ok(())
}
// ANCHOR_END: walk

/// The `rootfs.diff_ids` of an image config (read leniently: nothing else is needed).
fn diff_ids(store: &Store, config: &Digest) -> Result<Vec<Digest>> {
    #[derive(serde::Deserialize)]
    struct RootFs {
        #[serde(default)]
        diff_ids: Vec<Digest>,
    }
    #[derive(serde::Deserialize)]
    struct Config {
        rootfs: RootFs,
    }
    let c: Config = oci::from_json(&store.read_blob(config)?, &format!("config {config}"))?;
    Ok(c.rootfs.diff_ids)
}

/// Does the image `d` names hold a manifest some live bundle was made from?
pub fn used_by<'a>(store: &Store, d: &Descriptor, live: &'a [(PathBuf, BundleInfo)]) -> Result<Option<&'a Path>> {
    if live.is_empty() {
        return Ok(None);
    }
    let mut reach = Reach::default();
    walk(store, d, &mut reach)?;
    Ok(live.iter().find(|(_, i)| reach.blobs.contains(&i.manifest)).map(|(p, _)| p.as_path()))
}

/// What a sweep removed, with sizes (bytes of blob files; bytes of regular files in a layer).
#[derive(Debug, Default)]
pub struct Freed {
    /// `index.json` entries removed (dangling images, or with `--all` unused tagged ones).
    pub images: Vec<Descriptor>,
    pub blobs: Vec<(Digest, u64)>,
    pub layers: Vec<(PathBuf, u64)>,
    /// Leftover temporary files and directories.
    pub temporary: Vec<(PathBuf, u64)>,
    /// Records of bundles that no longer exist.
    pub bundles: Vec<PathBuf>,
}

impl Freed {
    pub fn total(&self) -> u64 {
        let sum = |v: &[(PathBuf, u64)]| v.iter().map(|x| x.1).sum::<u64>();
        self.blobs.iter().map(|x| x.1).sum::<u64>() + sum(&self.layers) + sum(&self.temporary)
    }
}

/// Which blobs and cached layers a sweep may remove: all that nothing reaches (`All`), or
/// only those among what some removed images reached (`Among`, for box-rmi).
pub enum Candidates<'a> {
    All,
    Among(&'a Reach),
}

// ANCHOR: sweep
/// Remove the blobs and cached layers that neither `index.json` nor a live bundle reaches.
/// `store` must have been opened with [`Store::open_exclusive`].
pub fn sweep(store: &Store, root: &Path, live: &[(PathBuf, BundleInfo)], which: Candidates, freed: &mut Freed) -> Result<()> {
    let mut keep = Reach::default();
    for d in &store.index()?.manifests {
        walk(store, d, &mut keep)?;
    }
    for (_, info) in live {
        keep.diff_ids.extend(info.layers.iter().cloned());
        if store.has_blob(&info.manifest) {
            walk(store, &store.describe(&info.manifest)?, &mut keep)?;
        }
    }
    let blob_dir = store.dir().join("blobs/sha256");
    let present: Vec<Digest> = match &which {
        Candidates::All => digests_in(&blob_dir)?,
        Candidates::Among(r) => r.blobs.iter().filter(|d| store.has_blob(d)).cloned().collect(),
    };
    for d in present.into_iter().filter(|d| !keep.blobs.contains(d)) {
        let path = store.blob_path(&d);
        let size = fs::symlink_metadata(&path).map(|m| m.len()).unwrap_or(0);
        fs::remove_file(&path).ctx(|| format!("remove {}", path.display()))?;
        explain!("remove blobs/sha256/{} (nothing in index.json reaches it)", d.hex());
        freed.blobs.push((d, size));
    }
    let cached = layercache::cached(root)?;
    for diff_id in cached.into_iter().filter(|d| !keep.diff_ids.contains(d)) {
        if let Candidates::Among(r) = &which {
            if !r.diff_ids.contains(&diff_id) {
                continue;
            }
        }
        let dir = layercache::dir_of(root, &diff_id);
        freed.layers.push((dir.clone(), remove_cached_layer(root, &diff_id)?));
        explain!("remove cached layer {} (no image or bundle needs it)", dir.display());
    }
    Ok(())
}
// ANCHOR_END: sweep

/// Remove what an interrupted writer left: `images/blobs/.tmp-*`, `images/.index.json.tmp-*`
/// (and `.oci-layout.tmp-*`), `layers/.tmp-*`. Only safe under the exclusive store lock.
pub fn remove_temporary(store: &Store, root: &Path, freed: &mut Freed) -> Result<()> {
    let places: [(PathBuf, &[&str]); 3] = [
        (store.dir().join("blobs"), &[".tmp-"]),
        (store.dir().to_path_buf(), &[".index.json.tmp-", ".oci-layout.tmp-"]),
        (root.join("layers"), &[".tmp-"]),
    ];
    for (dir, prefixes) in places {
        for name in names(&dir)? {
            if prefixes.iter().any(|p| name.as_encoded_bytes().starts_with(p.as_bytes())) {
                let size = remove_tree(&dir, &name)?;
                freed.temporary.push((dir.join(&name), size));
            }
        }
    }
    Ok(())
}

// ANCHOR: prune
/// Garbage-collect: dangling images (with `all`, every image) that no live bundle uses, then
/// every blob and cached layer nothing reaches, leftover temporary files, dead bundle records.
pub fn prune(root: &Path, all: bool) -> Result<Freed> {
    let mut freed = Freed { bundles: bundle::forget_dead(root)?, ..Default::default() };
    let images = root.join("images");
    if !images.join("oci-layout").exists() {
        // No store: only cached layers could be left, and nothing needs them.
        for diff_id in layercache::cached(root)? {
            freed.layers.push((layercache::dir_of(root, &diff_id), remove_cached_layer(root, &diff_id)?));
        }
        return Ok(freed);
    }
    let store = Store::open_exclusive(&images)?;
    let live = bundle::live(root)?;
    freed.images = store.update_index(|index| {
        let mut removed = Vec::new();
        let mut kept = Vec::new();
        for d in index.manifests.drain(..) {
            if (all || d.ref_name().is_none()) && used_by(&store, &d, &live)?.is_none() {
                removed.push(d);
            } else {
                kept.push(d);
            }
        }
        index.manifests = kept;
        Ok(removed)
    })?;
    sweep(&store, root, &live, Candidates::All, &mut freed)?;
    remove_temporary(&store, root, &mut freed)?;
    Ok(freed)
}
// ANCHOR_END: prune

/// Move a cached layer aside (`layers/.tmp-gc-<hex>`, so no half-removed layer is ever
/// mounted) and remove it. Returns the bytes of its regular files.
fn remove_cached_layer(root: &Path, diff_id: &Digest) -> Result<u64> {
    let layers = root.join("layers");
    let from = layercache::dir_of(root, diff_id);
    let aside = OsString::from(format!(".tmp-gc-{}", diff_id.hex()));
    fs::rename(&from, layers.join(&aside)).ctx(|| format!("move {} aside", from.display()))?;
    remove_tree(&layers, &aside)
}

/// Remove `dir/name` (a file, or a directory and everything below it) without following any
/// symlink, clearing the immutable and append-only flags a layer may carry. Returns the
/// bytes of the regular files removed.
pub fn remove_tree(dir: &Path, name: &OsStr) -> Result<u64> {
    let d = fs::File::open(dir).ctx(|| format!("open {}", dir.display()))?;
    let mut bytes = 0;
    remove_at(d.as_raw_fd(), name, &mut bytes).ctx(|| format!("remove {}", dir.join(name).display()))?;
    Ok(bytes)
}

fn remove_at(dirfd: i32, name: &OsStr, bytes: &mut u64) -> std::io::Result<()> {
    let st = match fsroot::lstatat(dirfd, name) {
        Ok(st) => st,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    let kind = st.st_mode & libc::S_IFMT;
    if kind == libc::S_IFDIR {
        let open = || fsroot::open_raw(dirfd, name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW);
        let fd = match open() {
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
                fsroot::chmodat(dirfd, name, 0o700)?;
                open()?
            }
            other => other?,
        };
        for child in fsroot::list_dir(fd.as_raw_fd())? {
            remove_at(fd.as_raw_fd(), &child, bytes)?;
        }
    } else if kind == libc::S_IFREG {
        *bytes += st.st_size as u64;
    }
    let c = std::ffi::CString::new(name.as_encoded_bytes()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let flags = if kind == libc::S_IFDIR { libc::AT_REMOVEDIR } else { 0 };
    // SAFETY: unlinkat on a descriptor we hold and a NUL-terminated name.
    let unlink = || unsafe { libc::unlinkat(dirfd, c.as_ptr(), flags) } == 0;
    if unlink() {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EPERM) {
        return Err(err);
    }
    // An immutable or append-only file, or a directory of that kind holding it (chattr +i,
    // +a): clear the flags and try once more.
    clear_flags(dirfd);
    if kind == libc::S_IFDIR || kind == libc::S_IFREG {
        let o = if kind == libc::S_IFDIR { libc::O_DIRECTORY } else { 0 };
        if let Ok(fd) = fsroot::open_raw(dirfd, name, libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | o) {
            clear_flags(fd.as_raw_fd());
        }
    }
    if unlink() { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// Clear FS_IMMUTABLE_FL and FS_APPEND_FL (`chattr -ia`), which no unlink gets past, on an
/// open regular file or directory; nothing happens where the filesystem has no such flags.
fn clear_flags(fd: i32) {
    const FS_IOC_GETFLAGS: libc::c_ulong = 0x8008_6601;
    const FS_IOC_SETFLAGS: libc::c_ulong = 0x4008_6602;
    const IMMUTABLE_OR_APPEND: libc::c_int = 0x10 | 0x20;
    let mut attr: libc::c_int = 0;
    // SAFETY: the ioctls read and write one int through a pointer we own (the kernel uses an
    // int whatever the ioctl number says).
    unsafe {
        if libc::ioctl(fd, FS_IOC_GETFLAGS, &mut attr) == 0 && attr & IMMUTABLE_OR_APPEND != 0 {
            attr &= !IMMUTABLE_OR_APPEND;
            libc::ioctl(fd, FS_IOC_SETFLAGS, &attr);
        }
    }
}

/// The names in a directory (none if it does not exist).
fn names(dir: &Path) -> Result<Vec<OsString>> {
    match fs::read_dir(dir) {
        Ok(rd) => {
            let mut v = Vec::new();
            for e in rd {
                v.push(e.ctx(|| format!("read {}", dir.display()))?.file_name());
            }
            v.sort();
            Ok(v)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io(format!("read {}", dir.display()), e)),
    }
}
