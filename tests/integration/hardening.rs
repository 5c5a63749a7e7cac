//! box-spawn's hardening seen from inside the container, one wall at a time: Docker's
//! capability set, no_new_privs, the seccomp filter, masked and read-only paths, rlimits,
//! the cgroup namespace and read-only /sys/fs/cgroup (CVE-2022-0492, CVE-2023-25809), the
//! device filter, the container's own cgroup, and `--privileged` taking it all down.

use crate::support::{bin, stdout, Scratch};
use std::path::Path;
use std::process::{Command, Stdio};



/// Docker's default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
/// NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP, as `docker run` shows it.
const DOCKER_CAPS: &str = "00000000a80425fb";

fn status_fields(out: &str) -> Vec<(String, String)> {
    out.lines().filter_map(|l| l.split_once(":\t")).map(|(k, v)| (k.to_string(), v.trim().to_string())).collect()
}

#[test]
fn capability_sets_no_new_privs_and_seccomp_mode_are_dockers() {
    let s = Scratch::new();
    let b = s.busybox_bundle("b");
    let o = s.spawn_sh(&b, &[], "grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status");
    assert!(o.status.success(), "{o:?}");
    let f = status_fields(&stdout(&o));
    let want = [
        ("CapInh", "0000000000000000"),
        ("CapPrm", DOCKER_CAPS),
        ("CapEff", DOCKER_CAPS),
        ("CapBnd", DOCKER_CAPS),
        ("CapAmb", "0000000000000000"),
        ("NoNewPrivs", "1"),
        ("Seccomp", "2"),
        ("Seccomp_filters", "1"),
    ];
    let want: Vec<(String, String)> = want.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(f, want);
    // A non-root user keeps nothing in effect, and no setuid binary can give it more.
    crate::support::edit_config(&b, |spec| spec["process"]["user"] = serde_json::json!({"uid": 65534, "gid": 65534}));
    let o = s.spawn_sh(&b, &[], "grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs)' /proc/self/status");
    let f = status_fields(&stdout(&o));
    assert_eq!(f.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>(), ["0000000000000000", "0000000000000000", DOCKER_CAPS, "1"]);
}

#[test]
fn the_init_is_no_stronger_than_the_container() {
    // With --init, PID 1 is box-spawn's own init: it must hold the command's user,
    // capabilities, no_new_privs and filter, not the runtime's.
    let s = Scratch::new();
    let b = s.busybox_bundle("b");
    let o = s.spawn_sh(&b, &["--init"], "grep -E '^(Uid|CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/1/status");
    assert!(o.status.success(), "{o:?}");
    let f = status_fields(&stdout(&o));
    assert_eq!(f.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>(), ["0\t0\t0\t0", DOCKER_CAPS, DOCKER_CAPS, "1", "2"], "{f:?}");
    crate::support::edit_config(&b, |spec| spec["process"]["user"] = serde_json::json!({"uid": 65534, "gid": 65534}));
    let o = s.spawn_sh(&b, &["--init"], "grep -E '^(Uid|CapEff):' /proc/1/status; sleep 10 & kill $!; wait $!; echo $?");
    let out = stdout(&o);
    assert!(out.starts_with("Uid:\t65534\t65534\t65534\t65534\nCapEff:\t0000000000000000\n"), "{o:?}");
    assert!(out.ends_with("143\n"), "{o:?}");
}

