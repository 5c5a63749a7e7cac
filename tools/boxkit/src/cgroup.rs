//! Control groups: limits on memory, CPU, processes and I/O for a group of processes.
//!
//! Reference: the kernel's Documentation/admin-guide/cgroup-v2.rst (the unified hierarchy:
//! `memory.max`, `cpu.max`, `cpu.weight`, `pids.max`, `io.weight`, `cpuset.cpus`,
//! `cgroup.subtree_control`) and Documentation/admin-guide/cgroup-v1/ (one hierarchy per
//! controller: `memory.limit_in_bytes`, `cpu.cfs_quota_us`, `cpu.shares`, …); cgroups(7).
//!
//! The hierarchies are found by reading `/proc/self/mountinfo`, never by assuming paths.
//! cgroup v2 is used when a cgroup2 mount offers the memory, cpu and pids controllers;
//! otherwise the v1 controller mounts. boxkit's groups live below a `boxkit/` group of its
//! own: at the top of the v2 hierarchy (as Docker's cgroupfs driver does, since v2 forbids
//! processes in a group that hands controllers down), and below the caller's own group in
//! each v1 hierarchy (so limits the caller is under still apply). boxkit only ever writes
//! to, and removes, groups it created.
//!
//! Everything takes the filesystem root as a parameter, so tests run on a fake tree.

use crate::error::{Context, Error, Result};
use crate::explain;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The controllers boxkit sets limits with.
pub const CONTROLLERS: [&str; 5] = ["memory", "cpu", "pids", "io", "cpuset"];

/// Where the cgroup hierarchies are mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// The unified hierarchy: one tree for every controller.
    V2 { mount: PathBuf },
    /// One mount per controller (or per group of controllers, like `cpu,cpuacct`); the path
    /// is where boxkit's groups go in that hierarchy (the caller's own group).
    V1 { controllers: BTreeMap<String, PathBuf> },
}

