//! The mounts of one run: `-v HOST:CTR[:ro]`, `-v NAME:CTR[:ro]`, `-v CTR`, `--tmpfs
//! CTR[:OPTS]` and the image's `Volumes`, turned into runtime-spec mounts that box-spawn
//! performs like those of config.json (every target resolved inside the rootfs).
//!
//! Reference: docker-run(1) "--volume", "--tmpfs"; the image spec's config `Volumes`
//! (image-spec config.md); tmpfs(5); containerd CVE-2022-23648 (an image volume of
//! `/../../etc/shadow` copied the host's file) and runc CVE-2019-16884 (a mount over /proc
//! defeated the LSM profile): targets are cleaned as if rooted at `/`, resolved with
//! `RESOLVE_IN_ROOT`, and nothing may be mounted at or below /proc.

use crate::bundle;
use crate::copyup;
use crate::error::{Context, Error, Result};
use crate::explain;
use crate::fsroot::{CleanPath, Root};
use crate::runtime::Mount;
use crate::volume;
use std::fs::File;
use std::path::{Path, PathBuf};

/// Where a `-v` mount's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A host directory or file (absolute, existing).
    Host(PathBuf),
    /// A named volume, created on first use.
    Named(String),
    /// A fresh volume with a random 64-hex name (`-v /data`, or an image's `Volumes`).
    Anonymous,
}

/// One `-v` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeArg {
    pub source: Source,
    pub target: CleanPath,
    pub readonly: bool,
}

// ANCHOR: parse_volume
/// Parse `-v SRC:CTR[:ro|rw]` or `-v CTR`. A source starting with `/` is a host path;
/// anything else must be a valid volume name.
pub fn parse_volume(arg: &str) -> Result<VolumeArg> {
    let parts: Vec<&str> = arg.split(':').collect();
    let (src, ctr, opts) = match parts.as_slice() {
        [ctr] => (None, *ctr, None),
        [src, ctr] => (Some(*src), *ctr, None),
        [src, ctr, opts] => (Some(*src), *ctr, Some(*opts)),
        _ => return Err(Error::invalid(format!("-v {arg:?}: expected SRC:CTR[:ro]"))),
    };
    let readonly = match opts {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(o) => return Err(Error::invalid(format!("-v {arg:?}: unknown option {o:?} (ro or rw)"))),
    };
    let target = container_path(ctr, "-v")?;
    let source = match src {
        None => Source::Anonymous,
        Some(s) if s.starts_with('/') => Source::Host(PathBuf::from(s)),
        Some(s) => {
            volume::validate_name(s)?;
            Source::Named(s.to_string())
        }
    };
    Ok(VolumeArg { source, target, readonly })
}
// ANCHOR_END: parse_volume

/// A container path: absolute, cleaned, not `/`, not at or below /proc.
pub fn container_path(p: &str, flag: &str) -> Result<CleanPath> {
    if !p.starts_with('/') {
        return Err(Error::invalid(format!("{flag} {p:?}: the container path must be absolute")));
    }
    let clean = CleanPath::new(p.as_bytes());
    if clean.is_root() {
        return Err(Error::invalid(format!("{flag} {p:?}: a mount over / is not allowed")));
    }
    if clean.components().first().is_some_and(|c| c == "proc") {
        return Err(Error::invalid(format!("{flag} {p:?}: mounts at or below /proc are refused (runc CVE-2019-16884)")));
    }
    Ok(clean)
}

// ANCHOR: parse_tmpfs
/// `--tmpfs CTR[:OPTS]`: a tmpfs, `nosuid,nodev,noexec` as Docker makes it; OPTS may add
/// `size=`, `mode=`, `uid=`, `gid=`, `nr_inodes=`, `ro`, `rw`, `exec`, `noexec`.
pub fn parse_tmpfs(arg: &str) -> Result<Mount> {
    let (ctr, opts) = arg.split_once(':').unwrap_or((arg, ""));
    let target = container_path(ctr, "--tmpfs")?;
    let mut options: Vec<String> = ["nosuid", "nodev", "noexec"].iter().map(|s| s.to_string()).collect();
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        let key = o.split_once('=').map(|(k, _)| k).unwrap_or(o);
        match (key, o.contains('=')) {
            ("exec", false) => options.retain(|x| x != "noexec"),
            ("noexec" | "ro" | "rw", false) => options.push(o.to_string()),
            ("size" | "mode" | "uid" | "gid" | "nr_inodes" | "nr_blocks", true) => options.push(o.to_string()),
            _ => return Err(Error::invalid(format!("--tmpfs {arg:?}: option {o:?} is not allowed"))),
        }
    }
    Ok(Mount { destination: target.to_string(), kind: Some("tmpfs".into()), source: Some("tmpfs".into()), options })
}
// ANCHOR_END: parse_tmpfs

/// The mounts a run adds, and the locks that mark its volumes in use (keep them open until
/// the container has exited).
pub struct Plan {
    pub mounts: Vec<Mount>,
    pub volumes: Vec<String>,
    pub held: Vec<File>,
}