#[test]
fn seccomp_blocks_what_capabilities_alone_would_allow() {
    // unshare(CLONE_NEWUSER) needs no capability, and the keyring is not namespaced: only
    // seccomp stops them. With --seccomp unconfined the same commands succeed, so the test
    // shows the filter, not a missing capability.
    let s = Scratch::new();
    let b = s.busybox_bundle("b");
    let script = "unshare -Ur true 2>&1; echo unshare=$?; \
                  unshare -r -m true 2>&1; echo unshare-m=$?; \
                  dmesg >/dev/null 2>&1; echo dmesg=$?; \
                  mount -t tmpfs t /mnt 2>&1; echo mount=$?; \
                  linux32 uname -m; \
                  grep Seccomp: /proc/self/status";
    let o = s.spawn_sh(&b, &[], script);
    assert_eq!(
        stdout(&o),
        "unshare: unshare(0x10000000): Operation not permitted\nunshare=1\n\
         unshare: unshare(0x10020000): Operation not permitted\nunshare-m=1\n\
         dmesg=1\n\
         mount: permission denied (are you root?)\nmount=1\n\
         i686\n\
         Seccomp:\t2\n",
        "{o:?}"
    );
    let o = s.spawn_sh(&b, &["--seccomp", "unconfined"], "unshare -Ur true; echo unshare=$?; grep Seccomp: /proc/self/status");
    assert_eq!(stdout(&o), "unshare=0\nSeccomp:\t0\n", "{o:?}");
}

#[test]
fn a_seccomp_profile_in_config_json() {
    let s = Scratch::new();
    let b = s.busybox_bundle("b");
    // An allow-everything profile means unconfined.
    crate::support::edit_config(&b, |spec| spec["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW"}));
    assert_eq!(stdout(&s.spawn_sh(&b, &[], "grep Seccomp: /proc/self/status")), "Seccomp:\t0\n");
    // null is the same as absent: the default filter.
    crate::support::edit_config(&b, |spec| spec["linux"]["seccomp"] = serde_json::Value::Null);
    assert_eq!(stdout(&s.spawn_sh(&b, &[], "grep Seccomp: /proc/self/status")), "Seccomp:\t2\n");
    // Any other profile is refused, not silently replaced by another one.
    crate::support::edit_config(&b, |spec| {
        spec["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]})
    });
    let o = s.spawn_sh(&b, &[], "true");
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("linux.seccomp"), "{o:?}");
}

#[test]
fn proc_and_sys_paths_are_masked_or_read_only() {
    let s = Scratch::new();
    let b = s.busybox_bundle("b");
    let masked = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"];
    let readonly = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];
    let o = s.spawn_sh(
        &b,
        &[],
        &format!(
            "echo '|/tmp/pwn' > /proc/sys/kernel/core_pattern 2>/dev/null || echo core_pattern-ro; \
             echo b > /proc/sysrq-trigger 2>/dev/null || echo sysrq-ro; \
             echo 1 > /proc/sys/vm/drop_caches 2>/dev/null || echo proc-sys-ro; \
             for p in {}; do \
               if [ ! -e $p ]; then echo \"$p absent\"; continue; fi; \
               if [ -d $p ]; then n=$(ls -A $p | wc -l); else n=$(cat $p 2>/dev/null | wc -c); fi; \
               m=$(awk -v p=$p '$5 == p' /proc/self/mountinfo | wc -l); \
               echo \"$p $n $([ $m -gt 0 ] && echo masked)\"; \
             done; \
             for p in {}; do if [ -e $p ]; then grep -q \" $p [^ ]* ro,\" /proc/mounts && echo \"$p ro\"; else echo \"$p absent\"; fi; done",
            masked.join(" "),
            readonly.join(" ")
        ),
    );
    // Some of these exist only with some kernel options; the host has the same /proc. An
    // empty read alone proves little (/proc/kcore needs CAP_SYS_RAWIO anyway): a masked path
    // must also have a mount of its own over it.
    let mut want = String::from("core_pattern-ro\nsysrq-ro\nproc-sys-ro\n");
    for p in masked {
        want += &if Path::new(p).exists() { format!("{p} 0 masked\n") } else { format!("{p} absent\n") };
    }
    for p in readonly {
        want += &format!("{p} {}\n", if Path::new(p).exists() { "ro" } else { "absent" });
    }
    assert_eq!(stdout(&o), want, "{o:?}");
    assert_ne!(std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap().trim(), "|/tmp/pwn");
}

