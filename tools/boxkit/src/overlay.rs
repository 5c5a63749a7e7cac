//! Union mounts: a container's root filesystem as an overlay of the image's cached layers
//! and a writable directory of its own, so no container copies its image.
//!
//! Reference: the kernel's Documentation/filesystems/overlayfs.rst (lowerdir, upperdir,
//! workdir, whiteouts, opaque directories, `redirect_dir`, `index`, `metacopy`,
//! `userxattr`, "lowerdir+"); fsopen(2), fsconfig(2), fsmount(2), move_mount(2) for the new
//! mount API; mount(2) for the old one.
//!
//! ```text
//! BUNDLE/                  mode 0700
//!   config.json            as box-unpack writes it
//!   boxkit.json            {"storage": "overlay", …}
//!   rootfs/                overlay: lowerdir = the image's layers in $BOXKIT_ROOT/layers
//!   upper/                 the container's changes: new files, whiteouts, opaque markers
//!   work/                  overlayfs's scratch space (same filesystem as upper/)
//! ```
//!
//! The mount keeps `upper/` a plain diff, so box-commit can read it as a layer:
//! `redirect_dir=off` (a renamed directory is copied up whole, not recorded as a redirect
//! xattr), `metacopy=off` (a chmod copies the data up too) and `index=off`. These are the
//! kernel's defaults unless the overlay module was built or loaded otherwise; boxkit says
//! them anyway so the result never depends on the host.

use crate::bundle::{self, BundleInfo, Storage};
use crate::error::{Context, Error, Result};
use crate::explain;
use crate::layer::OverlayForm;
use crate::layercache;
use crate::runtime;
use crate::store::{Image, Store};
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

mod mount;
pub use mount::mount_overlay;
mod deferred;
pub use deferred::{caller_mapping, lowers_of, mount_pending, pending, prepare_bundle, Pending};

/// statfs(2) `f_type` of an overlayfs.
pub const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;
/// The most lower layers one overlay can stack (`OVL_MAX_STACK` in fs/overlayfs).
pub const MAX_LOWERS: usize = 500;

/// Which mount API to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// The new API where the kernel has `lowerdir+` (6.8), else the old one.
    Auto,
    /// fsopen/fsconfig/fsmount/move_mount, one `lowerdir+` per layer.
    Fsconfig,
    /// mount(2) with all options in one page of data.
    Legacy,
}

/// What [`mount_bundle`] made.
pub enum Made {
    /// The bundle, with its rootfs mounted.
    Overlay(BundleInfo),
    /// Nothing: an overlay cannot be made here, for the reason given.
    Unavailable(String),
}

fn fs_type(p: &Path) -> io::Result<i64> {
    let st = nix::sys::statfs::statfs(p).map_err(io::Error::from)?;
    Ok(st.filesystem_type().0 as i64)
}

/// Why an overlay bundle cannot be made in `bundle_parent` with the layer cache of `root`,
/// if it cannot.
pub fn why_unavailable(root: &Path, bundle_parent: &Path) -> Option<String> {
    if fs_type(bundle_parent).ok() == Some(OVERLAYFS_SUPER_MAGIC) {
        return Some(format!(
            "{} is on overlayfs, which cannot hold another overlay's upper directory",
            bundle_parent.display()
        ));
    }
    // The cache may not exist yet: ask about the nearest directory that does.
    let mut probe = root.join("layers");
    while !probe.exists() {
        match probe.parent() {
            Some(p) => probe = p.to_path_buf(),
            None => break,
        }
    }
    if fs_type(&probe).ok() == Some(OVERLAYFS_SUPER_MAGIC) {
        return Some(format!(
            "the layer cache {} is on overlayfs, which cannot keep whiteouts for another overlay",
            root.join("layers").display()
        ));
    }
    None
}

