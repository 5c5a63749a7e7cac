//! box-save and box-load: round trips between stores, skopeo reading what box-save writes
//! and writing what box-load reads, and hostile or broken archives refused with no name left.

use crate::support::{assert_success, fixture, make_image, require, unpack, Scratch};
use crate::tree::{listing, Ignore};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// A store with three images: busybox (1 gzip layer, box-import), layered (3 gzip layers
/// with history) and plain (2 uncompressed layers), the last also tagged a second time.
fn three_images(s: &Scratch) {
    s.import_busybox();
    let history = serde_json::json!({
        "config": {"Cmd": ["sh"], "Env": ["A=1"]},
        "history": [
            {"created": "2024-01-01T00:00:00Z", "created_by": "ADD base.tar /"},
            {"created": "2024-01-02T00:00:00Z", "created_by": "RUN rm data/b", "comment": "whiteouts"},
            {"created": "2024-01-02T00:00:01Z", "created_by": "ENV A=1", "empty_layer": true},
            {"created": "2024-01-03T00:00:00Z", "created_by": "ADD links.tar /"}
        ]
    });
    let layered = [fixture("base.tar"), fixture("whiteout.tar"), fixture("links.tar")];
    make_image(s.path(), "layered", &layered, "gzip", Some(history));
    make_image(s.path(), "localhost:5000/team/plain:v2", &[fixture("base.tar"), fixture("opaque.tar")], "none", None);
    let images = s.path().join("images");
    let store = boxkit::store::Store::open(&images).unwrap();
    let d = store.resolve("localhost:5000/team/plain:v2").unwrap();
    store.tag(&boxkit::reference::Reference::parse("plain:again").unwrap(), &d).unwrap();
}

fn save(s: &Scratch, refs: &[&str]) -> Vec<u8> {
    let o = s.cmd("box-save").args(refs).stdin(Stdio::null()).output().unwrap();
    assert_success(&o, &format!("box-save {refs:?}"));
    o.stdout
}

/// Run box-load in `s` with `input` on stdin.
fn load(s: &Scratch, input: &[u8]) -> Output {
    let mut c = s.cmd("box-load").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = c.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = c.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn load_ok(s: &Scratch, input: &[u8]) -> Vec<String> {
    let o = load(s, input);
    assert_success(&o, "box-load");
    String::from_utf8(o.stdout).unwrap().lines().map(String::from).collect()
}

/// box-load must fail with one line on stderr and leave the store without any image.
fn load_refused(s: &Scratch, input: &[u8], why: &str) -> String {
    let o = load(s, input);
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(!o.status.success(), "box-load accepted an archive with {why}");
    assert_eq!(err.lines().count(), 1, "{why}: {err}");
    assert!(o.stdout.is_empty(), "{why}: printed {:?}", String::from_utf8_lossy(&o.stdout));
    let index = std::fs::read(s.join("images/index.json")).unwrap_or_else(|_| b"{\"manifests\":[]}".to_vec());
    let v: serde_json::Value = serde_json::from_slice(&index).unwrap();
    assert_eq!(v["manifests"].as_array().map(Vec::len), Some(0), "{why}: the store names an image: {v}");
    err
}

fn store(s: &Scratch) -> boxkit::store::Store {
    boxkit::store::Store::open(&s.join("images")).unwrap()
}

fn manifest_digest(s: &Scratch, name: &str) -> String {
    store(s).resolve(name).unwrap().digest.to_string()
}

fn config_of(s: &Scratch, name: &str) -> Vec<u8> {
    let st = store(s);
    let image = st.image(name).unwrap();
    st.read_blob(&image.manifest.config.digest).unwrap()
}

/// The members of an archive, in order: name, kind (b'0' file, b'2' symlink, b'1' hard
/// link…), link target, data.
type Members = Vec<(String, u8, String, Vec<u8>)>;

fn members(tar_bytes: &[u8]) -> Members {
    let mut ar = tar::Archive::new(tar_bytes);
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let kind = e.header().entry_type().as_byte();
        let link = e.link_name_bytes().map(|l| String::from_utf8(l.into_owned()).unwrap()).unwrap_or_default();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push((name, kind, link, data));
    }
    out
}