/// Find the hierarchies from the text of /proc/self/mountinfo and /proc/self/cgroup; paths
/// are taken below `fs_root` (`/` on a real system).
pub fn detect(mountinfo: &str, self_cgroup: &str, fs_root: &Path) -> Result<Hierarchy> {
    let under = |p: &str| fs_root.join(p.trim_start_matches('/'));
    let mut v2 = None;
    let mut v1 = BTreeMap::new();
    for line in mountinfo.lines() {
        // id parent major:minor root mountpoint options [optional…] - fstype source superopts
        let Some((pre, post)) = line.split_once(" - ") else { continue };
        let pre: Vec<&str> = pre.split_whitespace().collect();
        let post: Vec<&str> = post.split_whitespace().collect();
        if pre.len() < 5 || post.len() < 3 {
            continue;
        }
        let (mountpoint, fstype, superopts) = (pre[4], post[0], post[2]);
        match fstype {
            "cgroup2" => v2 = Some(under(mountpoint)),
            "cgroup" => {
                for opt in superopts.split(',') {
                    if ["memory", "cpu", "cpuacct", "pids", "blkio", "cpuset", "freezer", "devices"].contains(&opt) {
                        // The caller's own group in this hierarchy, from /proc/self/cgroup.
                        let own = self_cgroup
                            .lines()
                            .filter_map(|l| l.splitn(3, ':').collect::<Vec<_>>().try_into().ok())
                            .find(|[_, ctl, _]: &[&str; 3]| ctl.split(',').any(|c| c == opt))
                            .map(|[_, _, path]| path.to_string())
                            .unwrap_or_else(|| "/".into());
                        v1.insert(opt.to_string(), under(mountpoint).join(own.trim_start_matches('/')));
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(mount) = v2 {
        let controllers = std::fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
        let have: Vec<&str> = controllers.split_whitespace().collect();
        if ["memory", "cpu", "pids"].iter().all(|c| have.contains(c)) {
            return Ok(Hierarchy::V2 { mount });
        }
    }
    if !v1.is_empty() {
        return Ok(Hierarchy::V1 { controllers: v1 });
    }
    Err(Error::not_found("no usable cgroup hierarchy: no cgroup2 mount with memory, cpu and pids, and no cgroup v1 mounts"))
}

/// The hierarchies of this machine.
pub fn detect_host() -> Result<Hierarchy> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").ctx(|| "read /proc/self/mountinfo")?;
    let cg = std::fs::read_to_string("/proc/self/cgroup").ctx(|| "read /proc/self/cgroup")?;
    detect(&mi, &cg, Path::new("/"))
}

/// The `cgroup.procs` files a process must write to join the group at `path`: every
/// hierarchy's directory for a group boxkit created (`…/boxkit/NAME`), or just `path`.
pub fn procs_files(h: &Hierarchy, path: &Path) -> Result<Vec<PathBuf>> {
    if !path.join("cgroup.procs").exists() {
        return Err(Error::not_found(format!("{} is not a cgroup", path.display())));
    }
    let parent_is_boxkit = path.parent().and_then(|p| p.file_name()).map(|n| n == "boxkit").unwrap_or(false);
    if let (true, Some(name)) = (parent_is_boxkit, path.file_name().and_then(|n| n.to_str())) {
        let cg = Cgroup::named(h, name)?;
        if cg.dirs().iter().any(|(_, d)| d == path) {
            return Ok(cg.dirs().into_iter().map(|(_, d)| d.join("cgroup.procs")).filter(|p| p.exists()).collect());
        }
    }
    Ok(vec![path.join("cgroup.procs")])
}

/// Limits, as `docker run` spells them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// Bytes of memory.
    pub memory: Option<u64>,
    /// Memory plus swap, in bytes (Docker's `--memory-swap`); -1 for unlimited swap.
    pub memory_swap: Option<i64>,
    /// CPUs' worth of time: 0.5 is half of one CPU (quota over a 100 ms period).
    pub cpus: Option<f64>,
    /// Relative CPU weight, 1–10000 (v2); from `--cpu-shares` 2–262144 on v1.
    pub cpu_weight: Option<u64>,
    pub cpu_shares: Option<u64>,
    pub pids: Option<u64>,
    /// Relative I/O weight, 1–10000 (v2 `io.weight`; v1 blkio.weight 10–1000).
    pub io_weight: Option<u64>,
    /// CPUs the group may run on: `0-1`, `0,2`.
    pub cpuset: Option<String>,
}

const PERIOD_US: u64 = 100_000;

/// runc's conversion from v1 cpu.shares (2–262144) to v2 cpu.weight (1–10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 { 0 } else { 1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142 }
}

/// The reverse, for a weight given on a v1 host.
pub fn weight_to_shares(weight: u64) -> u64 {
    2 + (weight.clamp(1, 10_000) - 1) * 262_142 / 9999
}

/// Parse `64M`, `1g`, `512k`, `1048576` (bytes).
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let (num, mult) = match t.chars().last().map(|c| c.to_ascii_lowercase()) {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('b') => (&t[..t.len() - 1], 1),
        _ => (t, 1),
    };
    let n: f64 = num.parse().map_err(|_| Error::invalid(format!("bad size {s:?}: use a number with an optional k, m or g")))?;
    if n < 0.0 {
        return Err(Error::invalid(format!("bad size {s:?}: negative")));
    }
    Ok((n * mult as f64) as u64)
}

/// A group boxkit created.
#[derive(Debug, Clone)]
pub struct Cgroup {
    pub name: String,
    hierarchy: Hierarchy,
}

fn write(path: &Path, value: &str) -> Result<()> {
    explain!("write {value:?} > {}", path.display());
    std::fs::write(path, value).ctx(|| format!("write {value:?} to {}", path.display()))
}

fn valid_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 128 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) || name.starts_with('.') {
        return Err(Error::invalid(format!("bad cgroup name {name:?}: use letters, digits, '-', '_' and '.'")));
    }
    Ok(())
}

impl Cgroup {
    /// The group `name` below boxkit's own group (it need not exist yet).
    pub fn named(h: &Hierarchy, name: &str) -> Result<Cgroup> {
        valid_name(name)?;
        Ok(Cgroup { name: name.to_string(), hierarchy: h.clone() })
    }

