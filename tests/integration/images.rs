//! Image management: box-images, box-tag, box-rmi and box-prune, and the store staying valid
//! while pulls, imports, removals and prunes run at once.

use crate::support::{busybox_tar, fixture, make_image, require, Scratch};
use boxkit::digest::Digest;
use boxkit::oci::{self, Descriptor, Manifest};
use boxkit::store::Store;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

/// Import busybox as `name`, with a history message so each call can make a distinct image;
/// `epoch` is the SOURCE_DATE_EPOCH (the image's created time).
fn import(s: &Scratch, name: &str, message: &str, epoch: Option<&str>) -> String {
    let mut c = s.cmd("box-import");
    if let Some(e) = epoch {
        c.env("SOURCE_DATE_EPOCH", e);
    }
    let out = c.args(["-m", message, busybox_tar().to_str().unwrap(), name]).stdin(Stdio::null()).output().unwrap();
    crate::support::assert_success(&out, &format!("box-import {name}"));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Every blob a manifest names (itself, its config, its layers).
fn blobs_of(s: &Scratch, manifest: &str) -> BTreeSet<String> {
    let store = Store::open(&s.join("images")).unwrap();
    let d: Digest = manifest.parse().unwrap();
    let m: Manifest = serde_json::from_slice(&store.read_blob(&d).unwrap()).unwrap();
    let mut set: BTreeSet<String> = m.layers.iter().map(|l| l.digest.to_string()).collect();
    set.insert(m.config.digest.to_string());
    set.insert(manifest.to_string());
    set
}

fn config_of(s: &Scratch, manifest: &str) -> String {
    let store = Store::open(&s.join("images")).unwrap();
    let m: Manifest = serde_json::from_slice(&store.read_blob(&manifest.parse().unwrap()).unwrap()).unwrap();
    m.config.digest.to_string()
}

fn lines(s: &str) -> BTreeSet<String> {
    s.lines().map(String::from).collect()
}

fn one_line_error(s: &Scratch, tool: &str, args: &[&str], mentions: &str) {
    let (_, err) = s.fails(tool, args);
    assert_eq!(err.lines().count(), 1, "{tool} {args:?}: not one line: {err}");
    assert!(err.contains(mentions), "{tool} {args:?}: {err:?} does not mention {mentions:?}");
}

#[test]
fn images_lists_names_ids_ages_and_sizes_like_docker() {
    let s = Scratch::new();
    import(&s, "busybox", "base", None);
    import(&s, "app:1", "app", Some("1000000000"));
    s.ok("box-tag", &["app:1", "localhost:5000/team/app:v2"]);
    import(&s, "x:1", "first", None);
    import(&s, "x:1", "second", None); // the first x:1 is now dangling
    // A multi-platform index, named by digest like box-pull stores one.
    let cfg = serde_json::json!({"created": "2015-10-21T07:28:00Z", "config": {}});
    let host = make_image(s.path(), "plat-host", &[fixture("base.tar")], "gzip", Some(cfg));
    let store = Store::open(&s.join("images")).unwrap();
    let child = |d: &str, arch: &str| {
        let d: Digest = d.parse().unwrap();
        let size = std::fs::metadata(store.blob_path(&d)).map_or(1234, |m| m.len());
        let mut desc = Descriptor::new(oci::MEDIA_OCI_MANIFEST, d, size);
        desc.platform = Some(oci::Platform { architecture: arch.into(), os: "linux".into(), os_version: None, variant: None });
        desc
    };
    let absent = format!("sha256:{}", "0".repeat(64));
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": oci::MEDIA_OCI_INDEX,
        "manifests": [child(&host, oci::host_architecture()), child(&absent, "s390x")]});
    let idesc = store.put_bytes(oci::MEDIA_OCI_INDEX, index.to_string().as_bytes()).unwrap();
    let name = format!("docker.io/library/multi@{}", idesc.digest);
    store.tag(&boxkit::reference::Reference::parse(&name).unwrap(), &idesc).unwrap();
    drop(store); // box-rmi waits for every other user of the store
    s.ok("box-rmi", &["plat-host"]); // its blobs stay: the index reaches them

    // CREATED depends on today's date: name the ages instead.
    let ages = [(0, "[1970]"), (1_000_000_000, "[2001]"), (1_445_412_480, "[2015]")];
    let stable = |out: String| {
        ages.iter().fold(out, |o, (t, n)| {
            let age = boxkit::images::human_duration(now() - t);
            o.replace(&age, &format!("{n:<w$}", w = age.len()))
        })
    };
    let mut all = String::new();
    for args in [
        &[][..],
        &["--digests"],
        &["-q"],
        &["-q", "--no-trunc", "--filter", "dangling=true"],
        &["--filter", "dangling=true"],
        &["--filter", "dangling=false", "app"],
        &["localhost:5000/team/app:v2"],
    ] {
        all.push_str(&format!("$ box-images {}\n{}\n", args.join(" "), stable(s.ok("box-images", args))));
    }
    insta::assert_snapshot!(all);
}

