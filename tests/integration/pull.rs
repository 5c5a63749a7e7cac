//! box-pull against a real registry on loopback: single images, multi-platform indexes,
//! Docker and OCI media types, gzip and zstd layers, TLS with Basic auth; the result is the
//! same tree that skopeo + umoci give.

use crate::registry::{Mode, Registry, PASSWORD, USER};
use crate::support::{fixture, make_image, require, Scratch};
use crate::tree::{listing, Ignore};
use std::process::Command;

/// An OCI layout (in `s`'s store) holding busybox plus a few layers, tagged `src`.
fn source_image(s: &Scratch) -> String {
    let layers = vec![crate::support::busybox_tar(), fixture("base.tar"), fixture("whiteout.tar"), fixture("links.tar")];
    make_image(s.path(), "src", &layers, "gzip", None);
    format!("oci:{}:docker.io/library/src:latest", s.join("images").display())
}

/// Pull with skopeo into a fresh layout and unpack with umoci: the reference tree.
fn reference_tree(r: &Registry, repo_tag: &str, work: &Scratch) -> String {
    require("umoci");
    let layout = work.join("skopeo-layout");
    let o = Command::new("skopeo")
        .args(["copy", "-q"])
        .args(r.skopeo_flags(false))
        .arg(format!("docker://{}/{repo_tag}", r.host()))
        .arg(format!("oci:{}:latest", layout.display()))
        .output()
        .unwrap();
    crate::support::assert_success(&o, "skopeo copy from the registry");
    let b = work.join("umoci-bundle");
    let o = Command::new("umoci").args(["unpack", "--image", &format!("{}:latest", layout.display())]).arg(&b).output().unwrap();
    crate::support::assert_success(&o, "umoci unpack");
    listing(&b.join("rootfs"), Ignore { root: true, ..Default::default() })
}

fn pulled_tree(s: &Scratch, reference: &str, extra: &[&str]) -> (String, String) {
    let mut args = vec!["--quiet"];
    args.extend_from_slice(extra);
    args.push(reference);
    let digest = s.ok("box-pull", &args).trim().to_string();
    let b = s.join(&format!("bundle-{}", digest.len() + s.path().read_dir().unwrap().count()));
    s.ok("box-unpack", &[reference, b.to_str().unwrap()]);
    (digest, listing(&b.join("rootfs"), Ignore { root: true, ..Default::default() }))
}

#[test]
fn pull_matches_skopeo_and_umoci_for_every_format() {
    let r = Registry::start(Mode::Plain);
    let src = Scratch::new();
    let image = source_image(&src);
    r.push(&image, "t/oci:1", &[]);
    r.push(&image, "t/docker:1", &["--format", "v2s2"]);
    r.push(&image, "t/zstd:1", &["--dest-compress-format", "zstd", "--dest-compress"]);
    for repo in ["t/oci:1", "t/docker:1", "t/zstd:1"] {
        let work = Scratch::new();
        let want = reference_tree(&r, repo, &work);
        let s = Scratch::new();
        let reference = format!("{}/{repo}", r.host());
        let (digest, got) = pulled_tree(&s, &reference, &[]);
        assert_eq!(got, want, "{repo}: box-pull + box-unpack differs from skopeo + umoci");
        assert!(digest.starts_with("sha256:"));
        // A second pull fetches nothing new and gives the same digest.
        let again = s.ok("box-pull", &["--quiet", &reference]);
        assert_eq!(again.trim(), digest);
        // By digest too.
        let by_digest = format!("{}/{}@{digest}", r.host(), repo.split(':').next().unwrap());
        assert_eq!(s.ok("box-pull", &["-q", &by_digest]).trim(), digest);
    }
}

