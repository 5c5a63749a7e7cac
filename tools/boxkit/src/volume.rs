//! Named and anonymous volumes: directories kept under `$BOXKIT_ROOT/volumes` that outlive
//! the containers mounting them.
//!
//! Reference: Docker's "local" volume driver and its layout (`/var/lib/docker/volumes/NAME/
//! _data`), docker-volume-create(1), docker-volume-inspect(1); flock(2) for "in use".
//!
//! ```text
//! $BOXKIT_ROOT/volumes/NAME/_data         what the container sees at its mount point
//! $BOXKIT_ROOT/volumes/NAME/volume.json   {"Name", "CreatedAt", "Labels"}
//! $BOXKIT_ROOT/volumes/.tmp-*             volumes being created (renamed into place)
//! ```
//!
//! A volume is in use while some box-spawn (foreground, or the supervisor of a detached
//! container) holds a shared `flock` on its directory: the lock goes away with the process,
//! whatever killed it, so no stale pid can keep a volume busy and no recycled pid can make
//! a busy one look free. `remove` takes the lock exclusively without waiting.

use crate::error::{Context, Error, Result};
use crate::explain;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Docker's label on the volumes it makes for an image's `VOLUME`s.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// What `volume.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "CreatedAt")]
    pub created_at: String,
    #[serde(rename = "Labels", default)]
    pub labels: Map<String, Value>,
}

/// `$BOXKIT_ROOT/volumes`.
pub fn volumes_dir(root: &Path) -> PathBuf {
    root.join("volumes")
}

/// The directory a container mounts: `volumes/NAME/_data`.
pub fn data_dir(root: &Path, name: &str) -> PathBuf {
    volumes_dir(root).join(name).join("_data")
}

// ANCHOR: validate_name
/// Docker's rule for volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+` (so at least two
/// characters, and never `.`, `..` or anything with a `/`).
pub fn validate_name(name: &str) -> Result<()> {
    crate::state::docker_name(name, 255, "volume", " (a host path must be absolute)")
}
// ANCHOR_END: validate_name

/// A 64-hex name for an anonymous volume, from the kernel's random source (made as a
/// container id is).
pub fn anonymous_name() -> Result<String> {
    crate::state::new_id()
}

// ANCHOR: create
/// Create volume `name` unless it exists; returns whether it was made now. The volume is
/// built in a temporary directory and renamed into place, so a volume seen under its name
/// is always whole, and two concurrent creations make one volume.
pub fn create(root: &Path, name: &str, labels: Map<String, Value>) -> Result<bool> {
    validate_name(name)?;
    let dir = volumes_dir(root);
    if dir.join(name).join("volume.json").exists() {
        return Ok(false);
    }
    std::fs::create_dir_all(&dir).ctx(|| format!("create {}", dir.display()))?;
    let tmp = tempfile::Builder::new().prefix(".tmp-").tempdir_in(&dir).ctx(|| format!("create a volume in {}", dir.display()))?;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o701)).ctx(|| "chmod volume directory")?;
    let data = tmp.path().join("_data");
    std::fs::create_dir(&data).ctx(|| "create _data")?;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).ctx(|| "chmod _data")?;
    let rec = Record { name: name.to_string(), created_at: crate::state::now(), labels };
    let json = serde_json::to_vec_pretty(&rec).expect("serializing a volume record cannot fail");
    File::create(tmp.path().join("volume.json")).and_then(|mut f| f.write_all(&json)).ctx(|| "write volume.json")?;
    let from = std::ffi::CString::new(tmp.path().as_os_str().as_encoded_bytes()).unwrap();
    let to = std::ffi::CString::new(dir.join(name).as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: two valid C strings; RENAME_NOREPLACE never replaces an existing volume.
    let r = unsafe { libc::renameat2(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::RENAME_NOREPLACE) };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EEXIST) {
            return Ok(false);
        }
        return Err(Error::io(format!("create volume {name}"), e));
    }
    // The directory is in place under its name: nothing left for the TempDir to remove.
    let _ = tmp.keep();
    explain!("created volume {name} at {}", data_dir(root, name).display());
    Ok(true)
}
// ANCHOR_END: create

