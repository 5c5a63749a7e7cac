//! THREATS.md, layer section: every hostile layer is contained inside the rootfs or refused
//! with a clear error, and the host is left untouched. The fixtures aim at
//! /tmp/boxkit-victim, so the cases run one after another in a single test.

use crate::support::{fixture, make_image, Scratch};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

const VICTIM: &str = "/tmp/boxkit-victim";

fn fresh_victim() {
    let _ = std::fs::remove_dir_all(VICTIM);
    std::fs::create_dir_all(VICTIM).unwrap();
    std::fs::write(format!("{VICTIM}/file"), "host file\n").unwrap();
    std::fs::set_permissions(format!("{VICTIM}/file"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(format!("{VICTIM}/keepme"), "keep\n").unwrap();
}

fn victim_untouched(case: &str) {
    let mut names: Vec<_> = std::fs::read_dir(VICTIM).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["file", "keepme"], "{case}: the host directory changed");
    let m = std::fs::metadata(format!("{VICTIM}/file")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o600, "{case}: host file mode changed");
    assert_eq!(std::fs::read_to_string(format!("{VICTIM}/file")).unwrap(), "host file\n");
}

/// Unpack the layers; Ok(rootfs) or Err(stderr).
fn try_unpack(s: &Scratch, layers: &[&str], tag: &str) -> Result<std::path::PathBuf, String> {
    let paths: Vec<_> = layers.iter().map(|l| fixture(l)).collect();
    make_image(s.path(), tag, &paths, "gzip", None);
    let b = s.join(&format!("bundle-{tag}"));
    let out = s.cmd("box-unpack").args([tag, b.to_str().unwrap()]).output().unwrap();
    if out.status.success() {
        Ok(b.join("rootfs"))
    } else {
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.starts_with("box-unpack: ") && err.trim_end().lines().count() == 1, "not one clear line: {err}");
        assert!(!b.exists(), "a failed unpack left a bundle");
        Err(err)
    }
}

#[test]
fn hostile_layers_are_contained_or_refused() {
    let _victim = crate::support::victim_lock();
    let s = Scratch::new();
    fresh_victim();
    let passwd_before = std::fs::metadata("/etc/passwd").unwrap();
    let host_root_before: Vec<_> = std::fs::read_dir("/").unwrap().map(|e| e.unwrap().file_name()).collect();

    // Names with .. are clamped inside the root.
    let r = try_unpack(&s, &["attack-dotdot.tar"], "dotdot").expect("dotdot");
    for n in ["escape-dotdot", "escape-abs", "escape-nested"] {
        assert!(r.join(n).is_file(), "{n} was not clamped inside the root");
        assert!(!Path::new("/").join(n).exists() && !s.path().join(n).exists());
    }
    victim_untouched("dotdot");

    // Writing through symlinked directories lands inside the root.
    let r = try_unpack(&s, &["attack-symlink-dir.tar"], "symdir").expect("symlink-dir");
    assert!(r.join("tmp/boxkit-victim/pwned").is_file() && r.join("tmp/boxkit-victim/pwned2").is_file());
    victim_untouched("symlink-dir");

    // Hard links to host files: the target is looked up inside the root, where it is absent.
    let err = try_unpack(&s, &["attack-hardlink.tar"], "hardlink").unwrap_err();
    assert!(err.contains("hardlink"), "{err}");
    let passwd_after = std::fs::metadata("/etc/passwd").unwrap();
    assert_eq!((passwd_before.nlink(), passwd_before.ino()), (passwd_after.nlink(), passwd_after.ino()));

    // A directory that is a symlink to a host path in layer 1, written under in layer 2.
    let r = try_unpack(&s, &["attack-layer-dot-symlink.1.tar", "attack-layer-dot-symlink.2.tar"], "dotsym").expect("layer symlink");
    assert!(r.join("tmp/boxkit-victim/pwned3").is_file());
    victim_untouched("layer-dot-symlink");

    // "." as a symlink never replaces the root.
    let r = try_unpack(&s, &["attack-root-dot-symlink.1.tar", "attack-root-dot-symlink.2.tar"], "rootsym").expect("root symlink");
    assert!(std::fs::symlink_metadata(&r).unwrap().is_dir() && r.join("pwned4").is_file());
    victim_untouched("root-dot-symlink");

    // A hard link to a symlink, then a chmod of the link: nothing is chmodded through it.
    let r = try_unpack(&s, &["attack-hardlink-symlink-chmod.tar"], "hlchmod").expect("hardlink-symlink");
    assert!(std::fs::symlink_metadata(r.join("hard")).unwrap().file_type().is_symlink());
    victim_untouched("hardlink-symlink-chmod");

    // Whiteouts that name no file are refused.
    for case in ["dotdot", "dots3", "nested", "bare"] {
        let err = try_unpack(&s, &[&format!("attack-whiteout-names.{case}.tar")], &format!("wh{case}")).unwrap_err();
        assert!(err.contains("invalid whiteout"), "{case}: {err}");
    }
    victim_untouched("whiteout names");

    // A whiteout under a symlink to a host directory deletes nothing on the host.
    try_unpack(&s, &["attack-whiteout-linkdir.1.tar", "attack-whiteout-linkdir.2.tar"], "whlink").expect("whiteout linkdir");
    victim_untouched("whiteout-linkdir");

    // Broken archives: clear errors.
    let err = try_unpack(&s, &["attack-trailing-garbage.tar"], "garbage").unwrap_err();
    assert!(err.contains("trailing data"), "{err}");
    let err = try_unpack(&s, &["attack-truncated.tar"], "truncated").unwrap_err();
    assert!(err.to_lowercase().contains("eof") || err.contains("unexpected end"), "{err}");
    for huge in ["attack-sparse-huge.tar", "attack-huge-base256.tar"] {
        try_unpack(&s, &[huge], "huge").unwrap_err();
    }

    // Image config volumes outside the root stay inside it (containerd CVE-2022-23648).
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture("attack-volume-config.json")).unwrap()).unwrap();
    make_image(s.path(), "vol", &[fixture("base.tar")], "gzip", Some(cfg));
    let b = s.join("bundle-vol");
    s.ok("box-unpack", &["vol", b.to_str().unwrap()]);
    assert!(b.join("rootfs/etc/shadow-boxkit").is_dir());
    assert!(!Path::new("/etc/shadow-boxkit").exists());

    let host_root_after: Vec<_> = std::fs::read_dir("/").unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(host_root_before, host_root_after);
    let _ = std::fs::remove_dir_all(VICTIM);
}