    /// The directories of this group: one on v2, one per controller on v1.
    pub fn dirs(&self) -> Vec<(String, PathBuf)> {
        match &self.hierarchy {
            Hierarchy::V2 { mount } => vec![("unified".into(), mount.join("boxkit").join(&self.name))],
            Hierarchy::V1 { controllers } => controllers.iter().map(|(c, p)| (c.clone(), p.join("boxkit").join(&self.name))).collect(),
        }
    }

    /// The path to show a user and hand to `box-spawn --cgroup`: the v2 directory, or on
    /// v1 the memory hierarchy's.
    pub fn path(&self) -> PathBuf {
        let dirs = self.dirs();
        dirs.iter().find(|(c, _)| c == "unified" || c == "memory").unwrap_or(&dirs[0]).1.clone()
    }

    pub fn is_v2(&self) -> bool {
        matches!(self.hierarchy, Hierarchy::V2 { .. })
    }

    /// Create the group (it must not exist) and set `limits`.
    pub fn create(h: &Hierarchy, name: &str, limits: &Limits) -> Result<Cgroup> {
        let cg = Cgroup::named(h, name)?;
        for (_, dir) in cg.dirs() {
            if dir.exists() {
                return Err(Error::invalid(format!("cgroup {} already exists", dir.display())));
            }
        }
        match h {
            Hierarchy::V2 { mount } => {
                let parent = mount.join("boxkit");
                mkdir_exists_ok(&parent)?;
                // Hand the controllers down from boxkit/ to its children (boxkit/ itself
                // never holds a process, as v2 requires).
                let offered = std::fs::read_to_string(parent.join("cgroup.controllers")).unwrap_or_default();
                let enable: Vec<String> = CONTROLLERS.iter().filter(|c| offered.split_whitespace().any(|o| o == **c)).map(|c| format!("+{c}")).collect();
                if !["memory", "cpu", "pids"].iter().all(|c| offered.split_whitespace().any(|o| o == *c)) {
                    return Err(Error::invalid(format!("{}: memory, cpu and pids are not all delegated here (it offers: {})", parent.display(), offered.trim())));
                }
                write(&parent.join("cgroup.subtree_control"), &enable.join(" "))?;
                let dir = parent.join(name);
                mkdir_child(&dir)?;
                explain!("mkdir {} (a new cgroup)", dir.display());
            }
            Hierarchy::V1 { .. } => {
                for (ctl, dir) in cg.dirs() {
                    let parent = dir.parent().unwrap();
                    mkdir_exists_ok(parent)?;
                    mkdir_child(&dir)?;
                    if ctl == "cpuset" {
                        // boxkit/ first, even when another process made it a moment ago and
                        // has not filled it in yet (inherit_cpuset only fills what is empty).
                        inherit_cpuset(parent)?;
                        inherit_cpuset(&dir)?;
                    }
                }
                explain!("mkdir boxkit/{name} in each v1 hierarchy");
            }
        }
        if let Err(e) = cg.set(limits) {
            let _ = cg.remove();
            return Err(e);
        }
        Ok(cg)
    }

    fn dir_of(&self, controller: &str) -> Option<PathBuf> {
        self.dirs().into_iter().find(|(c, _)| c == "unified" || c == controller).map(|(_, p)| p)
    }

    fn need(&self, controller: &str) -> Result<PathBuf> {
        self.dir_of(controller).ok_or_else(|| Error::not_found(format!("the {controller} controller is not mounted")))
    }

