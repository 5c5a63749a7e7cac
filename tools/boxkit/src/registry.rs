//! The registry HTTP API: endpoints, authentication on demand, manifests and blobs.
//!
//! Reference: OCI distribution spec (<https://github.com/opencontainers/distribution-spec/blob/main/spec.md>):
//! `GET /v2/<name>/manifests/<reference>`, `GET /v2/<name>/blobs/<digest>`, error bodies
//! `{"errors":[{"code","message"}]}`; Docker Hub's endpoint `registry-1.docker.io`.
//!
//! Every request goes out without credentials first; a `401` with a challenge makes the
//! client authenticate (see [`crate::auth`]) and try once more. Redirects are followed by
//! hand, so the `Authorization` header is only ever sent to the registry's own host
//! (containerd CVE-2020-15157). Nothing read here is trusted before its digest is checked.

use crate::auth::{self, Challenge, Credentials};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::explain;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use ureq::http::{Request, Response};
use ureq::Body;

/// The manifest types boxkit asks for, in order of preference.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Largest manifest or token response read into memory.
const MAX_DOCUMENT: u64 = 4 << 20;

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Use plain HTTP for hosts other than localhost.
    pub insecure: bool,
    /// Extra CA certificates (PEM) to trust, besides the system's.
    pub ca_files: Vec<PathBuf>,
    /// Docker's config.json holding `auths`.
    pub docker_config: Option<PathBuf>,
    /// Credentials to use instead of the stored ones.
    pub credentials: Option<Credentials>,
}

// ANCHOR: endpoints
/// The API endpoints to try for a reference's domain, in order: `docker.io` is served by
/// `registry-1.docker.io`; every other host HTTPS. `localhost` and loopback addresses (and
/// any host with `insecure`) are tried with HTTPS first and then plain HTTP, as Docker
/// treats insecure registries.
pub fn endpoints(domain: &str, insecure: bool) -> Vec<String> {
    if domain == crate::reference::DEFAULT_DOMAIN {
        return vec!["https://registry-1.docker.io".to_string()];
    }
    let host = if domain.starts_with('[') { domain.split(']').next().unwrap_or("").trim_start_matches('[') } else { domain.split(':').next().unwrap_or("") };
    let loopback = host == "localhost" || host == "::1" || host.starts_with("127.");
    if loopback || insecure {
        vec![format!("https://{domain}"), format!("http://{domain}")]
    } else {
        vec![format!("https://{domain}")]
    }
}
// ANCHOR_END: endpoints

/// Run `attempt` against each base URL in turn until one succeeds. When all fail, the error
/// worth reporting is one from a registry that answered (it names the problem: 401, 404, a
/// bad digest), not a failed TLS handshake or the 400 an HTTPS port gives a plain-HTTP
/// request; failing that, the first.
pub fn first_that_works<T>(bases: &[String], mut attempt: impl FnMut(&str) -> Result<T>) -> Result<T> {
    let mut errors: Vec<Error> = Vec::new();
    for base in bases {
        match attempt(base) {
            Ok(v) => return Ok(v),
            Err(e) => {
                explain!("{base}: {e}");
                errors.push(e);
            }
        }
    }
    let answered = errors.iter().position(|e| e.kind() != crate::Kind::System && !e.to_string().contains(" 400 "));
    match answered.or(if errors.is_empty() { None } else { Some(0) }) {
        Some(i) => Err(errors.swap_remove(i)),
        None => Err(Error::invalid("no registry endpoint to try")),
    }
}

/// A request body.
pub enum Payload<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// `len` bytes of a file from `offset`, streamed.
    File { path: &'a std::path::Path, offset: u64, len: u64 },
}

enum Auth {
    None,
    Basic,
    Bearer { token: String, expires: Instant, challenge: Challenge },
}

/// A client for one repository on one registry.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    /// `host[:port]`, for messages.
    host: String,
    /// `scheme://host[:port]`: credentials go to this origin only.
    origin: String,
    repo: String,
    credentials: Option<Credentials>,
    auth: Mutex<Auth>,
}

fn tls_config(opts: &Options) -> Result<ureq::tls::TlsConfig> {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    let mut certs: Vec<Certificate<'static>> = Vec::new();
    let mut pems: Vec<PathBuf> = vec![PathBuf::from("/etc/ssl/certs/ca-certificates.crt")];
    pems.extend(opts.ca_files.iter().cloned());
    for p in &pems {
        let Ok(bytes) = std::fs::read(p) else {
            if opts.ca_files.contains(p) {
                return Err(Error::not_found(format!("CA file {} cannot be read", p.display())));
            }
            continue;
        };
        for item in ureq::tls::parse_pem(&bytes) {
            if let Ok(ureq::tls::PemItem::Certificate(c)) = item {
                certs.push(c);
            }
        }
    }
    let roots = if certs.is_empty() { RootCerts::WebPki } else { RootCerts::new_with_certs(&certs) };
    Ok(TlsConfig::builder().root_certs(roots).build())
}