#[test]
fn an_unprivileged_user_cannot_reach_setuid_files_in_a_bundle() {
    // CVE-2021-41103: the bundle directory is 0700, so nobody else can walk into the rootfs.
    let s = Scratch::new();
    std::fs::set_permissions(s.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    make_image(s.path(), "t", &[fixture("links.tar")], "gzip", None);
    let b = crate::support::unpack(&s, "t", "b");
    assert!(b.join("rootfs/suid").exists());
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "stat", b.join("rootfs/suid").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success(), "nobody could stat a setuid file inside the bundle");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));
}

#[test]
fn a_huge_index_json_is_refused_with_bounded_memory() {
    // containerd CVE-2023-25153: an index.json of many GiB must not be read into memory.
    let s = Scratch::new();
    s.ok("box-import", &[fixture("base.tar").to_str().unwrap(), "t"]);
    let idx = s.join("images/index.json");
    let f = std::fs::OpenOptions::new().append(true).open(&idx).unwrap();
    f.set_len(4 << 30).unwrap(); // 4 GiB, sparse
    let (code, err) = s.fails("box-unpack", &["t", s.join("b").to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("index.json") && err.contains("larger than"), "{err}");
}

#[test]
fn export_never_follows_a_symlink_swapped_in_during_the_walk() {
    // docker cp CVE-2018-15664: a running container swaps a directory for a symlink to a
    // host path while it is exported. The walk holds directory descriptors and opens every
    // name with O_NOFOLLOW, so the tar never holds the host's file.
    let s = Scratch::new();
    let host = s.join("host-secret");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("data"), "HOST-SECRET\n").unwrap();
    make_image(s.path(), "t", &[fixture("base.tar")], "gzip", None);
    let b = crate::support::unpack(&s, "t", "b");
    let dir = b.join("rootfs/data/dir");
    std::fs::write(dir.join("data"), "container data\n").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (dir, host, stop) = (dir.clone(), host.clone(), stop.clone());
        std::thread::spawn(move || {
            let real = dir.with_file_name("dir.real");
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::fs::rename(&dir, &real);
                let _ = std::os::unix::fs::symlink(&host, &dir);
                let _ = std::fs::remove_file(&dir);
                let _ = std::fs::rename(&real, &dir);
            }
        })
    };
    for _ in 0..40 {
        let o = s.cmd("box-export").arg(&b).output().unwrap();
        let tar = String::from_utf8_lossy(&o.stdout);
        assert!(!tar.contains("HOST-SECRET"), "a host file leaked into the export");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    swapper.join().unwrap();
}

#[test]
fn a_fifo_at_etc_passwd_does_not_hang_unpack() {
    // The image's own /etc/passwd is read to resolve its USER; a FIFO there must not block.
    let s = Scratch::new();
    let dir = s.join("img");
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    let c = std::ffi::CString::new(dir.join("etc/passwd").to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let tar = s.join("img.tar");
    let o = std::process::Command::new("tar").arg("-C").arg(&dir).arg("-cf").arg(&tar).arg(".").output().unwrap();
    crate::support::assert_success(&o, "tar");
    s.ok("box-import", &["--change", "USER 0", tar.to_str().unwrap(), "fifo"]);
    let b = s.join("b");
    let mut child = s.cmd("box-unpack").args(["fifo", b.to_str().unwrap()]).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success());
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("box-unpack hangs on a FIFO at /etc/passwd");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
