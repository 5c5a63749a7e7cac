//! The cgroup module against fake trees in a temp dir: a v2 mount and a v1 (hybrid) set of
//! mounts laid out as the kernel lays them out, with the files a kernel would provide.

use super::*;
use std::fs;

const HYBRID: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
37 31 0:34 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
const SELF_V1: &str = "8:pids:/\n7:blkio:/\n4:memory:/jail/abc\n3:cpuset:/\n1:cpu,cpuacct:/\n0::/\n";

fn put(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A v2 mount at sys/fs/cgroup offering `controllers`, with boxkit/ as the kernel would
/// show it once the root hands them down.
fn fake_v2(dir: &Path, controllers: &str) -> Hierarchy {
    let m = dir.join("sys/fs/cgroup");
    put(&m.join("cgroup.controllers"), controllers);
    put(&m.join("boxkit/cgroup.controllers"), controllers);
    let mi = "30 23 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
    detect(mi, "0::/\n", dir).unwrap()
}

/// The v1 hierarchies of HYBRID, with the files a v1 kernel has at their roots.
fn fake_v1(dir: &Path) -> Hierarchy {
    let c = dir.join("sys/fs/cgroup");
    put(&c.join("unified/cgroup.controllers"), "");
    put(&c.join("cpuset/cpuset.cpus"), "0-3\n");
    put(&c.join("cpuset/cpuset.mems"), "0\n");
    for d in ["memory/jail/abc", "cpu,cpuacct", "blkio", "pids"] {
        fs::create_dir_all(c.join(d)).unwrap();
    }
    detect(HYBRID, SELF_V1, dir).unwrap()
}

#[test]
fn detects_v2_first_and_v1_in_a_hybrid() {
    let t = tempfile::tempdir().unwrap();
    let h = fake_v2(t.path(), "cpuset cpu io memory pids");
    assert_eq!(h, Hierarchy::V2 { mount: t.path().join("sys/fs/cgroup") });
    // A hybrid host: the v2 mount offers no controllers, so v1 it is, in the caller's own groups.
    let t = tempfile::tempdir().unwrap();
    put(&t.path().join("sys/fs/cgroup/unified/cgroup.controllers"), "hugetlb\n");
    let Hierarchy::V1 { controllers } = detect(HYBRID, SELF_V1, t.path()).unwrap() else { panic!() };
    assert_eq!(controllers["memory"], t.path().join("sys/fs/cgroup/memory/jail/abc"));
    assert_eq!(controllers["cpu"], t.path().join("sys/fs/cgroup/cpu,cpuacct"));
    assert_eq!(controllers["cpuacct"], t.path().join("sys/fs/cgroup/cpu,cpuacct"));
    assert_eq!(controllers["blkio"], t.path().join("sys/fs/cgroup/blkio"));
    assert!(detect("", "", t.path()).is_err());
}

#[test]
fn detection_reads_mountinfo_not_fixed_paths() {
    let t = tempfile::tempdir().unwrap();
    // An empty cgroup2 mount first, the real one at an unusual path with a space in it.
    put(&t.path().join("first/cgroup.controllers"), "");
    put(&t.path().join("my cgroups/cgroup.controllers"), "memory pids cpu\n");
    let mi = "20 1 0:20 / /first rw - cgroup2 cgroup2 rw\n21 1 0:21 / /my\\040cgroups rw,nosuid shared:9 - cgroup2 none rw\n";
    assert_eq!(detect(mi, "0::/\n", t.path()).unwrap(), Hierarchy::V2 { mount: t.path().join("my cgroups") });
    // Without pids, not usable, and nothing else either.
    put(&t.path().join("my cgroups/cgroup.controllers"), "memory cpu\n");
    assert!(detect(mi, "0::/\n", t.path()).unwrap_err().to_string().contains("no usable cgroup hierarchy"));
}

#[test]
fn v2_limits_land_in_the_right_files() {
    let t = tempfile::tempdir().unwrap();
    let h = fake_v2(t.path(), "cpuset cpu io memory pids");
    let boxkit = t.path().join("sys/fs/cgroup/boxkit");
    // The kernel makes the weight files; the fake has io.weight (io.cost) but no BFQ.
    let l = Limits { memory: Some(64 << 20), memory_swap: Some(96 << 20), cpus: Some(0.5), cpu_shares: Some(1024), pids: Some(20), io_weight: Some(300), cpuset: Some("0".into()), ..Default::default() };
    // A fake kernel cannot make a new group's files: create the group empty, then fill them in.
    let cg = Cgroup::create(&h, "c1", &Limits::default()).unwrap();
    let d = boxkit.join("c1");
    assert_eq!(read(&boxkit.join("cgroup.subtree_control")), "+memory +cpu +pids +io +cpuset");
    assert!(Cgroup::set(&cg, &Limits { memory_swap: Some(1 << 30), ..l.clone() }).unwrap_err().to_string().contains("swap accounting is off"));
    for f in ["memory.swap.max", "io.weight"] {
        put(&d.join(f), "");
    }
    // A memory limit alone allows as much swap again, as Docker's does.
    cg.set(&Limits { memory: Some(8 << 20), ..Default::default() }).unwrap();
    assert_eq!(read(&d.join("memory.swap.max")), (8u64 << 20).to_string());
    cg.set(&l).unwrap();
    let r = |f: &str| read(&d.join(f));
    assert_eq!((r("memory.max"), r("memory.swap.max"), r("cpu.max")), ("67108864".into(), "33554432".into(), "50000 100000".into()));
    assert_eq!((r("cpu.weight"), r("pids.max"), r("io.weight"), r("cpuset.cpus")), ("39".into(), "20".into(), "default 300".into(), "0".into()));
    // With BFQ loaded its own file wins, on its 1–1000 scale.
    put(&d.join("io.bfq.weight"), "");
    cg.set(&Limits { io_weight: Some(10_000), ..Default::default() }).unwrap();
    assert_eq!(r("io.bfq.weight"), "1000");
    assert!(Cgroup::create(&h, "c1", &l).unwrap_err().to_string().contains("already exists"));
    put(&d.join("memory.events"), "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n");
    assert_eq!(cg.oom_kills(), 1);
    assert!(Cgroup::named(&h, "../escape").is_err());
    cg.remove().unwrap_err(); // the fake's files make it a non-empty directory
}

#[test]
fn v2_refuses_what_the_hierarchy_does_not_offer() {
    let t = tempfile::tempdir().unwrap();
    // No io and no cpuset offered: the limits that need them say so.
    let h = fake_v2(t.path(), "cpu memory pids");
    let cg = Cgroup::create(&h, "c", &Limits::default()).unwrap();
    let e = cg.set(&Limits { cpuset: Some("0".into()), ..Default::default() }).unwrap_err().to_string();
    assert!(e.contains("--cpuset: the cpuset controller is not available"), "{e}");
    let e = cg.set(&Limits { io_weight: Some(100), ..Default::default() }).unwrap_err().to_string();
    assert!(e.contains("--io-weight: the io controller is not available"), "{e}");
    // io offered, but no weight file (neither io.cost nor BFQ built): said plainly.
    let t = tempfile::tempdir().unwrap();
    let h = fake_v2(t.path(), "cpu io memory pids");
    let cg = Cgroup::create(&h, "c", &Limits::default()).unwrap();
    let e = cg.set(&Limits { io_weight: Some(100), ..Default::default() }).unwrap_err().to_string();
    assert!(e.contains("no weight file"), "{e}");
    // Out of range values never reach the kernel.
    for l in [Limits { cpus: Some(0.0), ..Default::default() }, Limits { cpu_weight: Some(0), ..Default::default() }, Limits { cpu_shares: Some(1), ..Default::default() }, Limits { pids: Some(0), ..Default::default() }, Limits { io_weight: Some(10_001), ..Default::default() }, Limits { memory: Some(1 << 20), memory_swap: Some(1 << 19), ..Default::default() }] {
        assert_eq!(cg.set(&l).unwrap_err().kind(), crate::Kind::Invalid, "{l:?}");
    }
    // The memory, cpu and pids controllers must reach boxkit/.
    let t = tempfile::tempdir().unwrap();
    let h = fake_v2(t.path(), "cpu memory pids");
    put(&t.path().join("sys/fs/cgroup/boxkit/cgroup.controllers"), "cpu");
    let e = Cgroup::create(&h, "c", &Limits::default()).unwrap_err().to_string();
    assert!(e.contains("not all enabled in") && e.contains("cgroup.subtree_control"), "{e}");
}

#[test]
fn v1_limits_land_in_each_hierarchy() {
    let t = tempfile::tempdir().unwrap();
    let h = fake_v1(t.path());
    let c = t.path().join("sys/fs/cgroup");
    let cg = Cgroup::create(&h, "g", &Limits::default()).unwrap();
    // A new cpuset group gets its parent's CPUs and memory nodes (else it takes no process).
    assert_eq!(read(&c.join("cpuset/boxkit/g/cpuset.cpus")), "0-3");
    assert_eq!(read(&c.join("cpuset/boxkit/cpuset.mems")), "0");
    // What a kernel with swap accounting and CFQ-era weights has in a new group.
    put(&c.join("memory/jail/abc/boxkit/g/memory.memsw.limit_in_bytes"), "");
    put(&c.join("blkio/boxkit/g/blkio.weight"), "");
    let l = Limits { memory: Some(32 << 20), memory_swap: Some(-1), cpus: Some(1.5), cpu_weight: Some(39), pids: Some(7), io_weight: Some(10_000), cpuset: Some("1".into()), ..Default::default() };
    cg.set(&l).unwrap();
    let r = |d: &str, f: &str| read(&c.join(d).join(f));
    assert_eq!(r("memory/jail/abc/boxkit/g", "memory.limit_in_bytes"), "33554432");
    assert_eq!(r("memory/jail/abc/boxkit/g", "memory.memsw.limit_in_bytes"), "-1");
    assert_eq!((r("cpu,cpuacct/boxkit/g", "cpu.cfs_quota_us"), r("cpu,cpuacct/boxkit/g", "cpu.cfs_period_us")), ("150000".into(), "100000".into()));
    assert_eq!(r("cpu,cpuacct/boxkit/g", "cpu.shares"), "998");
    assert_eq!(r("pids/boxkit/g", "pids.max"), "7");
    assert_eq!(r("blkio/boxkit/g", "blkio.weight"), "1000");
    assert_eq!(r("cpuset/boxkit/g", "cpuset.cpus"), "1");
    cg.set(&Limits { memory: Some(8 << 20), ..Default::default() }).unwrap();
    assert_eq!(r("memory/jail/abc/boxkit/g", "memory.memsw.limit_in_bytes"), (16u64 << 20).to_string());
    // --cpu-shares goes to cpu.shares as given; a BFQ weight file wins over blkio.weight.
    put(&c.join("blkio/boxkit/g/blkio.bfq.weight"), "");
    cg.set(&Limits { cpu_shares: Some(512), io_weight: Some(1), ..Default::default() }).unwrap();
    assert_eq!(r("cpu,cpuacct/boxkit/g", "cpu.shares"), "512");
    assert_eq!(r("blkio/boxkit/g", "blkio.bfq.weight"), "10");
    // The path box-spawn --cgroup takes is the memory hierarchy's; joining it joins all.
    assert_eq!(cg.path(), c.join("memory/jail/abc/boxkit/g"));
    assert_eq!(procs_files(&h, &cg.path()).unwrap_err().kind(), crate::Kind::NotFound); // not a cgroup yet
    for d in ["memory/jail/abc/boxkit/g", "pids/boxkit/g"] {
        put(&c.join(d).join("cgroup.procs"), "");
    }
    assert_eq!(procs_files(&h, &cg.path()).unwrap(), vec![c.join("memory/jail/abc/boxkit/g/cgroup.procs"), c.join("pids/boxkit/g/cgroup.procs")]);
}

#[test]
fn v1_without_swap_accounting_or_io_weights_says_so() {
    let t = tempfile::tempdir().unwrap();
    let h = fake_v1(t.path());
    let cg = Cgroup::create(&h, "g", &Limits::default()).unwrap();
    let e = cg.set(&Limits { memory: Some(1 << 20), memory_swap: Some(2 << 20), ..Default::default() }).unwrap_err().to_string();
    assert!(e.contains("swap accounting is off") && e.contains("memory.memsw.limit_in_bytes"), "{e}");
    let e = cg.set(&Limits { io_weight: Some(500), ..Default::default() }).unwrap_err().to_string();
    assert!(e.contains("blkio controller has no weight file"), "{e}");
    // Creating a group that exists in any one hierarchy is refused.
    assert!(Cgroup::create(&h, "g", &Limits::default()).unwrap_err().to_string().contains("already exists"));
    // Removing takes it out of every hierarchy, and boxkit/ with it once empty (a real
    // group's files go with it; the fake's must go first).
    for f in ["cpuset.cpus", "cpuset.mems"] {
        fs::remove_file(t.path().join("sys/fs/cgroup/cpuset/boxkit/g").join(f)).unwrap();
    }
    cg.remove().unwrap();
    assert!(!t.path().join("sys/fs/cgroup/cpu,cpuacct/boxkit/g").exists());
    assert!(!t.path().join("sys/fs/cgroup/pids/boxkit").exists());
}

#[test]
fn io_weights_need_a_device_that_honours_them() {
    let t = tempfile::tempdir().unwrap();
    let h = fake_v2(t.path(), "cpu io memory pids");
    let sys = t.path().join("sys");
    put(&sys.join("block/vda/queue/scheduler"), "[none] mq-deadline bfq\n");
    put(&t.path().join("sys/fs/cgroup/io.cost.qos"), "");
    assert!(io_weight_effective(&sys, &h).unwrap_err().to_string().contains("would do nothing"));
    put(&t.path().join("sys/fs/cgroup/io.cost.qos"), "253:0 enable=1 ctrl=auto rpct=0.00\n");
    io_weight_effective(&sys, &h).unwrap();
    put(&t.path().join("sys/fs/cgroup/io.cost.qos"), "");
    put(&sys.join("block/vdb/queue/scheduler"), "none mq-deadline [bfq]\n");
    io_weight_effective(&sys, &h).unwrap();
}

#[test]
fn stats_are_read_from_either_layout() {
    let t = tempfile::tempdir().unwrap();
    let h = fake_v2(t.path(), "cpu memory pids");
    let cg = Cgroup::create(&h, "s", &Limits::default()).unwrap();
    let d = t.path().join("sys/fs/cgroup/boxkit/s");
    put(&d.join("memory.current"), "1048576\n");
    put(&d.join("memory.peak"), "2097152\n");
    put(&d.join("memory.max"), "max\n");
    put(&d.join("pids.current"), "3\n");
    put(&d.join("pids.max"), "20\n");
    put(&d.join("cpu.stat"), "usage_usec 400000\nuser_usec 390000\nsystem_usec 10000\nnr_periods 20\nnr_throttled 18\nthrottled_usec 1600000\n");
    put(&d.join("memory.events"), "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n");
    let s = cg.stats().unwrap();
    assert_eq!(
        s,
        Stats { memory_bytes: Some(1 << 20), memory_peak_bytes: Some(2 << 20), memory_limit_bytes: None, pids: Some(3), pids_limit: Some(20), cpu_usec: Some(400_000), cpu_periods: Some(20), throttled_periods: Some(18), throttled_usec: Some(1_600_000), oom_kills: 0 }
    );

    let t = tempfile::tempdir().unwrap();
    let h = fake_v1(t.path());
    let c = t.path().join("sys/fs/cgroup");
    let cg = Cgroup::named(&h, "g").unwrap();
    let m = c.join("memory/jail/abc/boxkit/g");
    put(&m.join("memory.usage_in_bytes"), "4096\n");
    put(&m.join("memory.max_usage_in_bytes"), "8192\n");
    put(&m.join("memory.limit_in_bytes"), "9223372036854771712\n"); // v1's "no limit"
    put(&m.join("memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
    put(&c.join("pids/boxkit/g/pids.max"), "max\n");
    put(&c.join("pids/boxkit/g/pids.current"), "1\n");
    put(&c.join("cpu,cpuacct/boxkit/g/cpuacct.usage"), "250000000\n");
    put(&c.join("cpu,cpuacct/boxkit/g/cpu.stat"), "nr_periods 10\nnr_throttled 7\nthrottled_time 900000000\n");
    let s = cg.stats().unwrap();
    assert_eq!(
        s,
        Stats { memory_bytes: Some(4096), memory_peak_bytes: Some(8192), memory_limit_bytes: None, pids: Some(1), pids_limit: None, cpu_usec: Some(250_000), cpu_periods: Some(10), throttled_periods: Some(7), throttled_usec: Some(900_000), oom_kills: 2 }
    );
    assert!(Cgroup::named(&h, "absent").unwrap().stats().unwrap_err().to_string().contains("does not exist"));
}

#[test]
fn sizes_and_weights() {
    assert_eq!(parse_size("64M").unwrap(), 64 << 20);
    assert_eq!(parse_size("1g").unwrap(), 1 << 30);
    assert_eq!(parse_size("1.5k").unwrap(), 1536);
    assert_eq!(parse_size("100").unwrap(), 100);
    assert!(parse_size("lots").is_err());
    assert!(parse_size("-1m").is_err());
    assert!(parse_size("inf").is_err());
    assert_eq!(shares_to_weight(1024), 39);
    assert_eq!(shares_to_weight(2), 1);
    assert_eq!(shares_to_weight(262_144), 10_000);
    assert_eq!(weight_to_shares(39), 998); // the weight scale is coarser than shares
    assert_eq!((io_weight_to_bfq(1), io_weight_to_bfq(100), io_weight_to_bfq(10_000)), (10, 19, 1000));
    assert_eq!(unescape("/a\\040b\\134c"), "/a b\\c");
}