impl Client {
    /// A client for `repo` at `base` (`https://host[:port]`).
    pub fn new(base: &str, repo: &str, registry_host: &str, opts: &Options) -> Result<Client> {
        // Docker's per-registry CA: /etc/docker/certs.d/HOST[:PORT]/ca.crt.
        let mut opts = opts.clone();
        let certs_d = PathBuf::from("/etc/docker/certs.d").join(registry_host).join("ca.crt");
        if certs_d.exists() {
            opts.ca_files.push(certs_d);
        }
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("boxkit/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_per_read(Some(Duration::from_secs(60)))
            .tls_config(tls_config(&opts)?)
            .build();
        let credentials = match &opts.credentials {
            Some(c) => Some(c.clone()),
            None => auth::load_credentials(&opts.docker_config.clone().unwrap_or_else(auth::docker_config_path), registry_host)?,
        };
        let host = url_host(base).to_string();
        let origin = origin_of(base);
        Ok(Client { agent: config.into(), base: base.trim_end_matches('/').to_string(), host, origin, repo: repo.to_string(), credentials, auth: Mutex::new(Auth::None) })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        if self.repo.is_empty() {
            format!("{}/v2/{}", self.base, path)
        } else {
            format!("{}/v2/{}/{}", self.base, self.repo, path)
        }
    }

    /// Check that the registry accepts this client's credentials: `GET /v2/`.
    pub fn ping(&self) -> Result<()> {
        let mut resp = self.send("GET", "", &[], Payload::Empty)?;
        if resp.status().is_success() {
            return Ok(());
        }
        if resp.status().as_u16() == 401 {
            return Err(Error::invalid(format!("registry {} refused the credentials", self.host)));
        }
        Err(status_error("GET", &self.url(""), &mut resp))
    }

    fn authorization(&self) -> Result<Option<String>> {
        let mut auth = self.auth.lock().unwrap();
        if let Auth::Bearer { expires, challenge, .. } = &*auth {
            if Instant::now() >= *expires {
                explain!("token expired: renew it");
                let c = challenge.clone();
                *auth = self.fetch_token(&c)?;
            }
        }
        Ok(match &*auth {
            Auth::None => None,
            Auth::Basic => self.credentials.as_ref().map(|c| c.basic_header()),
            Auth::Bearer { token, .. } => Some(format!("Bearer {token}")),
        })
    }

    /// Answer a 401 challenge.
    fn authenticate(&self, resp: &Response<Body>) -> Result<()> {
        let header = resp
            .headers()
            .get("www-authenticate")
            .and_then(|h| h.to_str().ok())
            .ok_or_else(|| Error::invalid(format!("registry {} answered 401 without a WWW-Authenticate challenge", self.host)))?;
        let challenge = auth::parse_challenge(header)?;
        let new = match challenge.scheme.as_str() {
            "basic" => {
                if self.credentials.is_none() {
                    return Err(Error::invalid(format!("registry {} wants a user name and password: run box-login {}", self.host, self.host)));
                }
                explain!("401 Basic: send credentials of user {:?}", self.credentials.as_ref().unwrap().username);
                Auth::Basic
            }
            "bearer" => self.fetch_token(&challenge)?,
            other => return Err(Error::invalid(format!("registry {} uses unsupported auth scheme {other:?}", self.host))),
        };
        *self.auth.lock().unwrap() = new;
        Ok(())
    }

    // ANCHOR: fetch_token
    /// Ask the challenge's realm for a token for this repository.
    fn fetch_token(&self, c: &Challenge) -> Result<Auth> {
        let realm = c.params.get("realm").ok_or_else(|| Error::invalid(format!("registry {}: Bearer challenge without a realm", self.host)))?;
        // Credentials never travel in clear text to a token service of an HTTPS registry.
        if realm.starts_with("http://") && self.base.starts_with("https://") && self.credentials.is_some() {
            return Err(Error::invalid(format!("registry {} names a plain-http token realm {realm}; refusing to send credentials there", self.host)));
        }
        let scope = c.params.get("scope").cloned().or_else(|| (!self.repo.is_empty()).then(|| format!("repository:{}:pull", self.repo)));
        let mut query = Vec::new();
        if let Some(s) = c.params.get("service") {
            query.push(format!("service={}", urlencode(s)));
        }
        // A challenge may name several scopes, space-separated: one parameter each.
        for one in scope.iter().flat_map(|s| s.split(' ')).filter(|s| !s.is_empty()) {
            query.push(format!("scope={}", urlencode(one)));
        }
        let url = if query.is_empty() { realm.clone() } else { format!("{realm}{}{}", if realm.contains('?') { "&" } else { "?" }, query.join("&")) };
        explain!("401 Bearer: GET {url} ({})", if self.credentials.is_some() { "with credentials" } else { "anonymous" });
        let mut req = Request::get(&url);
        if let Some(creds) = &self.credentials {
            req = req.header("authorization", creds.basic_header());
        }
        let mut resp = self.agent.run(req.body(()).unwrap()).map_err(|e| net_error(&url, e))?;
        if !resp.status().is_success() {
            return Err(status_error("GET", &url, &mut resp));
        }
        let body = resp.body_mut().with_config().limit(MAX_DOCUMENT).read_to_vec().map_err(|e| net_error(&url, e))?;
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| Error::invalid(format!("token from {realm}: {e}")))?;
        let token = v
            .get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .ok_or_else(|| Error::invalid(format!("token response from {realm} holds no token")))?;
        let secs = v.get("expires_in").and_then(|e| e.as_u64()).unwrap_or(60).max(10);
        // Renew a little early so a token never expires in the middle of a request.
        let expires = Instant::now() + Duration::from_secs(secs.saturating_sub(5).max(5));
        Ok(Auth::Bearer { token: token.to_string(), expires, challenge: c.clone() })
    }
    // ANCHOR_END: fetch_token