#[test]
fn tag_accepts_a_name_a_digest_or_an_id_prefix() {
    let s = Scratch::new();
    let digest = import(&s, "busybox", "base", None);
    let id = config_of(&s, &digest);
    s.ok("box-tag", &["busybox", "a"]);
    s.ok("box-tag", &[&digest, "b:2"]);
    s.ok("box-tag", &[&id["sha256:".len()..][..6], "localhost:5000/c"]);
    let q = s.ok("box-images", &["-q", "--no-trunc"]);
    assert_eq!(q.trim(), id, "one image, one ID");
    let store = Store::open(&s.join("images")).unwrap();
    for n in ["a", "b:2", "localhost:5000/c:latest", "busybox"] {
        assert_eq!(store.resolve(n).unwrap().digest.to_string(), digest, "{n}");
    }
    drop(store);
    one_line_error(&s, "box-tag", &["nosuch", "d"], "nosuch");
    one_line_error(&s, "box-tag", &["busybox", "Bad"], "Bad");
    one_line_error(&s, "box-tag", &["busybox", &format!("d@{digest}")], "digest");
}

#[test]
fn rmi_keeps_the_blobs_another_image_shares() {
    let s = Scratch::new();
    let a = make_image(s.path(), "a", &[fixture("base.tar"), fixture("links.tar")], "gzip", None);
    let b = make_image(s.path(), "b", &[fixture("base.tar"), fixture("whiteout.tar")], "gzip", Some(serde_json::json!({"config": {"Cmd": ["true"]}})));
    s.ok("box-tag", &["a", "a2"]);
    let kept = blobs_of(&s, &b);
    let want: BTreeSet<String> = blobs_of(&s, &a).difference(&kept).cloned().collect();
    assert_eq!(want.len(), 3, "a's manifest, config and its own layer");
    // One of two names: nothing is deleted.
    assert_eq!(s.ok("box-rmi", &["a"]), "");
    assert_eq!(lines(&s.ok("box-rmi", &["a2"])), want);
    for d in &kept {
        assert!(s.join(&format!("images/blobs/sha256/{}", &d[7..])).exists(), "{d} of b was deleted");
    }
    crate::support::unpack(&s, "b", "bundle-b");
    one_line_error(&s, "box-rmi", &["a"], "\"a\"");
}

#[test]
fn rmi_refuses_while_a_bundle_uses_the_image() {
    let s = Scratch::new();
    let digest = import(&s, "busybox", "base", None);
    let all = blobs_of(&s, &digest);
    let bundle = crate::support::unpack(&s, "busybox", "bundle");
    let bundle = std::fs::canonicalize(bundle).unwrap();
    one_line_error(&s, "box-rmi", &["busybox"], bundle.to_str().unwrap());
    assert!(s.ok("box-images", &["-q", "--filter", "dangling=false"]).lines().count() == 1, "refused, yet changed");
    // Forced: untagged, kept (dangling) while the bundle lives; nothing deleted.
    let out = s.cmd("box-rmi").args(["-f", "busybox"]).output().unwrap();
    crate::support::assert_success(&out, "box-rmi -f");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "Untagged: busybox:latest\n");
    let id = s.ok("box-images", &["-q", "--filter", "dangling=true"]).trim().to_string();
    assert_eq!(id.len(), 12);
    assert_eq!(s.ok("box-prune", &[]), "", "prune removed the image a live bundle uses");
    // rm -rf of the bundle is all it takes to free the image.
    std::fs::remove_dir_all(&bundle).unwrap();
    assert_eq!(lines(&s.ok("box-rmi", &[&id[..5]])), all);
    assert_eq!(s.ok("box-images", &["-q"]), "");

    let other = import(&s, "other", "other", None);
    let want = blobs_of(&s, &other);
    let b = crate::support::unpack(&s, "other", "b2");
    std::fs::remove_dir_all(b).unwrap();
    assert_eq!(lines(&s.ok("box-rmi", &["other"])), want);
}