#[test]
fn pull_chooses_the_platform_from_an_index() {
    let r = Registry::start(Mode::Plain);
    let src = Scratch::new();
    // Two images with different content, joined by an index for two platforms.
    let host = make_image(src.path(), "host", &[fixture("base.tar")], "gzip", None);
    let other = make_image(src.path(), "other", &[fixture("links.tar")], "gzip", Some(serde_json::json!({"config": {}})));
    let store = boxkit::store::Store::open(&src.join("images")).unwrap();
    let desc = |d: &str, arch: &str| {
        let d: boxkit::digest::Digest = d.parse().unwrap();
        let size = std::fs::metadata(store.blob_path(&d)).unwrap().len();
        serde_json::json!({"mediaType": boxkit::oci::MEDIA_OCI_MANIFEST, "digest": d, "size": size, "platform": {"os": "linux", "architecture": arch}})
    };
    let other_arch = if boxkit::oci::host_architecture() == "amd64" { "arm64" } else { "amd64" };
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": boxkit::oci::MEDIA_OCI_INDEX,
        "manifests": [desc(&other, other_arch), desc(&host, boxkit::oci::host_architecture())]});
    let idesc = store.put_bytes(boxkit::oci::MEDIA_OCI_INDEX, index.to_string().as_bytes()).unwrap();
    store.tag(&boxkit::reference::Reference::parse("multi").unwrap(), &idesc).unwrap();
    r.push(&format!("oci:{}:docker.io/library/multi:latest", src.join("images").display()), "t/multi:1", &["--all"]);
    let s = Scratch::new();
    let reference = format!("{}/t/multi:1", r.host());
    assert_eq!(s.ok("box-pull", &["-q", &reference]).trim(), host);
    let platform = format!("linux/{other_arch}");
    assert_eq!(s.ok("box-pull", &["-q", "--platform", &platform, &reference]).trim(), other);
    let (code, err) = s.fails("box-pull", &["-q", "--platform", "linux/s390x", &reference]);
    assert_eq!(code, 1);
    assert!(err.contains("has no image for linux/s390x"), "{err}");
}

#[test]
fn pull_over_tls_with_basic_auth() {
    let r = Registry::start(Mode::TlsBasic);
    let src = Scratch::new();
    let image = source_image(&src);
    r.push(&image, "secure/app:1", &[]);
    let s = Scratch::new();
    let reference = format!("{}/secure/app:1", r.host());
    let ca = r.ca();
    // Without the CA: TLS fails. Without credentials: the registry refuses.
    let docker_cfg = s.join("docker");
    std::fs::create_dir(&docker_cfg).unwrap();
    let run = |args: &[&str]| s.cmd("box-pull").env("DOCKER_CONFIG", &docker_cfg).args(args).output().unwrap();
    let o = run(&["-q", &reference]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).to_lowercase().contains("certificate"), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&["-q", "--ca-file", ca.to_str().unwrap(), &reference]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("box-login"), "{}", String::from_utf8_lossy(&o.stderr));
    // With credentials in Docker's config.json (as `docker login` writes them): it works.
    boxkit::auth::store_credentials(&docker_cfg.join("config.json"), &r.host(), Some(&boxkit::auth::Credentials { username: USER.into(), password: PASSWORD.into() })).unwrap();
    let o = run(&["-q", "--ca-file", ca.to_str().unwrap(), &reference]);
    crate::support::assert_success(&o, "box-pull over TLS with basic auth");
    // Docker's per-registry CA directory works without --ca-file.
    let certs_d = std::path::PathBuf::from("/etc/docker/certs.d").join(r.host());
    std::fs::create_dir_all(&certs_d).unwrap();
    std::fs::copy(&ca, certs_d.join("ca.crt")).unwrap();
    let fresh = Scratch::new();
    let o = fresh.cmd("box-pull").env("DOCKER_CONFIG", &docker_cfg).args(["-q", &reference]).output().unwrap();
    std::fs::remove_dir_all(&certs_d).unwrap();
    let _ = std::fs::remove_dir("/etc/docker/certs.d");
    crate::support::assert_success(&o, "box-pull trusting /etc/docker/certs.d/HOST/ca.crt");
    let work = Scratch::new();
    let want = reference_tree(&r, "secure/app:1", &work);
    let b = s.join("b");
    s.ok("box-unpack", &[&reference, b.to_str().unwrap()]);
    assert_eq!(listing(&b.join("rootfs"), Ignore { root: true, ..Default::default() }), want);
}

