//! box-spawn's `docker run` options: -e, -w, -u, --hostname; mounts (-v, named and anonymous
//! volumes, --tmpfs, the image's Volumes); terminals (-t, -i); detached containers (-d) and
//! their state files.

use crate::support::{bin, Scratch};
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// box-spawn with `BOXKIT_ROOT` in the scratch dir.
fn spawn(s: &Scratch, extra: &[&str], bundle: &Path, script: &str) -> Output {
    s.cmd("box-spawn").args(extra).arg(bundle).args(["--", "sh", "-c", script]).stdin(Stdio::null()).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn env_workdir_user_and_hostname() {
    let s = Scratch::new();
    let b = s.busybox_bundle("b");
    let before = std::fs::read(b.join("config.json")).unwrap();
    let o = s
        .cmd("box-spawn")
        .args(["-e", "A=1", "-e", "FROM_CALLER", "-e", "NOT_SET_ANYWHERE", "-w", "/work/dir", "-u", "nobody:nogroup", "--hostname", "box-1"])
        .arg(&b)
        .args(["--", "sh", "-c", "echo $A $FROM_CALLER ${NOT_SET_ANYWHERE-unset}; pwd; id -u; id -g; hostname; echo $HOSTNAME $HOME"])
        .env("FROM_CALLER", "passed")
        .env_remove("NOT_SET_ANYWHERE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o), "1 passed unset\n/work/dir\n65534\n65534\nbox-1\nbox-1 /nonexistent\n");
    assert_eq!(std::fs::read(b.join("config.json")).unwrap(), before, "config.json on disk changed");
    let o = spawn(&s, &["-u", "ghost"], &b, "true");
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("user \"ghost\" is not in the image's /etc/passwd"), "{}", stderr(&o));
    let o = spawn(&s, &["-w", "relative"], &b, "true");
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("not an absolute path"));
}
