//! Registry authentication: challenges, tokens, and the credentials Docker stores.
//!
//! Reference: distribution spec "Token Authentication Specification"
//! (<https://distribution.github.io/distribution/spec/auth/token/>), RFC 7235 (the
//! `WWW-Authenticate` challenge), RFC 7617 (Basic), and Docker's `config.json` (`auths`
//! entries with base64 `user:password`), so an existing `docker login` keeps working.
//!
//! The flow: a request without credentials gets `401` and a challenge. `Basic` means: send
//! the user and password with every request. `Bearer realm=…,service=…,scope=…` means: ask
//! the realm for a token (with Basic credentials if we have any, anonymously otherwise), then
//! send `Authorization: Bearer <token>` until it expires.

use crate::error::{Context, Error, Result};
use base64::Engine;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A user name and password (or identity token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <hidden>)", self.username)
    }
}

impl Credentials {
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `basic` or `bearer`, lowercased.
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

/// Parse `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="…"`.
pub fn parse_challenge(header: &str) -> Result<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (key, after) = s.split_once('=').ok_or_else(|| Error::invalid(format!("bad WWW-Authenticate header {header:?}")))?;
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            // A quoted string; backslash escapes the next character.
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n)
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => v.push(c),
                }
            }
            let end = end.ok_or_else(|| Error::invalid(format!("unterminated quote in WWW-Authenticate {header:?}")))?;
            (v, &q[end..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(key, value);
        s = next.trim_start().trim_start_matches(',').trim_start();
    }
    Ok(Challenge { scheme: scheme.to_ascii_lowercase(), params })
}

/// The registry host as references name it, from what a user may type for `docker login`:
/// `https://index.docker.io/v1/` → `docker.io`, `localhost:5000/` → `localhost:5000`.
pub fn registry_host(s: &str) -> String {
    let s = s.trim_start_matches("https://").trim_start_matches("http://");
    match s.split('/').next().unwrap_or(s) {
        "index.docker.io" | "registry-1.docker.io" | "" => crate::reference::DEFAULT_DOMAIN.to_string(),
        h => h.to_string(),
    }
}

/// Where Docker keeps credentials: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn docker_config_path() -> PathBuf {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("config.json"),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".docker/config.json"),
    }
}

// ANCHOR: docker_credentials
/// The keys Docker may have used for a registry host in `auths`.
fn auth_keys(host: &str) -> Vec<String> {
    if host == "docker.io" || host == "registry-1.docker.io" || host == "index.docker.io" {
        return vec!["https://index.docker.io/v1/".into(), "index.docker.io".into(), "docker.io".into(), "registry-1.docker.io".into()];
    }
    vec![host.to_string(), format!("https://{host}"), format!("http://{host}"), format!("https://{host}/v1/"), format!("https://{host}/v2/")]
}

/// Read the stored credentials for `host` (the reference's domain), if any.
pub fn load_credentials(config: &Path, host: &str) -> Result<Option<Credentials>> {
    let bytes = match std::fs::read(config) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("read {}", config.display()), e)),
    };
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| Error::invalid(format!("{}: {e}", config.display())))?;
    for key in auth_keys(host) {
        let Some(entry) = v.get("auths").and_then(|a| a.get(&key)) else { continue };
        if let Some(auth) = entry.get("auth").and_then(|a| a.as_str()) {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| Error::invalid(format!("{}: auths.{key}.auth is not base64", config.display())))?;
            let raw = String::from_utf8_lossy(&raw).into_owned();
            let (u, p) = raw.split_once(':').ok_or_else(|| Error::invalid(format!("{}: auths.{key}.auth is not user:password", config.display())))?;
            return Ok(Some(Credentials { username: u.to_string(), password: p.to_string() }));
        }
        if let (Some(u), Some(p)) = (entry.get("username").and_then(|x| x.as_str()), entry.get("password").and_then(|x| x.as_str())) {
            return Ok(Some(Credentials { username: u.into(), password: p.into() }));
        }
    }
    Ok(None)
}
// ANCHOR_END: docker_credentials

/// Store (or with `None`, remove) credentials for `host`, keeping everything else in the
/// file. The file is written with mode 0600 and replaced by rename.
pub fn store_credentials(config: &Path, host: &str, creds: Option<&Credentials>) -> Result<bool> {
    let mut v: serde_json::Value = match std::fs::read(config) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::invalid(format!("{}: {e}", config.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
        Err(e) => return Err(Error::io(format!("read {}", config.display()), e)),
    };
    if !v.get("auths").map(|a| a.is_object()).unwrap_or(false) {
        v["auths"] = serde_json::json!({});
    }
    let auths = v["auths"].as_object_mut().unwrap();
    let keys = auth_keys(host);
    let had = keys.iter().any(|k| auths.contains_key(k));
    for k in &keys {
        auths.remove(k);
    }
    if let Some(c) = creds {
        let raw = format!("{}:{}", c.username, c.password);
        auths.insert(keys[0].clone(), serde_json::json!({"auth": base64::engine::general_purpose::STANDARD.encode(raw)}));
    }
    let dir = config.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).ctx(|| format!("create {}", dir.display()))?;
    let name = config.file_name().and_then(|n| n.to_str()).unwrap_or("config.json");
    crate::fsroot::replace_file(dir, name, serde_json::to_string_pretty(&v).unwrap().as_bytes(), 0o600)?;
    Ok(had)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_hub_challenge() {
        let c = parse_challenge(r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#).unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.docker.io/token");
        assert_eq!(c.params["service"], "registry.docker.io");
        assert_eq!(c.params["scope"], "repository:library/busybox:pull");
        let b = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!((b.scheme.as_str(), b.params["realm"].as_str()), ("basic", "Registry Realm"));
        let e = parse_challenge(r#"Bearer realm="a\"b", error=insufficient_scope"#).unwrap();
        assert_eq!((e.params["realm"].as_str(), e.params["error"].as_str()), ("a\"b", "insufficient_scope"));
    }

    #[test]
    fn credentials_round_trip_in_docker_format() {
        let t = tempfile::tempdir().unwrap();
        let cfg = t.path().join("config.json");
        std::fs::write(&cfg, r#"{"auths":{"other:1":{"auth":"eDp5"}},"credsStore":"none"}"#).unwrap();
        let c = Credentials { username: "alice".into(), password: "s3cret:x".into() };
        assert!(!store_credentials(&cfg, "localhost:5000", Some(&c)).unwrap());
        assert_eq!(load_credentials(&cfg, "localhost:5000").unwrap(), Some(c.clone()));
        assert_eq!(load_credentials(&cfg, "other:1").unwrap().unwrap().username, "x");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(std::fs::read_to_string(&cfg).unwrap().contains("credsStore"));
        store_credentials(&cfg, "docker.io", Some(&c)).unwrap();
        assert!(std::fs::read_to_string(&cfg).unwrap().contains("https://index.docker.io/v1/"));
        assert!(store_credentials(&cfg, "localhost:5000", None).unwrap());
        assert_eq!(load_credentials(&cfg, "localhost:5000").unwrap(), None);
    }
}
