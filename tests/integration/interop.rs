//! boxkit's formats against the real peers: runc runs box-unpack's bundles, box-spawn runs
//! umoci's, skopeo and umoci read boxkit's store, and box-unpack --layout gives the same tree
//! as `umoci unpack` on layouts made by skopeo and umoci.

use crate::support::{bin, fixture, require, sh, Scratch};
use crate::tree::{listing, Ignore};
use std::process::Command;

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    crate::support::assert_success(&o, &format!("{cmd:?}"));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn runc_runs_a_box_unpack_bundle() {
    require("runc");
    let s = Scratch::new();
    let b = s.busybox_bundle("runc-bundle");
    crate::support::edit_config(&b, |spec| {
        spec["process"]["args"] = serde_json::json!(["sh", "-c", "echo pid=$$ host=$(hostname); id -u"]);
    });
    let id = format!("boxkit-test-{}", std::process::id());
    let state = s.join("runc-state");
    let out = run(Command::new("runc").arg("--root").arg(&state).args(["run", "--bundle"]).arg(&b).arg(&id));
    assert_eq!(out, "pid=1 host=runc-bundle\n0\n");
    let _ = Command::new("runc").arg("--root").arg(&state).args(["delete", "--force", &id]).output();
}

#[test]
fn box_spawn_runs_an_umoci_bundle() {
    require("umoci");
    let s = Scratch::new();
    s.import_busybox();
    let layout = format!("{}:docker.io/library/busybox:latest", s.join("images").display());
    let b = s.join("umoci-bundle");
    run(Command::new("umoci").args(["unpack", "--image", &layout]).arg(&b));
    let o = Command::new(bin("box-spawn")).arg(&b).args(["--", "sh", "-c", "echo pid=$$; cat /etc/os-release | head -1"]).output().unwrap();
    crate::support::assert_success(&o, "box-spawn on an umoci bundle");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("pid=1\n") && out.contains("boxkit busybox"), "{out}");
}

#[test]
fn skopeo_and_umoci_read_the_store() {
    require("skopeo");
    require("umoci");
    let s = Scratch::new();
    let digest = s.import_busybox();
    s.ok("box-import", &[fixture("base.tar").to_str().unwrap(), "localhost:5000/team/base:v2"]);
    let images = s.join("images");
    let inspect = run(Command::new("skopeo").arg("inspect").arg(format!("oci:{}:docker.io/library/busybox:latest", images.display())));
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(v["Digest"].as_str(), Some(digest.as_str()));
    assert_eq!(v["Os"].as_str(), Some("linux"));
    let tags = run(Command::new("umoci").args(["ls", "--layout"]).arg(&images));
    let mut tags: Vec<&str> = tags.lines().collect();
    tags.sort();
    assert_eq!(tags, ["docker.io/library/busybox:latest", "localhost:5000/team/base:v2"]);
}

fn compare_with_umoci(s: &Scratch, layout: &std::path::Path, tag: &str) {
    let ub = s.join("umoci-tree");
    run(Command::new("umoci").args(["unpack", "--image", &format!("{}:{tag}", layout.display())]).arg(&ub));
    let bb = s.join("boxkit-tree");
    s.ok("box-unpack", &["--layout", layout.to_str().unwrap(), tag, bb.to_str().unwrap()]);
    let ig = Ignore { root: true, ..Default::default() };
    let (ours, theirs) = (listing(&bb.join("rootfs"), ig), listing(&ub.join("rootfs"), ig));
    assert!(ours.lines().count() > 10, "suspiciously small tree:\n{ours}");
    if ours != theirs {
        let o: Vec<&str> = ours.lines().collect();
        let t: Vec<&str> = theirs.lines().collect();
        let only_ours: Vec<_> = o.iter().filter(|l| !t.contains(l)).collect();
        let only_theirs: Vec<_> = t.iter().filter(|l| !o.contains(l)).collect();
        panic!("trees differ\nonly box-unpack: {only_ours:#?}\nonly umoci: {only_theirs:#?}");
    }
}

#[test]
fn unpack_matches_umoci_on_a_skopeo_copy() {
    require("skopeo");
    require("umoci");
    let s = Scratch::new();
    s.import_busybox();
    let copy = s.join("skopeo-layout");
    run(Command::new("skopeo").arg("copy").arg(format!("oci:{}:docker.io/library/busybox:latest", s.join("images").display())).arg(format!("oci:{}:latest", copy.display())));
    compare_with_umoci(&s, &copy, "latest");
}

#[test]
fn unpack_matches_umoci_on_a_many_layer_umoci_image() {
    require("umoci");
    let s = Scratch::new();
    let layout = s.join("umoci-layout");
    let l = layout.to_str().unwrap();
    let mut script = format!("set -e; umoci init --layout {l}; umoci new --image {l}:latest\n");
    for f in ["base.tar", "whiteout.tar", "opaque.tar", "links.tar", "devices.tar", "xattrs.tar"] {
        script.push_str(&format!("umoci raw add-layer --image {l}:latest {}\n", fixture(f).display()));
    }
    let o = sh(&script, s.path());
    crate::support::assert_success(&o, "build a layered image with umoci");
    compare_with_umoci(&s, &layout, "latest");
}

#[test]
fn crun_runs_a_box_unpack_bundle() {
    require("crun");
    let s = Scratch::new();
    let b = s.busybox_bundle("crun-bundle");
    crate::support::edit_config(&b, |spec| {
        spec["process"]["args"] = serde_json::json!(["sh", "-c", "echo pid=$$ host=$(hostname)"]);
    });
    let id = format!("boxkit-crun-{}", std::process::id());
    let state = s.join("crun-state");
    // crun 1.8 refuses a hybrid cgroup host unless the cgroup2 mount is out of its sight:
    // hide it in a private mount namespace (the host's mounts are untouched).
    let script = format!(
        "umount /sys/fs/cgroup/unified 2>/dev/null; crun --root {} run --bundle {} {id}",
        state.display(),
        b.display()
    );
    let out = run(Command::new("unshare").args(["--mount", "--propagation", "private", "sh", "-c", &script]));
    assert_eq!(out, "pid=1 host=crun-bundle\n");
}
