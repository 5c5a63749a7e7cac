//! From an image in a store to a runtime bundle: layers applied in order, then config.json.
//!
//! Reference: OCI image spec, layer.md and conversion.md (how an image config becomes a
//! runtime config); OCI runtime spec, bundle.md.
//!
//! Each layer blob is streamed once: one thread reads and hashes the compressed bytes and
//! inflates them; the other hashes the tar (the layer's DiffID) and applies it. Both digests
//! are checked at the end of the stream. The bundle is built in a temporary directory next to
//! its final place (mode 0700) and renamed into place only when everything verified, so a
//! failed unpack leaves nothing behind.

use crate::compress;
use crate::digest::{Digest, HashingReader};
use crate::error::{Context, Error, Result};
use crate::explain;
use crate::explain::human_size;
use crate::fsroot::Root;
use crate::layer;
use crate::oci::{self, Descriptor};
use crate::runtime;
use crate::bundle::{self, BundleInfo, Storage};
use crate::store::{Image, Store};
use crate::rootless;
use crate::userns::{self, Mapping};
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Create an empty root filesystem directory, mode 0755 whatever the umask and mtime the
/// epoch (a layer that names "./" changes both later), so the same image gives the same
/// tree on every machine and at every hour.
pub fn new_rootfs(rootfs: &Path) -> Result<()> {
    fs::DirBuilder::new().mode(0o755).create(rootfs).ctx(|| format!("create {}", rootfs.display()))?;
    fs::set_permissions(rootfs, fs::Permissions::from_mode(0o755)).ctx(|| format!("chmod {}", rootfs.display()))?;
    crate::fsroot::lutimesat(libc::AT_FDCWD, rootfs.as_os_str(), 0, 0).ctx(|| format!("set times of {}", rootfs.display()))
}

/// Apply every layer of `image` to the directory `rootfs`, base layer first.
pub fn apply_layers(store: &Store, image: &Image, rootfs: &Path) -> Result<()> {
    let root = Root::open(rootfs)?;
    let n = image.manifest.layers.len();
    for (i, (desc, diff_id)) in image.manifest.layers.iter().zip(&image.config.rootfs.diff_ids).enumerate() {
        apply_blob(store, desc, diff_id, &root)
            .map_err(|e| e.context(format!("layer {}/{n} {}", i + 1, desc.digest)))?;
    }
    Ok(())
}

// ANCHOR: apply_blob
/// Apply one layer blob, verifying its digest, size and DiffID as it streams.
pub fn apply_blob(store: &Store, desc: &Descriptor, diff_id: &Digest, root: &Root) -> Result<layer::ApplyStats> {
    apply_blob_as(store, desc, diff_id, root, layer::Whiteouts::Apply)
}

/// [`apply_blob`], with the layer's whiteouts handled as `mode` says (the layer cache keeps
/// them in overlay form).
pub fn apply_blob_as(
    store: &Store,
    desc: &Descriptor,
    diff_id: &Digest,
    root: &Root,
    mode: layer::Whiteouts,
) -> Result<layer::ApplyStats> {
    oci::layer_compression(&desc.media_type)?;
    if desc.media_type == oci::MEDIA_DOCKER_FOREIGN_LAYER && !store.has_blob(&desc.digest) {
        return Err(Error::not_found("foreign layer is not in the store (boxkit never fetches foreign URLs)"));
    }
    let blob = store.open_blob(&desc.digest)?;
    let compressed = Arc::new(Mutex::new(None));
    let reader = HashOnEof { inner: HashingReader::new(blob), out: compressed.clone() };
    let (kind, decoded) = compress::decoder(reader).ctx(|| "read layer")?;
    let mut tar = HashingReader::new(compress::pipelined(decoded));
    explain!(
        "layer {} ({}, {}): inflate, hash and apply to {}",
        desc.digest,
        kind.name(),
        human_size(desc.size),
        root.path().display()
    );
    let stats = layer::apply_as(root, &mut tar, mode)?;
    io::copy(&mut tar, &mut io::sink()).map_err(|e| Error::io("read layer", e))?;
    let (got_diff, _) = tar.finish();
    let got = compressed.lock().unwrap().take();
    match got {
        Some((d, size)) if d == desc.digest && size == desc.size => {}
        Some((d, size)) => {
            return Err(Error::invalid(format!(
                "blob does not match its descriptor: {d} ({size} bytes), expected {} ({} bytes)",
                desc.digest, desc.size
            )))
        }
        // The decoder stopped at the end of its frame without reading on: hash the blob.
        None => {
            let mut h = HashingReader::new(store.open_blob(&desc.digest)?);
            io::copy(&mut h, &mut io::sink()).map_err(|e| Error::io("read layer", e))?;
            let (d, size) = h.finish();
            if d != desc.digest || size != desc.size {
                return Err(Error::invalid(format!("blob does not match its descriptor: got {d} ({size} bytes)")));
            }
        }
    }
    if &got_diff != diff_id {
        return Err(Error::invalid(format!("uncompressed layer hashes to {got_diff}, but the config says {diff_id}")));
    }
    explain!(
        "  {} entries, {} of file data, {} whiteouts; digest and diff_id {} verified",
        stats.entries,
        human_size(stats.bytes),
        stats.whiteouts,
        &diff_id.hex()[..12]
    );
    Ok(stats)
}
// ANCHOR_END: apply_blob

