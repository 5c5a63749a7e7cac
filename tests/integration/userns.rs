//! User namespaces and rootless containers: `box-spawn --userns` as root, config.json's
//! mappings, and the busybox example run from start to end by an ordinary user.
//!
//! The rootless tests use a dedicated user, `boxkit-test` (created when missing, with a
//! range in /etc/subuid and /etc/subgid), and copies of the binaries in a directory it can
//! read: the build tree may not be reachable by other users.

use crate::support::{assert_success, bin, busybox_tar, edit_config, Scratch};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub const TEST_USER: &str = "boxkit-test";

/// The test user's uid, gid and first subordinate uid and gid, creating the user if needed.
fn test_user() -> (u32, u32, u32, u32) {
    static USER: OnceLock<(u32, u32, u32, u32)> = OnceLock::new();
    *USER.get_or_init(|| {
        let id = |flag: &str| Command::new("id").args([flag, TEST_USER]).output().unwrap();
        if !id("-u").status.success() {
            let o = Command::new("useradd").args(["--create-home", "--shell", "/bin/sh", TEST_USER]).output().unwrap();
            // Another process (the rootless lesson) may have created it meanwhile.
            assert!(o.status.success() || id("-u").status.success(), "useradd {TEST_USER}: {}", String::from_utf8_lossy(&o.stderr));
        }
        let first = |file: &str| {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            text.lines().find_map(|l| l.strip_prefix(&format!("{TEST_USER}:"))?.split(':').next()?.parse::<u32>().ok())
        };
        if first("/etc/subuid").is_none() || first("/etc/subgid").is_none() {
            // Past every range handed out so far.
            let end = ["/etc/subuid", "/etc/subgid"]
                .iter()
                .flat_map(|f| std::fs::read_to_string(f).unwrap_or_default().lines().map(String::from).collect::<Vec<_>>())
                .filter_map(|l| {
                    let v: Vec<&str> = l.split(':').collect();
                    Some(v.get(1)?.parse::<u64>().ok()? + v.get(2)?.parse::<u64>().ok()?)
                })
                .max()
                .unwrap_or(100000)
                .max(100000);
            let range = format!("{end}-{}", end + 65535);
            let o = Command::new("usermod").args(["--add-subuids", &range, "--add-subgids", &range, TEST_USER]).output().unwrap();
            assert_success(&o, "usermod --add-subuids");
        }
        let num = |flag: &str| String::from_utf8(id(flag).stdout).unwrap().trim().parse::<u32>().unwrap();
        (num("-u"), num("-g"), first("/etc/subuid").unwrap(), first("/etc/subgid").unwrap())
    })
}

/// A scratch directory the test user can use: its home, the binaries and the busybox tar.
struct UserDir {
    s: Scratch,
}