fn diff_id_of(s: &Scratch, manifest: &str) -> String {
    let store = Store::open(&s.join("images")).unwrap();
    let c: serde_json::Value = serde_json::from_slice(&store.read_blob(&config_of(s, manifest).parse().unwrap()).unwrap()).unwrap();
    c["rootfs"]["diff_ids"][0].as_str().unwrap().to_string()
}

/// A fake cached layer: a few files, returning the bytes of its regular files.
fn fake_layer(dir: &Path) -> u64 {
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::write(dir.join("etc/hostname"), "box\n").unwrap();
    4
}

#[test]
fn prune_frees_exactly_what_nothing_references() {
    require("chattr");
    let s = Scratch::new();
    let keep = import(&s, "busybox", "base", None);
    let dangling = import(&s, "x:1", "one", None);
    import(&s, "x:1", "two", None);
    let used = import(&s, "u:1", "used", None);
    let used_bundle = crate::support::unpack(&s, "u:1", "bundle-u");
    import(&s, "u:1", "moved on", None);
    // An image a live bundle uses after index.json stopped naming it (edited by hand).
    let m = make_image(s.path(), "m", &[fixture("links.tar")], "gzip", None);
    let m_bundle = crate::support::unpack(&s, "m", "bundle-m");
    let store = Store::open(&s.join("images")).unwrap();
    store.update_index(|i| Ok(i.manifests.retain(|d| d.ref_name() != Some("docker.io/library/m:latest")))).unwrap();
    let stray = store.put_bytes("text/plain", b"stray").unwrap();
    drop(store);
    let dead = crate::support::unpack(&s, "busybox", "bundle-dead");
    std::fs::remove_dir_all(&dead).unwrap();

    // Leftovers of interrupted writers.
    std::fs::write(s.join("images/blobs/.tmp-interrupted"), "0123456789").unwrap();
    std::fs::write(s.join("images/.index.json.tmp-x"), "{}").unwrap();
    let half = fake_layer(&s.join("layers/.tmp-half"));
    // Cached layers: busybox's and m's are needed; one is not, and holds what a layer may:
    // an unreadable directory, an immutable file, an append-only directory, a symlink out.
    let layer = |d: &str| s.join(&format!("layers/sha256/{}", &d[7..]));
    fake_layer(&layer(&diff_id_of(&s, &keep)));
    fake_layer(&layer(&diff_id_of(&s, &m)));
    let garbage = layer(&format!("sha256:{}", "ab".repeat(32)));
    let mut garbage_bytes = fake_layer(&garbage);
    std::fs::create_dir_all(garbage.join("locked/deeper")).unwrap();
    std::fs::write(garbage.join("locked/deeper/f"), "12345").unwrap();
    std::fs::write(garbage.join("immutable"), "123").unwrap();
    std::fs::create_dir(garbage.join("append-only")).unwrap();
    std::fs::write(garbage.join("append-only/f"), "12").unwrap();
    garbage_bytes += 10;
    let victim = s.join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("precious"), "x").unwrap();
    std::os::unix::fs::symlink(&victim, garbage.join("escape")).unwrap();
    for (flag, p) in [("+i", "immutable"), ("+a", "append-only")] {
        let o = Command::new("chattr").arg(flag).arg(garbage.join(p)).output().unwrap();
        crate::support::assert_success(&o, "chattr");
    }
    std::fs::set_permissions(garbage.join("locked"), std::os::unix::fs::PermissionsExt::from_mode(0)).unwrap();

    let dangling_blobs: BTreeSet<String> = [dangling.clone(), config_of(&s, &dangling)].into();
    let size = |d: &String| std::fs::metadata(s.join(&format!("images/blobs/sha256/{}", &d[7..]))).unwrap().len();
    let total = dangling_blobs.iter().map(size).sum::<u64>() + 5 + 10 + 2 + half + garbage_bytes;
    let records: BTreeSet<String> =
        std::fs::read_dir(s.join("bundles")).unwrap().map(|e| e.unwrap().path().display().to_string()).collect();
    let out = s.cmd("box-prune").output().unwrap();
    crate::support::assert_success(&out, "box-prune");
    let mut want = dangling_blobs.clone();
    want.insert(stray.digest.to_string());
    for p in [garbage.clone(), s.join("images/blobs/.tmp-interrupted"), s.join("images/.index.json.tmp-x"), s.join("layers/.tmp-half")] {
        want.insert(p.display().to_string());
    }
    let got = lines(&String::from_utf8_lossy(&out.stdout));
    let (bundle_lines, rest): (BTreeSet<String>, BTreeSet<String>) = got.into_iter().partition(|l| l.contains("/bundles/"));
    assert_eq!(rest, want);
    assert_eq!(bundle_lines.len(), 1, "the dead bundle's record");
    assert!(bundle_lines.is_subset(&records));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.ends_with(&format!("Total reclaimed space: {}\n", boxkit::images::docker_size(total, 4))), "{err}");
    assert!(err.contains(&format!("Deleted image: {dangling}")), "{err}");
    assert!(victim.join("precious").exists(), "prune followed a symlink out of a cached layer");
    assert!(layer(&diff_id_of(&s, &keep)).exists() && layer(&diff_id_of(&s, &m)).exists());
    check_store(&s);
    for d in [&used, &m] {
        assert!(blobs_of(&s, d).iter().all(|b| s.join(&format!("images/blobs/sha256/{}", &b[7..])).exists()));
    }
    // Nothing left to free (but the records of the bundles check_store made and removed).
    assert!(lines(&s.ok("box-prune", &[])).iter().all(|l| l.contains("/bundles/")));
    // The bundles gone, their images go too; -a takes the tagged ones.
    let m_layer = layer(&diff_id_of(&s, &m)).display().to_string();
    let mut want: BTreeSet<String> = blobs_of(&s, &m);
    want.extend([used.clone(), config_of(&s, &used), m_layer]);
    std::fs::remove_dir_all(&used_bundle).unwrap();
    std::fs::remove_dir_all(&m_bundle).unwrap();
    let got = lines(&s.ok("box-prune", &[]));
    assert_eq!(got.into_iter().filter(|l| !l.contains("/bundles/")).collect::<BTreeSet<_>>(), want);
    s.ok("box-prune", &["-a"]);
    assert_eq!(s.ok("box-images", &["-q"]), "");
    assert_eq!(std::fs::read_dir(s.join("images/blobs/sha256")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(s.join("layers/sha256")).unwrap().count(), 0);
}

