//! The runtime bundle's `config.json`: what process to run, as whom, with which mounts and
//! namespaces.
//!
//! Reference: OCI runtime spec v1.2, config.md and config-linux.md
//! (<https://github.com/opencontainers/runtime-spec>). boxkit writes the same defaults as
//! `runc spec` (mounts, masked and read-only paths, rlimits) and Docker's default capability
//! set, so a bundle from `box-unpack` runs under runc or crun unchanged, and `box-spawn`
//! reads bundles that umoci or `runc spec` wrote.

use crate::error::{Context, Error, Result};
use crate::fsroot::{CleanPath, Root};
use crate::oci::ImageConfig;
use crate::passwd;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// 1.1.0: the newest version that crun 1.8 (Debian 12) and runc 1.1 both accept.
pub const OCI_VERSION: &str = "1.1.0";

// ANCHOR: spec_struct
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub oci_version: String,
    pub process: Option<Process>,
    pub root: Option<RootConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default)]
    pub mounts: Vec<Mount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linux: Option<Linux>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
// ANCHOR_END: spec_struct

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    #[serde(default)]
    pub terminal: bool,
    pub user: User,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    pub cwd: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rlimits: Vec<Rlimit>,
    #[serde(default)]
    pub no_new_privileges: bool,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub umask: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Capabilities {
    #[serde(default)]
    pub bounding: Vec<String>,
    #[serde(default)]
    pub effective: Vec<String>,
    #[serde(default)]
    pub inheritable: Vec<String>,
    #[serde(default)]
    pub permitted: Vec<String>,
    #[serde(default)]
    pub ambient: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rlimit {
    #[serde(rename = "type")]
    pub kind: String,
    pub hard: u64,
    pub soft: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootConfig {
    pub path: String,
    #[serde(default)]
    pub readonly: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mount {
    pub destination: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Linux {
    #[serde(default)]
    pub namespaces: Vec<Namespace>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masked_paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub readonly_paths: Vec<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Namespace {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

// ANCHOR: runtime_defaults
/// Docker's default capability set (moby `oci/caps/defaults.go`). `CAP_MKNOD` is safe to
/// grant because box-spawn puts a device filter on the container's cgroup (devices.rs): a
/// node for the host's disk can be made but not opened. Where box-spawn cannot install that
/// filter it drops `CAP_MKNOD` and keeps the rootfs `nodev` (hardening.rs).
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// runc's default masked paths: hidden behind /dev/null or an empty read-only tmpfs.
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// runc's default read-only paths.
pub const READONLY_PATHS: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];
// ANCHOR_END: runtime_defaults

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn mount(dest: &str, kind: &str, source: &str, options: &[&str]) -> Mount {
    Mount {
        destination: dest.to_string(),
        kind: Some(kind.to_string()),
        source: Some(source.to_string()),
        options: options.iter().map(|s| s.to_string()).collect(),
    }
}

// ANCHOR: default_mounts
/// The mounts `runc spec` writes (less the cgroup mount, which needs a cgroup namespace).
pub fn default_mounts() -> Vec<Mount> {
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"]),
        mount("/dev/pts", "devpts", "devpts", &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
        mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"]),
    ]
}
// ANCHOR_END: default_mounts

// ANCHOR: spec_from_image
/// Write a runtime config for an image whose root filesystem is at `rootfs`.
/// The image's `User` is resolved against the image's own `/etc/passwd` and `/etc/group`.
pub fn spec_from_image(config: &ImageConfig, rootfs: &Path, hostname: &str) -> Result<Spec> {
    let rc = &config.config;
    let mut args: Vec<String> = rc.entrypoint.clone().unwrap_or_default();
    args.extend(rc.cmd.clone().unwrap_or_default());
    let mut env = rc.env.clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.push(format!("HOSTNAME={hostname}"));
    }
    let root = Root::open(rootfs)?;
    let user = passwd::resolve_user(&root, rc.user.as_deref().unwrap_or(""))?;
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    let cwd = match rc.working_dir.as_deref() {
        Some(w) if !w.is_empty() => CleanPath::new(w.as_bytes()).to_string(),
        _ => "/".to_string(),
    };
    let caps: Vec<String> = DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()).collect();
    // An image's volumes are directories of the rootfs, resolved inside it (a hostile
    // `/../../etc/shadow` stays inside) and created if missing.
    if let Some(vols) = &rc.volumes {
        for v in vols.keys() {
            let p = CleanPath::new(v.as_bytes());
            if p.is_root() {
                return Err(Error::invalid(format!("image volume {v:?} names the root directory")));
            }
            root.dir(&p, true).ctx(|| format!("image volume {v:?}"))?;
        }
    }
    Ok(Spec {
        oci_version: OCI_VERSION.to_string(),
        process: Some(Process {
            terminal: false,
            user: User { uid: user.uid, gid: user.gid, umask: None, additional_gids: user.additional_gids },
            args,
            env,
            cwd,
            capabilities: Some(Capabilities {
                bounding: caps.clone(),
                effective: caps.clone(),
                inheritable: Vec::new(),
                permitted: caps,
                ambient: Vec::new(),
            }),
            rlimits: vec![Rlimit { kind: "RLIMIT_NOFILE".to_string(), hard: 1024, soft: 1024 }],
            no_new_privileges: true,
            extra: Map::new(),
        }),
        root: Some(RootConfig { path: "rootfs".to_string(), readonly: false }),
        hostname: Some(hostname.to_string()),
        mounts: default_mounts(),
        linux: Some(Linux {
            namespaces: ["pid", "network", "ipc", "uts", "mount"]
                .iter()
                .map(|k| Namespace { kind: k.to_string(), path: None })
                .collect(),
            masked_paths: MASKED_PATHS.iter().map(|s| s.to_string()).collect(),
            readonly_paths: READONLY_PATHS.iter().map(|s| s.to_string()).collect(),
            extra: Map::new(),
        }),
        annotations: BTreeMap::new(),
        extra: Map::new(),
    })
}
// ANCHOR_END: spec_from_image

/// Read and check a bundle's config.json.
pub fn load(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let bytes = std::fs::read(&path).ctx(|| format!("{} is not a bundle", bundle.display()))?;
    let spec: Spec = serde_json::from_slice(&bytes)
        .map_err(|e| Error::invalid(format!("{}: not a valid runtime config: {e}", path.display())))?;
    if spec.process.is_none() {
        return Err(Error::invalid(format!("{}: no process to run", path.display())));
    }
    Ok(spec)
}

/// A host name from a bundle's directory name: letters, digits and '-', at most 63.
pub fn hostname_for(bundle: &Path) -> String {
    let base = bundle.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let mut h: String = base
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c.to_ascii_lowercase() } else { '-' })
        .collect();
    h = h.trim_matches('-').chars().take(63).collect();
    if h.is_empty() { "boxkit".to_string() } else { h }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_from_bundle_names() {
        assert_eq!(hostname_for(Path::new("/x/Web_1")), "web-1");
        assert_eq!(hostname_for(Path::new("/x/...")), "boxkit");
        assert_eq!(hostname_for(Path::new(&"a".repeat(80))).len(), 63);
    }

    #[test]
    fn args_join_entrypoint_and_cmd() {
        let t = tempfile::tempdir().unwrap();
        let config: ImageConfig = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},
                "config":{"Entrypoint":["/bin/app"],"Cmd":["--flag"],"Env":["PATH=/x"],"WorkingDir":"srv/../data"}}"#,
        )
        .unwrap();
        let spec = spec_from_image(&config, t.path(), "h").unwrap();
        let p = spec.process.unwrap();
        assert_eq!(p.args, ["/bin/app", "--flag"]);
        assert_eq!(p.env, ["PATH=/x", "HOSTNAME=h", "HOME=/"]);
        assert_eq!(p.cwd, "/data");
        assert_eq!((p.user.uid, p.user.gid), (0, 0));
        assert!(spec.linux.unwrap().namespaces.iter().any(|n| n.kind == "pid"));
    }
}