/// Write the bundle `bundle` (config.json + rootfs/ + boxkit.json) for the image `name`.
/// `bundle` must not exist. Returns the record written to `boxkit.json`.
pub fn unpack_bundle(store: &Store, image: &Image, name: &str, bundle: &Path) -> Result<BundleInfo> {
    unpack_bundle_mapped(store, image, name, bundle, None)
}

// ANCHOR: unpack_mapped
/// [`unpack_bundle`] for a container in a user namespace with the maps `ids`, which
/// config.json records: file owners are the image's ids as the host sees them through the
/// maps. Root writes them shifted; anyone else applies the layers in a helper that is root
/// of a user namespace with those maps (see [`rootless`]).
pub fn unpack_bundle_mapped(store: &Store, image: &Image, name: &str, bundle: &Path, ids: Option<&Mapping>) -> Result<BundleInfo> {
    if bundle.exists() {
        return Err(Error::invalid(format!("bundle {} already exists", bundle.display())));
    }
    let parent = match bundle.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let base = bundle.file_name().ok_or_else(|| Error::invalid(format!("bad bundle path {}", bundle.display())))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.tmp-", base.to_string_lossy()))
        .tempdir_in(parent)
        .ctx(|| format!("create a temporary bundle in {}", parent.display()))?;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o700)).ctx(|| "chmod bundle")?;
    let rootfs = tmp.path().join("rootfs");
    explain!("mkdir {} (mode 0700: no other user may reach into the bundle)", bundle.display());
    let fill = || -> Result<()> {
        new_rootfs(&rootfs)?;
        apply_layers(store, image, &rootfs)?;
        let mut spec = runtime::spec_from_image(&image.config, &rootfs, &runtime::hostname_for(bundle))?;
        if let Some(m) = ids {
            userns::write_into_spec(&mut spec, m);
        }
        let json = serde_json::to_vec_pretty(&spec).expect("serializing a spec cannot fail");
        fs::write(tmp.path().join("config.json"), json).ctx(|| "write config.json")?;
        explain!("write config.json: args {:?}", spec.process.as_ref().map(|p| &p.args));
        Ok(())
    };
    let filled = match ids {
        None => fill(),
        // The bundle directory goes to the container's root too: it must reach its rootfs.
        Some(m) if nix::unistd::geteuid().is_root() => fill().and_then(|_| rootless::shift_ids(&rootfs, m)).and_then(|_| {
            let (uid, gid) = (userns::to_host(&m.uids, 0), userns::to_host(&m.gids, 0));
            std::os::unix::fs::chown(tmp.path(), uid, gid).ctx(|| "chown the bundle to the container's root")
        }),
        Some(m) => rootless::as_mapped_root(m, fill).map_err(|e| few_ids_hint(e, m)),
    };
    if let Err(e) = filled {
        let _ = rootless::remove_tree(&rootfs, ids);
        return Err(e);
    }
    let info = BundleInfo {
        image: name.to_string(),
        manifest: image.descriptor.digest.clone(),
        storage: Storage::Copy,
        layers: image.config.rootfs.diff_ids.clone(),
    };
    bundle::write_info(tmp.path(), &info)?;
    // What was unpacked, for box-commit to compare the rootfs against later.
    let n = crate::mtree::record(&rootfs, &tmp.path().join(crate::mtree::RECORD_FILE))?;
    explain!("write {} ({n} paths: type, mode, owner, times, sha256)", crate::mtree::RECORD_FILE);
    let tmp = tmp.keep();
    // RENAME_NOREPLACE: a directory created at BUNDLE meanwhile is never replaced.
    if let Err(e) = rename_noreplace(&tmp, bundle) {
        let _ = rootless::remove_tree(&tmp, ids);
        return Err(Error::io(format!("rename into {}", bundle.display()), e));
    }
    Ok(info)
}
// ANCHOR_END: unpack_mapped

/// A chown to an unmapped id fails with EINVAL: say why, when only one id is mapped.
fn few_ids_hint(e: Error, m: &Mapping) -> Error {
    let ids: u64 = m.uids.iter().map(|r| r.size as u64).sum();
    let msg = e.to_string();
    if ids == 1 && msg.contains("chown") && msg.contains("Invalid argument") {
        return Error::new(e.kind(), format!("{msg} (only your own id is mapped: give your user ranges in /etc/subuid and /etc/subgid and install newuidmap, package uidmap)"));
    }
    e
}

/// Hashes the compressed stream and hands the result over when it reaches the end.
struct HashOnEof<R> {
    inner: HashingReader<R>,
    out: Arc<Mutex<Option<(Digest, u64)>>>,
}

impl<R: Read> Read for HashOnEof<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let mut out = self.out.lock().unwrap();
            if out.is_none() {
                *out = Some(self.inner.current());
            }
        }
        Ok(n)
    }
}

/// rename(2) that never replaces what is at `to` (renameat2 `RENAME_NOREPLACE`).
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let f = std::ffi::CString::new(from.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let t = std::ffi::CString::new(to.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: two valid C strings.
    let r = unsafe { libc::renameat2(libc::AT_FDCWD, f.as_ptr(), libc::AT_FDCWD, t.as_ptr(), libc::RENAME_NOREPLACE) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
