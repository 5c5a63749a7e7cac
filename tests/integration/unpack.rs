//! box-unpack: layers applied in order, whiteouts, links, devices, xattrs, compressions,
//! the generated config.json, and failures that leave nothing behind.

use crate::support::{fixture, make_image, unpack, Scratch};
use crate::tree::{listing, Ignore};
use std::os::unix::fs::PermissionsExt;

fn tree_of(layers: &[&str]) -> String {
    let s = Scratch::new();
    let paths: Vec<_> = layers.iter().map(|l| fixture(l)).collect();
    make_image(s.path(), "t", &paths, "gzip", None);
    let b = unpack(&s, "t", "b");
    listing(&b.join("rootfs"), Ignore { root: true, ..Default::default() })
}

#[test]
fn base_layer() {
    insta::assert_snapshot!(tree_of(&["base.tar"]));
}

#[test]
fn whiteouts_delete_files_and_directories() {
    insta::assert_snapshot!(tree_of(&["base.tar", "whiteout.tar"]));
}

#[test]
fn opaque_directory_hides_lower_children() {
    let t = tree_of(&["base.tar", "opaque.tar"]);
    insta::assert_snapshot!(t);
    // The marker's place in the tar does not matter.
    assert_eq!(t, tree_of(&["base.tar", "opaque-last.tar"]));
}

#[test]
fn whiteout_after_its_own_file_keeps_the_file() {
    let t = tree_of(&["base.tar", "whiteout-after-file.tar"]);
    assert!(t.contains("/data/b file 0644 0:0 size=5"), "{t}");
}

#[test]
fn links_modes_owners_long_names() {
    insta::assert_snapshot!(tree_of(&["links.tar"]));
}

#[test]
fn nanosecond_mtimes_are_kept() {
    let s = Scratch::new();
    make_image(s.path(), "t", &[fixture("links.tar")], "gzip", None);
    let b = unpack(&s, "t", "b");
    let m = std::fs::metadata(b.join("rootfs/ns")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_700_000_000, 123_456_789));
}

#[test]
fn device_nodes_and_xattrs() {
    insta::assert_snapshot!(tree_of(&["devices.tar", "xattrs.tar"]));
}