#[test]
fn resolve_needs_no_network() {
    let s = Scratch::new();
    assert_eq!(s.ok("box-pull", &["--resolve", "busybox"]), "docker.io/library/busybox:latest\nhttps://registry-1.docker.io/v2/library/busybox/manifests/latest\n");
    assert_eq!(
        s.ok("box-pull", &["--resolve", "--mirror", "http://127.0.0.1:9/", "alice/app:v1"]),
        "docker.io/alice/app:v1\nhttp://127.0.0.1:9/v2/alice/app/manifests/v1\nhttps://registry-1.docker.io/v2/alice/app/manifests/v1\n"
    );
    assert_eq!(s.ok("box-pull", &["--resolve", "localhost:5000/x"]), "localhost:5000/x:latest\nhttps://localhost:5000/v2/x/manifests/latest\nhttp://localhost:5000/v2/x/manifests/latest\n");
}

#[test]
fn registry_errors_show_the_registry_code() {
    let r = Registry::start(Mode::Plain);
    let s = Scratch::new();
    let (code, err) = s.fails("box-pull", &["-q", &format!("{}/no/such:1", r.host())]);
    assert_eq!(code, 1);
    assert!(err.contains("MANIFEST_UNKNOWN") || err.contains("NAME_UNKNOWN"), "{err}");
    assert!(err.trim_end().lines().count() == 1);
    // The store stays valid and empty of that image.
    assert!(boxkit::store::Store::open(&s.join("images")).unwrap().index().unwrap().manifests.is_empty());
}

#[test]
fn push_then_pull_back_identically() {
    let r = Registry::start(Mode::Plain);
    let s = Scratch::new();
    let layers = vec![crate::support::busybox_tar(), fixture("base.tar"), fixture("links.tar")];
    let digest = make_image(s.path(), "local/app:1", &layers, "gzip", None);
    let dest = format!("{}/team/app:1", r.host());
    // Monolithic, then (to another repository) chunked.
    assert_eq!(s.ok("box-push", &["local/app:1", &dest]).trim(), digest);
    let dest2 = format!("{}/team/chunked:1", r.host());
    assert_eq!(s.ok("box-push", &["--chunk-size", "65536", "local/app:1", &dest2]).trim(), digest);
    // Pushing again uploads nothing (HEAD finds every blob).
    let o = s.cmd("box-push").args(["--explain", "local/app:1", &dest]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && !err.contains("PUT blob") && err.contains("already there"), "{err}");
    // skopeo sees the same manifest digest; box-pull in a fresh store gets the same image.
    for d in [&dest, &dest2] {
        let o = Command::new("skopeo").args(["inspect", "--tls-verify=false"]).arg(format!("docker://{d}")).output().unwrap();
        crate::support::assert_success(&o, "skopeo inspect");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["Digest"].as_str(), Some(digest.as_str()));
        let fresh = Scratch::new();
        assert_eq!(fresh.ok("box-pull", &["-q", d]).trim(), digest);
    }
    // A cross-repository push from a pulled image mounts instead of uploading.
    let fresh = Scratch::new();
    fresh.ok("box-pull", &["-q", &dest]);
    let o = fresh.cmd("box-push").args(["--explain", &dest, &format!("{}/team/copy:1", r.host())]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("mounted blob"), "{err}");
}