#[test]
fn rlimits_come_from_config_json() {
    let s = Scratch::new();
    let b = s.busybox_bundle("b");
    // box-unpack writes runc's default: RLIMIT_NOFILE 1024.
    assert_eq!(stdout(&s.spawn_sh(&b, &[], "ulimit -n; ulimit -Hn")), "1024\n1024\n");
    crate::support::edit_config(&b, |spec| {
        spec["process"]["rlimits"] = serde_json::json!([
            {"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456},
            {"type": "RLIMIT_NPROC", "soft": 77, "hard": 77}
        ])
    });
    assert_eq!(stdout(&s.spawn_sh(&b, &[], "ulimit -n; ulimit -Hn; ulimit -u")), "123\n456\n77\n");
    crate::support::edit_config(&b, |spec| spec["process"]["rlimits"] = serde_json::json!([{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]));
    let o = s.spawn_sh(&b, &[], "true");
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("RLIMIT_BOGUS"));
}

#[test]
fn the_cgroup_tree_is_the_containers_own_and_read_only() {
    // CVE-2023-25809: /sys/fs/cgroup writable inside. CVE-2022-0492: a new user and mount
    // namespace, then a cgroup v1 mount whose release_agent runs as root on the host.
    let s = Scratch::new();
    let b = s.busybox_bundle("b");
    let o = s.spawn_sh(
        &b,
        &[],
        "cut -d: -f3 /proc/self/cgroup | sort -u; \
         grep -c ' /sys/fs/cgroup[^ ]* [^ ]* ro,' /proc/mounts | grep -qv '^0$' && echo mounted-ro; \
         grep ' /sys/fs/cgroup[^ ]* [^ ]* rw,' /proc/mounts; \
         touch /sys/fs/cgroup/x 2>/dev/null || echo tree-ro; \
         for d in /sys/fs/cgroup/*/; do mkdir ${d}x 2>/dev/null && echo made-$d; echo 0 > ${d}cgroup.procs 2>/dev/null && echo wrote-$d; done; \
         echo /tmp/pwn > /sys/fs/cgroup/memory/release_agent 2>/dev/null && echo wrote-release-agent; \
         unshare -Urm sh -c 'mount -t cgroup -o memory cgroup /mnt && echo /tmp/pwn > /mnt/release_agent && echo escaped' 2>/dev/null; \
         mount -t cgroup -o memory cgroup /mnt 2>/dev/null && echo mounted; true",
    );
    assert_eq!(stdout(&o), "/\nmounted-ro\ntree-ro\n", "{o:?}");
}

#[test]
fn the_container_gets_a_cgroup_of_its_own_removed_at_exit() {
    let s = Scratch::new();
    let b = s.busybox_bundle("b");
    let mut c = Command::new(bin("box-spawn")).arg(&b).args(["--", "sh", "-c", "echo ready; read x; exit 0"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(c.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n");
    }
    // The container's process, as the host sees it: a child of box-spawn.
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", c.id())).unwrap();
    let pid: u32 = children.split_whitespace().next().unwrap().parse().unwrap();
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let group = format!("/boxkit/spawn-{}", c.id());
    assert!(cgroups.lines().any(|l| l.ends_with(&group)), "{cgroups}");
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dirs: Vec<std::path::PathBuf> = cgroups
        .lines()
        .filter(|l| l.ends_with(&group))
        .filter_map(|l| {
            let (ctl, path) = l.split_once(':').unwrap().1.split_once(':').unwrap();
            let ctl = if ctl.is_empty() { "cgroup2".to_string() } else { ctl.to_string() };
            // The mount of this hierarchy (v1: its controller in the super options).
            mi.lines().find_map(|m| {
                let (pre, post) = m.split_once(" - ")?;
                let ok = post.starts_with("cgroup2 ") && ctl == "cgroup2" || post.starts_with("cgroup ") && post.split(',').any(|o| o == ctl);
                ok.then(|| std::path::Path::new(pre.split_whitespace().nth(4).unwrap()).join(path.trim_start_matches('/')))
            })
        })
        .collect();
    assert!(!dirs.is_empty() && dirs.iter().all(|d| d.is_dir()), "{dirs:?}");
    drop(c.stdin.take());
    assert!(c.wait().unwrap().success());
    assert!(dirs.iter().all(|d| !d.exists()), "left behind: {dirs:?}");
}

#[test]
fn without_no_new_privs_the_filter_is_installed_before_the_capabilities_go() {
    // Only CAP_SYS_ADMIN may install a filter without no_new_privs: box-spawn installs it
    // while it still holds that, so a non-root user without no_new_privs is filtered too.
    let s = Scratch::new();
    let b = s.busybox_bundle("b");
    crate::support::edit_config(&b, |spec| {
        spec["process"]["noNewPrivileges"] = false.into();
        spec["process"]["user"] = serde_json::json!({"uid": 65534, "gid": 65534});
    });
    let o = s.spawn_sh(&b, &["--init"], "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status; unshare -Ur true 2>/dev/null || echo unshare-refused");
    assert_eq!(stdout(&o), "NoNewPrivs:\t0\nSeccomp:\t2\nunshare-refused\n", "{o:?}");
}

#[test]
fn a_group_from_box_cgroup_limit_gets_the_device_filter() {
    let s = Scratch::new();
    let b = s.busybox_bundle("b");
    let name = format!("hardening-{}", std::process::id());
    let o = Command::new(bin("box-cgroup-limit")).args(["--create", &name, "--pids", "100"]).output().unwrap();
    crate::support::assert_success(&o, "box-cgroup-limit --create");
    let path = String::from_utf8(o.stdout).unwrap().trim().to_string();
    let o = s.spawn_sh(&b, &["--cgroup", &path], "mknod /tmp/sda b 8 0 && head -c1 /tmp/sda 2>&1 | grep -o 'Operation not permitted'; rm -f /tmp/sda");
    let removed = Command::new(bin("box-cgroup-limit")).args(["--remove", &name]).output().unwrap();
    crate::support::assert_success(&removed, "box-cgroup-limit --remove");
    assert_eq!(stdout(&o), "Operation not permitted\n", "{o:?}");
}

#[test]
fn privileged_takes_the_walls_down() {
    let s = Scratch::new();
    let b = s.busybox_bundle("b");
    let o = s.spawn_sh(
        &b,
        &["--privileged"],
        "grep -E '^(CapEff|Seccomp):' /proc/self/status; \
         test $(wc -c < /proc/keys) -gt 0 || echo keys-masked; \
         grep -q ' /proc/sys ' /proc/mounts && echo proc-sys-ro; \
         grep ' /sys ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1; \
         mknod /tmp/loop b 7 0 && (head -c0 < /tmp/loop) 2>&1 | grep -c 'Operation not permitted'; \
         unshare -Ur true && echo unshare-ok",
    );
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    // Every capability box-spawn itself holds (a host may withhold some from it).
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    let own_bnd = own.lines().find_map(|l| l.strip_prefix("CapBnd:\t")).unwrap();
    assert_eq!(lines, [format!("CapEff:\t{own_bnd}").as_str(), "Seccomp:\t0", "rw", "0", "unshare-ok"], "{o:?}");
}

/// Remove the cgroup of a box-spawn that was killed with SIGKILL (and so could not remove
/// it), once the container's processes are gone: `boxkit/spawn-<pid>` in every hierarchy.
pub fn remove_spawn_group(spawner: u32) {
    let name = format!("spawn-{spawner}");
    let mut dirs = Vec::new();
    let mut stack = vec![std::path::PathBuf::from("/sys/fs/cgroup")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir() && !t.is_symlink()).unwrap_or(false) {
                if e.file_name() == name.as_str() && d.file_name().map(|n| n == "boxkit").unwrap_or(false) {
                    dirs.push(e.path());
                } else if stack.len() < 10_000 {
                    stack.push(e.path());
                }
            }
        }
    }
    for d in dirs {
        for _ in 0..100 {
            if std::fs::remove_dir(&d).is_ok() || !d.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
