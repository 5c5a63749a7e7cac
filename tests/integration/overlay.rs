//! box-mount-layers and the layer cache: the overlay gives the same tree as a copy, mounts
//! images of hundreds of layers with either mount API, works with BOXKIT_ROOT on tmpfs and
//! falls back on overlayfs, survives concurrent and killed extractions, keeps the cache
//! read-only, shares it between bundles, and contains every hostile layer.

use crate::support::{assert_success, bin, busybox_tar, fixture, make_image, require, Scratch};
use crate::tree::{listing, Ignore};
use boxkit::tarstream::{Kind, Meta, TarWriter};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn mount_layers(s: &Scratch, image: &str, bundle: &Path, extra: &[&str]) -> std::process::Output {
    s.cmd("box-mount-layers").args(extra).arg(image).arg(bundle).stdin(Stdio::null()).output().unwrap()
}

/// Mount `image` as an overlay bundle; fails unless it really is an overlay.
fn overlay_bundle(s: &Scratch, image: &str, name: &str, extra: &[&str]) -> PathBuf {
    let b = s.join(name);
    let out = mount_layers(s, image, &b, extra);
    assert_success(&out, &format!("box-mount-layers {image} {name}"));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), b.to_str().unwrap());
    assert!(out.stderr.is_empty(), "unexpected message: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(storage(&b), "overlay");
    b
}

fn storage(bundle: &Path) -> String {
    let info: serde_json::Value = serde_json::from_slice(&std::fs::read(bundle.join("boxkit.json")).unwrap()).unwrap();
    info["storage"].as_str().unwrap().to_string()
}

/// The mountinfo line of the mount at `target`, if any.
fn mountinfo(target: &Path) -> Option<String> {
    let t = target.to_str().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().find(|l| l.split(' ').nth(4) == Some(t)).map(String::from)
}

/// The lower directories of the overlay at `target`, top first, whichever API mounted it.
fn lowerdirs(target: &Path) -> Vec<String> {
    let line = mountinfo(target).unwrap_or_else(|| panic!("{} is not mounted", target.display()));
    let opts = line.rsplit(' ').next().unwrap();
    let mut out = Vec::new();
    for o in opts.split(',') {
        if let Some(v) = o.strip_prefix("lowerdir+=") {
            out.push(v.to_string());
        } else if let Some(v) = o.strip_prefix("lowerdir=") {
            out.extend(v.split(':').map(String::from));
        }
    }
    out
}

fn tmp_entries(root: &Path) -> Vec<String> {
    match std::fs::read_dir(root.join("layers")) {
        Ok(rd) => rd.map(|e| e.unwrap().file_name().into_string().unwrap()).filter(|n| n.starts_with(".tmp-")).collect(),
        Err(_) => Vec::new(),
    }
}

fn cached(root: &Path) -> usize {
    std::fs::read_dir(root.join("layers/sha256")).map(|rd| rd.count()).unwrap_or(0)
}

/// Bytes of disk a tree uses (st_blocks), not crossing into other mounts.
fn disk_use(p: &Path) -> u64 {
    let m = std::fs::symlink_metadata(p).unwrap();
    let mut n = m.blocks() * 512;
    if m.is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            let c = e.unwrap().path();
            if std::fs::symlink_metadata(&c).unwrap().dev() == m.dev() {
                n += disk_use(&c);
            }
        }
    }
    n
}

fn entry(path: &str, kind: Kind, data: &[u8]) -> (Meta, Vec<u8>) {
    let mode = if kind == Kind::Dir { 0o755 } else { 0o644 };
    let meta = Meta {
        path: path.as_bytes().to_vec(),
        kind,
        mode,
        uid: 0,
        gid: 0,
        mtime: 1_700_000_000,
        mtime_nsec: 0,
        size: data.len() as u64,
        xattrs: vec![],
    };
    (meta, data.to_vec())
}

fn write_layer(path: &Path, entries: &[(Meta, Vec<u8>)]) -> PathBuf {
    let mut w = TarWriter::new(Vec::new());
    for (m, d) in entries {
        w.append(m, Some(&mut &d[..])).unwrap();
    }
    std::fs::write(path, w.finish().unwrap()).unwrap();
    path.to_path_buf()
}