#[test]
fn login_checks_and_stores_credentials() {
    let r = Registry::start(Mode::TlsBasic);
    let s = Scratch::new();
    let docker = s.join("docker");
    let login = |user: &str, pass: &str| {
        let mut c = s.cmd("box-login");
        c.env("DOCKER_CONFIG", &docker).args(["--ca-file", r.ca().to_str().unwrap(), "--username", user, "--password-stdin", &r.host()]);
        c.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(format!("{pass}\n").as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let o = login(USER, "wrong");
    assert!(!o.status.success());
    assert!(!docker.join("config.json").exists(), "bad credentials were stored");
    let o = login(USER, PASSWORD);
    crate::support::assert_success(&o, "box-login");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(docker.join("config.json")).unwrap().permissions().mode() & 0o777, 0o600);
    // Now push and pull work with the stored credentials.
    s.ok("box-import", &[fixture("base.tar").to_str().unwrap(), "base"]);
    let dest = format!("{}/priv/base:1", r.host());
    let o = s.cmd("box-push").env("DOCKER_CONFIG", &docker).args(["--ca-file", r.ca().to_str().unwrap(), "base", &dest]).output().unwrap();
    crate::support::assert_success(&o, "box-push with stored credentials");
    let o = s.cmd("box-logout").env("DOCKER_CONFIG", &docker).arg(r.host()).output().unwrap();
    assert!(o.status.success());
    let o = s.cmd("box-pull").env("DOCKER_CONFIG", &docker).args(["-q", "--ca-file", r.ca().to_str().unwrap(), &dest]).output().unwrap();
    assert!(!o.status.success(), "pulled after logout");
}

#[test]
fn mirrors_are_tried_first_for_docker_hub_images() {
    let r = Registry::start(Mode::Plain);
    let s = Scratch::new();
    let digest = make_image(s.path(), "local/bb:1", &[fixture("base.tar")], "gzip", None);
    // The mirror holds docker.io/library/busybox under its Docker Hub path.
    s.ok("box-push", &["local/bb:1", &format!("{}/library/busybox:latest", r.host())]);
    let dead = format!("http://127.0.0.1:{}", std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
    let live = format!("http://{}", r.host());
    let fresh = Scratch::new();
    // A dead mirror is skipped, the next one serves the image: Docker Hub itself is never asked.
    let o = fresh.cmd("box-pull").args(["--explain", "--mirror", &dead, "--mirror", &live, "busybox"]).output().unwrap();
    crate::support::assert_success(&o, "pull through mirrors");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), digest);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("{dead}:")) && !err.contains("registry-1.docker.io/v2/library/busybox/blobs"), "{err}");
    // The same from the config file.
    let fresh = Scratch::new();
    std::fs::write(fresh.join("config.json"), serde_json::json!({"registry-mirrors": [live]}).to_string()).unwrap();
    assert_eq!(fresh.ok("box-pull", &["-q", "busybox"]).trim(), digest);
    // Mirrors are for Docker Hub only.
    let o = fresh.cmd("box-pull").args(["--resolve", "localhost:5000/x"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&o.stdout).contains(&live));
}