/// Write members back as a tar, names copied raw (so `../x` survives).
fn build(ms: &Members) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, link, data) in ms {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(tar::EntryType::new(*kind));
        h.set_mode(if *kind == b'5' { 0o755 } else { 0o644 });
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

fn file(name: &str, data: &[u8]) -> (String, u8, String, Vec<u8>) {
    (name.to_string(), b'0', String::new(), data.to_vec())
}

#[test]
fn save_then_load_keeps_digests_names_and_history() {
    let a = Scratch::new();
    three_images(&a);
    let refs = ["busybox", "layered", "localhost:5000/team/plain:v2", "plain:again"];
    let archive = save(&a, &refs);
    assert_eq!(archive, save(&a, &refs), "two saves of the same images differ");

    let b = Scratch::new();
    let printed = load_ok(&b, &archive);
    assert_eq!(
        printed,
        [
            "docker.io/library/busybox:latest",
            "docker.io/library/layered:latest",
            "localhost:5000/team/plain:v2",
            "docker.io/library/plain:again"
        ]
    );
    for r in refs {
        assert_eq!(manifest_digest(&b, r), manifest_digest(&a, r), "{r}: manifest digest changed");
        assert_eq!(config_of(&b, r), config_of(&a, r), "{r}: config (history) changed");
    }
    let cfg: serde_json::Value = serde_json::from_slice(&config_of(&b, "layered")).unwrap();
    assert_eq!(cfg["history"].as_array().unwrap().len(), 4);
    // Every layer came along: the loaded image unpacks to the same tree.
    let ig = Ignore { root: true, ..Ignore::default() };
    assert_eq!(listing(&unpack(&a, "layered", "b1").join("rootfs"), ig), listing(&unpack(&b, "layered", "b2").join("rootfs"), ig));
    // A second load of the same archive changes nothing and prints the same names.
    assert_eq!(load_ok(&b, &archive), printed);
    assert_eq!(store(&b).index().unwrap().manifests.len(), 4);
}

#[test]
fn the_archive_is_an_oci_layout_and_a_docker_archive() {
    let s = Scratch::new();
    three_images(&s);
    let archive = save(&s, &["layered", "plain:again"]);
    let ms = members(&archive);
    let names: Vec<&str> = ms.iter().map(|m| m.0.as_str()).collect();
    let blobs = &names[2..names.len() - 4];
    let mut sorted = blobs.to_vec();
    sorted.sort();
    assert_eq!(blobs, sorted, "blobs are not sorted");
    assert_eq!(names[..2], ["blobs/", "blobs/sha256/"]);
    assert_eq!(names[names.len() - 4..], ["index.json", "manifest.json", "oci-layout", "repositories"]);
    let doc = |n: &str| -> serde_json::Value { serde_json::from_slice(&ms.iter().find(|m| m.0 == n).unwrap().3).unwrap() };
    let index = doc("index.json");
    let ann = &index["manifests"][1]["annotations"];
    assert_eq!(ann["io.containerd.image.name"], "docker.io/library/plain:again");
    assert_eq!(ann["org.opencontainers.image.ref.name"], "again");
    let docker = doc("manifest.json");
    assert_eq!(docker[0]["RepoTags"], serde_json::json!(["layered:latest"]));
    assert_eq!(docker[0]["Layers"].as_array().unwrap().len(), 3);
    for l in docker[0]["Layers"].as_array().unwrap() {
        assert!(names.contains(&l.as_str().unwrap()), "{l} is not in the archive");
    }
    assert!(doc("repositories")["plain"]["again"].is_string());
    // Fixed headers: owner 0, the epoch (or $SOURCE_DATE_EPOCH).
    let o = s.cmd("box-save").arg("layered").env("SOURCE_DATE_EPOCH", "1700000000").output().unwrap();
    let mut ar = tar::Archive::new(&o.stdout[..]);
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        assert_eq!((e.header().mtime().unwrap(), e.header().uid().unwrap(), e.header().gid().unwrap()), (1_700_000_000, 0, 0));
    }
}