// ANCHOR: mount_bundle
/// Make the bundle `bundle` (which must not exist) for `image`: its layers from the cache
/// (extracted first where missing), an overlay of them on `rootfs/`, config.json and
/// boxkit.json. Keep `store` open meanwhile.
pub fn mount_bundle(store: &Store, image: &Image, name: &str, root: &Path, bundle: &Path, api: Api) -> Result<Made> {
    let (parent, base) = bundle_place(bundle)?;
    if let Some(why) = why_unavailable(root, &parent) {
        return Ok(Made::Unavailable(why));
    }
    let lowers = lowers_of(root, &image.config.rootfs.diff_ids)?; // top layer first
    let form = layercache::form_for_this_process();
    cache_layers(store, image, root, form)?;

    // The skeleton is built aside and renamed into place before the mount, because
    // overlayfs records upperdir and workdir as the paths it was given (mountinfo shows
    // them): they must be the final ones. config.json and boxkit.json come last.
    let tmp = temp_bundle(&parent, base)?;
    explain!("mkdir {} (mode 0700: no other user may reach into the bundle), rootfs/, upper/, work/", bundle.display());
    make_skeleton(tmp.path(), &lowers[0])?;
    let tmp = tmp.keep();
    if let Err(e) = crate::unpack::rename_noreplace(&tmp, bundle) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(Error::io(format!("rename into {}", bundle.display()), e));
    }
    let bundle = parent.join(base);
    let rootfs = bundle.join("rootfs");
    // Never remove_dir_all a bundle with its rootfs still mounted: it would descend into it.
    let remove = |mounted: bool| {
        if mounted {
            let _ = nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = fs::remove_dir_all(&bundle);
    };
    if let Err(e) = mount_overlay(&lowers, &bundle.join("upper"), &bundle.join("work"), &rootfs, form, api) {
        remove(false);
        return Ok(Made::Unavailable(format!("the overlay mount failed: {e}")));
    }
    let finish = || write_records(&bundle, &bundle, image, name, None);
    match finish() {
        Ok(info) => Ok(Made::Overlay(info)),
        Err(e) => {
            remove(true);
            Err(e)
        }
    }
}

/// Where the new bundle `bundle` goes: its directory (canonical) and its name. It must not
/// exist yet.
fn bundle_place(bundle: &Path) -> Result<(PathBuf, &OsStr)> {
    if bundle.symlink_metadata().is_ok() {
        return Err(Error::invalid(format!("bundle {} already exists", bundle.display())));
    }
    let parent = match bundle.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let parent = fs::canonicalize(&parent).ctx(|| format!("bundle directory {}", parent.display()))?;
    let base = bundle.file_name().ok_or_else(|| Error::invalid(format!("bad bundle path {}", bundle.display())))?;
    Ok((parent, base))
}

/// A temporary directory (mode 0700) in `parent` to build the bundle `base` in.
fn temp_bundle(parent: &Path, base: &OsStr) -> Result<tempfile::TempDir> {
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.tmp-", base.to_string_lossy()))
        .tempdir_in(parent)
        .ctx(|| format!("create a temporary bundle in {}", parent.display()))?;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o700)).ctx(|| "chmod bundle")?;
    Ok(tmp)
}

/// Every layer of `image` in the cache of `root` (extracted in `form` where missing), and
/// the empty directory that stands for the layers of an image with none.
fn cache_layers(store: &Store, image: &Image, root: &Path, form: OverlayForm) -> Result<()> {
    let n = image.manifest.layers.len();
    for (i, (desc, diff_id)) in image.manifest.layers.iter().zip(&image.config.rootfs.diff_ids).enumerate() {
        layercache::ensure(store, root, desc, diff_id, form).map_err(|e| e.context(format!("layer {}/{n}", i + 1)))?;
    }
    if n == 0 {
        layercache::empty_dir(root)?;
    }
    Ok(())
}

