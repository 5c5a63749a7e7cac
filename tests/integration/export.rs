//! box-export: deterministic tar streams, and `box-export | box-import` round trips.

use crate::support::{fixture, make_image, unpack, Scratch};
use crate::tree::{listing, Ignore};

fn export_bytes(s: &Scratch, args: &[&str]) -> Vec<u8> {
    let o = s.cmd("box-export").args(args).output().unwrap();
    crate::support::assert_success(&o, "box-export");
    o.stdout
}

#[test]
fn export_then_import_reproduces_the_tree() {
    let s = Scratch::new();
    let layers: Vec<_> = ["links.tar", "devices.tar", "xattrs.tar", "base.tar", "whiteout.tar"].iter().map(|f| fixture(f)).collect();
    make_image(s.path(), "orig", &layers, "gzip", None);
    let b1 = unpack(&s, "orig", "b1");
    let tar = export_bytes(&s, &[b1.to_str().unwrap()]);
    assert_eq!(tar, export_bytes(&s, &[b1.to_str().unwrap()]), "two exports differ");
    std::fs::write(s.join("rootfs.tar"), &tar).unwrap();
    s.ok("box-import", &[s.join("rootfs.tar").to_str().unwrap(), "copy"]);
    let b2 = unpack(&s, "copy", "b2");
    let ig = Ignore::default();
    assert_eq!(listing(&b1.join("rootfs"), ig), listing(&b2.join("rootfs"), ig));
    // And the image export (flattened layers) is the same stream.
    assert_eq!(export_bytes(&s, &["--image", "orig"]), tar);
}

#[test]
fn export_lists_entries_in_walk_order() {
    let s = Scratch::new();
    make_image(s.path(), "t", &[fixture("base.tar")], "gzip", None);
    let b = unpack(&s, "t", "b");
    let tar = export_bytes(&s, &[b.to_str().unwrap()]);
    let mut ar = tar::Archive::new(&tar[..]);
    let names: Vec<String> = ar.entries().unwrap().map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap()).collect();
    insta::assert_snapshot!(names.join("\n"));
}

#[test]
fn export_refuses_a_terminal_and_names_a_missing_bundle() {
    let s = Scratch::new();
    let (code, err) = s.fails("box-export", &[s.join("none").to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("is not a bundle"), "{err}");
    let (code, _) = s.fails("box-export", &[]);
    assert_eq!(code, 2);
}