#[test]
fn bearer_tokens_anonymous_and_with_credentials() {
    // The same code path as Docker Hub: 401 + Bearer challenge, a token from the realm.
    let r = Registry::start(Mode::Token);
    let tokens = r.tokens.as_ref().unwrap();
    let src = Scratch::new();
    let image = source_image(&src);
    r.push(&image, "public/app:1", &[]);
    r.push(&image, "private/app:1", &[]);
    let s = Scratch::new();
    let docker = s.join("docker");
    let pull = |reference: &str| s.cmd("box-pull").env("DOCKER_CONFIG", &docker).args(["-q", reference]).output().unwrap();
    // Anonymous: public works, private is refused with the registry's own error.
    let o = pull(&format!("{}/public/app:1", r.host()));
    crate::support::assert_success(&o, "anonymous pull of a public image");
    let o = pull(&format!("{}/private/app:1", r.host()));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("401") || err.contains("UNAUTHORIZED") || err.contains("DENIED"), "{err}");
    // With stored credentials the token grants the private image.
    boxkit::auth::store_credentials(&docker.join("config.json"), &r.host(), Some(&boxkit::auth::Credentials { username: USER.into(), password: PASSWORD.into() })).unwrap();
    let o = pull(&format!("{}/private/app:1", r.host()));
    crate::support::assert_success(&o, "pull with a token for alice");
    // Tokens are renewed before they expire, without a failed request.
    tokens.lifetime.store(10, std::sync::atomic::Ordering::SeqCst);
    let opts = boxkit::registry::Options { docker_config: Some(docker.join("config.json")), ..Default::default() };
    let client = boxkit::registry::Client::new(&format!("http://{}", r.host()), "private/app", &r.host(), &opts).unwrap();
    let before = tokens.issued.load(std::sync::atomic::Ordering::SeqCst);
    client.get_manifest("1").unwrap();
    std::thread::sleep(std::time::Duration::from_secs(6));
    client.get_manifest("1").unwrap();
    assert_eq!(tokens.issued.load(std::sync::atomic::Ordering::SeqCst) - before, 2, "the token was not renewed");
}

/// Blobs in a store, besides nothing else.
fn blob_count(s: &Scratch) -> usize {
    std::fs::read_dir(s.join("images/blobs/sha256")).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn faults_between_client_and_registry() {
    use crate::faultproxy::{Fault, FaultProxy};
    let r = Registry::start(Mode::Plain);
    let src = Scratch::new();
    let image = source_image(&src);
    r.push(&image, "f/app:1", &[]);
    let good = Scratch::new().ok("box-pull", &["-q", &format!("{}/f/app:1", r.host())]);
    let port = r.port;

    // A connection cut in the middle of each blob: resumed with Range, same digest.
    let p = FaultProxy::start(port, port, Fault::CutOnce);
    let s = Scratch::new();
    let o = s.cmd("box-pull").args(["--explain", "-q", &format!("{}/f/app:1", p.host())]).output().unwrap();
    crate::support::assert_success(&o, "pull through a cutting proxy");
    assert_eq!(String::from_utf8_lossy(&o.stdout), good);
    assert!(String::from_utf8_lossy(&o.stderr).contains("resume"), "{}", String::from_utf8_lossy(&o.stderr));
    drop(p);

    // Errors that must leave nothing unverified in the store.
    for (fault, msg) in [
        (Fault::FlipByte, "did not verify"),
        (Fault::Short, "closed the blob"),
        (Fault::WrongDigestHeader, "Docker-Content-Digest says"),
        (Fault::ManifestIsIndex, "ambiguous manifest"),
        (Fault::BodyTypeMismatch, "body says mediaType"),
    ] {
        let p = FaultProxy::start(port, port, fault);
        let s = Scratch::new();
        let (code, err) = s.fails("box-pull", &["-q", &format!("{}/f/app:1", p.host())]);
        assert_eq!(code, 1, "{fault:?}");
        assert!(err.contains(msg) && err.trim_end().lines().count() == 1, "{fault:?}: {err}");
        let store = boxkit::store::Store::open(&s.join("images")).unwrap();
        assert!(store.index().unwrap().manifests.is_empty(), "{fault:?}: an image was tagged");
        for e in std::fs::read_dir(s.join("images/blobs/sha256")).unwrap().flatten() {
            let bytes = std::fs::read(e.path()).unwrap();
            let name = e.file_name().into_string().unwrap();
            assert_eq!(format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(&bytes)), name, "{fault:?}: unverified blob");
        }
        if fault == Fault::FlipByte {
            assert!(blob_count(&s) <= 1, "only the config may have landed");
        }
    }

    // A redirect to another host: the blob is fetched there without our credentials.
    let tr = Registry::start(Mode::Token);
    tr.push(&image, "f/app:1", &[]);
    let p = FaultProxy::start(tr.port, port, Fault::RedirectToCdn);
    let s = Scratch::new();
    let docker = s.join("docker");
    boxkit::auth::store_credentials(&docker.join("config.json"), &p.host(), Some(&boxkit::auth::Credentials { username: USER.into(), password: PASSWORD.into() })).unwrap();
    let o = s.cmd("box-pull").env("DOCKER_CONFIG", &docker).args(["-q", &format!("{}/f/app:1", p.host())]).output().unwrap();
    crate::support::assert_success(&o, "pull with blobs redirected to another host");
    assert_eq!(String::from_utf8_lossy(&o.stdout), good);
    assert!(p.cdn_hits.load(std::sync::atomic::Ordering::SeqCst) > 0, "the redirect was not followed: {o:?}");
    assert!(p.cdn_auth.lock().unwrap().is_empty(), "credentials leaked to another host: {:?}", p.cdn_auth.lock().unwrap());
}