    /// Write the limits into the group's files.
    pub fn set(&self, l: &Limits) -> Result<()> {
        let v2 = self.is_v2();
        if let Some(m) = l.memory {
            let d = self.need("memory")?;
            write(&d.join(if v2 { "memory.max" } else { "memory.limit_in_bytes" }), &m.to_string())?;
        }
        if let Some(total) = l.memory_swap {
            let d = self.need("memory")?;
            let mem = l.memory.ok_or_else(|| Error::invalid("--memory-swap needs --memory"))?;
            if total >= 0 && (total as u64) < mem {
                return Err(Error::invalid("--memory-swap is memory plus swap: it cannot be less than --memory"));
            }
            if v2 {
                let swap = if total < 0 { "max".to_string() } else { (total as u64 - mem).to_string() };
                write(&d.join("memory.swap.max"), &swap)?;
            } else {
                let f = d.join("memory.memsw.limit_in_bytes");
                if !f.exists() {
                    return Err(Error::not_found("swap accounting is off in this kernel (no memory.memsw.limit_in_bytes)"));
                }
                write(&f, &if total < 0 { "-1".to_string() } else { total.to_string() })?;
            }
        }
        if let Some(c) = l.cpus {
            if c <= 0.0 {
                return Err(Error::invalid("--cpus must be more than 0"));
            }
            let quota = ((c * PERIOD_US as f64) as u64).max(1000);
            let d = self.need("cpu")?;
            if v2 {
                write(&d.join("cpu.max"), &format!("{quota} {PERIOD_US}"))?;
            } else {
                write(&d.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
                write(&d.join("cpu.cfs_quota_us"), &quota.to_string())?;
            }
        }
        let weight = l.cpu_weight.or(l.cpu_shares.map(shares_to_weight));
        if let Some(w) = weight {
            if !(1..=10_000).contains(&w) {
                return Err(Error::invalid("--cpu-weight must be 1 to 10000"));
            }
            let d = self.need("cpu")?;
            if v2 {
                write(&d.join("cpu.weight"), &w.to_string())?;
            } else {
                let shares = l.cpu_shares.unwrap_or_else(|| weight_to_shares(w));
                write(&d.join("cpu.shares"), &shares.to_string())?;
            }
        }
        if let Some(p) = l.pids {
            write(&self.need("pids")?.join("pids.max"), &p.to_string())?;
        }
        if let Some(w) = l.io_weight {
            if v2 {
                write(&self.need("io")?.join("io.weight"), &format!("default {w}"))?;
            } else {
                write(&self.need("blkio")?.join("blkio.weight"), &w.clamp(10, 1000).to_string())?;
            }
        }
        if let Some(c) = &l.cpuset {
            write(&self.need("cpuset")?.join("cpuset.cpus"), c)?;
        }
        Ok(())
    }

    /// Move a process into the group.
    pub fn add(&self, pid: i32) -> Result<()> {
        for (_, d) in self.dirs() {
            write(&d.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// How many times the kernel's OOM killer killed a process of this group.
    pub fn oom_kills(&self) -> u64 {
        let Some(d) = self.dir_of("memory") else { return 0 };
        let file = if self.is_v2() { "memory.events" } else { "memory.oom_control" };
        let text = std::fs::read_to_string(d.join(file)).unwrap_or_default();
        key_value(&text, "oom_kill").unwrap_or(0)
    }

    /// Usage: memory, peak memory, processes, CPU time, throttling.
    pub fn stats(&self) -> Result<Stats> {
        let read = |d: Option<PathBuf>, f: &str| d.and_then(|d| std::fs::read_to_string(d.join(f)).ok());
        let num = |d: Option<PathBuf>, f: &str| read(d, f).and_then(|s| s.trim().parse::<u64>().ok());
        let mut s = Stats::default();
        if !self.path().exists() {
            return Err(Error::not_found(format!("cgroup {} does not exist", self.path().display())));
        }
        if self.is_v2() {
            let d = self.dir_of("memory");
            s.memory_bytes = num(d.clone(), "memory.current");
            s.memory_peak_bytes = num(d.clone(), "memory.peak");
            s.memory_limit_bytes = num(d, "memory.max");
            s.pids = num(self.dir_of("pids"), "pids.current");
            let cpu = read(self.dir_of("cpu"), "cpu.stat").unwrap_or_default();
            s.cpu_usec = key_value(&cpu, "usage_usec");
            s.throttled_periods = key_value(&cpu, "nr_throttled");
            s.throttled_usec = key_value(&cpu, "throttled_usec");
        } else {
            let d = self.dir_of("memory");
            s.memory_bytes = num(d.clone(), "memory.usage_in_bytes");
            s.memory_peak_bytes = num(d.clone(), "memory.max_usage_in_bytes");
            s.memory_limit_bytes = num(d, "memory.limit_in_bytes").filter(|&l| l < (1 << 62));
            s.pids = num(self.dir_of("pids"), "pids.current");
            s.cpu_usec = num(self.dir_of("cpuacct"), "cpuacct.usage").map(|ns| ns / 1000);
            let cpu = read(self.dir_of("cpu"), "cpu.stat").unwrap_or_default();
            s.throttled_periods = key_value(&cpu, "nr_throttled");
            s.throttled_usec = key_value(&cpu, "throttled_time").map(|ns| ns / 1000);
        }
        s.oom_kills = self.oom_kills();
        Ok(s)
    }

    /// The processes in the group now.
    pub fn pids(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self
            .dirs()
            .iter()
            .filter_map(|(_, d)| std::fs::read_to_string(d.join("cgroup.procs")).ok())
            .flat_map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect::<Vec<i32>>())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// SIGKILL every process left in the group (what a command started and left behind),
    /// and wait until it is empty. v2 has `cgroup.kill` for this; v1 needs a loop, since
    /// a process may fork while we kill.
    pub fn kill_all(&self) -> Result<()> {
        if let Some((_, d)) = self.dirs().into_iter().find(|(c, _)| c == "unified") {
            if d.join("cgroup.kill").exists() {
                write(&d.join("cgroup.kill"), "1")?;
            }
        }
        for _ in 0..200 {
            let pids = self.pids();
            if pids.is_empty() {
                return Ok(());
            }
            explain!("kill -KILL {pids:?} (left in the group)");
            for p in pids {
                // SAFETY: kill(2) on a pid read from this group's own cgroup.procs.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Err(Error::new(crate::Kind::System, format!("processes of cgroup {} would not die", self.path().display())))
    }

    /// Remove the group (its processes must be gone), and boxkit's parent group when empty.
    pub fn remove(&self) -> Result<()> {
        let mut first_error = None;
        for (_, d) in self.dirs() {
            if d.exists() {
                // A group whose last process just exited may be busy for a moment.
                let mut tries = 0;
                loop {
                    match std::fs::remove_dir(&d) {
                        Ok(()) => break,
                        Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 50 => {
                            tries += 1;
                            std::thread::sleep(std::time::Duration::from_millis(10));
                        }
                        Err(e) => {
                            first_error.get_or_insert(Error::io(format!("rmdir {}", d.display()), e));
                            break;
                        }
                    }
                }
                explain!("rmdir {}", d.display());
            }
            let _ = std::fs::remove_dir(d.parent().unwrap()); // boxkit/, only if now empty
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// mkdir that is content with a directory another process made first; true if we made it.
fn mkdir_exists_ok(dir: &Path) -> Result<bool> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::io(format!("mkdir {}", dir.display()), e)),
    }
}

/// mkdir of a group below boxkit/: another process removing an empty boxkit/ at the same
/// moment makes it vanish, so make it again and retry.
fn mkdir_child(dir: &Path) -> Result<()> {
    for _ in 0..20 {
        match std::fs::create_dir(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                mkdir_exists_ok(dir.parent().unwrap())?;
            }
            r => return r.ctx(|| format!("mkdir {}", dir.display())),
        }
    }
    Err(Error::new(crate::Kind::System, format!("mkdir {}: its parent keeps vanishing", dir.display())))
}

/// A copy of the parent's cpuset.cpus and cpuset.mems: a v1 cpuset group starts empty and
/// accepts no process until both are set.
fn inherit_cpuset(dir: &Path) -> Result<()> {
    let parent = dir.parent().unwrap();
    for f in ["cpuset.cpus", "cpuset.mems"] {
        if !std::fs::read_to_string(dir.join(f)).unwrap_or_default().trim().is_empty() {
            continue;
        }
        let v = std::fs::read_to_string(parent.join(f)).ctx(|| format!("read {}", parent.join(f).display()))?;
        write(&dir.join(f), v.trim())?;
    }
    Ok(())
}

fn key_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// What `--stats` shows.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct Stats {
    pub memory_bytes: Option<u64>,
    pub memory_peak_bytes: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    pub pids: Option<u64>,
    pub cpu_usec: Option<u64>,
    pub throttled_periods: Option<u64>,
    pub throttled_usec: Option<u64>,
    pub oom_kills: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const SELF_V1: &str = "8:pids:/\n4:memory:/jail/abc\n1:cpu,cpuacct:/\n0::/\n";

    fn fake_v2(dir: &Path, controllers: &str) -> String {
        let m = dir.join("sys/fs/cgroup");
        std::fs::create_dir_all(&m).unwrap();
        std::fs::write(m.join("cgroup.controllers"), controllers).unwrap();
        "30 23 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n".to_string()
    }

    #[test]
    fn detects_v2_first_and_v1_in_a_hybrid() {
        let t = tempfile::tempdir().unwrap();
        let mi = fake_v2(t.path(), "cpuset cpu io memory pids");
        assert_eq!(detect(&mi, "0::/\n", t.path()).unwrap(), Hierarchy::V2 { mount: t.path().join("sys/fs/cgroup") });
        // A hybrid host: the v2 mount offers no controllers, so v1 it is, in the caller's own groups.
        std::fs::create_dir_all(t.path().join("sys/fs/cgroup/unified")).unwrap();
        std::fs::write(t.path().join("sys/fs/cgroup/unified/cgroup.controllers"), "hugetlb\n").unwrap();
        let Hierarchy::V1 { controllers } = detect(HYBRID, SELF_V1, t.path()).unwrap() else { panic!() };
        assert_eq!(controllers["memory"], t.path().join("sys/fs/cgroup/memory/jail/abc"));
        assert_eq!(controllers["cpu"], t.path().join("sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(controllers["cpuacct"], t.path().join("sys/fs/cgroup/cpu,cpuacct"));
        assert!(detect("", "", t.path()).is_err());
    }

    #[test]
    fn v2_limits_land_in_the_right_files() {
        let t = tempfile::tempdir().unwrap();
        let mi = fake_v2(t.path(), "cpuset cpu io memory pids");
        let h = detect(&mi, "0::/\n", t.path()).unwrap();
        // The fake kernel: boxkit/ offers what the root offers.
        let boxkit = t.path().join("sys/fs/cgroup/boxkit");
        std::fs::create_dir_all(&boxkit).unwrap();
        std::fs::write(boxkit.join("cgroup.controllers"), "cpuset cpu io memory pids").unwrap();
        let l = Limits { memory: Some(64 << 20), memory_swap: Some(96 << 20), cpus: Some(0.5), cpu_shares: Some(1024), pids: Some(20), io_weight: Some(300), cpuset: Some("0".into()), ..Default::default() };
        let cg = Cgroup::create(&h, "c1", &l).unwrap();
        let d = boxkit.join("c1");
        let r = |f: &str| std::fs::read_to_string(d.join(f)).unwrap();
        assert_eq!(std::fs::read_to_string(boxkit.join("cgroup.subtree_control")).unwrap(), "+memory +cpu +pids +io +cpuset");
        assert_eq!((r("memory.max"), r("memory.swap.max"), r("cpu.max")), ("67108864".into(), "33554432".into(), "50000 100000".into()));
        assert_eq!((r("cpu.weight"), r("pids.max"), r("io.weight"), r("cpuset.cpus")), ("39".into(), "20".into(), "default 300".into(), "0".into()));
        assert!(Cgroup::create(&h, "c1", &l).unwrap_err().to_string().contains("already exists"));
        std::fs::write(d.join("memory.events"), "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n").unwrap();
        assert_eq!(cg.oom_kills(), 1);
        assert!(Cgroup::named(&h, "../escape").is_err());
    }

    #[test]
    fn sizes_and_weights() {
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("lots").is_err());
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(weight_to_shares(39), 998); // the weight scale is coarser than shares
    }
}
