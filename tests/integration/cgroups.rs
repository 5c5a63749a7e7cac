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

/// A group made with `--create NAME LIMITS…`, removed (with anything left in it) on drop.
struct Group {
    name: String,
    cg: boxkit::cgroup::Cgroup,
}

impl Group {
    fn create(name: &str, limits: &[&str]) -> Group {
        let name = format!("{name}-{}", std::process::id());
        let o = limit(&[&["--create", name.as_str()], limits].concat());
        crate::support::assert_success(&o, &format!("create {name} {limits:?}"));
        let cg = boxkit::cgroup::Cgroup::named(&boxkit::cgroup::detect_host().unwrap(), &name).unwrap();
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), cg.path().to_str().unwrap());
        Group { name, cg }
    }

    /// Start `sh -c SCRIPT` inside the group.
    fn spawn(&self, script: &str) -> std::process::Child {
        let procs = self.cg.procs_files();
        let mut c = Command::new("sh");
        c.args(["-c", script]).stdout(Stdio::piped());
        // SAFETY: only write(2) calls between fork and exec.
        unsafe {
            c.pre_exec(move || {
                for p in &procs {
                    std::fs::write(p, b"0")?;
                }
                Ok(())
            });
        }
        c.spawn().unwrap()
    }

    fn stats(&self) -> serde_json::Value {
        let o = limit(&["--stats", &self.name, "--json"]);
        crate::support::assert_success(&o, "--stats");
        serde_json::from_slice(&o.stdout).unwrap()
    }

    /// The text of one of the group's files (in whichever hierarchy has it).
    fn file(&self, name: &str) -> String {
        self.cg.unique_dirs().iter().find_map(|d| std::fs::read_to_string(d.join(name)).ok()).unwrap_or_else(|| panic!("no {name} in {:?}", self.cg.unique_dirs())).trim().to_string()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let _ = self.cg.kill_all();
        let o = limit(&["--remove", &self.name]);
        if !std::thread::panicking() {
            crate::support::assert_success(&o, "--remove");
            assert!(!self.cg.path().exists());
        }
    }
}

/// A busy loop for `secs` seconds of wall time.
fn busy(secs: u32) -> String {
    format!("exec timeout {secs} sh -c 'while :; do :; done'")
}

#[test]
fn cpu_time_follows_the_quota() {
    let g = Group::create("cpu", &["--cpus", "0.2"]);
    assert_eq!(g.file(if g.cg.is_v2() { "cpu.max" } else { "cpu.cfs_quota_us" }), if g.cg.is_v2() { "20000 100000" } else { "20000" });
    // Two busy loops: 0.2 CPUs is all the group gets, however many want to run.
    let (mut a, mut b) = (g.spawn(&busy(2)), g.spawn(&busy(2)));
    a.wait().unwrap();
    b.wait().unwrap();
    // CPU time over the periods the group was busy in (both from the kernel's accounting,
    // so a slow or loaded machine does not change the answer): 0.2 of each 100 ms period.
    let s = g.stats();
    let (cpu, periods) = (s["cpu_usec"].as_u64().unwrap() as f64, s["cpu_periods"].as_u64().unwrap() as f64);
    let share = cpu / (periods * 100_000.0);
    assert!(periods >= 10.0, "only {periods} periods: {s}");
    assert!((0.16..=0.24).contains(&share), "{share:.3} CPUs under --cpus 0.2 ({cpu} µs in {periods} periods): {s}");
    assert!(s["throttled_periods"].as_u64().unwrap() > 0, "{s}");
}

#[test]
fn cpu_weights_share_a_busy_cpu() {
    // Two groups pinned to CPU 0, one with three times the other's weight (given once as a
    // v2 weight and once as v1 shares: each is converted for the other version).
    let light = Group::create("light", &["--cpu-weight", "100", "--cpuset", "0"]);
    let heavy = Group::create("heavy", &["--cpu-shares", "7864", "--cpuset", "0"]);
    if light.cg.is_v2() {
        assert_eq!((light.file("cpu.weight"), heavy.file("cpu.weight")), ("100".into(), "300".into()));
    } else {
        assert_eq!((light.file("cpu.shares"), heavy.file("cpu.shares")), ("2597".into(), "7864".into()));
    }
    let (mut a, mut b) = (light.spawn(&busy(30)), heavy.spawn(&busy(30)));
    // Measure only while both loops run: the first one started has the CPU to itself until
    // the second is up. `timeout` and its busy child make two processes in each group.
    crate::support::wait_until("both busy loops", || [&light, &heavy].iter().all(|g| g.stats()["pids"].as_u64().unwrap() >= 2));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let usage = || (light.stats()["cpu_usec"].as_u64().unwrap() as f64, heavy.stats()["cpu_usec"].as_u64().unwrap() as f64);
    let before = usage();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let after = usage();
    light.cg.kill_all().unwrap();
    heavy.cg.kill_all().unwrap();
    let _ = (a.wait(), b.wait());
    let (l, h) = (after.0 - before.0, after.1 - before.1);
    assert!((2.0..=4.5).contains(&(h / l)), "over 2 s, weight 300 got {h} µs, weight 100 got {l} µs: ratio {:.2}, not about 3", h / l);
}

