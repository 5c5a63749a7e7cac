//! The front command and what every tool shares: help, dispatch, usage errors, --explain.

use crate::support::{bin, Scratch};
use std::process::Command;

#[test]
fn box_dispatches_and_lists_tools() {
    let o = Command::new(bin("box")).arg("help").output().unwrap();
    assert!(o.status.success());
    let help = String::from_utf8(o.stdout).unwrap();
    for t in ["import", "unpack", "spawn", "export"] {
        assert!(help.lines().any(|l| l.trim_start().starts_with(t)), "box help misses {t}:\n{help}");
    }
    let s = Scratch::new();
    s.import_busybox();
    let o = Command::new(bin("box")).args(["unpack", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("Usage: box-unpack"));
    let o = Command::new(bin("box")).arg("frobnicate").output().unwrap();
    assert_eq!(o.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&o.stderr).contains("'frobnicate' is not a box tool"));
    // Exit status and output pass through.
    let b = s.join("b");
    let o = s.cmd("box").args(["unpack", "busybox", b.to_str().unwrap()]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), b.to_str().unwrap());
    let o = s.cmd("box").args(["spawn", b.to_str().unwrap(), "--", "sh", "-c", "exit 5"]).output().unwrap();
    assert_eq!(o.status.code(), Some(5));
}

#[test]
fn every_tool_has_help_and_explain() {
    for t in ["box-import", "box-unpack", "box-spawn", "box-export"] {
        let o = Command::new(bin(t)).arg("--help").output().unwrap();
        let h = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success() && h.contains("--explain") && h.contains("--root"), "{t}: {h}");
        let o = Command::new(bin(t)).arg("--no-such-flag").output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{t}: usage errors exit 2");
    }
}

#[test]
fn explain_narrates_format_steps() {
    let s = Scratch::new();
    let tar = crate::support::fixture("base.tar");
    let o = s.cmd("box-import").args(["--explain", tar.to_str().unwrap(), "t"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("box-import: explain: write blobs/sha256/") && err.contains("verified"), "{err}");
    assert!(err.contains("tag docker.io/library/t:latest"), "{err}");
    // stdout holds only the digest.
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.trim().starts_with("sha256:") && out.lines().count() == 1);
    let b = s.join("b");
    let o = s.cmd("box-unpack").args(["--explain", "t", b.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("inflate, hash and apply") && err.contains("diff_id"), "{err}");
}