// ANCHOR: plan
/// Prepare every mount of a run: create named and anonymous volumes, fill an empty one
/// with the image's content at its target (as Docker does), and return the mounts,
/// shallowest target first so that nested ones land on top.
pub fn plan(root: &Path, bundle: &Path, rootfs: &Path, vols: &[VolumeArg], tmpfs: &[Mount]) -> Result<Plan> {
    let mut all: Vec<VolumeArg> = vols.to_vec();
    let taken = |t: &CleanPath, all: &[VolumeArg]| all.iter().any(|v| &v.target == t) || tmpfs.iter().any(|m| m.destination == t.to_string());
    for t in image_volumes(root, bundle)? {
        let target = CleanPath::new(t.as_bytes());
        if target.is_root() {
            return Err(Error::invalid(format!("image volume {t:?} names the root directory")));
        }
        if !taken(&target, &all) {
            container_path(&target.to_string(), "image volume")?;
            all.push(VolumeArg { source: Source::Anonymous, target, readonly: false });
        }
    }
    let image = Root::open(rootfs)?;
    let mut plan = Plan { mounts: Vec::new(), volumes: Vec::new(), held: Vec::new() };
    for v in &all {
        let mut options = vec!["rbind".to_string(), "nodev".to_string()];
        if v.readonly {
            options.push("ro".into());
        }
        let source = match &v.source {
            Source::Host(p) => {
                std::fs::metadata(p).ctx(|| format!("-v {}: bind source", p.display()))?;
                p.clone()
            }
            Source::Named(n) => use_volume(root, n, &image, &v.target, serde_json::Map::new(), &mut plan)?,
            Source::Anonymous => {
                let mut labels = serde_json::Map::new();
                labels.insert(volume::ANONYMOUS_LABEL.into(), "".into());
                use_volume(root, &volume::anonymous_name()?, &image, &v.target, labels, &mut plan)?
            }
        };
        plan.mounts.push(Mount {
            destination: v.target.to_string(),
            kind: Some("bind".into()),
            source: Some(source.to_string_lossy().into_owned()),
            options,
        });
    }
    plan.mounts.extend(tmpfs.iter().cloned());
    plan.mounts.sort_by_key(|m| CleanPath::new(m.destination.as_bytes()).components().len());
    Ok(plan)
}
// ANCHOR_END: plan

/// Create (if needed), lock, and fill on first use; returns the directory to bind.
fn use_volume(
    root: &Path,
    name: &str,
    image: &Root,
    target: &CleanPath,
    labels: serde_json::Map<String, serde_json::Value>,
    plan: &mut Plan,
) -> Result<PathBuf> {
    volume::create(root, name, labels)?;
    let held = volume::hold(root, name)?;
    let data = volume::data_dir(root, name);
    copyup::fill_if_empty(image, target, &data).ctx(|| format!("fill volume {name} from the image's {target}"))?;
    plan.held.push(held);
    plan.volumes.push(name.to_string());
    Ok(data)
}

/// The image's `Volumes`, from the image the bundle's boxkit.json names. A bundle without
/// that record (made by umoci or `runc spec`), or whose image is no longer in this store,
/// has none that box-spawn can know of.
pub fn image_volumes(root: &Path, bundle_dir: &Path) -> Result<Vec<String>> {
    let Ok(info) = bundle::read_info(bundle_dir) else {
        explain!("no boxkit.json in the bundle: no image volumes");
        return Ok(Vec::new());
    };
    let Ok(store) = crate::store::Store::open(&root.join("images")) else {
        explain!("no image store at {}: no image volumes", root.join("images").display());
        return Ok(Vec::new());
    };
    if !store.has_blob(&info.manifest) {
        explain!("image {} is not in the store: no image volumes", info.manifest);
        return Ok(Vec::new());
    }
    let manifest: crate::oci::Manifest = crate::oci::from_json(&store.read_blob(&info.manifest)?, "image manifest")?;
    let config: crate::oci::ImageConfig = crate::oci::from_json(&store.read_blob(&manifest.config.digest)?, "image config")?;
    let mut v: Vec<String> = config.config.volumes.map(|m| m.keys().cloned().collect()).unwrap_or_default();
    v.sort();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_arguments() {
        let v = parse_volume("/srv/data:/data:ro").unwrap();
        assert_eq!((v.source, v.target.to_string(), v.readonly), (Source::Host("/srv/data".into()), "/data".into(), true));
        let v = parse_volume("db:/var/lib/db").unwrap();
        assert_eq!(v.source, Source::Named("db".into()));
        assert_eq!(parse_volume("/cache").unwrap().source, Source::Anonymous);
        assert_eq!(parse_volume("db:/x/../../y").unwrap().target.to_string(), "/y");
        for bad in ["db:rel", "./data:/x", "d:/x:rx", "db:/", "db:/proc", "db:/proc/sys", "/../proc/x", "a:b:c:d"] {
            assert!(parse_volume(bad).is_err(), "{bad}");
        }
        assert!(parse_volume("db:/proc/x").unwrap_err().to_string().contains("CVE-2019-16884"));
    }

    #[test]
    fn tmpfs_arguments() {
        let m = parse_tmpfs("/run:size=64m,mode=1777,exec").unwrap();
        assert_eq!(m.destination, "/run");
        assert_eq!(m.options, ["nosuid", "nodev", "size=64m", "mode=1777"]);
        assert!(parse_tmpfs("/run:dev").is_err());
        assert!(parse_tmpfs("/run:suid").is_err());
        assert!(parse_tmpfs("/proc/x").is_err());
    }
}