fn skopeo(args: &[&str]) -> String {
    let o = Command::new("skopeo").args(args).output().unwrap();
    assert_success(&o, &format!("skopeo {args:?}"));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn skopeo_reads_what_box_save_writes() {
    require("skopeo");
    let s = Scratch::new();
    three_images(&s);
    let one = s.join("one.tar");
    s.ok("box-save", &["-o", one.to_str().unwrap(), "layered"]);
    let v: serde_json::Value = serde_json::from_str(&skopeo(&["inspect", &format!("docker-archive:{}", one.display())])).unwrap();
    assert_eq!(v["Layers"].as_array().unwrap().len(), 3);
    let v: serde_json::Value = serde_json::from_str(&skopeo(&["inspect", &format!("oci-archive:{}:latest", one.display())])).unwrap();
    assert_eq!(v["Digest"].as_str().unwrap(), manifest_digest(&s, "layered"));
    let dir = s.join("skopeo-oci");
    skopeo(&["copy", "-q", &format!("docker-archive:{}", one.display()), &format!("oci:{}:copy", dir.display())]);
    // A multi-image archive: skopeo picks an image by its RepoTag.
    let many = s.join("many.tar");
    s.ok("box-save", &["-o", many.to_str().unwrap(), "busybox", "layered", "localhost:5000/team/plain:v2"]);
    let v: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", &format!("docker-archive:{}:localhost:5000/team/plain:v2", many.display())])).unwrap();
    assert_eq!(v["Layers"].as_array().unwrap().len(), 2);
    // The copy skopeo made is the same image: box-unpack reads it like the original.
    let t1 = unpack(&s, "layered", "b1");
    let o = s.cmd("box-unpack").args(["--layout", dir.to_str().unwrap(), "copy", s.join("b2").to_str().unwrap()]).output().unwrap();
    assert_success(&o, "box-unpack --layout of skopeo's copy");
    let ig = Ignore { root: true, ..Ignore::default() };
    assert_eq!(listing(&t1.join("rootfs"), ig), listing(&s.join("b2/rootfs"), ig));
}

#[test]
fn box_load_reads_what_skopeo_writes() {
    require("skopeo");
    let a = Scratch::new();
    three_images(&a);
    let layout = format!("oci:{}:docker.io/library/layered:latest", a.join("images").display());
    // docker-archive: skopeo follows docker save (<diff_id>.tar, <config>.json, legacy links).
    let da = a.join("da.tar");
    skopeo(&["copy", "-q", &layout, &format!("docker-archive:{}:example.com/x/layered:v9", da.display())]);
    let b = Scratch::new();
    assert_eq!(load_ok(&b, &std::fs::read(&da).unwrap()), ["example.com/x/layered:v9"]);
    assert_eq!(config_of(&b, "example.com/x/layered:v9"), config_of(&a, "layered"));
    let ig = Ignore { root: true, ..Ignore::default() };
    let want = listing(&unpack(&a, "layered", "b1").join("rootfs"), ig);
    assert_eq!(listing(&unpack(&b, "example.com/x/layered:v9", "b2").join("rootfs"), ig), want);
    // What box-load wrote (a new OCI manifest here) is an image skopeo reads.
    let loaded = format!("oci:{}:example.com/x/layered:v9", b.join("images").display());
    let v: serde_json::Value = serde_json::from_str(&skopeo(&["inspect", &loaded])).unwrap();
    assert_eq!(v["Digest"].as_str().unwrap(), manifest_digest(&b, "example.com/x/layered:v9"));
    // oci-archive with a full name as ref.name keeps the manifest digest.
    let oa = a.join("oa.tar");
    skopeo(&["copy", "-q", &layout, &format!("oci-archive:{}:app:v3", oa.display())]);
    let c = Scratch::new();
    assert_eq!(load_ok(&c, &std::fs::read(&oa).unwrap()), ["docker.io/library/app:v3"]);
    let v: serde_json::Value = serde_json::from_str(&skopeo(&["inspect", &format!("oci-archive:{}", oa.display())])).unwrap();
    assert_eq!(manifest_digest(&c, "app:v3"), v["Digest"].as_str().unwrap());
    // A bare tag is no name: the image is loaded unnamed and its digest printed.
    let bare = a.join("bare.tar");
    skopeo(&["copy", "-q", &layout, &format!("oci-archive:{}:latest", bare.display())]);
    let d = Scratch::new();
    let o = load(&d, &std::fs::read(&bare).unwrap());
    assert_success(&o, "box-load of a bare-tag oci-archive");
    let digest = String::from_utf8(o.stdout).unwrap().trim().to_string();
    assert!(String::from_utf8_lossy(&o.stderr).contains("named only \"latest\""), "{}", String::from_utf8_lossy(&o.stderr));
    let idx = store(&d).index().unwrap();
    assert_eq!(idx.manifests.len(), 1);
    assert_eq!(idx.manifests[0].digest.to_string(), digest);
    assert_eq!(idx.manifests[0].ref_name(), None);
}

#[test]
fn docker_save_forms_in_any_order_and_compression() {
    require("skopeo");
    let a = Scratch::new();
    three_images(&a);
    let want = config_of(&a, "layered");
    let da = a.join("da.tar");
    let layout = format!("oci:{}:docker.io/library/layered:latest", a.join("images").display());
    skopeo(&["copy", "-q", &layout, &format!("docker-archive:{}:layered:old", da.display())]);
    let skopeo_form = members(&std::fs::read(&da).unwrap());

    // Docker before 25: <id>/layer.tar as regular files, named in manifest.json; here
    // manifest.json and repositories come first.
    let mut old: Members = Vec::new();
    let mut docker: serde_json::Value = serde_json::from_slice(&skopeo_form.iter().find(|m| m.0 == "manifest.json").unwrap().3).unwrap();
    let mut layers = Vec::new();
    for (name, kind, link, _) in &skopeo_form {
        if *kind == b'2' {
            let target = link.trim_start_matches("../");
            let data = skopeo_form.iter().find(|m| m.0 == target).unwrap().3.clone();
            old.push(file(name, &data));
            layers.push((target.to_string(), name.clone()));
        }
    }
    for l in docker[0]["Layers"].as_array_mut().unwrap() {
        let new = &layers.iter().find(|(t, _)| t == l.as_str().unwrap()).unwrap().1;
        *l = new.clone().into();
    }
    let mut rest: Members = skopeo_form.iter().filter(|m| m.1 == b'0' && !m.0.ends_with(".tar") && m.0 != "manifest.json").cloned().collect();
    rest.reverse();
    let mut ms = vec![file("manifest.json", docker.to_string().as_bytes())];
    ms.extend(rest);
    ms.extend(old);
    let b = Scratch::new();
    assert_eq!(load_ok(&b, &build(&ms)), ["docker.io/library/layered:old"]);
    assert_eq!(config_of(&b, "layered:old"), want);

    // Docker 25+ with containerd: manifest.json names the gzip blobs; no index.json here.
    let saved = save(&a, &["layered"]);
    let ms: Members = members(&saved).into_iter().filter(|m| m.0 != "index.json" && m.0 != "oci-layout").collect();
    let c = Scratch::new();
    assert_eq!(load_ok(&c, &build(&ms)), ["docker.io/library/layered:latest"]);
    let image = store(&c).image("layered").unwrap();
    assert!(image.manifest.layers.iter().all(|l| l.media_type == boxkit::oci::MEDIA_OCI_LAYER_GZIP));
    assert_eq!(config_of(&c, "layered"), want);
    unpack(&c, "layered", "b");

    // The whole archive gzip'd or zstd'd loads too.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&saved).unwrap();
    let d = Scratch::new();
    assert_eq!(load_ok(&d, &gz.finish().unwrap()), ["docker.io/library/layered:latest"]);
    let e = Scratch::new();
    assert_eq!(load_ok(&e, &zstd::encode_all(&saved[..], 3).unwrap()), ["docker.io/library/layered:latest"]);
    assert_eq!(manifest_digest(&e, "layered"), manifest_digest(&a, "layered"));
}

#[test]
fn broken_and_hostile_archives_are_refused_with_nothing_named() {
    let a = Scratch::new();
    three_images(&a);
    let good = save(&a, &["layered", "busybox"]);
    let ms = members(&good);
    let layer = {
        let docker: serde_json::Value = serde_json::from_slice(&ms.iter().find(|m| m.0 == "manifest.json").unwrap().3).unwrap();
        docker[0]["Layers"][1].as_str().unwrap().to_string()
    };
    let with = |f: &dyn Fn(&mut Members)| {
        let mut m = ms.clone();
        f(&mut m);
        build(&m)
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("a truncated member", good[..good.len() / 2].to_vec(), "truncated"),
        ("no end-of-archive marker", good[..good.len() - 1024].to_vec(), "end-of-archive"),
        ("trailing garbage", [&good[..], b"garbage"].concat(), "trailing data"),
        ("an empty input", Vec::new(), "truncated"),
        (
            "a blob whose bytes do not match its name",
            with(&|m| m.iter_mut().find(|x| x.0 == layer).unwrap().3[100] ^= 1),
            "did not verify",
        ),
        ("a missing layer", with(&|m| m.retain(|x| x.0 != layer)), "not in the archive"),
        ("a member named ../x", with(&|m| m.insert(0, file("../x", b"x"))), "'..'"),
        ("an absolute member", with(&|m| m.insert(0, file("/etc/x", b"x"))), "absolute"),
        (
            "a symlink out of the archive",
            with(&|m| m.insert(0, ("evil".into(), b'2', "/etc/shadow".into(), Vec::new()))),
            "outside the archive",
        ),
        (
            "a hard link out of the archive",
            with(&|m| m.insert(0, ("evil".into(), b'1', "../../etc/shadow".into(), Vec::new()))),
            "outside the archive",
        ),
        (
            "a layer that is a symlink",
            with(&|m| {
                let x = m.iter_mut().find(|x| x.0 == layer).unwrap();
                (x.1, x.2, x.3) = (b'2', "../index.json".into(), Vec::new());
                m.retain(|x| x.0 != "index.json" && x.0 != "oci-layout");
            }),
            "is a symlink in the archive",
        ),
        (
            "layers in the wrong order",
            with(&|m| {
                m.retain(|x| x.0 != "index.json");
                let j = m.iter_mut().find(|x| x.0 == "manifest.json").unwrap();
                let mut d: serde_json::Value = serde_json::from_slice(&j.3).unwrap();
                d[0]["Layers"].as_array_mut().unwrap().swap(0, 1);
                j.3 = d.to_string().into_bytes();
            }),
            "diff_id",
        ),
        ("no index.json or manifest.json", with(&|m| m.retain(|x| x.0.starts_with("blobs"))), "neither index.json"),
    ];
    for (why, input, expect) in cases {
        let s = Scratch::new();
        let err = load_refused(&s, &input, why);
        assert!(err.contains(expect), "{why}: expected {expect:?} in: {err}");
    }
    // The same store then loads the good archive.
    let s = Scratch::new();
    load_refused(&s, &good[..good.len() / 2], "truncation");
    assert_eq!(load_ok(&s, &good).len(), 2);
}

#[test]
fn save_refuses_a_missing_image_and_writes_no_file() {
    let s = Scratch::new();
    s.import_busybox();
    let out = s.join("out.tar");
    let (code, err) = s.fails("box-save", &["-o", out.to_str().unwrap(), "busybox", "nosuch"]);
    assert_eq!(code, 1);
    assert!(err.contains("\"nosuch\" not found"), "{err}");
    assert!(!Path::new(&out).exists());
    let leftovers: Vec<_> = std::fs::read_dir(s.path()).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with(".box-save")).collect();
    assert!(leftovers.is_empty());
}

