//! A real registry on loopback for the tests: Debian's docker-registry (distribution),
//! started on a free port of 127.0.0.1 in one of three modes and killed (by pid) when
//! dropped. Nothing here reaches another host.

use crate::support::{assert_success, require};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plain HTTP, no auth.
    Plain,
    /// HTTPS with a self-signed CA and htpasswd Basic auth (user alice, password wonderland).
    TlsBasic,
    /// Plain HTTP with Bearer token auth through the test suite's own token server.
    Token,
}

pub struct Registry {
    child: Child,
    pub tokens: Option<crate::tokenserver::TokenServer>,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub mode: Mode,
}

pub const USER: &str = "alice";
pub const PASSWORD: &str = "wonderland";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Registry {
    pub fn start(mode: Mode) -> Registry {
        require("docker-registry");
        let dir = tempfile::Builder::new().prefix("boxkit-registry-").tempdir().unwrap();
        let d = dir.path();
        let port = free_port();
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}/data\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: test-only\n",
            d.display()
        );
        if mode == Mode::TlsBasic {
            require("openssl");
            require("htpasswd");
            let o = Command::new("bash")
                .arg("-c")
                .arg(format!(
                    "set -e; cd {0}; \
                     openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=boxkit-test-ca -keyout ca.key -out ca.crt 2>/dev/null; \
                     openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr 2>/dev/null; \
                     printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > ext.cnf; \
                     openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf -out server.crt 2>/dev/null; \
                     htpasswd -Bbc htpasswd {USER} {PASSWORD} 2>/dev/null; \
                     mkdir certs; cp ca.crt certs/",
                    d.display()
                ))
                .output()
                .unwrap();
            assert_success(&o, "make test certificates and htpasswd");
            cfg.push_str(&format!(
                "  tls:\n    certificate: {0}/server.crt\n    key: {0}/server.key\nauth:\n  htpasswd:\n    realm: boxkit-test\n    path: {0}/htpasswd\n",
                d.display()
            ));
        }
        let tokens = (mode == Mode::Token).then(|| {
            let t = crate::tokenserver::TokenServer::start(d);
            cfg.push_str(&format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                t.realm(),
                crate::tokenserver::SERVICE,
                crate::tokenserver::ISSUER,
                t.cert().display()
            ));
            t
        });
        std::fs::write(d.join("config.yml"), cfg).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(d.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let r = Registry { child, tokens, dir, port, mode };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// skopeo flags to push to or pull from this registry.
    pub fn skopeo_flags(&self, dest: bool) -> Vec<String> {
        let side = if dest { "dest" } else { "src" };
        match self.mode {
            Mode::Plain => vec![format!("--{side}-tls-verify=false")],
            Mode::Token => vec![format!("--{side}-tls-verify=false"), format!("--{side}-creds={USER}:{PASSWORD}")],
            // skopeo reads every *.key in a cert dir as a client key: give it the CA alone.
            Mode::TlsBasic => vec![format!("--{side}-cert-dir={}/certs", self.dir.path().display()), format!("--{side}-creds={USER}:{PASSWORD}")],
        }
    }

    /// Push an OCI layout's image with skopeo (`extra` flags such as `--all` or
    /// `--format v2s2`).
    pub fn push(&self, src: &str, repo_tag: &str, extra: &[&str]) {
        require("skopeo");
        let o = Command::new("skopeo")
            .arg("copy")
            .arg("-q")
            .args(self.skopeo_flags(true))
            .args(extra)
            .arg(src)
            .arg(format!("docker://{}/{repo_tag}", self.host()))
            .output()
            .unwrap();
        assert_success(&o, &format!("skopeo copy {src} to {repo_tag}"));
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
