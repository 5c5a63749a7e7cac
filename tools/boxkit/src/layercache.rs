//! The shared layer cache: each layer of the store extracted once, in overlay form, and used
//! as an overlayfs lower directory by every image and container that has it.
//!
//! Reference: the kernel's overlayfs documentation,
//! Documentation/filesystems/overlayfs.rst ("whiteouts and opaque directories").
//!
//! ```text
//! $BOXKIT_ROOT/layers/       mode 0700: the layers hold the images' setuid files
//!   sha256/<diff_id hex>/    one layer's tree, by the digest of its uncompressed tar
//!   .tmp-*                   a layer being extracted (never used; removed by box-prune)
//!   empty/                   an empty directory: the lower layer of an image with none
//! ```
//!
//! A layer is extracted by the same code that applies layers to a bundle (layer.rs, with
//! its whiteouts kept in overlay form) into `.tmp-*`, verified against the manifest's
//! digest and the config's diff_id, flushed to disk, and only then renamed to its name with
//! `RENAME_NOREPLACE`. A name under `sha256/` therefore always holds a whole, verified
//! layer, whatever was killed when. Two processes extracting the same layer at once both
//! do the work; the first rename wins and the other discards its copy.

use crate::digest::Digest;
use crate::error::{Context, Error, Result};
use crate::explain;
use crate::fsroot::Root;
use crate::layer::{OverlayForm, Whiteouts};
use crate::oci::Descriptor;
use crate::store::{digests_in, sync_dir, Store};
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The directory that holds (or will hold) the layer whose diff_id is `diff_id`.
pub fn dir_of(root: &Path, diff_id: &Digest) -> PathBuf {
    root.join("layers").join(diff_id.algorithm()).join(diff_id.hex())
}

/// Every layer in the cache, by diff_id.
pub fn cached(root: &Path) -> Result<Vec<Digest>> {
    digests_in(&root.join("layers").join("sha256"))
}

/// `$BOXKIT_ROOT/layers`, created mode 0700 if missing.
fn layers_dir(root: &Path) -> Result<PathBuf> {
    let dir = root.join("layers");
    fs::create_dir_all(dir.join("sha256")).ctx(|| format!("create {}", dir.display()))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).ctx(|| format!("chmod {}", dir.display()))?;
    Ok(dir)
}

/// The form this process can write and mount: `trusted.overlay.*` needs root in the
/// initial user namespace; anyone else (non-root, or root of a user namespace) gets the
/// `user.overlay.*` form and mounts with `userxattr`.
pub fn form_for_this_process() -> OverlayForm {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return OverlayForm::User;
    }
    // The initial user namespace maps every id to itself: "0 0 4294967295".
    if crate::userns::in_user_namespace() { OverlayForm::User } else { OverlayForm::Trusted }
}

// ANCHOR: ensure
/// The cached directory of one layer of `store`, extracted first if it is not there yet.
/// Keep `store` open until the layer is mounted: it holds the lock that keeps the
/// collector from removing blobs and cached layers meanwhile.
pub fn ensure(store: &Store, root: &Path, desc: &Descriptor, diff_id: &Digest, form: OverlayForm) -> Result<PathBuf> {
    let dir = dir_of(root, diff_id);
    if dir.is_dir() {
        explain!("layer {} cached in {}", &diff_id.hex()[..12], dir.display());
        return Ok(dir);
    }
    let layers = layers_dir(root)?;
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempdir_in(&layers)
        .ctx(|| format!("create a temporary directory in {}", layers.display()))?;
    // The layer's own "./" entry may change this; else it is what a new rootfs has.
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).ctx(|| format!("chmod {}", tmp.path().display()))?;
    let r = Root::open(tmp.path())?;
    explain!("extract layer {} into {} (overlay form)", diff_id, tmp.path().display());
    crate::unpack::apply_blob_as(store, desc, diff_id, &r, Whiteouts::Overlay(form))
        .map_err(|e| e.context(format!("layer {}", desc.digest)))?;
    // Data and names on disk before the name says "complete".
    let d = fs::File::open(tmp.path()).ctx(|| format!("open {}", tmp.path().display()))?;
    // SAFETY: syncfs on a descriptor we own.
    if unsafe { libc::syncfs(d.as_raw_fd()) } != 0 {
        return Err(Error::io(format!("syncfs {}", tmp.path().display()), std::io::Error::last_os_error()));
    }
    let tmp = tmp.keep();
    match crate::unpack::rename_noreplace(&tmp, &dir) {
        Ok(()) => {
            explain!("rename {} -> {} (RENAME_NOREPLACE)", tmp.display(), dir.display());
            sync_dir(&layers.join("sha256"))?;
            Ok(dir)
        }
        // Another process finished the same layer first: use its copy.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST) | Some(libc::ENOTEMPTY)) => {
            explain!("layer {} was extracted meanwhile by another process; discard ours", &diff_id.hex()[..12]);
            let _ = remove_tree(&tmp);
            Ok(dir)
        }
        Err(e) => {
            let _ = remove_tree(&tmp);
            Err(Error::io(format!("rename into {}", dir.display()), e))
        }
    }
}
// ANCHOR_END: ensure

/// An empty directory, the lower layer of an image that has no layers.
pub fn empty_dir(root: &Path) -> Result<PathBuf> {
    let dir = layers_dir(root)?.join("empty");
    match fs::create_dir(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(Error::io(format!("create {}", dir.display()), e)),
        _ => {}
    }
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).ctx(|| format!("chmod {}", dir.display()))?;
    Ok(dir)
}

/// Remove a directory tree without following symlinks.
fn remove_tree(p: &Path) -> std::io::Result<()> {
    let parent = fs::File::open(p.parent().unwrap_or(Path::new("/")))?;
    crate::fsroot::remove_all_at(parent.as_raw_fd(), p.file_name().unwrap_or_default())
}
