//! box-commit: every kind of change, from a copied bundle and from an overlay bundle, becomes a
//! layer that box-unpack and `umoci unpack` turn back into exactly the tree the container saw;
//! skopeo reads the image; the same changes give the same digest; `.wh.*` files, bad bundles
//! and a running container.

use crate::support::{assert_success, bin, busybox_tar, require, sh, Scratch};
use crate::tree::{listing, Ignore};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// An image `base:1`: busybox plus a `data/` tree with something for every kind of change.
fn base_image(s: &Scratch) {
    let script = format!(
        r#"set -e; cd {dir}; mkdir base; tar -C base -xf {bb}; cd base
        mkdir -p data/dir/sub data/gone/deep data/tobefile data/dirback data/opq
        echo a > data/dir/a; echo b > data/dir/b; echo c > data/dir/sub/c; echo deep > data/gone/deep/x
        echo f > data/file; echo x > data/tobefile/x; echo y > data/dirback/y; echo fileback > data/fileback
        echo 1 > data/opq/1; echo 2 > data/opq/2; echo kept > data/kept
        echo m > data/mode; echo o > data/owner; echo x > data/xattr
        echo pair > data/pair1; ln data/pair1 data/pair2
        cd ..; tar --numeric-owner -C base -cf base.tar .; box-import base.tar base:1 >/dev/null"#,
        dir = s.path().display(),
        bb = busybox_tar().display()
    );
    assert_success(&sh(&script, s.path()), "build base:1");
}

/// Every kind of change, made from the host in a bundle's rootfs.
const CHANGES: &str = r#"set -e
echo modified > data/file
rm data/dir/a
rm -rf data/gone
rm -rf data/tobefile; echo now-a-file > data/tobefile
rm -rf data/dirback; echo tmp > data/dirback; rm data/dirback; mkdir data/dirback; echo back > data/dirback/new
rm data/fileback; mkdir data/fileback; echo in > data/fileback/x
rm -rf data/opq; mkdir data/opq; echo new > data/opq/n
ln data/file data/file-link
ln data/kept data/kept-link
ln -s ../etc/passwd data/sym
chmod 4711 data/mode
chown 1000:2000 data/owner
python3 -c "import os; os.setxattr('data/xattr', 'user.note', b'hello')"
mkfifo data/fifo
mknod data/null c 1 3
mkdir -p new/deep/dir; echo n > new/deep/dir/f
rm data/pair2; echo more >> data/pair1
"#;

fn change(bundle: &Path, script: &str) {
    let o = Command::new("bash").arg("-c").arg(script).current_dir(bundle.join("rootfs")).output().unwrap();
    assert_success(&o, "change the rootfs");
}

/// A copied bundle (box-unpack) of `image`.
fn copy_bundle(s: &Scratch, image: &str, name: &str) -> PathBuf {
    let b = s.join(name);
    s.ok("box-unpack", &[image, b.to_str().unwrap()]);
    b
}

/// An overlay bundle made by hand, as box-mount-layers makes one: the image unpacked as the
/// lower directory, `upper/` and `work/` in the bundle, `rootfs/` the overlay mount.
fn overlay_bundle(s: &Scratch, image: &str, name: &str) -> PathBuf {
    // The real thing: the image's cached layers under an overlay, the changes in upper/.
    let b = s.join(name);
    s.ok("box-mount-layers", &[image, b.to_str().unwrap()]);
    let info = boxkit::bundle::read_info(&b).unwrap();
    assert_eq!(info.storage, boxkit::bundle::Storage::Overlay, "box-mount-layers fell back to a copy");
    b
}

fn layout_ref(s: &Scratch, tag: &str) -> String {
    format!("{}:docker.io/library/{tag}", s.join("images").display())
}

fn store(s: &Scratch) -> boxkit::store::Store {
    boxkit::store::Store::open(&s.join("images")).unwrap()
}

/// The entries of an image's last layer: (path, type flag, link target).
fn last_layer(s: &Scratch, image: &str) -> Vec<(String, char, String)> {
    let st = store(s);
    let img = st.image(image).unwrap();
    let l = img.manifest.layers.last().unwrap();
    assert_eq!(l.media_type, boxkit::oci::MEDIA_OCI_LAYER_GZIP);
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(st.open_blob(&l.digest).unwrap()));
    ar.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let link = e.link_name().unwrap().map(|l| l.display().to_string()).unwrap_or_default();
            (e.path().unwrap().display().to_string(), e.header().entry_type().as_byte() as char, link)
        })
        .collect()
}