#[test]
fn cpuset_pins_the_group() {
    let g = Group::create("cpuset", &["--cpuset", "0"]);
    assert_eq!(g.file("cpuset.cpus"), "0");
    let o = g.spawn("grep Cpus_allowed_list /proc/self/status").wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).split_whitespace().nth(1), Some("0"));
    // A CPU the machine does not have is refused by the kernel, with the flag named.
    let o = limit(&["--cpuset", "4096", "--", "true"]);
    assert_eq!(o.status.code(), Some(125), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("cpuset.cpus"), "{o:?}");
}

#[test]
fn memory_swap_is_memory_plus_swap() {
    let g = Group::create("swap", &["--memory", "32M", "--memory-swap", "96M"]);
    // Docker's meaning on both versions: v2 limits the swap alone, v1 memory plus swap.
    if g.cg.is_v2() {
        assert_eq!((g.file("memory.max"), g.file("memory.swap.max")), ((32u64 << 20).to_string(), (64u64 << 20).to_string()));
    } else {
        assert_eq!((g.file("memory.limit_in_bytes"), g.file("memory.memsw.limit_in_bytes")), ((32u64 << 20).to_string(), (96u64 << 20).to_string()));
    }
    drop(g);
    let hog = |swap: &str| limit(&["--memory", "32M", "--memory-swap", swap, "--", "python3", "-c", "x = bytearray(64 << 20); x[::4096] = b'x' * (16 << 10); print('survived')"]);
    // Memory plus swap equal to memory: no swap at all, so 64 MiB is killed.
    let o = hog("32M");
    assert_eq!(o.status.code(), Some(137), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("memory limit of 32.0 MiB was reached"), "{o:?}");
    // With swap on, 64 MiB fits in 32 MiB of memory plus swap (the VM run turns some on).
    let swap_on = std::fs::read_to_string("/proc/swaps").unwrap().lines().count() > 1;
    if swap_on {
        let o = hog("160M");
        assert_eq!(String::from_utf8_lossy(&o.stdout), "survived\n", "{o:?}");
    } else {
        eprintln!("memory_swap_is_memory_plus_swap: no swap on this machine: the swapping half is skipped");
    }
    // More than nothing, less than memory, or without --memory: refused.
    for bad in [&["--memory", "32M", "--memory-swap", "16M"][..], &["--memory-swap", "64M"]] {
        let o = limit(&[bad, &["--", "true"]].concat());
        assert_eq!(o.status.code(), Some(125), "{bad:?}: {o:?}");
    }
}

#[test]
fn io_weight_is_written_or_refused_plainly() {
    let h = boxkit::cgroup::detect_host().unwrap();
    match boxkit::cgroup::io_weight_effective(std::path::Path::new("/sys"), &h) {
        Ok(()) => {
            let g = Group::create("io", &["--io-weight", "500"]);
            let bfq = boxkit::cgroup::io_weight_to_bfq(500).to_string();
            let dirs = g.cg.unique_dirs();
            let written: Vec<String> = ["io.bfq.weight", "blkio.bfq.weight", "io.weight", "blkio.weight"]
                .iter()
                .filter_map(|f| dirs.iter().find_map(|d| std::fs::read_to_string(d.join(f)).ok()))
                .collect();
            // BFQ shows "default N" (v2) or N; io.weight "default 500".
            assert!(written.iter().any(|w| w.trim().ends_with(&bfq) || w.trim() == "default 500"), "{written:?}");
        }
        Err(e) => {
            // No disk here uses BFQ or io.cost: the weight would do nothing, and is refused.
            let o = limit(&["--io-weight", "500", "--", "true"]);
            assert_eq!(o.status.code(), Some(125), "{o:?}");
            assert_eq!(String::from_utf8_lossy(&o.stderr).trim(), format!("box-cgroup-limit: {e}"));
            eprintln!("io_weight_is_written_or_refused_plainly: no device honours I/O weights here: checked the refusal");
        }
    }
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
    // In its cgroup namespace the container sees its group as the root (v1: one line per
    // hierarchy, the memory one among them; v2: the single `0::/`).
    let seen = String::from_utf8_lossy(&o.stdout);
    assert!(seen.contains(":memory:/\n") || seen == "0::/\n", "{o:?}");
    let stats = limit(&["--stats", &name, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert!(v["oom_kills"].as_u64().unwrap() >= 1, "{v}");
    crate::support::assert_success(&limit(&["--remove", &name]), "remove");
    let o = Command::new(bin("box-spawn")).args(["--cgroup", "/nonexistent"]).arg(&b).output().unwrap();
    assert_eq!(o.status.code(), Some(125));
}

#[test]
fn join_runs_in_a_group_that_stays() {
    let g = Group::create("join", &["--memory", "24M", "--pids", "10"]);
    let o = limit(&["--join", &g.name, "--", "sh", "-c", "cat /proc/self/cgroup"]);
    crate::support::assert_success(&o, "--join");
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("/boxkit/{}", g.name)), "{o:?}");
    let o = limit(&["--join", &g.name, "--", "python3", "-c", "x = bytearray(256 << 20)"]);
    assert_eq!(o.status.code(), Some(137), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("memory limit of 24.0 MiB was reached"), "{o:?}");
    assert!(g.cg.path().exists());
    assert!(g.stats()["oom_kills"].as_u64().unwrap() >= 1);
    // Limits belong to --create; a group that does not exist is not made by --join.
    assert!(String::from_utf8_lossy(&limit(&["--join", &g.name, "--pids", "5", "--", "true"]).stderr).contains("--join takes no limits"));
    let o = limit(&["--join", "no-such-group", "--", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not exist"), "{o:?}");
}