#[test]
fn docker_media_types_keep_their_digest() {
    require("skopeo");
    // An image as a registry serves it in Docker's schema 2: the manifest is saved as it is.
    let a = Scratch::new();
    three_images(&a);
    let st = store(&a);
    let image = st.image("layered").unwrap();
    let mut m = serde_json::to_value(&image.manifest).unwrap();
    m["mediaType"] = boxkit::oci::MEDIA_DOCKER_MANIFEST.into();
    m["config"]["mediaType"] = boxkit::oci::MEDIA_DOCKER_CONFIG.into();
    for l in m["layers"].as_array_mut().unwrap() {
        l["mediaType"] = boxkit::oci::MEDIA_DOCKER_LAYER_GZIP.into();
    }
    let d = st.put_bytes(boxkit::oci::MEDIA_DOCKER_MANIFEST, m.to_string().as_bytes()).unwrap();
    st.tag(&boxkit::reference::Reference::parse("dockery:1").unwrap(), &d).unwrap();
    let archive = save(&a, &["dockery:1"]);
    let b = Scratch::new();
    assert_eq!(load_ok(&b, &archive), ["docker.io/library/dockery:1"]);
    assert_eq!(manifest_digest(&b, "dockery:1"), d.digest.to_string());
    let f = a.join("d.tar");
    std::fs::write(&f, &archive).unwrap();
    skopeo(&["inspect", &format!("docker-archive:{}", f.display())]);
}
