//! Overlay bundles for ordinary users: made without a mount, mounted by box-spawn.
//!
//! Reference: user_namespaces(7) and mount_namespaces(7) (a mount made in a user namespace's
//! mount namespace exists only there and dies with its last process); the kernel's
//! Documentation/filesystems/overlayfs.rst ("permission model", `userxattr`: overlayfs in a
//! user namespace, Linux 5.11).
//!
//! An ordinary user may mount an overlay, but only in a mount namespace its own user
//! namespace owns, so no mount made by box-mount-layers could outlive it. As rootless Podman
//! does, the bundle is made complete but unmounted: the layers are extracted into the cache
//! (in the `user.overlay.*` form) by a helper that is root of a user namespace with the
//! container's maps, so owners come out as the container will see them; `upper/` and
//! `work/` belong to the container's root. box-spawn then mounts the overlay in the
//! container's new mount namespace, after entering its user namespace and before
//! `pivot_root`, with `userxattr`.
//!
//! What the mount needs is already in `boxkit.json`: the layers' diff_ids name their cached
//! directories under `$BOXKIT_ROOT/layers`.

use super::{bundle_place, cache_layers, make_skeleton, temp_bundle, write_records, Made, MAX_LOWERS};
use crate::bundle::{self, Storage};
use crate::error::{Context, Error, Result};
use crate::explain;
use crate::layercache;
use crate::rootless;
use crate::store::{Image, Store};
use crate::userns::{self, Mapping};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The directories of an overlay that box-spawn must mount itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Cached layers, top first (as overlayfs names them).
    pub lowers: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
}

/// The cached lower directories of a bundle's layers (diff_ids base first), top first.
pub fn lowers_of(root: &Path, diff_ids: &[crate::digest::Digest]) -> Result<Vec<PathBuf>> {
    if diff_ids.len() > MAX_LOWERS {
        return Err(Error::invalid(format!("the image has {} layers; an overlay stacks at most {MAX_LOWERS}", diff_ids.len())));
    }
    let mut lowers: Vec<PathBuf> = diff_ids.iter().map(|d| layercache::dir_of(root, d)).collect();
    if lowers.is_empty() {
        lowers.push(root.join("layers").join("empty"));
    }
    lowers.reverse();
    Ok(lowers)
}

// ANCHOR: prepare_bundle
/// Make the overlay bundle `bundle` (which must not exist) for `image` without mounting it:
/// layers cached and `upper/`, `work/` made by a helper that is root of a user namespace
/// with the maps `ids`, which config.json records. Keep `store` open meanwhile.
pub fn prepare_bundle(store: &Store, image: &Image, name: &str, root: &Path, bundle: &Path, ids: &Mapping) -> Result<Made> {
    let (parent, base) = bundle_place(bundle)?;
    if let Some(why) = super::why_unavailable(root, &parent) {
        return Ok(Made::Unavailable(why));
    }
    let lowers = lowers_of(root, &image.config.rootfs.diff_ids)?;
    let tmp = temp_bundle(&parent, base)?;
    let skeleton = tmp.path().to_path_buf();
    // In the helper: the cache in the form a user namespace mounts, and the directories
    // the container's root (uid 0 inside, the caller outside) must write.
    let fill = || -> Result<()> {
        cache_layers(store, image, root, layercache::form_for_this_process())?;
        explain!("mkdir rootfs/, upper/, work/ in {} (not mounted: box-spawn mounts the overlay)", bundle.display());
        make_skeleton(&skeleton, &lowers[0])
    };
    if let Err(e) = rootless::as_mapped_root(ids, fill) {
        let _ = rootless::remove_tree(&skeleton, Some(ids));
        return Err(e);
    }
    let finish = || write_records(&skeleton, bundle, image, name, Some(ids));
    let info = match finish() {
        Ok(info) => info,
        Err(e) => {
            let _ = rootless::remove_tree(&skeleton, Some(ids));
            return Err(e);
        }
    };
    let skeleton = tmp.keep();
    if let Err(e) = crate::unpack::rename_noreplace(&skeleton, &parent.join(base)) {
        let _ = rootless::remove_tree(&skeleton, Some(ids));
        return Err(Error::io(format!("rename into {}", bundle.display()), e));
    }
    Ok(Made::Overlay(info))
}
// ANCHOR_END: prepare_bundle

/// Whether `dir` is a mount point: its device differs from its parent's (an overlay always
/// has a device of its own), or it is the root of a mount of the same device.
pub(super) fn is_mount_point(dir: &Path) -> Result<bool> {
    let md = fs::symlink_metadata(dir).ctx(|| format!("stat {}", dir.display()))?;
    let up = fs::metadata(dir.join("..")).ctx(|| format!("stat {}/..", dir.display()))?;
    Ok(md.dev() != up.dev() || md.ino() == up.ino())
}

// ANCHOR: pending
/// The overlay box-spawn must mount on the bundle's `rootfs`, if it is an overlay bundle
/// whose rootfs is not mounted (one made by an ordinary user, or unmounted since), with
/// the layer cache of `root`. A copy bundle, a bundle without boxkit.json or a mounted
/// rootfs need nothing.
pub fn pending(root: &Path, bundle: &Path, rootfs: &Path) -> Result<Option<Pending>> {
    // boxkit.json is boxkit's own record: a runtime ignores it, and so does box-spawn when
    // it is missing or unreadable (the bundle then runs as config.json says).
    let info = match bundle::read_info(bundle) {
        Ok(info) => info,
        Err(e) => {
            explain!("no overlay to mount: {e}");
            return Ok(None);
        }
    };
    if info.storage != Storage::Overlay || is_mount_point(rootfs)? {
        return Ok(None);
    }
    let lowers = lowers_of(root, &info.layers)?;
    for (l, d) in lowers.iter().zip(info.layers.iter().rev()) {
        if !l.is_dir() {
            return Err(Error::not_found(format!(
                "{}: layer {} is not in the layer cache {} (was the bundle made with another --root?)",
                bundle.display(),
                d,
                root.join("layers").display()
            )));
        }
    }
    explain!("{} is an overlay bundle whose rootfs is not mounted: mount it in the container's mount namespace", bundle.display());
    Ok(Some(Pending { lowers, upper: bundle.join("upper"), work: bundle.join("work") }))
}
// ANCHOR_END: pending

// ANCHOR: mount_pending
/// In the container's mount namespace (after `make_private`): mount the overlay on
/// `rootfs`, with `userxattr` when this process is root of a user namespace.
pub fn mount_pending(p: &Pending, rootfs: &Path) -> Result<()> {
    let form = layercache::form_for_this_process();
    super::mount_overlay(&p.lowers, &p.upper, &p.work, rootfs, form, super::Api::Auto)
        .map_err(|e| e.context(format!("mount the overlay on {}", rootfs.display())))
}
// ANCHOR_END: mount_pending

/// The maps an ordinary user's bundle gets (as box-unpack's): the caller as root, its
/// /etc/subuid and /etc/subgid ranges for the other ids.
pub fn caller_mapping() -> Mapping {
    userns::plan(userns::Request::Auto, &userns::Caller::current())
}