#[test]
fn bad_references_give_one_line_errors() {
    let s = Scratch::new();
    import(&s, "busybox", "base", None);
    one_line_error(&s, "box-rmi", &["nosuch"], "nosuch");
    one_line_error(&s, "box-rmi", &["BadName"], "BadName");
    one_line_error(&s, "box-rmi", &["sha256:abc"], "sha256:abc");
    one_line_error(&s, "box-rmi", &[&format!("sha256:{}", "f".repeat(64))], "ffff");
    one_line_error(&s, "box-rmi", &["busybox:nosuchtag"], "busybox:nosuchtag");
    one_line_error(&s, "box-images", &["--filter", "label=a"], "label=a");
    one_line_error(&s, "box-images", &["Bad"], "Bad");
    // One bad REF among good ones: the good ones are still removed, the exit status says 1.
    s.ok("box-tag", &["busybox", "two"]);
    let out = s.cmd("box-rmi").args(["two", "nosuch"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().filter(|l| l.contains("nosuch")).count(), 1);
    assert_eq!(s.ok("box-images", &["-q", "two"]), "");
    // A root with no store yet: nothing to list, nothing to prune.
    let empty = Scratch::new();
    assert_eq!(empty.ok("box-images", &["-q"]), "");
    assert_eq!(empty.ok("box-prune", &[]), "");
}

/// The store is valid: every blob holds the bytes its name says, every image index.json
/// names is whole, no temporary file is left, skopeo and umoci read it, and every named
/// image unpacks.
fn check_store(s: &Scratch) {
    let dir = s.join("images");
    let store = Store::open(&dir).unwrap();
    for e in std::fs::read_dir(dir.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let bytes = std::fs::read(e.path()).unwrap();
        assert_eq!(Digest::of(&bytes).hex(), e.file_name().to_str().unwrap(), "a blob does not hold what its name says");
    }
    for d in store.index().unwrap().manifests {
        let image = store.image_at(d.clone(), &boxkit::store::host_platform()).unwrap();
        for b in std::iter::once(&image.manifest.config).chain(&image.manifest.layers) {
            assert!(store.has_blob(&b.digest), "{}: blob {} is missing", d.digest, b.digest);
        }
    }
    for sub in ["images", "images/blobs", "layers"] {
        for e in std::fs::read_dir(s.join(sub)).into_iter().flatten() {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!n.contains(".tmp-"), "{sub}/{n} left behind");
        }
    }
    drop(store);
    require("umoci");
    require("skopeo");
    let o = Command::new("umoci").args(["ls", "--layout"]).arg(&dir).output().unwrap();
    crate::support::assert_success(&o, "umoci ls");
    let names: Vec<String> = String::from_utf8(o.stdout).unwrap().lines().map(String::from).collect();
    for (i, n) in names.iter().enumerate() {
        let o = Command::new("skopeo").arg("inspect").arg(format!("oci:{}:{n}", dir.display())).output().unwrap();
        crate::support::assert_success(&o, &format!("skopeo inspect {n}"));
        crate::support::unpack(s, n, &format!("check-{i}"));
        std::fs::remove_dir_all(s.join(&format!("check-{i}"))).unwrap();
    }
}

