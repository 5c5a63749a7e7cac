//! `docker run`'s process options, applied to a bundle's runtime config before it runs:
//! `-e`, `-w`, `-u`, `--hostname`.
//!
//! Reference: docker-run(1) ("--env", "--workdir", "--user", "--hostname"), the OCI runtime
//! spec config.md ("process", "hostname"), passwd(5) and group(5). The spec is edited in
//! memory only: `config.json` on disk stays what `box-unpack` (or umoci, or `runc spec`) wrote,
//! so the same bundle can be run again with other options.

use crate::error::{Context, Error, Result};
use crate::explain;
use crate::fsroot::{CleanPath, Root};
use crate::passwd;
use crate::runtime::Spec;
use std::path::{Path, PathBuf};

/// The options of one run.
#[derive(Debug, Clone, Default)]
pub struct ProcessOptions {
    /// `KEY=VAL`, or `KEY` to copy the caller's value (left out when the caller has none).
    pub env: Vec<String>,
    /// The working directory (absolute; created in the rootfs when missing, as Docker does).
    pub workdir: Option<String>,
    /// Docker's `USER` forms: `name`, `uid`, `name:group`, `uid:gid`.
    pub user: Option<String>,
    pub hostname: Option<String>,
}

/// The rootfs a spec names, absolute.
pub fn rootfs_of(bundle: &Path, spec: &Spec) -> Result<PathBuf> {
    let rel = spec.root.as_ref().map(|r| r.path.clone()).unwrap_or_else(|| "rootfs".into());
    let p = bundle.join(rel);
    std::fs::canonicalize(&p).ctx(|| format!("rootfs {}", p.display()))
}

// ANCHOR: apply
/// Edit the spec's process for one run. `caller_env` looks up the caller's variables (for
/// `-e KEY`); the user is resolved in the image's own /etc/passwd and /etc/group.
pub fn apply(spec: &mut Spec, rootfs: &Path, o: &ProcessOptions, caller_env: impl Fn(&str) -> Option<String>) -> Result<()> {
    let has_uts = spec.linux.as_ref().is_some_and(|l| l.namespaces.iter().any(|n| n.kind == "uts"));
    let process = spec.process.as_mut().ok_or_else(|| Error::invalid("config.json has no process"))?;
    let mut given_home = false;
    for e in &o.env {
        let kv = match e.split_once('=') {
            Some(("", _)) => return Err(Error::invalid(format!("-e {e:?}: the variable has no name"))),
            Some(_) => e.clone(),
            None if e.is_empty() => return Err(Error::invalid("-e: empty variable name")),
            None => match caller_env(e) {
                Some(v) => format!("{e}={v}"),
                None => continue,
            },
        };
        given_home |= kv.starts_with("HOME=");
        set_env(&mut process.env, kv);
    }
    if let Some(u) = &o.user {
        let root = Root::open(rootfs)?;
        let r = passwd::resolve_user(&root, u)?;
        explain!("user {u:?} in the image's /etc/passwd: uid {} gid {} groups {:?}", r.uid, r.gid, r.additional_gids);
        process.user.uid = r.uid;
        process.user.gid = r.gid;
        process.user.additional_gids = r.additional_gids;
        if !given_home {
            set_env(&mut process.env, format!("HOME={}", r.home));
        }
    }
    if let Some(w) = &o.workdir {
        if !w.starts_with('/') {
            return Err(Error::invalid(format!("working directory {w:?} is not an absolute path")));
        }
        let clean = CleanPath::new(w.as_bytes());
        // Created inside the root (a symlink on the way cannot lead out), as Docker does.
        Root::open(rootfs)?.dir(&clean, true).ctx(|| format!("working directory {w}"))?;
        process.cwd = clean.to_string();
    }
    if let Some(h) = &o.hostname {
        check_hostname(h)?;
        if !has_uts {
            return Err(Error::invalid("--hostname needs a uts namespace, and config.json asks for none"));
        }
        set_env(&mut process.env, format!("HOSTNAME={h}"));
        spec.hostname = Some(h.clone());
    }
    Ok(())
}
// ANCHOR_END: apply