#[test]
fn every_compression_and_media_type_gives_the_same_tree() {
    let mut trees = Vec::new();
    for c in ["gzip", "zstd", "none", "docker-gzip"] {
        let s = Scratch::new();
        make_image(s.path(), "t", &[fixture("base.tar"), fixture("whiteout.tar")], c, None);
        let b = unpack(&s, "t", "b");
        trees.push(listing(&b.join("rootfs"), Ignore { root: true, ..Default::default() }));
    }
    assert!(trees.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn bundle_is_private_and_config_comes_from_the_image() {
    let s = Scratch::new();
    let cfg = serde_json::json!({"config": {
        "Entrypoint": ["/bin/echo"], "Cmd": ["hello"], "Env": ["A=1"], "WorkingDir": "/data",
        "User": "nobody", "Volumes": {"/vol": {}}
    }});
    let tar = crate::support::busybox_tar();
    make_image(s.path(), "cfg:1", &[tar], "gzip", Some(cfg));
    let b = unpack(&s, "cfg:1", "my-bundle");
    assert_eq!(std::fs::metadata(&b).unwrap().permissions().mode() & 0o7777, 0o700);
    let spec: serde_json::Value = serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
    insta::assert_json_snapshot!(spec);
    assert!(b.join("rootfs/vol").is_dir());
}

#[test]
fn a_corrupt_layer_leaves_no_bundle() {
    let s = Scratch::new();
    make_image(s.path(), "t", &[fixture("base.tar")], "gzip", None);
    // Flip one byte in the middle of the layer blob.
    let blobs = s.join("images/blobs/sha256");
    let idx: serde_json::Value = serde_json::from_slice(&std::fs::read(s.join("images/index.json")).unwrap()).unwrap();
    let mdigest = idx["manifests"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(blobs.join(&mdigest)).unwrap()).unwrap();
    let layer = blobs.join(m["layers"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&layer).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&layer, bytes).unwrap();
    let b = s.join("b");
    let (code, err) = s.fails("box-unpack", &["t", b.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.starts_with("box-unpack: ") && err.lines().count() == 1, "{err}");
    assert!(err.contains("layer 1/1"), "{err}");
    assert!(!b.exists());
    let leftovers: Vec<_> = std::fs::read_dir(s.path()).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with(".b.")).collect();
    assert!(leftovers.is_empty(), "temporary bundle left behind");
}

#[test]
fn errors_name_what_is_wrong() {
    let s = Scratch::new();
    s.import_busybox();
    let (code, err) = s.fails("box-unpack", &["nosuch:1", s.join("b").to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("\"nosuch:1\" not found"), "{err}");
    let (_, err) = s.fails("box-unpack", &["Bad_Name", s.join("b").to_str().unwrap()]);
    assert!(err.contains("must be lowercase"), "{err}");
    std::fs::create_dir(s.join("exists")).unwrap();
    let (_, err) = s.fails("box-unpack", &["busybox", s.join("exists").to_str().unwrap()]);
    assert!(err.contains("already exists"), "{err}");
    let (code, _) = s.fails("box-unpack", &["busybox"]);
    assert_eq!(code, 2, "usage errors exit 2");
}

/// Peak resident memory of a tool run, in KiB. Measured by a small python3 parent: a child
/// forked straight from this (large) test process would inherit its high-water mark.
fn peak_rss_kib(s: &Scratch, args: &[&str]) -> i64 {
    let script = "import resource, subprocess, sys\nsubprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\nprint(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)";
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .env("BOXKIT_ROOT", s.path())
        .output()
        .unwrap();
    crate::support::assert_success(&out, "measure peak RSS");
    String::from_utf8(out.stdout).unwrap().trim().parse().unwrap()
}

fn zero_file_layer(dir: &std::path::Path, mib: u64) -> std::path::PathBuf {
    use std::io::Write;
    let p = dir.join(format!("zeros-{mib}.tar"));
    let mut f = std::io::BufWriter::new(std::fs::File::create(&p).unwrap());
    let mut h = tar::Header::new_ustar();
    h.set_path("zeros").unwrap();
    h.set_size(mib << 20);
    h.set_mode(0o644);
    h.set_cksum();
    f.write_all(h.as_bytes()).unwrap();
    let block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        f.write_all(&block).unwrap();
    }
    f.write_all(&[0u8; 1024]).unwrap();
    p
}

#[test]
fn memory_does_not_grow_with_layer_size() {
    let s = Scratch::new();
    let small = zero_file_layer(s.path(), 8);
    let large = zero_file_layer(s.path(), 512);
    make_image(s.path(), "small", &[small], "gzip", None);
    make_image(s.path(), "large", &[large], "gzip", None);
    let mut rss = Vec::new();
    for (name, b) in [("small", "bs"), ("large", "bl")] {
        let bin = crate::support::bin("box-unpack");
        rss.push(peak_rss_kib(&s, &[bin.to_str().unwrap(), name, s.join(b).to_str().unwrap()]));
        std::fs::remove_dir_all(s.join(b)).unwrap();
    }
    // A 512 MiB gzip bomb (zeros) unpacks in the same few MiB as an 8 MiB one.
    assert!(rss[1] < 32 * 1024, "peak RSS {} KiB", rss[1]);
    assert!(rss[1] - rss[0] < 4 * 1024, "peak RSS grew from {} to {} KiB", rss[0], rss[1]);
}

/// Store a JSON document as a blob and tag it.
fn put_and_tag(s: &Scratch, media: &str, doc: &serde_json::Value, tag: &str) -> boxkit::oci::Descriptor {
    let store = boxkit::store::Store::open(&s.join("images")).unwrap();
    let d = store.put_bytes(media, doc.to_string().as_bytes()).unwrap();
    store.tag(&boxkit::reference::Reference::parse(tag).unwrap(), &d).unwrap();
    d
}

#[test]
fn docker_schema2_manifests_and_indexes() {
    use boxkit::oci::*;
    let s = Scratch::new();
    make_image(s.path(), "oci", &[fixture("base.tar")], "docker-gzip", None);
    let store = boxkit::store::Store::open(&s.join("images")).unwrap();
    let img = store.image("oci").unwrap();
    // The same blobs described by a Docker schema 2 manifest.
    let mut m = serde_json::to_value(&img.manifest).unwrap();
    m["mediaType"] = MEDIA_DOCKER_MANIFEST.into();
    m["config"]["mediaType"] = MEDIA_DOCKER_CONFIG.into();
    let docker = put_and_tag(&s, MEDIA_DOCKER_MANIFEST, &m, "docker");
    let b = unpack(&s, "docker", "b-docker");
    let ig = Ignore { root: true, ..Default::default() };
    let want = listing(&unpack(&s, "oci", "b-oci").join("rootfs"), ig);
    assert_eq!(listing(&b.join("rootfs"), ig), want);
    // A manifest list with two platforms: the host's is chosen.
    let mut other = serde_json::to_value(&docker).unwrap();
    other["platform"] = serde_json::json!({"architecture": "s390x", "os": "linux"});
    let mut mine = serde_json::to_value(&docker).unwrap();
    mine["platform"] = serde_json::json!({"architecture": host_architecture(), "os": "linux"});
    let list = serde_json::json!({"schemaVersion": 2, "mediaType": MEDIA_DOCKER_LIST, "manifests": [other, mine]});
    put_and_tag(&s, MEDIA_DOCKER_LIST, &list, "multi");
    assert_eq!(listing(&unpack(&s, "multi", "b-multi").join("rootfs"), ig), want);
    // An index without the host's platform, and a schema 1 manifest, are clear errors.
    let only_other = serde_json::json!({"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": [other]});
    put_and_tag(&s, MEDIA_OCI_INDEX, &only_other, "foreign");
    let (_, err) = s.fails("box-unpack", &["foreign", s.join("x").to_str().unwrap()]);
    assert!(err.contains("has no manifest for linux/"), "{err}");
    let v1 = serde_json::json!({"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []});
    put_and_tag(&s, MEDIA_DOCKER_SCHEMA1_SIGNED, &v1, "old");
    let (_, err) = s.fails("box-unpack", &["old", s.join("y").to_str().unwrap()]);
    assert!(err.contains("schema 1, which is obsolete"), "{err}");
    // A manifest whose body claims to be an index is refused (CVE-2021-41190).
    let mut confused = serde_json::to_value(&img.manifest).unwrap();
    confused["mediaType"] = MEDIA_OCI_INDEX.into();
    put_and_tag(&s, MEDIA_OCI_MANIFEST, &confused, "confused");
    let (_, err) = s.fails("box-unpack", &["confused", s.join("z").to_str().unwrap()]);
    assert!(err.contains("body says mediaType"), "{err}");
}

/// A layer that names only `a/b/file` (no directory entries): the parents it implies, and the
/// rootfs itself, are 0755 whatever the caller's umask and dated the epoch whatever the
/// time, so a lab gets the same tree everywhere.
#[test]
fn implied_directories_do_not_depend_on_the_umask() {
    use std::os::unix::process::CommandExt;
    let s = Scratch::new();
    let layer = s.join("implied.tar");
    let mut w = tar::Builder::new(std::fs::File::create(&layer).unwrap());
    let mut h = tar::Header::new_ustar();
    h.set_path("a/b/file").unwrap();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_cksum();
    w.append(&h, &b"hi\n"[..]).unwrap();
    w.into_inner().unwrap();
    make_image(s.path(), "t", &[layer], "gzip", None);
    for (mask, bundle) in [(0o077, "strict"), (0o002, "loose")] {
        let mut c = s.cmd("box-unpack");
        c.args(["t", s.join(bundle).to_str().unwrap()]);
        // SAFETY: umask is async-signal-safe.
        unsafe { c.pre_exec(move || { libc::umask(mask); Ok(()) }) };
        crate::support::assert_success(&c.output().unwrap(), "box-unpack");
        for dir in ["", "a", "a/b"] {
            let md = std::fs::metadata(s.join(bundle).join("rootfs").join(dir)).unwrap();
            let m = md.permissions().mode();
            assert_eq!(m & 0o7777, 0o755, "{bundle}: /{dir} is {m:o}");
            // Nor on the hour: directories no layer names get the epoch.
            use std::os::unix::fs::MetadataExt;
            assert_eq!((md.mtime(), md.mtime_nsec()), (0, 0), "{bundle}: /{dir} mtime");
        }
    }
    let mut c = s.cmd("box-export");
    c.args(["--image", "t"]);
    unsafe { c.pre_exec(|| { libc::umask(0o077); Ok(()) }) };
    let by_image = c.output().unwrap();
    let by_bundle = s.cmd("box-export").arg(s.join("strict")).output().unwrap();
    assert!(by_image.status.success() && by_bundle.status.success());
    assert_eq!(by_image.stdout, by_bundle.stdout, "box-export --image and a bundle export differ");
}
