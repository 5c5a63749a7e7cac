//! Shared helpers for the integration tests: locating the built binaries, scratch roots,
//! and the offline fixtures (the busybox rootfs and the layer tars), built once per run.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The workspace directory.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where cargo put the binaries of this build profile (next to the test executable).
pub fn bin_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let dir = exe.parent().unwrap().parent().unwrap().to_path_buf(); // target/<profile>/deps/..
        assert!(
            dir.join("box-spawn").exists(),
            "the box-* binaries are not built in {}: run `cargo build --workspace` first",
            dir.display()
        );
        dir
    })
    .clone()
}

pub fn bin(tool: &str) -> PathBuf {
    bin_dir().join(tool)
}

/// A PATH with the built tools first.
pub fn path_env() -> String {
    format!("{}:{}", bin_dir().display(), std::env::var("PATH").unwrap_or_default())
}

/// A scratch BOXKIT_ROOT, removed (with anything mounted under it) when dropped.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        let dir = tempfile::Builder::new().prefix("boxkit-test-").tempdir().unwrap();
        Scratch { dir }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn join(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    /// A box tool with `--root` pointing here.
    pub fn cmd(&self, tool: &str) -> Command {
        let mut c = Command::new(bin(tool));
        c.env("BOXKIT_ROOT", self.path()).env("PATH", path_env()).env_remove("SOURCE_DATE_EPOCH");
        c
    }
    /// Run a tool, expect success, return stdout.
    pub fn ok(&self, tool: &str, args: &[&str]) -> String {
        let out = self.cmd(tool).args(args).stdin(Stdio::null()).output().unwrap();
        assert_success(&out, &format!("{tool} {args:?}"));
        String::from_utf8(out.stdout).unwrap()
    }
    /// Run a tool, expect failure, return (exit code, stderr).
    pub fn fails(&self, tool: &str, args: &[&str]) -> (i32, String) {
        let out = self.cmd(tool).args(args).stdin(Stdio::null()).output().unwrap();
        assert!(!out.status.success(), "{tool} {args:?} succeeded: {}", String::from_utf8_lossy(&out.stdout));
        (out.status.code().unwrap_or(-1), String::from_utf8(out.stderr).unwrap())
    }
    /// Import the offline busybox image as `busybox` (and return its digest).
    /// Run `sh -c SCRIPT` in `bundle` with box-spawn (on this scratch root, stdin closed).
    pub fn spawn_sh(&self, bundle: &Path, extra: &[&str], script: &str) -> Output {
        self.cmd("box-spawn").args(extra).arg(bundle).args(["--", "sh", "-c", script]).stdin(Stdio::null()).output().unwrap()
    }

    pub fn import_busybox(&self) -> String {
        let tar = busybox_tar();
        self.ok("box-import", &["--change", r#"CMD ["sh"]"#, tar.to_str().unwrap(), "busybox"]).trim().to_string()
    }
    /// Import busybox and unpack it into a bundle called `name`.
    pub fn busybox_bundle(&self, name: &str) -> PathBuf {
        self.import_busybox();
        let b = self.join(name);
        self.ok("box-unpack", &["busybox", b.to_str().unwrap()]);
        b
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Unmount anything a failed test left mounted below the scratch dir, deepest first.
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let prefix = self.path().to_string_lossy().into_owned();
        let mut under: Vec<&str> =
            mounts.lines().filter_map(|l| l.split_whitespace().nth(1)).filter(|m| m.starts_with(&prefix)).collect();
        under.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in under {
            let c = std::ffi::CString::new(m).unwrap();
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed with {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Fixtures are built afresh once per test run, under cargo's scratch directory for
/// integration tests (target/tmp), so nothing is left in /tmp.
fn fixtures_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fixtures");
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

/// The busybox root filesystem tar from testdata/busybox/make-rootfs.sh, built once.
pub fn busybox_tar() -> PathBuf {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        // One built ahead of time (tests/cgroup-v2/run-vm.sh: slow to build under emulation).
        if let Some(tar) = std::env::var_os("BOXKIT_TEST_BUSYBOX_TAR") {
            return PathBuf::from(tar);
        }
        let out = fixtures_dir().join("busybox.tar");
        let o = Command::new("bash")
            .arg(workspace().join("testdata/busybox/make-rootfs.sh"))
            .arg(&out)
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .unwrap();
        assert_success(&o, "testdata/busybox/make-rootfs.sh");
        out
    })
    .clone()
}

/// The layer fixtures from testdata/layers/make-fixtures.py, built once.
pub fn fixture(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = fixtures_dir().join("layers");
        let o = Command::new("python3")
            .arg(workspace().join("testdata/layers/make-fixtures.py"))
            .arg(&dir)
            .output()
            .unwrap();
        assert_success(&o, "testdata/layers/make-fixtures.py");
        dir
    });
    let p = dir.join(name);
    assert!(p.exists(), "no fixture {name}");
    p
}

/// Is a program installed on this machine?
pub fn have(prog: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {prog}")).stdout(Stdio::null()).status().map(|s| s.success()).unwrap_or(false)
}

/// Peers the tests compare against must be installed (tests/run.sh installs them); a missing
/// one is a failure, not a skip, so a green run always means the comparison happened.
pub fn require(prog: &str) {
    assert!(have(prog), "{prog} is not installed: run tests/run.sh (it installs the peers) or apt-get install it");
}

/// Run a shell snippet with the built tools on PATH; returns the output.
pub fn sh(script: &str, root: &Path) -> Output {
    Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("PATH", path_env())
        .env("BOXKIT_ROOT", root)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Build an image from layer tars (applied in order) in the store at `root/images`, with
/// each layer compressed as `compression` ("gzip", "zstd" or "none"); tag it `name`.
/// Returns the manifest digest.
pub fn make_image(root: &Path, name: &str, layers: &[PathBuf], compression: &str, config: Option<serde_json::Value>) -> String {
    use boxkit::digest::Digest;
    use boxkit::oci::{self, Descriptor};
    use std::io::Write;
    let store = boxkit::store::Store::init(&root.join("images")).unwrap();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for l in layers {
        let raw = std::fs::read(l).unwrap();
        diff_ids.push(Digest::of(&raw).to_string());
        let (media, bytes) = match compression {
            "gzip" => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(&raw).unwrap();
                (oci::MEDIA_OCI_LAYER_GZIP, e.finish().unwrap())
            }
            "docker-gzip" => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(&raw).unwrap();
                (oci::MEDIA_DOCKER_LAYER_GZIP, e.finish().unwrap())
            }
            "zstd" => (oci::MEDIA_OCI_LAYER_ZSTD, zstd::encode_all(&raw[..], 3).unwrap()),
            _ => (oci::MEDIA_OCI_LAYER, raw),
        };
        descs.push(store.put_bytes(media, &bytes).unwrap());
    }
    let mut cfg = config.unwrap_or_else(|| serde_json::json!({"config": {"Cmd": ["sh"]}}));
    cfg["architecture"] = boxkit::oci::host_architecture().into();
    cfg["os"] = "linux".into();
    cfg["rootfs"] = serde_json::json!({"type": "layers", "diff_ids": diff_ids});
    let cdesc = store.put_bytes(oci::MEDIA_OCI_CONFIG, cfg.to_string().as_bytes()).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": oci::MEDIA_OCI_MANIFEST,
        "config": cdesc,
        "layers": descs,
    });
    let mdesc: Descriptor = store.put_bytes(oci::MEDIA_OCI_MANIFEST, manifest.to_string().as_bytes()).unwrap();
    store.tag(&boxkit::reference::Reference::parse(name).unwrap(), &mdesc).unwrap();
    mdesc.digest.to_string()
}

/// Unpack `name` from the scratch store into `root/<bundle>` and return the bundle path.
pub fn unpack(s: &Scratch, name: &str, bundle: &str) -> PathBuf {
    let b = s.join(bundle);
    s.ok("box-unpack", &[name, b.to_str().unwrap()]);
    b
}

/// Change a bundle's config.json in place.
pub fn edit_config(bundle: &Path, change: impl FnOnce(&mut serde_json::Value)) {
    let path = bundle.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    change(&mut spec);
    std::fs::write(&path, spec.to_string()).unwrap();
}

/// The hostile-layer tests aim at the one host directory /tmp/boxkit-victim: they take this
/// lock so they never run at the same time.
pub fn victim_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Wait until `ready()` holds, checking every 10 ms; fail the test after a minute, naming
/// `what`, instead of hanging when what it waits for never happens.
pub fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A command's standard output, as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A command's standard error, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