/// An image of `n` small layers: each adds a file, rewrites `top`, and deletes the file of
/// the layer two below; every tenth layer makes `dir` opaque.
fn many_layers(s: &Scratch, n: usize, tag: &str) {
    let dir = s.join(&format!("layers-{n}"));
    std::fs::create_dir_all(&dir).unwrap();
    let layers: Vec<PathBuf> = (0..n)
        .map(|i| {
            let mut e = vec![
                entry(&format!("f{i:03}"), Kind::File, format!("{i}\n").as_bytes()),
                entry("top", Kind::File, format!("layer {i}\n").as_bytes()),
                entry("dir", Kind::Dir, b""),
                entry(&format!("dir/d{i:03}"), Kind::File, b"d\n"),
            ];
            if i >= 2 {
                e.push(entry(&format!(".wh.f{:03}", i - 2), Kind::File, b""));
            }
            if i % 10 == 9 {
                e.push(entry("dir/.wh..wh..opq", Kind::File, b""));
            }
            write_layer(&dir.join(format!("{i}.tar")), &e)
        })
        .collect();
    make_image(s.path(), tag, &layers, "gzip", None);
}

#[test]
fn overlay_and_copy_give_the_same_tree() {
    let s = Scratch::new();
    s.import_busybox();
    let cases: &[(&str, &[&str])] = &[
        ("base", &["base.tar"]),
        ("whiteout", &["base.tar", "whiteout.tar"]),
        ("opaque", &["base.tar", "opaque.tar"]),
        ("opaque-last", &["base.tar", "opaque-last.tar"]),
        ("after", &["base.tar", "whiteout-after-file.tar"]),
        ("links", &["links.tar"]),
        ("xattrs", &["base.tar", "xattrs.tar"]),
        ("stacked", &["base.tar", "whiteout.tar", "opaque.tar", "links.tar"]),
    ];
    let mut images: Vec<&str> = vec!["busybox"];
    for (tag, layers) in cases {
        let paths: Vec<_> = layers.iter().map(|l| fixture(l)).collect();
        make_image(s.path(), tag, &paths, "gzip", None);
        images.push(tag);
    }
    for image in images {
        let o = overlay_bundle(&s, image, &format!("o-{image}"), &[]);
        let c = s.join(&format!("c-{image}"));
        s.ok("box-unpack", &[image, c.to_str().unwrap()]);
        // The root directory's times are upper/'s own (the container writes to it).
        let ig = Ignore { mtime: false, root: true };
        let (lo, lc) = (listing(&o.join("rootfs"), ig), listing(&c.join("rootfs"), ig));
        assert_eq!(lo, lc, "{image}: overlay and copy differ");
        let (mo, mc) = (std::fs::metadata(o.join("rootfs")).unwrap(), std::fs::metadata(c.join("rootfs")).unwrap());
        assert_eq!((mo.mode(), mo.uid(), mo.gid()), (mc.mode(), mc.uid(), mc.gid()), "{image}: root directory");
        // The same config.json, but for the hostname (the bundle's name).
        let spec = |b: &Path| {
            let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
            v["hostname"] = "".into();
            v["process"]["env"] = serde_json::json!(v["process"]["env"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| !e.as_str().unwrap().starts_with("HOSTNAME="))
                .collect::<Vec<_>>());
            v
        };
        assert_eq!(spec(&o), spec(&c), "{image}: config.json");
        assert_eq!(std::fs::metadata(&o).unwrap().mode() & 0o7777, 0o700);
        s.ok("box-mount-layers", &["--unmount", o.to_str().unwrap()]);
    }
    // --copy makes a copy bundle, as box-unpack does, with no message.
    let b = s.join("forced-copy");
    let out = mount_layers(&s, "whiteout", &b, &["--copy"]);
    assert_success(&out, "box-mount-layers --copy");
    assert!(out.stderr.is_empty());
    assert_eq!(storage(&b), "copy");
    assert!(mountinfo(&b.join("rootfs")).is_none());
}