#[test]
fn a_killed_pull_leaves_a_valid_store_and_the_next_pull_finishes() {
    use crate::faultproxy::{Fault, FaultProxy};
    let r = Registry::start(Mode::Plain);
    let src = Scratch::new();
    r.push(&source_image(&src), "k/app:1", &[]);
    let p = FaultProxy::start(r.port, r.port, Fault::Slow);
    let s = Scratch::new();
    let mut child = s.cmd("box-pull").args(["-q", &format!("{}/k/app:1", p.host())]).spawn().unwrap();
    // Wait until blob data is being written, then kill it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let writing = std::fs::read_dir(s.join("images/blobs")).map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with(".tmp-") && e.metadata().map(|m| m.len() > 0).unwrap_or(false))).unwrap_or(false);
        if writing {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the pull never started writing");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The store is valid: index.json parses, names nothing, and every blob verifies.
    let store = boxkit::store::Store::open(&s.join("images")).unwrap();
    assert!(store.index().unwrap().manifests.is_empty());
    for e in std::fs::read_dir(s.join("images/blobs/sha256")).unwrap().flatten() {
        let bytes = std::fs::read(e.path()).unwrap();
        assert_eq!(format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(&bytes)), e.file_name().into_string().unwrap());
    }
    drop(p);
    // The next pull (straight from the registry) finishes the job.
    let digest = s.ok("box-pull", &["-q", &format!("{}/k/app:1", r.host())]);
    assert!(digest.starts_with("sha256:"));
    let b = s.join("b");
    s.ok("box-unpack", &[&format!("{}/k/app:1", r.host()), b.to_str().unwrap()]);
}

#[test]
fn progress_bars_on_a_terminal_only() {
    require("script");
    let r = Registry::start(Mode::Plain);
    let s = Scratch::new();
    let digest = make_image(s.path(), "p/app:1", &[crate::support::busybox_tar()], "gzip", None);
    s.ok("box-push", &["p/app:1", &format!("{}/p/app:1", r.host())]);
    // On a terminal (script(1) gives the command one), stderr shows a bar per blob.
    let fresh = Scratch::new();
    let cmd = format!("{} --root {} {}/p/app:1", crate::support::bin("box-pull").display(), fresh.path().display(), r.host());
    let o = Command::new("script").args(["-qec", &cmd, "/dev/null"]).env("TERM", "xterm").output().unwrap();
    crate::support::assert_success(&o, "box-pull on a terminal");
    let screen = String::from_utf8_lossy(&o.stdout);
    assert!(screen.contains("MiB") || screen.contains("KiB"), "no progress shown:\n{screen}");
    assert!(screen.contains(&digest));
    // Through a pipe, stdout is the digest alone and stderr is silent.
    let fresh = Scratch::new();
    let o = fresh.cmd("box-pull").arg(format!("{}/p/app:1", r.host())).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), digest);
    assert!(o.stderr.is_empty(), "{}", String::from_utf8_lossy(&o.stderr));
}