fn assert_same_tree(what: &str, ours: &Path, theirs: &Path, ig: Ignore) {
    let (a, b) = (listing(ours, ig), listing(theirs, ig));
    if a != b {
        let (x, y): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
        let only_a: Vec<_> = x.iter().filter(|l| !y.contains(l)).collect();
        let only_b: Vec<_> = y.iter().filter(|l| !x.contains(l)).collect();
        panic!("{what}: trees differ\nonly in the container: {only_a:#?}\nonly in the unpacked commit: {only_b:#?}");
    }
}

/// Commit a changed bundle; unpack the result with box-unpack and umoci; both must equal what
/// the container saw. Returns the entries of the new layer.
fn round_trip(overlay: bool) -> Vec<(String, char, String)> {
    require("umoci");
    require("skopeo");
    let s = Scratch::new();
    base_image(&s);
    let b = if overlay { overlay_bundle(&s, "base:1", "b") } else { copy_bundle(&s, "base:1", "b") };
    change(&b, CHANGES);
    let digest = s.ok("box-commit", &["-m", "every change", "-a", "Ann <ann@example.org>", "-c", "ENV COMMITTED=1", b.to_str().unwrap(), "committed:1"]);
    assert!(digest.trim().starts_with("sha256:"), "{digest}");
    let ig = Ignore { root: true, ..Default::default() };
    let ours = copy_bundle(&s, "committed:1", "unpacked");
    assert_same_tree("box-unpack", &b.join("rootfs"), &ours.join("rootfs"), ig);
    let theirs = s.join("umoci-unpacked");
    let o = Command::new("umoci").args(["unpack", "--image", &layout_ref(&s, "committed:1")]).arg(&theirs).output().unwrap();
    assert_success(&o, "umoci unpack");
    assert_same_tree("umoci unpack", &b.join("rootfs"), &theirs.join("rootfs"), ig);

    let o = Command::new("skopeo").arg("inspect").arg(format!("oci:{}", layout_ref(&s, "committed:1"))).output().unwrap();
    assert_success(&o, "skopeo inspect");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["Digest"].as_str(), Some(digest.trim()));
    assert_eq!(v["Layers"].as_array().unwrap().len(), 2);

    let img = store(&s).image("committed:1").unwrap();
    let parent = store(&s).image("base:1").unwrap();
    assert_eq!(img.config.rootfs.diff_ids[..1], parent.config.rootfs.diff_ids[..]);
    assert_eq!(img.config.history.len(), 2);
    let h = &img.config.history[1];
    assert_eq!(h.comment.as_deref(), Some("every change"));
    assert_eq!(h.author.as_deref(), Some("Ann <ann@example.org>"));
    assert!(!h.empty_layer);
    assert!(img.config.config.env.as_ref().unwrap().contains(&"COMMITTED=1".to_string()));
    assert_eq!(img.config.config.cmd, parent.config.config.cmd);
    assert_eq!(img.manifest.annotations["org.opencontainers.image.base.digest"], parent.descriptor.digest.to_string());
    last_layer(&s, "committed:1")
}

fn has(entries: &[(String, char, String)], path: &str) -> bool {
    entries.iter().any(|(p, _, _)| p.trim_end_matches('/') == path)
}

#[test]
fn every_change_round_trips_from_a_copied_bundle() {
    let e = round_trip(false);
    for p in ["data/dir/.wh.a", "data/.wh.gone", "data/.wh.pair2", "data/tobefile", "data/dirback/.wh.y", "data/opq/.wh.1", "data/opq/.wh.2", "data/sym"] {
        assert!(has(&e, p), "no {p} in {e:#?}");
    }
    // One whiteout for a deleted directory, nothing below it; unchanged files stay out.
    assert!(!e.iter().any(|(p, _, _)| p.starts_with("data/gone/") || p == "data/dir/b" || p.starts_with("bin/")), "{e:#?}");
    // The new link to an unchanged file: one inode, with its content, as a data entry + a link.
    let kept: Vec<_> = e.iter().filter(|(p, _, _)| p.starts_with("data/kept")).collect();
    assert_eq!(kept.len(), 2, "{e:#?}");
    assert!(kept.iter().any(|(_, t, l)| *t == '1' && !l.is_empty()), "{kept:?}");
}

#[test]
fn every_change_round_trips_from_an_overlay_bundle() {
    let e = round_trip(true);
    for p in ["data/dir/.wh.a", "data/.wh.gone", "data/.wh.pair2", "data/opq/.wh..wh..opq", "data/dirback/.wh..wh..opq", "data/sym"] {
        assert!(has(&e, p), "no {p} in {e:#?}");
    }
    assert!(!e.iter().any(|(p, _, _)| p.starts_with("data/gone/") || p.starts_with("bin/")), "{e:#?}");
}

