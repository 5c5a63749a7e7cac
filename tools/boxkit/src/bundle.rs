//! Bundle records: which image a bundle came from, how its rootfs is stored, and the list of
//! live bundles that keeps images and cached layers from being removed under them.
//!
//! Reference: OCI runtime spec, bundle.md
//! (<https://github.com/opencontainers/runtime-spec/blob/main/bundle.md>): a bundle is
//! `config.json` plus the root filesystem; runtimes ignore other files, so boxkit keeps its own
//! record, `boxkit.json`, beside them (as umoci keeps `umoci.json`).
//!
//! ```text
//! BUNDLE/boxkit.json          {"image": NAME, "manifest": DIGEST, "storage": "copy"|"overlay",
//!                              "layers": [DIFF_ID, …]}
//! $BOXKIT_ROOT/bundles/ID.json {"bundle": ABSOLUTE PATH, "manifest": DIGEST}
//! ```
//!
//! The second file is how `box-rmi` and `box-prune` find the bundles that still use an image:
//! an entry counts only while its bundle's own `boxkit.json` still names the same manifest, so
//! a bundle removed with `rm -rf` frees its image without any other step.

use crate::digest::Digest;
use crate::error::{Context, Error, Result};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

/// The name of the record inside a bundle.
pub const INFO_FILE: &str = "boxkit.json";

/// How a bundle's `rootfs/` holds the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// The layers were applied into a private copy (box-unpack).
    Copy,
    /// `rootfs/` is an overlay mount of cached layers with the bundle's `upper/` and `work/`
    /// (box-mount-layers).
    Overlay,
}

/// What `BUNDLE/boxkit.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleInfo {
    /// The image's name as the user gave it, normalized when it came from the store.
    pub image: String,
    /// The image manifest the bundle was made from: `box-commit` builds on it.
    pub manifest: Digest,
    pub storage: Storage,
    /// The image's layers as diff_ids (digests of the uncompressed tars), base first.
    pub layers: Vec<Digest>,
}

/// Read `BUNDLE/boxkit.json`.
pub fn read_info(bundle: &Path) -> Result<BundleInfo> {
    let path = bundle.join(INFO_FILE);
    let bytes = fs::read(&path).ctx(|| format!("{} was not made by box-unpack or box-mount-layers", bundle.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::invalid(format!("{}: {e}", path.display())))
}

/// Write `BUNDLE/boxkit.json` (by rename, so a reader never sees half of it).
pub fn write_info(bundle: &Path, info: &BundleInfo) -> Result<()> {
    let json = serde_json::to_vec_pretty(info).expect("serializing a bundle record cannot fail");
    crate::fsroot::replace_file(bundle, INFO_FILE, &json, 0o600)
}

/// One line of `$BOXKIT_ROOT/bundles/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    bundle: PathBuf,
    manifest: Digest,
}

fn entry_path(root: &Path, bundle: &Path) -> PathBuf {
    let id = Digest::of(bundle.as_os_str().as_encoded_bytes());
    root.join("bundles").join(format!("{}.json", &id.hex()[..16]))
}

fn absolute(bundle: &Path) -> Result<PathBuf> {
    fs::canonicalize(bundle).ctx(|| format!("bundle {}", bundle.display()))
}

/// Note in `$BOXKIT_ROOT/bundles/` that `bundle` (which must exist) uses `info.manifest`.
pub fn register(root: &Path, bundle: &Path, info: &BundleInfo) -> Result<()> {
    let bundle = absolute(bundle)?;
    let dir = root.join("bundles");
    fs::create_dir_all(&dir).ctx(|| format!("create {}", dir.display()))?;
    let entry = Entry { bundle: bundle.clone(), manifest: info.manifest.clone() };
    let json = serde_json::to_vec(&entry).expect("serializing a bundle entry cannot fail");
    let path = entry_path(root, &bundle);
    crate::fsroot::replace_file(&dir, path.file_name().unwrap().to_str().unwrap(), &json, 0o600)
}

/// Forget `bundle` (no error when it was never registered).
pub fn unregister(root: &Path, bundle: &Path) -> Result<()> {
    let bundle = absolute(bundle).unwrap_or_else(|_| bundle.to_path_buf());
    match fs::remove_file(entry_path(root, &bundle)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("unregister {}", bundle.display()), e)),
    }
}

/// The bundles that still exist and still hold the image they were registered with.
pub fn live(root: &Path) -> Result<Vec<(PathBuf, BundleInfo)>> {
    let dir = root.join("bundles");
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("read {}", dir.display()), e)),
    };
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.ctx(|| format!("read {}", dir.display()))?;
        let name = ent.file_name();
        if !name.to_string_lossy().ends_with(".json") {
            continue;
        }
        let Ok(bytes) = fs::read(ent.path()) else { continue };
        let Ok(entry) = serde_json::from_slice::<Entry>(&bytes) else { continue };
        if let Ok(info) = read_info(&entry.bundle) {
            if info.manifest == entry.manifest {
                out.push((entry.bundle, info));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Remove the entries of bundles that are gone or were remade from another image.
pub fn forget_dead(root: &Path) -> Result<Vec<PathBuf>> {
    let dir = root.join("bundles");
    let Ok(rd) = fs::read_dir(&dir) else { return Ok(Vec::new()) };
    let mut gone = Vec::new();
    for ent in rd.flatten() {
        let alive = fs::read(ent.path())
            .ok()
            .and_then(|b| serde_json::from_slice::<Entry>(&b).ok())
            .map(|e| matches!(read_info(&e.bundle), Ok(i) if i.manifest == e.manifest));
        if ent.file_name().to_string_lossy().ends_with(".json") && alive != Some(true) {
            fs::remove_file(ent.path()).ctx(|| format!("remove {}", ent.path().display()))?;
            gone.push(ent.path());
        }
    }
    Ok(gone)
}


#[cfg(test)]
mod tests {
    use super::*;

    fn info(m: &[u8]) -> BundleInfo {
        BundleInfo { image: "x".into(), manifest: Digest::of(m), storage: Storage::Copy, layers: vec![] }
    }

    #[test]
    fn a_bundle_counts_while_it_exists_and_holds_the_same_image() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let b = t.path().join("b");
        fs::create_dir(&b).unwrap();
        write_info(&b, &info(b"one")).unwrap();
        register(&root, &b, &info(b"one")).unwrap();
        assert_eq!(live(&root).unwrap().len(), 1);
        // Remade from another image: the old entry no longer holds the first one.
        write_info(&b, &info(b"two")).unwrap();
        assert!(live(&root).unwrap().is_empty());
        write_info(&b, &info(b"one")).unwrap();
        fs::remove_dir_all(&b).unwrap();
        assert!(live(&root).unwrap().is_empty());
        assert_eq!(forget_dead(&root).unwrap().len(), 1);
        assert_eq!(fs::read_dir(root.join("bundles")).unwrap().count(), 0);
    }
}
