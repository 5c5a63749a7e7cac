//! A small Bearer token server for the registry tests (distribution's "token" auth):
//! it answers `GET /token?service=…&scope=…` with a JWT signed by its own RSA key, whose
//! certificate the registry trusts. alice:wonderland gets pull and push; anonymous clients
//! get pull on `public/*` only. It counts the tokens it hands out.

use base64::Engine;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

pub const SERVICE: &str = "boxkit-test-registry";
pub const ISSUER: &str = "boxkit-test-issuer";

pub struct TokenServer {
    port: u16,
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    pub issued: Arc<AtomicU64>,
    /// Seconds a token lives (expires_in).
    pub lifetime: Arc<AtomicU64>,
}

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

impl TokenServer {
    pub fn start(dir: &Path) -> TokenServer {
        let o = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=boxkit-token-signer"])
            .arg("-keyout")
            .arg(dir.join("token.key"))
            .arg("-out")
            .arg(dir.join("token.crt"))
            .output()
            .unwrap();
        crate::support::assert_success(&o, "make the token signing key");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let issued = Arc::new(AtomicU64::new(0));
        let lifetime = Arc::new(AtomicU64::new(300));
        let (d, st, is, lt) = (dir.to_path_buf(), stop.clone(), issued.clone(), lifetime.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut request = String::new();
                let _ = reader.read_line(&mut request);
                let mut auth = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("authorization: basic ") {
                        let v = line[line.len() - v.len()..].trim().to_string();
                        auth = base64::engine::general_purpose::STANDARD.decode(v).ok().map(|b| String::from_utf8_lossy(&b).into_owned());
                    }
                }
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
                let query = path.split_once('?').map(|x| x.1).unwrap_or("");
                let scopes: Vec<String> = query.split('&').filter_map(|kv| kv.strip_prefix("scope=")).map(|s| urldecode(s)).collect();
                let user_ok = auth.as_deref() == Some(&format!("{}:{}", crate::registry::USER, crate::registry::PASSWORD));
                let (status, body) = if auth.is_some() && !user_ok {
                    ("401 Unauthorized", r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#.to_string())
                } else {
                    let secs = lt.load(Ordering::SeqCst);
                    let jwt = sign(&d, &scopes, user_ok, secs);
                    is.fetch_add(1, Ordering::SeqCst);
                    ("200 OK", serde_json::json!({"token": jwt, "access_token": jwt, "expires_in": secs}).to_string())
                };
                let _ = write!(conn, "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            }
        });
        TokenServer { port, dir: dir.to_path_buf(), stop, issued, lifetime }
    }

    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }
    pub fn cert(&self) -> PathBuf {
        self.dir.join("token.crt")
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn urldecode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A JWT granting `scopes` (pull and push for alice; pull on public/* for anyone).
fn sign(dir: &Path, scopes: &[String], user: bool, lifetime: u64) -> String {
    let pem = std::fs::read_to_string(dir.join("token.crt")).unwrap();
    let der_b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": [der_b64]});
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|s| {
            let mut parts = s.splitn(3, ':');
            let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
            let wanted: Vec<&str> = actions.split(',').collect();
            let granted: Vec<&str> = wanted.into_iter().filter(|a| user || (*a == "pull" && name.starts_with("public/"))).collect();
            Some(serde_json::json!({"type": kind, "name": name, "actions": granted}))
        })
        .collect();
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": if user { "alice" } else { "" }, "aud": SERVICE,
        "exp": now + lifetime, "nbf": now - 30, "iat": now, "jti": format!("{now}-{}", rand_id()), "access": access,
    });
    let input = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
    let mut child = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(dir.join("token.key"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let sig = child.wait_with_output().unwrap().stdout;
    format!("{input}.{}", b64url(&sig))
}

fn rand_id() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst) ^ (std::process::id() as u64) << 32
}
