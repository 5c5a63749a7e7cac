//! box-import: reproducible digests, every compression, --change, and bad input that
//! leaves the store as it was.

use crate::support::{busybox_tar, fixture, Scratch};
use std::io::Write;
use std::process::{Command, Stdio};

fn blobs(s: &Scratch) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(s.join("images/blobs/sha256"))
        .map(|rd| rd.flatten().map(|e| e.file_name().into_string().unwrap()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn import_stdin(s: &Scratch, bytes: &[u8], name: &str) -> std::process::Output {
    let mut c = s.cmd("box-import").args(["-", name]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = c.stdin.take().unwrap();
    let data = bytes.to_vec();
    let t = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let o = c.wait_with_output().unwrap();
    t.join().unwrap();
    o
}

#[test]
fn the_same_tree_gives_the_same_digest_in_every_form() {
    let tar = std::fs::read(fixture("links.tar")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&tar[..], 19).unwrap();
    let mut digests = Vec::new();
    for (i, input) in [&tar, &gz, &zst, &tar].iter().enumerate() {
        let s = Scratch::new();
        let o = import_stdin(&s, input, "x:1");
        crate::support::assert_success(&o, &format!("import form {i}"));
        digests.push(String::from_utf8(o.stdout).unwrap());
    }
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
    // The digest is pinned: a change in how boxkit writes layers or JSON shows up here.
    insta::assert_snapshot!(digests[0].trim());
}

#[test]
fn entry_order_in_the_input_does_not_matter() {
    let s = Scratch::new();
    let make = |order: &[&str]| {
        let mut b = tar::Builder::new(Vec::new());
        for name in order {
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o644);
            h.set_mtime(1);
            if name.ends_with('/') {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                h.set_mode(0o755);
                b.append_data(&mut h, name, &[][..]).unwrap();
            } else {
                h.set_size(name.len() as u64);
                b.append_data(&mut h, name, name.as_bytes()).unwrap();
            }
        }
        b.into_inner().unwrap()
    };
    let a = import_stdin(&s, &make(&["a/", "a/x", "b", "a-b"]), "o:1");
    let b = import_stdin(&s, &make(&["b", "a-b", "a/", "a/x"]), "o:2");
    assert_eq!(a.stdout, b.stdout);
}

#[test]
fn changes_and_message_land_in_the_config() {
    let s = Scratch::new();
    let tar = busybox_tar();
    let digest = s.ok(
        "box-import",
        &[
            "--change", r#"ENTRYPOINT ["/bin/sh", "-c"]"#,
            "--change", "CMD echo hello",
            "--change", "ENV A=1 B=2",
            "--change", "WORKDIR /srv",
            "--change", "USER nobody",
            "--message", "made by a test",
            tar.to_str().unwrap(),
            "localhost:5000/team/app:v1",
        ],
    );
    let store = boxkit::store::Store::open(&s.join("images")).unwrap();
    let img = store.image("localhost:5000/team/app:v1").unwrap();
    assert_eq!(img.descriptor.digest.to_string(), digest.trim());
    let mut cfg = serde_json::to_value(&img.config).unwrap();
    cfg["rootfs"]["diff_ids"] = "[elided: depends on the host's busybox]".into();
    cfg["architecture"] = "[host]".into();
    insta::assert_json_snapshot!(cfg);
}

#[test]
fn source_date_epoch_sets_the_creation_time() {
    let s = Scratch::new();
    let tar = fixture("base.tar");
    let out = s.cmd("box-import").env("SOURCE_DATE_EPOCH", "1700000000").args([tar.to_str().unwrap(), "t"]).output().unwrap();
    assert!(out.status.success());
    let img = boxkit::store::Store::open(&s.join("images")).unwrap().image("t").unwrap();
    assert_eq!(img.config.created.as_deref(), Some("2023-11-14T22:13:20Z"));
}

#[test]
fn bad_input_is_refused_and_the_store_is_unchanged() {
    let s = Scratch::new();
    s.ok("box-import", &[fixture("base.tar").to_str().unwrap(), "good"]);
    let before = blobs(&s);
    let index_before = std::fs::read(s.join("images/index.json")).unwrap();
    let cases = [
        ("attack-trailing-garbage.tar", "trailing data"),
        ("attack-truncated.tar", "EOF"),
        ("attack-sparse-huge.tar", ""),
        ("whiteout.tar", "cannot hold a whiteout"),
    ];
    for (f, msg) in cases {
        let (code, err) = s.fails("box-import", &[fixture(f).to_str().unwrap(), "bad"]);
        assert_eq!(code, 1, "{f}");
        assert!(err.starts_with("box-import: import ") && err.trim_end().lines().count() == 1, "{f}: {err}");
        assert!(err.contains(msg), "{f}: {err}");
    }
    // A truncated gzip stream.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&std::fs::read(fixture("links.tar")).unwrap()).unwrap();
    let mut gz = gz.finish().unwrap();
    gz.truncate(gz.len() / 2);
    let o = import_stdin(&s, &gz, "bad");
    assert!(!o.status.success());
    assert_eq!(blobs(&s), before, "a failed import left blobs");
    assert_eq!(std::fs::read(s.join("images/index.json")).unwrap(), index_before);
    let temps: Vec<_> = std::fs::read_dir(s.join("images/blobs")).unwrap().flatten().filter(|e| e.file_name() != "sha256").collect();
    assert!(temps.is_empty(), "temporary files left: {temps:?}");
}

#[test]
fn invalid_references_are_named() {
    let s = Scratch::new();
    let tar = fixture("base.tar");
    for (r, msg) in [("UPPER", "must be lowercase"), ("x:-t", "bad tag"), ("x@sha256:12", "64 lowercase hex")] {
        let (code, err) = s.fails("box-import", &[tar.to_str().unwrap(), r]);
        assert_eq!(code, 1);
        assert!(err.contains(msg) && err.contains(r), "{r}: {err}");
    }
}

#[test]
fn hard_links_keep_the_content_they_had_and_never_name_directories() {
    let s = Scratch::new();
    let tar_of = |entries: &[(&str, &str, Option<&str>)]| {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data, link) in entries {
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o644);
            h.set_mtime(1);
            match (data, link) {
                (_, Some(t)) => {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_size(0);
                    b.append_link(&mut h, name, t).unwrap();
                }
                (&"DIR", None) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    b.append_data(&mut h, name, &[][..]).unwrap();
                }
                (d, None) => {
                    h.set_size(d.len() as u64);
                    b.append_data(&mut h, name, d.as_bytes()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    };
    // b is a link to the OLD a; a is then replaced: b keeps the old content.
    let o = import_stdin(&s, &tar_of(&[("a", "OLD\n", None), ("b", "", Some("a")), ("a", "NEW\n", None)]), "links");
    crate::support::assert_success(&o, "import");
    let b = crate::support::unpack(&s, "links", "b");
    assert_eq!(std::fs::read_to_string(b.join("rootfs/a")).unwrap(), "NEW\n");
    assert_eq!(std::fs::read_to_string(b.join("rootfs/b")).unwrap(), "OLD\n");
    // Links to directories, and links to nothing earlier, are refused.
    let o = import_stdin(&s, &tar_of(&[("d", "DIR", None), ("l", "", Some("d"))]), "bad");
    assert!(String::from_utf8_lossy(&o.stderr).contains("hard link to a directory"), "{o:?}");
    let o = import_stdin(&s, &tar_of(&[("l", "", Some("later")), ("later", "x", None)]), "bad");
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not come earlier"), "{o:?}");
}

#[test]
fn gnu_sparse_files_are_refused_not_corrupted() {
    let s = Scratch::new();
    let dir = s.join("sp");
    std::fs::create_dir(&dir).unwrap();
    let f = std::fs::File::create(dir.join("sparse")).unwrap();
    f.set_len(8 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_at(b"end", (8 << 20) - 3).unwrap();
    std::fs::write(dir.join("zz-after"), vec![7u8; 2 << 20]).unwrap();
    let tar = s.join("sp.tar");
    let o = Command::new("tar").args(["--sparse", "--format=gnu", "-C"]).arg(&dir).arg("-cf").arg(&tar).arg(".").output().unwrap();
    crate::support::assert_success(&o, "GNU tar --sparse");
    let (code, err) = s.fails("box-import", &[tar.to_str().unwrap(), "sparse"]);
    assert_eq!(code, 1);
    assert!(err.contains("GNU sparse files are not supported"), "{err}");
}
