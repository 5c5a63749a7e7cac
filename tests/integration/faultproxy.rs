//! A fault-injecting HTTP proxy between box-pull and a loopback registry, and a "CDN" on
//! another port that records any Authorization header it receives. One request per
//! connection; responses are read whole from the registry, changed, and passed on.

use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fault {
    /// The first response for each blob stops halfway (headers promise the whole body).
    CutOnce,
    /// Every blob response carries a different byte.
    FlipByte,
    /// Every blob response declares and sends only half of what was asked.
    Short,
    /// Manifest responses carry a Docker-Content-Digest of other bytes.
    WrongDigestHeader,
    /// Manifests come back with a body that also reads as an index (CVE-2021-41190).
    ManifestIsIndex,
    /// Manifests come back with a body whose mediaType contradicts the Content-Type.
    BodyTypeMismatch,
    /// Blob requests are redirected to the CDN on another port.
    RedirectToCdn,
    /// Blob bodies trickle out slowly (for killing a pull half way).
    Slow,
}

pub struct FaultProxy {
    pub port: u16,
    stop: Arc<AtomicBool>,
    /// Authorization headers the CDN received.
    pub cdn_auth: Arc<Mutex<Vec<String>>>,
    pub cdn_hits: Arc<AtomicUsize>,
    cdn_port: u16,
}

fn read_head(r: &mut BufReader<TcpStream>) -> Option<(String, Vec<String>)> {
    let mut first = String::new();
    if r.read_line(&mut first).ok()? == 0 {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).ok()? == 0 || l == "\r\n" {
            break;
        }
        headers.push(l.trim_end().to_string());
    }
    Some((first.trim_end().to_string(), headers))
}

fn fetch(upstream: u16, request_line: &str, headers: &[String]) -> (String, Vec<String>, Vec<u8>) {
    let mut up = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
    let mut out = format!("{request_line}\r\n");
    for h in headers.iter().filter(|h| !h.to_ascii_lowercase().starts_with("connection:")) {
        out.push_str(&format!("{h}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    up.write_all(out.as_bytes()).unwrap();
    let mut r = BufReader::new(up);
    let (status, headers) = read_head(&mut r).unwrap();
    let mut body = Vec::new();
    if !request_line.starts_with("HEAD") {
        let _ = r.read_to_end(&mut body);
    }
    (status, headers, body)
}

fn header<'a>(headers: &'a [String], name: &str) -> Option<&'a str> {
    headers.iter().find_map(|h| {
        let (k, v) = h.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn respond(c: &mut TcpStream, status: &str, headers: &[String], body: &[u8], declared: usize) {
    let mut out = format!("{status}\r\n");
    for h in headers {
        let l = h.to_ascii_lowercase();
        if !l.starts_with("content-length:") && !l.starts_with("connection:") && !l.starts_with("transfer-encoding:") {
            out.push_str(&format!("{h}\r\n"));
        }
    }
    out.push_str(&format!("Content-Length: {declared}\r\nConnection: close\r\n\r\n"));
    let _ = c.write_all(out.as_bytes());
    let _ = c.write_all(body);
}

impl FaultProxy {
    /// `cdn_upstream`: the registry the CDN fetches blobs from (anonymously).
    pub fn start(upstream: u16, cdn_upstream: u16, fault: Fault) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cdn = TcpListener::bind("127.0.0.1:0").unwrap();
        let cdn_port = cdn.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let cdn_auth = Arc::new(Mutex::new(Vec::new()));
        let cdn_hits = Arc::new(AtomicUsize::new(0));
        // The CDN serves blobs by fetching them from the registry itself.
        let (st, ca, ch) = (stop.clone(), cdn_auth.clone(), cdn_hits.clone());
        std::thread::spawn(move || {
            for c in cdn.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut c) = c else { continue };
                let mut r = BufReader::new(c.try_clone().unwrap());
                let Some((line, headers)) = read_head(&mut r) else { continue };
                ch.fetch_add(1, Ordering::SeqCst);
                if let Some(a) = header(&headers, "authorization") {
                    ca.lock().unwrap().push(a.to_string());
                }
                // /cdn/<repo path>/blobs/<digest> → the registry, without any credentials.
                let path = line.split_whitespace().nth(1).unwrap_or("/").trim_start_matches("/cdn").to_string();
                let (status, h, body) = fetch(cdn_upstream, &format!("GET {path} HTTP/1.1"), &["Host: x".into()]);
                respond(&mut c, &status, &h, &body, body.len());
            }
        });
        let st = stop.clone();
        std::thread::spawn(move || {
            let mut cut_done: Vec<String> = Vec::new();
            for c in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut c) = c else { continue };
                let mut r = BufReader::new(c.try_clone().unwrap());
                let Some((line, headers)) = read_head(&mut r) else { continue };
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let is_blob = line.starts_with("GET") && path.contains("/blobs/sha256:");
                let is_manifest = line.starts_with("GET") && path.contains("/manifests/");
                if is_blob && fault == Fault::RedirectToCdn && !path.starts_with("/cdn") {
                    // Only a request that carries credentials gets redirected: that is the one
                    // that must not pass them on.
                    let loc = format!("http://127.0.0.1:{cdn_port}/cdn{path}");
                    respond(&mut c, "HTTP/1.1 307 Temporary Redirect", &[format!("Location: {loc}")], b"", 0);
                    continue;
                }
                let (status, mut h, mut body) = fetch(upstream, &line, &headers);
                let ok = status.contains(" 200 ") || status.contains(" 206 ");
                let mut declared = body.len();
                match fault {
                    Fault::CutOnce if is_blob && ok && !cut_done.contains(&path) && body.len() > 1 => {
                        cut_done.push(path.clone());
                        body.truncate(body.len() / 2);
                    }
                    Fault::FlipByte if is_blob && ok && !body.is_empty() => {
                        let i = body.len() / 2;
                        body[i] ^= 0x01;
                    }
                    Fault::Short if is_blob && ok && body.len() > 1 => {
                        body.truncate(body.len() / 2);
                        declared = body.len();
                    }
                    Fault::WrongDigestHeader if is_manifest && ok => {
                        h.retain(|x| !x.to_ascii_lowercase().starts_with("docker-content-digest:"));
                        h.push(format!("Docker-Content-Digest: sha256:{:x}", Sha256::digest(b"other bytes")));
                    }
                    Fault::ManifestIsIndex | Fault::BodyTypeMismatch if is_manifest && ok => {
                        let mut v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                        v["mediaType"] = "application/vnd.oci.image.index.v1+json".into();
                        if fault == Fault::ManifestIsIndex {
                            v["manifests"] = serde_json::json!([]);
                        }
                        body = v.to_string().into_bytes();
                        declared = body.len();
                        h.retain(|x| !x.to_ascii_lowercase().starts_with("docker-content-digest:"));
                        h.push(format!("Docker-Content-Digest: sha256:{:x}", Sha256::digest(&body)));
                    }
                    _ => {}
                }
                if fault == Fault::Slow && is_blob && ok {
                    // Headers and the first half now, the rest much later.
                    let half = body.len() / 2;
                    std::thread::spawn(move || {
                        respond(&mut c, &status, &h, &body[..half], declared);
                        std::thread::sleep(std::time::Duration::from_secs(30));
                        let _ = c.write_all(&body[half..]);
                    });
                    continue;
                }
                respond(&mut c, &status, &h, &body, declared);
            }
        });
        FaultProxy { port, stop, cdn_auth, cdn_hits, cdn_port }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        let _ = TcpStream::connect(("127.0.0.1", self.cdn_port));
    }
}