    // ANCHOR: send
    /// Send a request to the registry, authenticating on a 401 and following redirects
    /// (without credentials when they leave the registry's host).
    pub fn send(&self, method: &str, path_or_url: &str, headers: &[(&str, String)], body: Payload<'_>) -> Result<Response<Body>> {
        let mut url = if path_or_url.starts_with("http") { path_or_url.to_string() } else { self.url(path_or_url) };
        let mut authenticated = false;
        let mut redirects = 0;
        loop {
            // Same scheme, host and port: an https → http redirect loses the credentials too.
            let same_host = origin_of(&url) == self.origin;
            let mut req = Request::builder().method(method).uri(&url);
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            if same_host {
                if let Some(a) = self.authorization()? {
                    req = req.header("authorization", a);
                }
            }
            explain!("{method} {url}");
            let resp = match &body {
                Payload::Empty => self.agent.run(req.body(()).unwrap()),
                Payload::Bytes(b) => self.agent.run(req.body(b.to_vec()).unwrap()),
                Payload::File { path, offset, len } => {
                    let mut f = std::fs::File::open(path).map_err(|e| Error::io(format!("open {}", path.display()), e))?;
                    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(*offset)).map_err(|e| Error::io("seek", e))?;
                    let req = req.header("content-length", len.to_string());
                    self.agent.run(req.body(ureq::SendBody::from_owned_reader(f.take(*len))).unwrap())
                }
            }
            .map_err(|e| net_error(&url, e))?;
            let status = resp.status().as_u16();
            if status == 401 && same_host && !authenticated {
                authenticated = true;
                self.authenticate(&resp)?;
                continue;
            }
            if (300..400).contains(&status) && status != 304 && method != "POST" && method != "PUT" && method != "PATCH" {
                let loc = resp.headers().get("location").and_then(|l| l.to_str().ok()).ok_or_else(|| Error::invalid(format!("{url}: redirect without Location")))?;
                redirects += 1;
                if redirects > 5 {
                    return Err(Error::invalid(format!("{url}: too many redirects")));
                }
                url = resolve_location(&url, loc);
                explain!("redirected to {url}{}", if origin_of(&url) == self.origin { "" } else { " (another origin: no Authorization header)" });
                continue;
            }
            return Ok(resp);
        }
    }
    // ANCHOR_END: send

    /// An absolute URL for a `Location` header the registry sent.
    pub fn absolute(&self, location: &str) -> String {
        resolve_location(&format!("{}/v2/", self.base), location)
    }

    // ANCHOR: get_manifest
    /// Fetch a manifest or index by tag or digest: (bytes, media type, digest of the bytes).
    pub fn get_manifest(&self, reference: &str) -> Result<(Vec<u8>, String, Digest)> {
        let path = format!("manifests/{reference}");
        let mut resp = self.send("GET", &path, &[("accept", MANIFEST_ACCEPT.to_string())], Payload::Empty)?;
        if !resp.status().is_success() {
            return Err(status_error("GET", &self.url(&path), &mut resp));
        }
        let media = resp.headers().get("content-type").and_then(|c| c.to_str().ok()).unwrap_or("").split(';').next().unwrap().trim().to_string();
        let header_digest = resp.headers().get("docker-content-digest").and_then(|d| d.to_str().ok()).map(String::from);
        let bytes = resp.body_mut().with_config().limit(MAX_DOCUMENT).read_to_vec().map_err(|e| net_error(&path, e))?;
        let digest = Digest::of(&bytes);
        if let Some(h) = header_digest {
            if h != digest.to_string() {
                return Err(Error::invalid(format!(
                    "manifest {reference}: Docker-Content-Digest says {h} but the body hashes to {digest}"
                )));
            }
        }
        Ok((bytes, media, digest))
    }
    // ANCHOR_END: get_manifest

    // ANCHOR: get_blob
    /// Start reading a blob, from byte `offset` on. Returns the status (200 or 206) and the
    /// body.
    pub fn get_blob(&self, digest: &Digest, offset: u64) -> Result<(u16, Box<dyn Read + Send>)> {
        let path = format!("blobs/{digest}");
        let headers: Vec<(&str, String)> = if offset > 0 { vec![("range", format!("bytes={offset}-"))] } else { vec![] };
        let mut resp = self.send("GET", &path, &headers, Payload::Empty)?;
        let status = resp.status().as_u16();
        if status != 200 && status != 206 {
            return Err(status_error("GET", &self.url(&path), &mut resp));
        }
        if status == 206 {
            let start = resp
                .headers()
                .get("content-range")
                .and_then(|c| c.to_str().ok())
                .and_then(|c| c.strip_prefix("bytes "))
                .and_then(|c| c.split('-').next())
                .and_then(|s| s.parse::<u64>().ok());
            if start != Some(offset) {
                return Err(Error::invalid(format!("blob {digest}: asked for bytes from {offset}, got Content-Range {start:?}")));
            }
        }
        Ok((status, Box::new(resp.into_body().into_reader())))
    }
    // ANCHOR_END: get_blob
}