/// `rootfs/`, `upper/` and `work/` in `dir`; `upper/` gets the root attributes of `top`,
/// the top lower layer.
fn make_skeleton(dir: &Path, top: &Path) -> Result<()> {
    for (sub, mode) in [("rootfs", 0o755), ("upper", 0o755), ("work", 0o700)] {
        fs::create_dir(dir.join(sub)).ctx(|| format!("create {sub}/"))?;
        fs::set_permissions(dir.join(sub), fs::Permissions::from_mode(mode)).ctx(|| format!("chmod {sub}/"))?;
    }
    copy_root_attributes(top, &dir.join("upper"))
}
// ANCHOR_END: mount_bundle

/// Write a file by rename, so nobody reads half of it.
/// Write an overlay bundle's `config.json` (from the image config; with the user
/// namespace's maps when `ids` is given) and `boxkit.json`, into `dir`, the bundle that will
/// be named `bundle`.
fn write_records(dir: &Path, bundle: &Path, image: &Image, name: &str, ids: Option<&crate::userns::Mapping>) -> Result<BundleInfo> {
    let mut spec = runtime::spec_from_image(&image.config, &dir.join("rootfs"), &runtime::hostname_for(bundle))?;
    if let Some(ids) = ids {
        crate::userns::write_into_spec(&mut spec, ids);
    }
    let json = serde_json::to_vec_pretty(&spec).expect("serializing a spec cannot fail");
    crate::fsroot::replace_file(dir, "config.json", &json, 0o644)?;
    explain!("write config.json: args {:?}", spec.process.as_ref().map(|p| &p.args));
    let info = BundleInfo {
        image: name.to_string(),
        manifest: image.descriptor.digest.clone(),
        storage: Storage::Overlay,
        layers: image.config.rootfs.diff_ids.clone(),
    };
    bundle::write_info(dir, &info)?;
    Ok(info)
}


/// The merged root directory takes its owner, mode and times from `upper/`: give it those
/// of the top layer's root, as a copy would have.
fn copy_root_attributes(top: &Path, upper: &Path) -> Result<()> {
    let m = fs::metadata(top).ctx(|| format!("stat {}", top.display()))?;
    std::os::unix::fs::chown(upper, Some(m.uid()), Some(m.gid())).ctx(|| format!("chown {}", upper.display()))?;
    fs::set_permissions(upper, fs::Permissions::from_mode(m.mode() & 0o7777)).ctx(|| format!("chmod {}", upper.display()))?;
    crate::fsroot::lutimesat(libc::AT_FDCWD, upper.as_os_str(), m.mtime(), m.mtime_nsec())
        .ctx(|| format!("set times of {}", upper.display()))
}

// ANCHOR: unmount_bundle
/// Unmount an overlay bundle's rootfs. `upper/` stays, so its changes can still be
/// committed. Unmounting a bundle that is not mounted is not an error.
pub fn unmount_bundle(bundle: &Path) -> Result<BundleInfo> {
    let info = bundle::read_info(bundle)?;
    if info.storage != Storage::Overlay {
        return Err(Error::invalid(format!(
            "{} is a copy (made by box-unpack), not an overlay: there is nothing to unmount",
            bundle.display()
        )));
    }
    let rootfs = bundle.join("rootfs");
    explain!("umount2({:?}, UMOUNT_NOFOLLOW)", rootfs);
    match nix::mount::umount2(&rootfs, nix::mount::MntFlags::UMOUNT_NOFOLLOW) {
        Ok(()) => Ok(info),
        // A user's bundle is mounted only inside its containers: nothing to do here.
        Err(nix::errno::Errno::EINVAL | nix::errno::Errno::EPERM) if !deferred::is_mount_point(&rootfs)? => {
            explain!("{} was not mounted", rootfs.display());
            Ok(info)
        }
        Err(nix::errno::Errno::EBUSY) => Err(Error::invalid(format!(
            "{} is busy: a container still runs in it (stop it first)",
            rootfs.display()
        ))),
        Err(e) => Err(Error::io(format!("unmount {}", rootfs.display()), io::Error::from(e))),
    }
}
// ANCHOR_END: unmount_bundle