/// Replace `KEY=…` in `env`, or append it.
fn set_env(env: &mut Vec<String>, kv: String) {
    let key = kv.split_once('=').map(|(k, _)| k).unwrap_or(&kv).to_string();
    match env.iter_mut().find(|e| e.split_once('=').map(|(k, _)| k) == Some(key.as_str())) {
        Some(slot) => *slot = kv,
        None => env.push(kv),
    }
}

/// A host name as sethostname(2) takes it and RFC 1123 allows: labels of letters, digits
/// and '-', joined by '.', 64 bytes at most.
pub fn check_hostname(h: &str) -> Result<()> {
    let ok = !h.is_empty()
        && h.len() <= 64
        && h.split('.').all(|l| {
            !l.is_empty() && !l.starts_with('-') && !l.ends_with('-') && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok { Ok(()) } else { Err(Error::invalid(format!("{h:?} is not a valid host name"))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle() -> (tempfile::TempDir, Spec) {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("rootfs/etc")).unwrap();
        std::fs::write(t.path().join("rootfs/etc/passwd"), "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n").unwrap();
        std::fs::write(t.path().join("rootfs/etc/group"), "root:x:0:\napp:x:1000:\nstaff:x:50:app\n").unwrap();
        let config: crate::oci::ImageConfig =
            serde_json::from_str(r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{"Env":["A=1"]}}"#).unwrap();
        let spec = crate::runtime::spec_from_image(&config, &t.path().join("rootfs"), "h").unwrap();
        (t, spec)
    }

    #[test]
    fn env_user_workdir_and_hostname() {
        let (t, mut spec) = bundle();
        let o = ProcessOptions {
            env: vec!["A=2".into(), "B".into(), "MISSING".into(), "C=x=y".into()],
            workdir: Some("/srv/../data".into()),
            user: Some("app".into()),
            hostname: Some("web.local".into()),
        };
        apply(&mut spec, &t.path().join("rootfs"), &o, |k| (k == "B").then(|| "from-caller".to_string())).unwrap();
        let p = spec.process.as_ref().unwrap();
        assert!(p.env.contains(&"A=2".to_string()) && !p.env.contains(&"A=1".to_string()));
        assert!(p.env.contains(&"B=from-caller".to_string()));
        assert!(!p.env.iter().any(|e| e.starts_with("MISSING")));
        assert!(p.env.contains(&"C=x=y".to_string()));
        assert!(p.env.contains(&"HOME=/home/app".to_string()));
        assert!(p.env.contains(&"HOSTNAME=web.local".to_string()));
        assert_eq!((p.user.uid, p.user.gid, p.user.additional_gids.clone()), (1000, 1000, vec![50]));
        assert_eq!(p.cwd, "/data");
        assert!(t.path().join("rootfs/data").is_dir());
        assert_eq!(spec.hostname.as_deref(), Some("web.local"));
    }

    #[test]
    fn bad_options_are_refused() {
        let (t, mut spec) = bundle();
        let r = t.path().join("rootfs");
        let bad = |o: ProcessOptions, spec: &mut Spec| apply(spec, &r, &o, |_| None).unwrap_err().to_string();
        assert!(bad(ProcessOptions { user: Some("ghost".into()), ..Default::default() }, &mut spec).contains("not in the image"));
        assert!(bad(ProcessOptions { workdir: Some("rel".into()), ..Default::default() }, &mut spec).contains("absolute"));
        assert!(bad(ProcessOptions { hostname: Some("-x".into()), ..Default::default() }, &mut spec).contains("host name"));
        assert!(bad(ProcessOptions { env: vec!["=v".into()], ..Default::default() }, &mut spec).contains("no name"));
    }
}