/// `host[:port]` of a base URL such as a mirror's.
pub fn host_of(url: &str) -> &str {
    url_host(url)
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> String {
    let scheme = url.split("://").next().unwrap_or("");
    format!("{scheme}://{}", url_host(url))
}

fn url_host(url: &str) -> &str {
    url.split("://").nth(1).unwrap_or(url).split('/').next().unwrap_or("")
}

fn resolve_location(base: &str, loc: &str) -> String {
    if loc.starts_with("http://") || loc.starts_with("https://") {
        return loc.to_string();
    }
    let scheme_host = &base[..base.find("://").map(|i| i + 3).unwrap_or(0) + url_host(base).len()];
    if loc.starts_with('/') {
        format!("{scheme_host}{loc}")
    } else {
        let dir = &base[..base.rfind('/').unwrap_or(base.len())];
        format!("{dir}/{loc}")
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn net_error(url: &str, e: ureq::Error) -> Error {
    Error::io(format!("{url}"), std::io::Error::other(e.to_string()))
}

/// A failed response as one line, with the registry's own error code and message.
pub fn status_error(method: &str, url: &str, resp: &mut Response<Body>) -> Error {
    let status = resp.status();
    let body = resp.body_mut().with_config().limit(64 << 10).read_to_vec().unwrap_or_default();
    let detail = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            let errs = v.get("errors")?.as_array()?.iter().map(|e| {
                format!("{}: {}", e.get("code").and_then(|c| c.as_str()).unwrap_or("?"), e.get("message").and_then(|c| c.as_str()).unwrap_or(""))
            });
            Some(errs.collect::<Vec<_>>().join("; "))
        })
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_string());
    let msg = format!("{method} {url}: {} {detail}", status.as_u16());
    match status.as_u16() {
        404 => Error::not_found(msg),
        // Worth another try: the registry is busy or failing, not refusing.
        429 | 500..=599 => Error::new(crate::Kind::System, msg),
        _ => Error::invalid(msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_order() {
        assert_eq!(endpoints("docker.io", false), ["https://registry-1.docker.io"]);
        assert_eq!(endpoints("localhost:5000", false), ["https://localhost:5000", "http://localhost:5000"]);
        assert_eq!(endpoints("127.0.0.1:5000", false)[1], "http://127.0.0.1:5000");
        assert_eq!(endpoints("[::1]:5000", false)[1], "http://[::1]:5000");
        assert_eq!(endpoints("quay.io", false), ["https://quay.io"]);
        assert_eq!(endpoints("quay.io", true), ["https://quay.io", "http://quay.io"]);
    }

    #[test]
    fn redirect_locations() {
        assert_eq!(resolve_location("http://a:1/v2/x/blobs/y", "/other"), "http://a:1/other");
        assert_eq!(resolve_location("http://a:1/v2/x/blobs/y", "https://cdn/z"), "https://cdn/z");
        assert_eq!(resolve_location("http://a:1/v2/x/blobs/y", "z"), "http://a:1/v2/x/blobs/z");
        assert_eq!(url_host("https://h:5/p"), "h:5");
    }
}