impl UserDir {
    fn new() -> UserDir {
        let (uid, gid, ..) = test_user();
        let s = Scratch::new();
        std::fs::set_permissions(s.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin_dir = s.join("bin");
        std::fs::create_dir(&bin_dir).unwrap();
        std::fs::set_permissions(&bin_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        for tool in ["box-import", "box-unpack", "box-spawn", "box-mount-layers", "box-commit"] {
            std::fs::copy(bin(tool), bin_dir.join(tool)).unwrap();
            std::fs::set_permissions(bin_dir.join(tool), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::copy(busybox_tar(), s.join("busybox.tar")).unwrap();
        std::fs::set_permissions(s.join("busybox.tar"), std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::create_dir(s.join("home")).unwrap();
        std::os::unix::fs::chown(s.join("home"), Some(uid), Some(gid)).unwrap();
        UserDir { s }
    }

    fn home(&self) -> PathBuf {
        self.s.join("home")
    }

    /// Run a shell script as the test user, with the copied tools first on PATH, HOME in
    /// the scratch directory and no BOXKIT_ROOT (so the default for users applies).
    fn run(&self, script: &str) -> Output {
        Command::new("setpriv")
            .args(["--reuid", TEST_USER, "--regid", TEST_USER, "--init-groups", "--", "sh", "-c", script])
            .env_clear()
            .env("HOME", self.home())
            .env("PATH", format!("{}:/usr/bin:/bin:/usr/sbin:/sbin", self.s.join("bin").display()))
            .env("LC_ALL", "C")
            .current_dir(self.home())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, script: &str) -> String {
        let o = self.run(script);
        assert_success(&o, script);
        String::from_utf8(o.stdout).unwrap()
    }
}

fn spawn_out(extra: &[&str], bundle: &Path, script: &str) -> Output {
    Command::new(bin("box-spawn")).args(extra).arg(bundle).args(["--", "sh", "-c", script]).stdin(Stdio::null()).output().unwrap()
}

fn ok(o: Output, what: &str) -> String {
    assert_success(&o, what);
    String::from_utf8(o.stdout).unwrap()
}

fn words(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A scratch root whose bundles a container root mapped to another host id can reach.
fn reachable_scratch() -> Scratch {
    let s = Scratch::new();
    std::fs::set_permissions(s.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    s
}

#[test]
fn root_inside_is_an_unprivileged_range_outside() {
    let s = reachable_scratch();
    s.import_busybox();
    let b = s.join("b");
    s.ok("box-unpack", &["--userns", "busybox", b.to_str().unwrap()]);
    // The files belong to the range, uid 0 of the image being its first id.
    assert_eq!(std::fs::metadata(b.join("rootfs/bin/busybox")).unwrap().uid(), 1_000_000_000);
    assert_eq!(std::fs::metadata(&b).unwrap().uid(), 1_000_000_000);
    // A file only host root may write, bound in read-write.
    let host_file = s.join("host-file");
    std::fs::write(&host_file, "host\n").unwrap();
    std::fs::set_permissions(&host_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    edit_config(&b, |c| {
        c["mounts"].as_array_mut().unwrap().push(serde_json::json!({
            "destination": "/host-file", "type": "bind", "source": host_file, "options": ["rbind", "rw"]}));
    });
    let script = "id -u; cat /proc/self/uid_map; touch /tmp/made; stat -c %u /host-file; \
                  if echo owned >> /host-file; then echo wrote; else echo refused; fi";
    let out = ok(spawn_out(&[], &b, script), "box-spawn (user namespace from config.json)");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0", "{out}");
    assert_eq!(words(lines[1]), "0 1000000000 65536", "{out}");
    assert_eq!(lines[2], "65534", "host root shows as the overflow id: {out}");
    assert_eq!(lines[3], "refused", "{out}");
    assert_eq!(std::fs::read_to_string(&host_file).unwrap(), "host\n");
    assert_eq!(std::fs::metadata(b.join("rootfs/tmp/made")).unwrap().uid(), 1_000_000_000);

    // The same bundle without a user namespace: the container's root is the host's, and
    // the write goes through. (This is what makes the check above mean something.)
    edit_config(&b, |c| {
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "user");
    });
    let out = ok(spawn_out(&[], &b, "echo owned >> /host-file && echo wrote"), "box-spawn (no user namespace)");
    assert_eq!(out, "wrote\n");
}

#[test]
fn config_json_mappings_are_honoured_and_userns_overrides_them() {
    let s = reachable_scratch();
    let b = s.busybox_bundle("plain");
    std::fs::set_permissions(&b, std::fs::Permissions::from_mode(0o711)).unwrap();
    edit_config(&b, |c| {
        c["linux"]["namespaces"].as_array_mut().unwrap().push(serde_json::json!({"type": "user"}));
        c["linux"]["uidMappings"] = serde_json::json!([{"containerID": 0, "hostID": 1500000000, "size": 65536}]);
        c["linux"]["gidMappings"] = serde_json::json!([{"containerID": 0, "hostID": 1500000000, "size": 65536}]);
    });
    // The rootfs still belongs to host root: inside, its files are nobody's, and the
    // container's root cannot write them.
    let script = "cat /proc/self/uid_map /proc/self/gid_map; stat -c %u:%g /bin/busybox; touch /etc/x 2>/dev/null || echo refused";
    let out = ok(spawn_out(&[], &b, script), "box-spawn");
    let lines: Vec<String> = out.lines().map(words).collect();
    assert_eq!(lines, ["0 1500000000 65536", "0 1500000000 65536", "65534:65534", "refused"], "{out}");
    let out = ok(spawn_out(&["--userns=1600000000:1000"], &b, "cat /proc/self/uid_map"), "box-spawn --userns=HOST:SIZE");
    assert_eq!(words(&out), "0 1600000000 1000");
}

#[test]
fn a_bundle_the_mapped_root_cannot_reach_is_refused_with_a_reason() {
    let s = Scratch::new(); // 0700, owned by host root
    let b = s.busybox_bundle("b");
    let o = spawn_out(&["--userns"], &b, "true");
    assert_eq!(o.status.code(), Some(125));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("host uid 1000000000, which cannot enter") && err.contains("box-unpack --userns"), "{err}");
    let o = spawn_out(&["--userns=nonsense"], &b, "true");
    assert_eq!(o.status.code(), Some(2), "a bad --userns is a usage error");
}

#[test]
fn the_busybox_example_works_as_an_ordinary_user() {
    let (uid, gid, subuid, subgid) = test_user();
    let u = UserDir::new();
    let digest = u.ok(r#"box-import --change 'CMD ["sh"]' ../busybox.tar busybox"#);
    assert!(digest.starts_with("sha256:"), "{digest}");
    // The default root for a user: ~/.local/share/boxkit.
    assert!(u.home().join(".local/share/boxkit/images/index.json").is_file());
    assert_eq!(u.ok("box-unpack busybox demo"), "demo\n");
    let out = u.ok("box-spawn demo -- sh -c 'id; hostname; ps -o pid,user,comm; cat /proc/self/uid_map /proc/self/gid_map'");
    let lines: Vec<String> = out.lines().map(words).collect();
    assert_eq!(lines[0], "uid=0(root) gid=0(root)", "{out}");
    assert_eq!(lines[1], "demo", "{out}");
    assert_eq!(lines[2], "PID USER COMMAND", "{out}");
    assert_eq!(lines[3], "1 root sh", "{out}");
    assert_eq!(&lines[5..], [format!("0 {uid} 1"), format!("1 {subuid} 65536"), format!("0 {gid} 1"), format!("1 {subgid} 65536")], "{out}");

    // Owners: the image's root is the user; other ids come from the subordinate range.
    let rootfs = u.home().join("demo/rootfs");
    assert_eq!(std::fs::metadata(rootfs.join("bin/busybox")).unwrap().uid(), uid);
    u.ok("box-spawn demo -- sh -c 'touch /tmp/mine /tmp/theirs && chown 5:5 /tmp/theirs'");
    let md = std::fs::metadata(rootfs.join("tmp/theirs")).unwrap();
    assert_eq!((md.uid(), md.gid()), (subuid + 4, subgid + 4));
    assert_eq!(std::fs::metadata(rootfs.join("tmp/mine")).unwrap().uid(), uid);
    // config.json records the maps, so runc (or box-spawn run by root) would use the same.
    let config = std::fs::read_to_string(u.home().join("demo/config.json")).unwrap();
    assert!(config.contains(r#""type": "user""#) && config.contains(&format!(r#""hostID": {subuid}"#)), "{config}");
}

#[test]
fn an_ordinary_user_with_only_its_own_id() {
    let (uid, gid, ..) = test_user();
    let u = UserDir::new();
    u.ok(r#"box-import --change 'CMD ["sh"]' ../busybox.tar busybox && box-unpack busybox demo"#);
    let config = u.home().join("demo");
    edit_config(&config, |c| {
        c["linux"]["uidMappings"] = serde_json::json!([{"containerID": 0, "hostID": uid, "size": 1}]);
        c["linux"]["gidMappings"] = serde_json::json!([{"containerID": 0, "hostID": gid, "size": 1}]);
    });
    // No newuidmap needed: the kernel lets a process map its own id, once setgroups is denied.
    let out = u.ok("box-spawn demo -- sh -c 'id -u; cat /proc/self/uid_map /proc/self/setgroups; ls /dev/pts'");
    let lines: Vec<String> = out.lines().map(words).collect();
    assert_eq!(lines[..3], ["0".to_string(), format!("0 {uid} 1"), "deny".to_string()], "{out}");
}

#[test]
fn an_ordinary_user_without_a_delegated_cgroup_runs_without_it() {
    let u = UserDir::new();
    let group = match boxkit::cgroup::detect_host().unwrap() {
        boxkit::cgroup::Hierarchy::V2 { mount } => mount,
        boxkit::cgroup::Hierarchy::V1 { controllers } => controllers.values().next().unwrap().clone(),
    };
    u.ok(r#"box-import --change 'CMD ["sh"]' ../busybox.tar busybox && box-unpack busybox demo"#);
    let o = u.run(&format!("box-spawn --cgroup {} demo -- echo ran", group.display()));
    assert_success(&o, "box-spawn --cgroup as a user");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "ran\n");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is not delegated to you: running without its limits"), "{err}");
}

#[test]
fn an_ordinary_user_gets_overlay_bundles_mounted_by_box_spawn() {
    use crate::tree::{listing, Ignore};
    let (uid, _, subuid, _) = test_user();
    let u = UserDir::new();
    u.ok(r#"box-import --change 'CMD ["sh"]' ../busybox.tar busybox"#);
    let o = u.run("box-mount-layers busybox b1");
    assert_success(&o, "box-mount-layers as a user");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "b1\n");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("box-spawn mounts the overlay inside the container's namespaces"), "{err}");
    let (root, b1) = (u.home().join(".local/share/boxkit"), u.home().join("b1"));
    let info = std::fs::read_to_string(b1.join("boxkit.json")).unwrap();
    assert!(info.contains(r#""storage": "overlay""#), "{info}");
    let config = std::fs::read_to_string(b1.join("config.json")).unwrap();
    assert!(config.contains(r#""type": "user""#) && config.contains(&format!(r#""hostID": {subuid}"#)), "{config}");
    // Nothing is mounted outside; the cache holds the layer in the user xattr form, owned
    // as the container sees it (its root is the user).
    assert!(std::fs::read_dir(b1.join("rootfs")).unwrap().next().is_none());
    assert_eq!(std::fs::read_dir(root.join("layers/sha256")).unwrap().count(), 1);
    let layer = std::fs::read_dir(root.join("layers/sha256")).unwrap().next().unwrap().unwrap().path();
    assert_eq!(std::fs::metadata(layer.join("bin/busybox")).unwrap().uid(), uid);
    for d in ["upper", "work"] {
        assert_eq!(std::fs::metadata(b1.join(d)).unwrap().uid(), uid, "{d}/");
    }
    let cache_before = listing(&root.join("layers"), Ignore::default());

    let out = u.ok("box-spawn b1 -- sh -c 'id -u; echo hi > /new; hostname; grep -c \" / overlay .*userxattr\" /proc/self/mounts'");
    assert_eq!(out, "0\nb1\n1\n", "{out}");
    assert_eq!(std::fs::read_to_string(b1.join("upper/new")).unwrap(), "hi\n");
    assert_eq!(std::fs::metadata(b1.join("upper/new")).unwrap().uid(), uid);
    // A file of another id inside lands with its mapped owner, and a deletion is a whiteout
    // in the user form.
    u.ok("box-spawn b1 -- sh -c 'touch /theirs && chown 5:5 /theirs && rm /bin/ls'");
    assert_eq!(std::fs::metadata(b1.join("upper/theirs")).unwrap().uid(), subuid + 4);
    assert!(std::fs::symlink_metadata(b1.join("upper/bin/ls")).is_ok(), "no whiteout for /bin/ls");
    assert_eq!(listing(&root.join("layers"), Ignore::default()), cache_before, "the cache changed");

    // A second bundle shares the cache and sees none of the first one's changes.
    u.ok("box-mount-layers busybox b2 2>/dev/null");
    assert_eq!(u.ok("box-spawn b2 -- sh -c 'test -e /new || echo clean; test -e /bin/ls && echo ls'"), "clean\nls\n");
    assert_eq!(std::fs::read_dir(root.join("layers/sha256")).unwrap().count(), 1);
    assert_eq!(listing(&root.join("layers"), Ignore::default()), cache_before, "the cache changed");
    // Nothing is mounted on the host: --unmount only forgets the bundle.
    assert_eq!(u.ok("box-mount-layers --unmount b2"), "b2\n");

    // box-commit reads upper/ (user.overlay.* markers) as the new layer.
    u.ok("box-commit b1 mine");
    let out = u.ok("box-mount-layers mine b3 2>/dev/null && box-spawn b3 -- sh -c 'cat /new; stat -c %u /theirs; test -e /bin/ls || echo gone'");
    assert_eq!(out, "b3\nhi\n5\ngone\n", "the committed layer holds the container's ids");
    let layers: Vec<PathBuf> = std::fs::read_dir(root.join("layers/sha256")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(layers.len(), 2, "the base layer is cached once");
    let top = layers.iter().find(|l| **l != layer).unwrap();
    assert_eq!(std::fs::read_to_string(top.join("new")).unwrap(), "hi\n");
    assert!(!top.join("bin/busybox").exists(), "the committed layer holds only the changes");
}