/// Commit `CHANGES` made in a fresh bundle of base:1 and return the manifest digest.
fn commit_changes(s: &Scratch, name: &str, overlay: bool) -> String {
    let b = if overlay { overlay_bundle(s, "base:1", name) } else { copy_bundle(s, "base:1", name) };
    change(&b, CHANGES);
    // Files written at different moments: the clamp makes their times equal.
    let o = s.cmd("box-commit").env("SOURCE_DATE_EPOCH", "1700000000").args([b.to_str().unwrap(), &format!("{name}:1")]).output().unwrap();
    assert_success(&o, "box-commit");
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

#[test]
fn the_same_changes_give_the_same_digest() {
    let s = Scratch::new();
    base_image(&s);
    for overlay in [false, true] {
        let (one, two) = (format!("one{overlay}"), format!("two{overlay}"));
        let a = commit_changes(&s, &one, overlay);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let b = commit_changes(&s, &two, overlay);
        assert_eq!(a, b, "same changes, same SOURCE_DATE_EPOCH: same image (overlay: {overlay})");
        let layer = |n: &str| store(&s).image(&format!("{n}:1")).unwrap().manifest.layers.last().unwrap().digest.clone();
        assert_eq!(layer(&one), layer(&two));
    }
}

fn index_before_after(s: &Scratch, f: impl FnOnce()) {
    let before = std::fs::read(s.join("images/index.json")).unwrap();
    f();
    assert_eq!(std::fs::read(s.join("images/index.json")).unwrap(), before, "the store's index changed");
}

#[test]
fn a_real_whiteout_named_file_is_refused() {
    let s = Scratch::new();
    s.import_busybox();
    for overlay in [false, true] {
        let name = format!("wh{overlay}");
        let b = if overlay { overlay_bundle(&s, "busybox", &name) } else { copy_bundle(&s, "busybox", &name) };
        change(&b, "mkdir -p tmp/x && echo evil > tmp/x/.wh.passwd");
        index_before_after(&s, || {
            let (code, err) = s.fails("box-commit", &[b.to_str().unwrap(), "evil:1"]);
            assert_eq!(code, 1);
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(err.contains("/tmp/x/.wh.passwd") && err.contains("cannot be committed"), "{err}");
        });
    }
}

#[test]
fn bad_bundles_are_refused_clearly() {
    let s = Scratch::new();
    s.import_busybox();
    let nothing = s.join("nothing");
    let (_, err) = s.fails("box-commit", &[nothing.to_str().unwrap(), "x"]);
    assert!(err.contains("nothing") && err.contains("box-unpack or box-mount-layers"), "{err}");
    // A runtime bundle boxkit did not make (no boxkit.json).
    let b = copy_bundle(&s, "busybox", "b");
    std::fs::rename(b.join("boxkit.json"), s.join("saved.json")).unwrap();
    let (_, err) = s.fails("box-commit", &[b.to_str().unwrap(), "x"]);
    assert!(err.contains("boxkit.json") || err.contains("box-unpack or box-mount-layers"), "{err}");
    std::fs::rename(s.join("saved.json"), b.join("boxkit.json")).unwrap();
    // A copied bundle without its record.
    std::fs::remove_file(b.join("rootfs.mtree")).unwrap();
    let (_, err) = s.fails("box-commit", &[b.to_str().unwrap(), "x"]);
    assert!(err.contains("rootfs.mtree"), "{err}");
    // A bad reference.
    let (_, err) = s.fails("box-commit", &[b.to_str().unwrap(), "UPPER:x"]);
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn an_empty_diff_still_makes_a_layer() {
    let s = Scratch::new();
    s.import_busybox();
    let b = copy_bundle(&s, "busybox", "b");
    s.ok("box-commit", &[b.to_str().unwrap(), "same:1"]);
    assert!(last_layer(&s, "same:1").is_empty());
    assert_eq!(store(&s).image("same:1").unwrap().manifest.layers.len(), 2);
}

/// The container's counter, as the committed image holds it: (counter, lines of the log).
fn committed_counter(s: &Scratch, image: &str, name: &str) -> (u64, Vec<u64>) {
    let b = copy_bundle(s, image, name);
    let counter = std::fs::read_to_string(b.join("rootfs/counter")).unwrap().trim().parse().unwrap();
    let log = std::fs::read_to_string(b.join("rootfs/log")).unwrap().lines().map(|l| l.parse().unwrap()).collect();
    (counter, log)
}

fn commit_while_running(cgroup: Option<&str>) {
    let s = Scratch::new();
    s.import_busybox();
    let b = copy_bundle(&s, "busybox", "running");
    let mut args: Vec<String> = Vec::new();
    let mut group = None;
    if let Some(name) = cgroup {
        let o = Command::new(bin("box-cgroup-limit")).args(["--pids", "100", "--create", name]).output().unwrap();
        assert_success(&o, "box-cgroup-limit --create");
        let path = String::from_utf8(o.stdout).unwrap().trim().to_string();
        args = vec!["--cgroup".into(), path];
        group = Some(name);
    }
    let script = "i=0; while :; do i=$((i+1)); echo $i > /counter.new; mv /counter.new /counter; echo $i >> /log; done";
    // box-spawn always puts a container in a cgroup of boxkit's (its own, or --cgroup's);
    // a plain chroot stands for a container some other runtime started.
    let mut child = if cgroup.is_some() {
        Command::new(bin("box-spawn")).args(&args).arg(&b).args(["--", "sh", "-c", script]).stdin(Stdio::null()).stdout(Stdio::null()).spawn().unwrap()
    } else {
        Command::new("chroot").arg(b.join("rootfs")).args(["sh", "-c", script]).stdin(Stdio::null()).stdout(Stdio::null()).spawn().unwrap()
    };
    crate::support::wait_until("the container's first write", || b.join("rootfs/log").exists());
    let result = std::panic::catch_unwind(|| {
        for n in 0..3 {
            let o = s.cmd("box-commit").args(["--explain", b.to_str().unwrap(), &format!("snap:{n}")]).output().unwrap();
            assert_success(&o, "box-commit of a running container");
            let err = String::from_utf8_lossy(&o.stderr);
            if cgroup.is_some() {
                assert!(err.contains("cgroup freezer"), "{err}");
            } else {
                assert!(err.contains("SIGSTOP") && err.contains("SIGCONT"), "{err}");
            }
            // A consistent moment: the log holds 1..n and the counter is n or n+1 (frozen
            // between its two steps), never a torn file.
            let (counter, log) = committed_counter(&s, &format!("snap:{n}"), &format!("check{n}"));
            assert!(!log.is_empty());
            assert!(log.iter().enumerate().all(|(i, &v)| v == i as u64 + 1), "log is not 1..n");
            let last = *log.last().unwrap();
            assert!(counter == last || counter == last + 1, "counter {counter}, log ends at {last}");
        }
        // Thawed: the container goes on writing, and none of its processes is stopped.
        let before = std::fs::metadata(b.join("rootfs/log")).unwrap().len();
        let mut grew = false;
        for _ in 0..500 {
            std::thread::sleep(std::time::Duration::from_millis(10));
            if std::fs::metadata(b.join("rootfs/log")).unwrap().len() > before {
                grew = true;
                break;
            }
        }
        assert!(grew, "the container did not run again after the commit");
    });
    // Clean up what this test started: the container's processes, by pid.
    for pid in boxkit::freeze::processes_in(&b.join("rootfs")).unwrap() {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let _ = child.wait();
    if let Some(name) = group {
        let _ = Command::new(bin("box-cgroup-limit")).args(["--remove", name]).output();
    }
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn a_running_container_outside_boxkit_cgroups_is_stopped_while_it_is_read() {
    commit_while_running(None);
}

#[test]
fn a_running_container_in_a_boxkit_cgroup_is_frozen() {
    commit_while_running(Some(&format!("commit-test-{}", std::process::id())));
}

#[test]
fn a_layer_streams_and_reads_back() {
    // A large new file: the layer holds it whole, and box-commit's memory does not grow with it.
    let s = Scratch::new();
    s.import_busybox();
    let b = copy_bundle(&s, "busybox", "big");
    change(&b, "head -c 64M /dev/urandom > big.bin");
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!("command time -f %M {} {} big:1", bin("box-commit").display(), b.display()))
        .env("BOXKIT_ROOT", s.path())
        .output()
        .unwrap();
    assert_success(&o, "box-commit of a 64 MiB file");
    let err = String::from_utf8_lossy(&o.stderr);
    let kib: u64 = err.lines().last().and_then(|l| l.trim().parse().ok()).unwrap_or(0);
    assert!(kib > 0 && kib < 48 * 1024, "peak RSS {kib} KiB for a 64 MiB layer:\n{err}");
    let mut f = std::fs::File::open(b.join("rootfs/big.bin")).unwrap();
    let mut want = Vec::new();
    f.read_to_end(&mut want).unwrap();
    let u = copy_bundle(&s, "big:1", "big-unpacked");
    assert!(std::fs::read(u.join("rootfs/big.bin")).unwrap() == want);
}