#[test]
fn images_of_127_and_200_layers_mount_with_either_api() {
    let s = Scratch::new();
    many_layers(&s, 127, "l127");
    many_layers(&s, 210, "l210");
    let copy = s.join("copy210");
    s.ok("box-unpack", &["l210", copy.to_str().unwrap()]);
    let want = listing(&copy.join("rootfs"), Ignore { mtime: false, root: true });
    for (image, n) in [("l127", 127), ("l210", 210)] {
        for api in ["fsconfig", "mount", "auto"] {
            let b = overlay_bundle(&s, image, &format!("{image}-{api}"), &["--mount-api", api]);
            let lowers = lowerdirs(&b.join("rootfs"));
            assert_eq!(lowers.len(), n, "{image} {api}");
            assert_eq!(std::fs::read_to_string(b.join("rootfs/top")).unwrap(), format!("layer {}\n", n - 1));
            if image == "l210" {
                assert_eq!(listing(&b.join("rootfs"), Ignore { mtime: false, root: true }), want, "{api}");
            }
            if api == "mount" {
                // Too long for one page of absolute paths: short names, and no links left.
                assert_eq!(lowers[0], "0", "{image}: {lowers:?}");
                assert!(std::fs::read_dir(&b).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().starts_with(".lower-")));
            } else {
                assert!(lowers[0].ends_with(&format!("layers/sha256/{}", diff_id_hex(&s, image, n - 1))), "{lowers:?}");
            }
            s.ok("box-mount-layers", &["--unmount", b.to_str().unwrap()]);
            assert!(mountinfo(&b.join("rootfs")).is_none());
        }
    }
    // Layer i is the same tar in both images: the 127 are shared, 210 directories in all.
    assert_eq!(cached(s.path()), 210);
}

fn diff_ids(s: &Scratch, image: &str) -> Vec<String> {
    let store = boxkit::store::Store::open(&s.join("images")).unwrap();
    store.image(image).unwrap().config.rootfs.diff_ids.iter().map(|d| d.hex().to_string()).collect()
}

fn diff_id_hex(s: &Scratch, image: &str, i: usize) -> String {
    diff_ids(s, image)[i].clone()
}

#[test]
fn images_of_no_layer_and_one_layer_mount() {
    let s = Scratch::new();
    make_image(s.path(), "empty", &[], "gzip", None);
    make_image(s.path(), "one", &[fixture("base.tar")], "gzip", None);
    let e = overlay_bundle(&s, "empty", "e", &[]);
    assert_eq!(std::fs::read_dir(e.join("rootfs")).unwrap().count(), 0);
    assert!(lowerdirs(&e.join("rootfs"))[0].ends_with("layers/empty"));
    std::fs::write(e.join("rootfs/new"), "x").unwrap();
    assert!(e.join("upper/new").is_file() && std::fs::read_dir(s.join("layers/empty")).unwrap().count() == 0);
    let o = overlay_bundle(&s, "one", "o", &[]);
    assert_eq!(std::fs::read_to_string(o.join("rootfs/data/a")).unwrap(), "a v1\n");
    assert_eq!(lowerdirs(&o.join("rootfs")).len(), 1);
}

#[test]
fn writes_land_in_upper_and_never_in_the_cache() {
    let s = Scratch::new();
    make_image(s.path(), "t", &[fixture("base.tar"), fixture("whiteout.tar")], "gzip", None);
    let tar = busybox_tar();
    // busybox as the base layer, so the container has a shell.
    make_image(s.path(), "bb", &[tar.clone(), fixture("base.tar"), fixture("whiteout.tar")], "gzip", None);
    let c1 = overlay_bundle(&s, "bb", "c1", &[]);
    let c2 = overlay_bundle(&s, "bb", "c2", &[]);
    let cache_before = listing(&s.join("layers"), Ignore::default());
    let out = Command::new(bin("box-spawn"))
        .arg(&c1)
        .args(["--", "sh", "-c", "echo changed > /etc/conf && rm /data/a && rm -r /data/dir && mkdir /data/dir && echo n > /data/dir/n && chmod 600 /data/c"])
        .output()
        .unwrap();
    assert_success(&out, "box-spawn in an overlay bundle");
    // c1's changes are in c1's upper/ only.
    assert_eq!(std::fs::read_to_string(c1.join("upper/etc/conf")).unwrap(), "changed\n");
    let wh = std::fs::symlink_metadata(c1.join("upper/data/a")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0, "data/a is not a whiteout in upper/");
    assert_eq!(std::fs::read_dir(c1.join("rootfs/data/dir")).unwrap().count(), 1);
    // metacopy=off: a chmod copies the whole file up.
    assert_eq!(std::fs::read_to_string(c1.join("upper/data/c")).unwrap(), "c v1\n");
    assert_eq!(std::fs::read_to_string(c2.join("rootfs/etc/conf")).unwrap(), "conf v1\n");
    assert!(c2.join("rootfs/data/a").is_file() && c2.join("rootfs/data/dir/x").is_file());
    assert_eq!(std::fs::read_dir(c2.join("upper")).unwrap().count(), 0);
    assert_eq!(listing(&s.join("layers"), Ignore::default()), cache_before, "the cache changed");
    // runc runs the same bundle.
    require("runc");
    crate::support::edit_config(&c2, |spec| {
        spec["process"]["args"] = serde_json::json!(["sh", "-c", "cat /etc/conf; echo runc > /runc"]);
    });
    let id = format!("boxkit-ovl-{}", std::process::id());
    let state = s.join("runc-state");
    let o = Command::new("runc").arg("--root").arg(&state).args(["run", "--bundle"]).arg(&c2).arg(&id).output().unwrap();
    let _ = Command::new("runc").arg("--root").arg(&state).args(["delete", "--force", &id]).output();
    assert_success(&o, "runc run on an overlay bundle");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "conf v1\n");
    assert_eq!(std::fs::read_to_string(c2.join("upper/runc")).unwrap(), "runc\n");
    assert_eq!(listing(&s.join("layers"), Ignore::default()), cache_before, "the cache changed");
}

