//! Image references: what `busybox`, `localhost:5000/a/b:t` and `name@sha256:…` mean.
//!
//! Reference: the grammar of the Go package `github.com/distribution/reference`
//! (reference.go, normalize.go), which Docker, podman and skopeo all share:
//!
//! ```text
//! reference  := name [ ":" tag ] [ "@" digest ]
//! name       := [domain "/"] path-component ["/" path-component]*
//! domain     := host [":" port]          (a first component holding "." or ":", or "localhost")
//! path-component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
//! tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
//! ```
//!
//! Normalization fills in what a user leaves out: the domain `docker.io`, the `library/`
//! namespace of official images, and the tag `latest` when neither tag nor digest is given.
//! The store keeps the full normalized form, so `busybox` and `docker.io/library/busybox:latest`
//! are the same image.

use crate::digest::Digest;
use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

pub const DEFAULT_DOMAIN: &str = "docker.io";
pub const DEFAULT_TAG: &str = "latest";
const OFFICIAL_NAMESPACE: &str = "library";
const NAME_MAX: usize = 255;

/// A fully normalized image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parse and normalize what a user typed: `busybox` → `docker.io/library/busybox:latest`.
    pub fn parse(s: &str) -> Result<Reference> {
        let fail = |why: &str| Error::invalid(format!("invalid reference {s:?}: {why}"));
        if s.is_empty() {
            return Err(fail("empty"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d.parse::<Digest>().map_err(|e| fail(&e.to_string()))?)),
            None => (s, None),
        };
        // A tag follows the last ':' that comes after the last '/' (a ':' before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(fail(&format!(
                    "bad tag {t:?}: a tag is 1 to 128 of [A-Za-z0-9_.-] and cannot start with '.' or '-'"
                )));
            }
        }
        if name.is_empty() {
            return Err(fail("no repository name"));
        }
        let (domain, path) = split_domain(name);
        if let Some(d) = &domain {
            if !valid_domain(d) {
                return Err(fail(&format!("bad registry host {d:?}")));
            }
        }
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(fail("repository name must be lowercase"));
        }
        for comp in path.split('/') {
            if !valid_path_component(comp) {
                return Err(fail(&format!(
                    "bad path component {comp:?}: use lowercase letters and digits, separated by '.', '_', '__' or '-'"
                )));
            }
        }
        if domain.is_none() && tag.is_none() && digest.is_none() && is_hex64(path) {
            return Err(fail("a 64-character hex string is an image ID, not a repository name"));
        }
        let mut domain = domain.unwrap_or_else(|| DEFAULT_DOMAIN.to_string());
        if domain == "index.docker.io" {
            domain = DEFAULT_DOMAIN.to_string();
        }
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("{OFFICIAL_NAMESPACE}/{path}")
        } else {
            path.to_string()
        };
        if domain.len() + 1 + path.len() > NAME_MAX {
            return Err(fail(&format!("repository name longer than {NAME_MAX} characters")));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference { domain, path, tag, digest })
    }

    /// The registry host (and port): `docker.io`, `localhost:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }
    /// The repository path inside the registry: `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }
    /// `domain/path` without tag or digest.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }
    /// The short form people type: `busybox`, `alice/app`, `localhost:5000/x`.
    pub fn familiar_repository(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            self.path.strip_prefix("library/").unwrap_or(&self.path).to_string()
        } else {
            self.repository()
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Reference::parse(s)
    }
}

// ANCHOR: split_domain
/// Docker's rule: the first component names a registry only if it holds '.' or ':' or is
/// `localhost` (or has an uppercase letter, which a repository never may).
fn split_domain(name: &str) -> (Option<String>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (Some(first.to_string()), rest)
        }
        _ => (None, name),
    }
}
// ANCHOR_END: split_domain

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-')
}

fn valid_path_component(c: &str) -> bool {
    // alnum+ (sep alnum+)* where sep is '.', '_', '__' or '-'+
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !(b[i].is_ascii_lowercase() || b[i].is_ascii_digit()) {
            i += 1;
        }
        let sep = &c_str(&b[start..i]);
        let ok = matches!(sep.as_str(), "." | "_" | "__") || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn c_str(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = if d.starts_with('[') {
        match d.find(']') {
            Some(i) => (&d[..=i], d[i + 1..].strip_prefix(':')),
            None => return false,
        }
    } else {
        match d.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if host.starts_with('[') {
        return host.len() > 2 && host[1..host.len() - 1].bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
    }
    !host.is_empty()
        && host.split('.').all(|c| {
            let b = c.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
        })
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    // ANCHOR: normalize_examples
    #[test]
    fn normalizes_like_docker() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("alice/app"), "docker.io/alice/app:latest");
        assert_eq!(norm("index.docker.io/library/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("localhost:5000/a/b:t"), "localhost:5000/a/b:t");
        assert_eq!(norm("localhost/a"), "localhost/a:latest");
        assert_eq!(norm("quay.io/x/y_z.w-v:1.0_rc-2"), "quay.io/x/y_z.w-v:1.0_rc-2");
        assert_eq!(norm("[::1]:5000/x"), "[::1]:5000/x:latest");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(norm(&format!("busybox@{d}")), format!("docker.io/library/busybox@{d}"));
        assert_eq!(norm(&format!("busybox:1@{d}")), format!("docker.io/library/busybox:1@{d}"));
    }
    // ANCHOR_END: normalize_examples

    #[test]
    fn parts() {
        let r = Reference::parse("localhost:5000/team/app:v1").unwrap();
        assert_eq!((r.domain(), r.path(), r.tag()), ("localhost:5000", "team/app", Some("v1")));
        assert_eq!(r.familiar_repository(), "localhost:5000/team/app");
        assert_eq!(Reference::parse("busybox").unwrap().familiar_repository(), "busybox");
    }

    #[test]
    fn rejects_invalid_names() {
        let err = |s: &str| Reference::parse(s).unwrap_err().to_string();
        assert!(err("BusyBox").contains("must be lowercase"), "{}", err("BusyBox"));
        assert!(err("busybox:-bad").contains("bad tag"));
        assert!(err(&format!("busybox:{}", "t".repeat(129))).contains("bad tag"));
        assert!(err("busybox@sha256:abc").contains("64 lowercase hex"));
        assert!(err("").contains("empty"));
        assert!(err("a//b").contains("bad path component"));
        assert!(err("a/b_").contains("bad path component"));
        assert!(err("a/b:").contains("bad tag"));
        assert!(err(&"a".repeat(64).replace('a', "f")).contains("image ID"));
    }
}