/// Read a volume's record.
pub fn read(root: &Path, name: &str) -> Result<Record> {
    validate_name(name)?;
    let p = volumes_dir(root).join(name).join("volume.json");
    let bytes = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::not_found(format!("no volume {name}"))),
        Err(e) => return Err(Error::io(format!("read {}", p.display()), e)),
    };
    serde_json::from_slice(&bytes).map_err(|e| Error::invalid(format!("{}: {e}", p.display())))
}

/// The names of every volume, sorted.
pub fn list(root: &Path) -> Result<Vec<String>> {
    let dir = volumes_dir(root);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("read {}", dir.display()), e)),
    };
    let mut out: Vec<String> = rd
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| validate_name(n).is_ok() && dir.join(n).join("volume.json").exists())
        .collect();
    out.sort();
    Ok(out)
}

/// What `docker volume inspect` prints for one volume.
pub fn inspect(root: &Path, name: &str) -> Result<Value> {
    let rec = read(root, name)?;
    Ok(serde_json::json!({
        "CreatedAt": rec.created_at,
        "Driver": "local",
        "Labels": rec.labels,
        "Mountpoint": data_dir(root, name),
        "Name": rec.name,
        "Options": null,
        "Scope": "local",
    }))
}

// ANCHOR: hold
/// Mark the volume in use for as long as the returned file is open (a shared flock on its
/// directory). The lock is taken on the directory found under the name *after* locking, so
/// a volume removed in between is reported missing rather than silently used.
pub fn hold(root: &Path, name: &str) -> Result<File> {
    let dir = volumes_dir(root).join(name);
    let f = File::open(&dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::not_found(format!("no volume {name}")),
        _ => Error::io(format!("open volume {name}"), e),
    })?;
    crate::fsroot::flock(&f, libc::LOCK_SH).ctx(|| format!("lock volume {name}"))?;
    let same = std::fs::metadata(&dir).map(|m| m.ino() == f.metadata().map(|n| n.ino()).unwrap_or(0)).unwrap_or(false);
    if !same {
        return Err(Error::not_found(format!("volume {name} was removed while starting")));
    }
    Ok(f)
}

/// Remove a volume and its data. Refused while a container uses it.
pub fn remove(root: &Path, name: &str) -> Result<()> {
    read(root, name)?;
    let dir = volumes_dir(root).join(name);
    let f = File::open(&dir).ctx(|| format!("open volume {name}"))?;
    match crate::fsroot::flock(&f, libc::LOCK_EX | libc::LOCK_NB) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {
            return Err(Error::invalid(format!("volume {name} is in use by a running container")))
        }
        Err(e) => return Err(Error::io(format!("lock volume {name}"), e)),
    }
    // Rename first: the name disappears in one step, and a failed removal leaves only a
    // `.tmp-` directory, never half a volume under its name.
    let gone = volumes_dir(root).join(format!(".tmp-rm-{name}"));
    std::fs::rename(&dir, &gone).ctx(|| format!("remove volume {name}"))?;
    drop(f);
    std::fs::remove_dir_all(&gone).ctx(|| format!("remove {}", gone.display()))?;
    explain!("removed volume {name}");
    Ok(())
}
// ANCHOR_END: hold

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_docker() {
        for ok in ["db", "my_vol.1", "A-b", "0x"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a", ".x", "..", "-x", "a/b", "../etc", "a b", "_x"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn create_list_inspect_hold_remove() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        assert!(create(r, "data", Map::new()).unwrap());
        assert!(!create(r, "data", Map::new()).unwrap(), "a second create is a no-op");
        std::fs::write(data_dir(r, "data").join("f"), "x").unwrap();
        assert_eq!(list(r).unwrap(), ["data"]);
        let v = inspect(r, "data").unwrap();
        assert_eq!(v["Mountpoint"], data_dir(r, "data").to_str().unwrap());
        assert_eq!(v["Driver"], "local");
        let held = hold(r, "data").unwrap();
        assert!(remove(r, "data").unwrap_err().to_string().contains("in use"));
        drop(held);
        remove(r, "data").unwrap();
        assert!(list(r).unwrap().is_empty());
        assert_eq!(std::fs::read_dir(volumes_dir(r)).unwrap().count(), 0, "leftovers");
        assert_eq!(remove(r, "data").unwrap_err().kind(), crate::Kind::NotFound);
    }
}