#[test]
fn unmount_keeps_upper_and_forgets_the_bundle() {
    let s = Scratch::new();
    make_image(s.path(), "t", &[fixture("base.tar")], "gzip", None);
    let b = overlay_bundle(&s, "t", "b", &[]);
    assert_eq!(std::fs::read_dir(s.join("bundles")).unwrap().count(), 1);
    std::fs::write(b.join("rootfs/etc/new"), "new\n").unwrap();
    // Busy while a process holds the mount.
    let busy = std::fs::File::open(b.join("rootfs/etc/conf")).unwrap();
    let (_, err) = s.fails("box-mount-layers", &["--unmount", b.to_str().unwrap()]);
    assert!(err.contains("busy") && err.trim_end().lines().count() == 1, "{err}");
    drop(busy);
    assert_eq!(s.ok("box-mount-layers", &["--unmount", b.to_str().unwrap()]).trim(), b.to_str().unwrap());
    assert!(mountinfo(&b.join("rootfs")).is_none());
    assert_eq!(std::fs::read_to_string(b.join("upper/etc/new")).unwrap(), "new\n");
    assert_eq!(std::fs::read_dir(s.join("bundles")).unwrap().count(), 0);
    // Again: nothing to do, no error.
    s.ok("box-mount-layers", &["--unmount", b.to_str().unwrap()]);
    // A copy bundle has nothing to unmount.
    let c = s.join("c");
    s.ok("box-unpack", &["t", c.to_str().unwrap()]);
    let (_, err) = s.fails("box-mount-layers", &["--unmount", c.to_str().unwrap()]);
    assert!(err.contains("not an overlay"), "{err}");
    // An existing bundle is never replaced.
    let (_, err) = s.fails("box-mount-layers", &["t", c.to_str().unwrap()]);
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn a_second_container_costs_no_copy_of_the_image() {
    let s = Scratch::new();
    // A small image and one 16 MiB bigger (incompressible data: a real copy would show).
    let big = s.join("big.tar");
    let mut data = vec![0u8; 16 << 20];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    write_layer(&big, &[entry("blob", Kind::File, &data)]);
    make_image(s.path(), "small", &[fixture("base.tar")], "gzip", None);
    make_image(s.path(), "big", &[fixture("base.tar"), big], "gzip", None);
    overlay_bundle(&s, "big", "first", &[]);
    let cache = disk_use(&s.join("layers"));
    assert!(cache > 16 << 20, "the cache holds the big layer once");
    let a = overlay_bundle(&s, "small", "small2", &[]);
    let b = overlay_bundle(&s, "big", "big2", &[]);
    // The second bundle of the big image adds nothing to the cache, and costs what the
    // small image's bundle costs: a few directories.
    assert_eq!(disk_use(&s.join("layers")), cache);
    let (ua, ub) = (disk_use(&a), disk_use(&b));
    assert!(ub < 256 << 10 && ua < 256 << 10, "bundles use {ua} and {ub} bytes");
    assert!(ub.abs_diff(ua) < 64 << 10, "the big image's bundle costs more: {ub} vs {ua}");
    assert_eq!(cached(s.path()), 2);
    // Both bundles of the big image stack the very same directories.
    assert_eq!(lowerdirs(&s.join("first/rootfs")), lowerdirs(&b.join("rootfs")));
    assert_eq!(std::fs::metadata(b.join("rootfs/blob")).unwrap().len(), 16 << 20);
}

#[test]
fn boxkit_root_on_tmpfs_works_and_on_overlayfs_falls_back_to_a_copy() {
    let s = Scratch::new();
    // tmpfs: overlay bundles, the cache and the bundles on the same tmpfs.
    let t = s.join("tmpfs");
    std::fs::create_dir(&t).unwrap();
    assert_success(&Command::new("mount").args(["-t", "tmpfs", "tmpfs"]).arg(&t).output().unwrap(), "mount tmpfs");
    make_image(&t, "w", &[fixture("base.tar"), fixture("whiteout.tar")], "gzip", None);
    let run = |root: &Path, bundle: &Path| {
        Command::new(bin("box-mount-layers")).env("BOXKIT_ROOT", root).arg("w").arg(bundle).output().unwrap()
    };
    let out = run(&t, &t.join("b"));
    assert_success(&out, "box-mount-layers on tmpfs");
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(storage(&t.join("b")), "overlay");
    assert!(!t.join("b/rootfs/data/b").exists() && t.join("b/rootfs/data/a").is_file());

    // overlayfs: an overlay mount holding BOXKIT_ROOT and the bundle.
    let (lo, up, wk, o) = (s.join("ovl-lower"), s.join("ovl-upper"), s.join("ovl-work"), s.join("ovl"));
    for d in [&lo, &up, &wk, &o] {
        std::fs::create_dir(d).unwrap();
    }
    let opts = format!("lowerdir={},upperdir={},workdir={}", lo.display(), up.display(), wk.display());
    assert_success(&Command::new("mount").args(["-t", "overlay", "overlay", "-o", &opts]).arg(&o).output().unwrap(), "mount overlay");
    make_image(&o, "w", &[fixture("base.tar"), fixture("whiteout.tar")], "gzip", None);
    let out = run(&o, &o.join("b"));
    assert_success(&out, "box-mount-layers on overlayfs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("is on overlayfs") && err.contains("copying the image instead"), "{err}");
    assert_eq!(storage(&o.join("b")), "copy");
    assert!(!o.join("b/rootfs/data/b").exists() && o.join("b/rootfs/data/a").is_file());
    // The bundle on tmpfs, the cache on overlayfs: still a copy, and it says why.
    let out = run(&o, &t.join("b2"));
    assert_success(&out, "box-mount-layers, cache on overlayfs");
    assert!(String::from_utf8_lossy(&out.stderr).contains("layer cache"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(storage(&t.join("b2")), "copy");
    // Scratch unmounts t/b/rootfs, t and o (deepest first) when dropped.
}

#[test]
fn concurrent_extractions_of_one_layer_agree() {
    let s = Scratch::new();
    s.import_busybox();
    // Several processes at once, each mounting its own bundle of the same image.
    let children: Vec<_> = (0..4)
        .map(|i| {
            s.cmd("box-mount-layers")
                .args(["busybox", s.join(&format!("c{i}")).to_str().unwrap()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert_success(&out, "concurrent box-mount-layers");
    }
    assert_eq!(cached(s.path()), 1);
    assert!(tmp_entries(s.path()).is_empty(), "left {:?}", tmp_entries(s.path()));
    let first = lowerdirs(&s.join("c0/rootfs"));
    for i in 1..4 {
        assert_eq!(lowerdirs(&s.join(&format!("c{i}/rootfs"))), first);
    }

    // Deterministically: an extraction that loses the race discards its copy. Store A's
    // blob is a FIFO, so its extraction waits, mid-way, until the other one has finished.
    let root = s.join("race");
    make_image(&root, "t", &[fixture("base.tar")], "gzip", None);
    let a_images = s.join("race-a");
    copy_dir(&root.join("images"), &a_images);
    let store_b = boxkit::store::Store::open(&root.join("images")).unwrap();
    let image = store_b.image("t").unwrap();
    let (desc, diff_id) = (image.manifest.layers[0].clone(), image.config.rootfs.diff_ids[0].clone());
    let blob = a_images.join("blobs/sha256").join(desc.digest.hex());
    let bytes = std::fs::read(&blob).unwrap();
    std::fs::remove_file(&blob).unwrap();
    mkfifo(&blob);
    let store_a = boxkit::store::Store::open(&a_images).unwrap();
    let form = boxkit::layercache::form_for_this_process();
    let (r, d, di) = (root.clone(), desc.clone(), diff_id.clone());
    let loser = std::thread::spawn(move || boxkit::layercache::ensure(&store_a, &r, &d, &di, form));
    crate::support::wait_until("the first extraction to start", || !tmp_entries(&root).is_empty());
    let winner = boxkit::layercache::ensure(&store_b, &root, &desc, &diff_id, form).unwrap();
    std::fs::write(&blob, &bytes).unwrap(); // opens the FIFO: the loser reads on
    let lost = loser.join().unwrap().unwrap();
    assert_eq!(lost, winner);
    assert!(tmp_entries(&root).is_empty(), "the loser left {:?}", tmp_entries(&root));
    assert_eq!(std::fs::read_to_string(winner.join("data/a")).unwrap(), "a v1\n");
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {}", p.display());
}

fn copy_dir(from: &Path, to: &Path) {
    assert_success(&Command::new("cp").arg("-a").arg(from).arg(to).output().unwrap(), "cp -a");
}

#[test]
fn a_killed_extraction_leaves_only_a_tmp_dir_that_is_never_used() {
    let s = Scratch::new();
    let big = s.join("big.tar");
    let files: Vec<_> = (0..64).map(|i| entry(&format!("f{i}"), Kind::File, &vec![b'x'; 64 << 10])).collect();
    write_layer(&big, &files);
    make_image(s.path(), "t", &[big], "none", None);
    let store = boxkit::store::Store::open(&s.join("images")).unwrap();
    let image = store.image("t").unwrap();
    drop(store);
    let (desc, diff_id) = (&image.manifest.layers[0], &image.config.rootfs.diff_ids[0]);
    let blob = s.join("images/blobs/sha256").join(desc.digest.hex());
    let bytes = std::fs::read(&blob).unwrap();
    std::fs::remove_file(&blob).unwrap();
    mkfifo(&blob);
    let b = s.join("b");
    let mut child = s.cmd("box-mount-layers").args(["t", b.to_str().unwrap()]).stderr(Stdio::null()).spawn().unwrap();
    crate::support::wait_until("the extraction to start", || !tmp_entries(s.path()).is_empty());
    let tmp = tmp_entries(s.path());
    // Feed the layer piece by piece until the extraction has written something (the
    // decompression pipeline buffers a few MiB first), then kill it in the middle.
    {
        use std::io::Write;
        let mut w = std::fs::OpenOptions::new().write(true).open(&blob).unwrap();
        let written = || std::fs::read_dir(s.join("layers").join(&tmp[0])).map(|d| d.count() > 0).unwrap_or(false);
        let mut fed = 0;
        while !written() && fed < bytes.len() / 2 {
            let n = (64 << 10).min(bytes.len() / 2 - fed);
            w.write_all(&bytes[fed..fed + n]).unwrap();
            fed += n;
        }
        crate::support::wait_until("the extraction's first file", written);
        child.kill().unwrap(); // SIGKILL, to the process this test started
        child.wait().unwrap();
    }
    assert_eq!(tmp.len(), 1);
    assert_eq!(tmp_entries(s.path()), tmp);
    assert!(std::fs::read_dir(s.join("layers").join(&tmp[0])).unwrap().count() > 0, "killed before it wrote anything");
    assert!(!boxkit::layercache::dir_of(s.path(), diff_id).exists());
    assert!(!b.exists());
    // With the blob back, the layer is extracted afresh, and the leftover is not touched.
    std::fs::remove_file(&blob).unwrap();
    std::fs::write(&blob, &bytes).unwrap();
    let b = overlay_bundle(&s, "t", "b", &[]);
    assert_eq!(lowerdirs(&b.join("rootfs")), [boxkit::layercache::dir_of(s.path(), diff_id).to_str().unwrap()]);
    assert_eq!(std::fs::read_dir(b.join("rootfs")).unwrap().count(), 64);
    assert_eq!(tmp_entries(s.path()), tmp);
}

#[test]
fn the_user_xattr_form_mounts_with_userxattr() {
    use boxkit::layer::{OverlayForm, Whiteouts};
    let s = Scratch::new();
    let mut lowers = Vec::new();
    for (i, l) in ["base.tar", "whiteout.tar", "opaque.tar"].iter().enumerate() {
        let d = s.join(&format!("l{i}"));
        std::fs::create_dir(&d).unwrap();
        let root = boxkit::fsroot::Root::open(&d).unwrap();
        boxkit::layer::apply_as(&root, std::fs::File::open(fixture(l)).unwrap(), Whiteouts::Overlay(OverlayForm::User)).unwrap();
        lowers.insert(0, d);
    }
    for d in ["upper", "work", "merged"] {
        std::fs::create_dir(s.join(d)).unwrap();
    }
    boxkit::overlay::mount_overlay(&lowers, &s.join("upper"), &s.join("work"), &s.join("merged"), OverlayForm::User, boxkit::overlay::Api::Auto)
        .unwrap();
    assert!(mountinfo(&s.join("merged")).unwrap().contains("userxattr"));
    let mut names: Vec<_> = std::fs::read_dir(s.join("merged/data/dir")).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["newsub", "z"]);
    assert!(!s.join("merged/data/b").exists() && !s.join("merged/data/keep").exists());
}

#[test]
fn hostile_layers_stay_contained_in_overlay_form() {
    let _victim = crate::support::victim_lock();
    const VICTIM: &str = "/tmp/boxkit-victim";
    let _ = std::fs::remove_dir_all(VICTIM);
    std::fs::create_dir_all(VICTIM).unwrap();
    std::fs::write(format!("{VICTIM}/file"), "host file\n").unwrap();
    std::fs::write(format!("{VICTIM}/keepme"), "keep\n").unwrap();
    let untouched = |case: &str| {
        let mut names: Vec<_> = std::fs::read_dir(VICTIM).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["file", "keepme"], "{case}: the host directory changed");
        assert_eq!(std::fs::read_to_string(format!("{VICTIM}/file")).unwrap(), "host file\n", "{case}");
    };
    let s = Scratch::new();
    let passwd = std::fs::metadata("/etc/passwd").unwrap();
    let host_root: Vec<_> = std::fs::read_dir("/").unwrap().map(|e| e.unwrap().file_name()).collect();
    let attempt = |layers: &[&str], tag: &str| -> Result<PathBuf, String> {
        let paths: Vec<_> = layers.iter().map(|l| fixture(l)).collect();
        make_image(s.path(), tag, &paths, "gzip", None);
        let b = s.join(&format!("b-{tag}"));
        let out = mount_layers(&s, tag, &b, &[]);
        if out.status.success() {
            assert_eq!(storage(&b), "overlay");
            Ok(b.join("rootfs"))
        } else {
            let err = String::from_utf8(out.stderr).unwrap();
            assert!(err.starts_with("box-mount-layers: ") && err.trim_end().lines().count() == 1, "not one clear line: {err}");
            assert!(!b.exists(), "a failed mount left a bundle");
            Err(err)
        }
    };
    let r = attempt(&["attack-dotdot.tar"], "dotdot").unwrap();
    for n in ["escape-dotdot", "escape-abs", "escape-nested"] {
        assert!(r.join(n).is_file() && !Path::new("/").join(n).exists() && !s.path().join(n).exists(), "{n}");
    }
    let r = attempt(&["attack-symlink-dir.tar"], "symdir").unwrap();
    assert!(r.join("tmp/boxkit-victim/pwned").is_file() && r.join("tmp/boxkit-victim/pwned2").is_file());
    untouched("symlink-dir");
    let err = attempt(&["attack-hardlink.tar"], "hardlink").unwrap_err();
    assert!(err.contains("hardlink"), "{err}");
    let after = std::fs::metadata("/etc/passwd").unwrap();
    assert_eq!((passwd.nlink(), passwd.ino()), (after.nlink(), after.ino()));
    // Layer 2 has a directory of its own where layer 1 had the symlink: it hides the link.
    let r = attempt(&["attack-layer-dot-symlink.1.tar", "attack-layer-dot-symlink.2.tar"], "dotsym").unwrap();
    assert!(std::fs::symlink_metadata(r.join("etcdir")).unwrap().is_dir() && r.join("etcdir/pwned3").is_file());
    untouched("layer-dot-symlink");
    let r = attempt(&["attack-root-dot-symlink.1.tar", "attack-root-dot-symlink.2.tar"], "rootsym").unwrap();
    assert!(std::fs::symlink_metadata(&r).unwrap().is_dir() && r.join("pwned4").is_file());
    untouched("root-dot-symlink");
    let r = attempt(&["attack-hardlink-symlink-chmod.tar"], "hlchmod").unwrap();
    assert!(std::fs::symlink_metadata(r.join("hard")).unwrap().file_type().is_symlink());
    untouched("hardlink-symlink-chmod");
    for case in ["dotdot", "dots3", "nested", "bare"] {
        let err = attempt(&[&format!("attack-whiteout-names.{case}.tar")], &format!("wh{case}")).unwrap_err();
        assert!(err.contains("invalid whiteout"), "{case}: {err}");
    }
    let r = attempt(&["attack-whiteout-linkdir.1.tar", "attack-whiteout-linkdir.2.tar"], "whlink").unwrap();
    // Layer 2's linkdir/ hides layer 1's link; its whiteout hides nothing. (The kernel lists
    // a whiteout in a directory only one layer has, but nothing can open it.)
    assert!(std::fs::symlink_metadata(r.join("linkdir")).unwrap().is_dir());
    for e in std::fs::read_dir(r.join("linkdir")).unwrap() {
        assert!(std::fs::symlink_metadata(e.unwrap().path()).is_err(), "a whiteout can be opened");
    }
    untouched("whiteout-linkdir");
    let err = attempt(&["attack-trailing-garbage.tar"], "garbage").unwrap_err();
    assert!(err.contains("trailing data"), "{err}");
    let err = attempt(&["attack-truncated.tar"], "truncated").unwrap_err();
    assert!(err.to_lowercase().contains("eof") || err.contains("unexpected end"), "{err}");
    for huge in ["attack-sparse-huge.tar", "attack-huge-base256.tar"] {
        attempt(&[huge], "huge").unwrap_err();
    }
    let err = attempt(&["devices.tar"], "devices").unwrap_err();
    assert!(err.contains("reads as a whiteout"), "{err}");
    // The failures left no layer, complete or not.
    assert!(tmp_entries(s.path()).is_empty(), "{:?}", tmp_entries(s.path()));
    let host_root_after: Vec<_> = std::fs::read_dir("/").unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(host_root, host_root_after);
    untouched("all");
    let _ = std::fs::remove_dir_all(VICTIM);
}

#[test]
fn box_spawn_mounts_an_unmounted_overlay_bundle_inside_the_container_only() {
    let s = Scratch::new();
    make_image(s.path(), "bb", &[busybox_tar(), fixture("base.tar")], "gzip", None);
    let b = overlay_bundle(&s, "bb", "b", &[]);
    s.ok("box-mount-layers", &["--unmount", b.to_str().unwrap()]);
    assert!(mountinfo(&b.join("rootfs")).is_none());
    let cache_before = listing(&s.join("layers"), Ignore::default());
    let out = Command::new(bin("box-spawn"))
        .arg("--root")
        .arg(s.path())
        .arg(&b)
        .args(["--", "sh", "-c", "cat /etc/conf; echo again > /again; awk '$2 == \"/\" { print $3 }' /proc/self/mounts"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_success(&out, "box-spawn of an unmounted overlay bundle");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "conf v1\noverlay\n");
    // Root's cache is in the trusted form: no userxattr, no user namespace.
    assert_eq!(std::fs::read_to_string(b.join("upper/again")).unwrap(), "again\n");
    assert!(mountinfo(&b.join("rootfs")).is_none(), "the overlay must exist only in the container");
    assert_eq!(std::fs::read_dir(b.join("rootfs")).unwrap().count(), 0);
    assert_eq!(listing(&s.join("layers"), Ignore::default()), cache_before, "the cache changed");
    // Another root: its cache does not hold the layers, and box-spawn says so.
    let other = Scratch::new();
    let out = Command::new(bin("box-spawn")).arg("--root").arg(other.path()).arg(&b).args(["--", "true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not in the layer cache") && err.trim_end().lines().count() == 1, "{err}");
}