#[test]
fn the_store_stays_valid_under_concurrent_pulls_imports_commits_removals_and_prunes() {
    use crate::registry::{Mode, Registry};
    let r = Registry::start(Mode::Plain);
    let src = Scratch::new();
    make_image(src.path(), "src", &[busybox_tar(), fixture("base.tar"), fixture("links.tar")], "gzip", None);
    r.push(&format!("oci:{}:docker.io/library/src:latest", src.join("images").display()), "t/img:1", &[]);
    let pulled = format!("{}/t/img:1", r.host());
    let s = Scratch::new();
    const ROUNDS: usize = 4;
    let run = |tool: &str, args: Vec<String>| {
        let out = s.cmd(tool).args(&args).stdin(Stdio::null()).output().unwrap();
        crate::support::assert_success(&out, &format!("{tool} {args:?}"));
    };
    // A container to commit from, made before the race starts (a live bundle: its image stays).
    run("box-import", vec![busybox_tar().display().to_string(), "base".into()]);
    let cb = s.join("cb");
    run("box-unpack", vec!["base".into(), cb.display().to_string()]);
    std::thread::scope(|t| {
        t.spawn(|| {
            for i in 0..ROUNDS {
                std::fs::write(cb.join("rootfs/round"), format!("{i}\n")).unwrap();
                run("box-commit", vec![cb.display().to_string(), format!("com:{i}")]);
                // And an overlay bundle, dropped at once: its cached layers become prunable.
                let ml = s.join(&format!("ml{i}"));
                run("box-mount-layers", vec![format!("com:{i}"), ml.display().to_string()]);
                run("box-mount-layers", vec!["--unmount".into(), ml.display().to_string()]);
                std::fs::remove_dir_all(&ml).unwrap();
            }
        });
        t.spawn(|| {
            for i in 0..ROUNDS {
                run("box-pull", vec!["-q".into(), pulled.clone()]);
                if i + 1 < ROUNDS {
                    // Every blob goes (nothing else shares them), so the next pull fetches all.
                    run("box-rmi", vec![pulled.clone()]);
                }
            }
        });
        t.spawn(|| {
            for i in 0..ROUNDS {
                run("box-import", vec!["-m".into(), format!("{i}"), busybox_tar().display().to_string(), format!("imp:{i}")]);
                // The previous `churn` becomes dangling: work for the pruner.
                run("box-import", vec!["-m".into(), format!("churn {i}"), busybox_tar().display().to_string(), "churn".into()]);
            }
        });
        t.spawn(|| {
            for _ in 0..ROUNDS * 2 {
                run("box-prune", vec![]);
            }
        });
    });
    check_store(&s);
    let listed = s.ok("box-images", &[]);
    let rows: Vec<Vec<&str>> = listed.lines().map(|l| l.split_whitespace().collect()).collect();
    for i in 0..ROUNDS {
        assert!(rows.iter().any(|r| r[..2] == ["imp", &i.to_string()]), "imp:{i} lost:\n{listed}");
        assert!(rows.iter().any(|r| r[..2] == ["com", &i.to_string()]), "com:{i} lost:\n{listed}");
    }
    assert!(listed.contains(&format!("{}/t/img", r.host())), "the pulled image lost:\n{listed}");
}
