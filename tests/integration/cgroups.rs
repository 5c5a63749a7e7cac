//! box-cgroup-limit on this machine's real hierarchy (v2 where the kernel offers it, v1
//! otherwise): each limit holds, and nothing is left behind.

use crate::support::{bin, Scratch};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

fn limit(args: &[&str]) -> std::process::Output {
    limit_pid(args).0
}

/// Run box-cgroup-limit; also return its pid (its group is `run-<pid>`).
fn limit_pid(args: &[&str]) -> (std::process::Output, u32) {
    let c = Command::new(bin("box-cgroup-limit")).args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = c.id();
    (c.wait_with_output().unwrap(), pid)
}

fn no_groups_left(prefix: &str) {
    let h = boxkit::cgroup::detect_host().unwrap();
    let dirs = boxkit::cgroup::Cgroup::named(&h, "x").unwrap().dirs();
    for (_, d) in dirs {
        let parent = d.parent().unwrap();
        if let Ok(rd) = std::fs::read_dir(parent) {
            for e in rd.flatten() {
                let n = e.file_name().into_string().unwrap();
                assert!(n != prefix, "cgroup {} left behind", e.path().display());
            }
        }
    }
}

#[test]
fn a_memory_hog_is_killed_and_the_caller_sees_137() {
    let (o, pid) = limit_pid(&["--memory", "32M", "--", "python3", "-c", "x = bytearray(256 << 20); print('survived')"]);
    assert_eq!(o.status.code(), Some(137), "{o:?}");
    assert!(!String::from_utf8_lossy(&o.stdout).contains("survived"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("killed by the kernel: the memory limit of 32.0 MiB was reached"), "{err}");
    // Under the limit, the same program runs.
    let o = limit(&["--memory", "256M", "--", "python3", "-c", "x = bytearray(32 << 20); print('fine')"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "fine\n");
    no_groups_left(&format!("run-{pid}"));
}

#[test]
fn a_fork_loop_stops_at_the_pids_limit() {
    // Each iteration forks a sleeper; with pids.max 20 the shell soon cannot fork.
    let (o, pid) = limit_pid(&["--pids", "20", "--", "sh", "-c", "n=0; while [ $n -lt 200 ]; do sleep 30 & n=$((n+1)); done; echo all-started"]);
    assert!(!String::from_utf8_lossy(&o.stdout).contains("all-started"), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).to_lowercase().contains("fork"), "{o:?}");
    // The sleepers it did start are gone with the group.
    no_groups_left(&format!("run-{pid}"));
}

#[test]
fn cpu_time_follows_the_quota() {
    let name = format!("cpu-test-{}", std::process::id());
    let o = limit(&["--create", &name, "--cpus", "0.2"]);
    crate::support::assert_success(&o, "create a group");
    let h = boxkit::cgroup::detect_host().unwrap();
    let cg = boxkit::cgroup::Cgroup::named(&h, &name).unwrap();
    let procs: Vec<_> = cg.dirs().into_iter().map(|(_, d)| d.join("cgroup.procs")).collect();
    // A busy loop for 2 s of wall time, inside the group.
    let mut c = Command::new("timeout");
    c.args(["2", "sh", "-c", "while :; do :; done"]);
    unsafe {
        c.pre_exec(move || {
            for p in &procs {
                std::fs::write(p, b"0")?;
            }
            Ok(())
        });
    }
    let _ = c.status().unwrap();
    let o = limit(&["--stats", &name, "--json"]);
    let stats: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let cpu = stats["cpu_usec"].as_u64().unwrap() as f64 / 1e6;
    crate::support::assert_success(&limit(&["--remove", &name]), "remove the group");
    // 0.2 CPUs for 2 s is 0.4 s of CPU time; within 20%.
    assert!((0.32..=0.48).contains(&cpu), "cpu time {cpu:.3}s under --cpus 0.2 for 2 s");
    assert!(stats["throttled_periods"].as_u64().unwrap() > 0);
}

#[test]
fn create_stats_remove_and_bad_input() {
    let name = format!("named-{}", std::process::id());
    let o = limit(&["--create", &name, "--memory", "48M", "--pids", "30"]);
    crate::support::assert_success(&o, "create");
    let path = String::from_utf8(o.stdout).unwrap();
    assert!(path.trim().ends_with(&format!("boxkit/{name}")), "{path}");
    let o = limit(&["--stats", &name]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("limit 48.0 MiB"), "{o:?}");
    let o = limit(&["--create", &name]);
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
    crate::support::assert_success(&limit(&["--remove", &name]), "remove");
    assert!(!std::path::Path::new(path.trim()).exists());
    assert!(String::from_utf8_lossy(&limit(&["--create", "../x"]).stderr).contains("bad cgroup name"));
    assert!(String::from_utf8_lossy(&limit(&["--memory", "lots", "--", "true"]).stderr).contains("bad size"));
    assert_eq!(limit(&["--", "no-such-command"]).status.code(), Some(127));
    no_groups_left(&name);
}

#[test]
fn it_composes_with_box_spawn() {
    let s = Scratch::new();
    let b = s.busybox_bundle("b");
    // A container that allocates past its limit: busybox's awk builds a big string.
    let spawn = bin("box-spawn");
    let (o, pid) = limit_pid(&["--memory", "24M", "--", spawn.to_str().unwrap(), b.to_str().unwrap(), "--", "sh", "-c", "awk 'BEGIN { s = \"x\"; while (1) s = s s }'"]);
    assert_eq!(o.status.code(), Some(137), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("memory limit of 24.0 MiB was reached"));
    no_groups_left(&format!("run-{pid}"));
}

#[test]
fn box_spawn_joins_a_created_group() {
    let s = Scratch::new();
    let b = s.busybox_bundle("b");
    let name = format!("spawn-{}", std::process::id());
    let o = limit(&["--create", &name, "--memory", "24M", "--pids", "50"]);
    crate::support::assert_success(&o, "create");
    let path = String::from_utf8(o.stdout).unwrap().trim().to_string();
    let o = Command::new(bin("box-spawn"))
        .args(["--cgroup", &path])
        .arg(&b)
        .args(["--", "sh", "-c", "cat /proc/self/cgroup; awk 'BEGIN { s = \"x\"; while (1) s = s s }'"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(137), "{o:?}");
    // In its cgroup namespace the container sees its group as the root.
    assert!(String::from_utf8_lossy(&o.stdout).contains(":memory:/\n"), "{o:?}");
    let stats = limit(&["--stats", &name, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert!(v["oom_kills"].as_u64().unwrap() >= 1, "{v}");
    crate::support::assert_success(&limit(&["--remove", &name]), "remove");
    let o = Command::new(bin("box-spawn")).args(["--cgroup", "/nonexistent"]).arg(&b).output().unwrap();
    assert_eq!(o.status.code(), Some(125));
}
