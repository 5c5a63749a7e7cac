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
//! Everything takes the filesystem root as a parameter, so tests run on a fake tree
//! (`cgroup/tests.rs`); usage figures are in `cgroup/stats.rs`.

use crate::error::{Context, Error, Result};
use crate::explain;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod limits;
mod stats;
#[cfg(test)]
mod tests;

pub use limits::{io_weight_effective, io_weight_to_bfq, parse_size, shares_to_weight, weight_to_shares, Limits};
pub use stats::Stats;

/// The controllers boxkit sets limits with.
pub const CONTROLLERS: [&str; 5] = ["memory", "cpu", "pids", "io", "cpuset"];

/// Without these three, a hierarchy is of no use to boxkit.
const REQUIRED: [&str; 3] = ["memory", "cpu", "pids"];

/// Where the cgroup hierarchies are mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// The unified hierarchy: one tree for every controller.
    V2 { mount: PathBuf },
    /// One mount per controller (or per group of controllers, like `cpu,cpuacct`); the path
    /// is where boxkit's groups go in that hierarchy (the caller's own group).
    V1 { controllers: BTreeMap<String, PathBuf> },
}

/// mountinfo escapes space, tab, newline and backslash in paths as `\ooo` octal.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn words(text: &str) -> Vec<&str> {
    text.split_whitespace().collect()
}

/// The fields boxkit reads from one line of /proc/PID/mountinfo (proc(5)):
/// `id parent major:minor root mountpoint options [optional…] - fstype source superopts`.
/// `mount_point` is as the kernel wrote it, with `\ooo` escapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountInfoLine<'a> {
    pub root: &'a str,
    pub mount_point: &'a str,
    pub fstype: &'a str,
    pub super_opts: &'a str,
}

/// Split one mountinfo line; `None` for a line without the fields.
pub fn parse_mountinfo_line(line: &str) -> Option<MountInfoLine<'_>> {
    let (pre, post) = line.split_once(" - ")?;
    let (pre, post) = (words(pre), words(post));
    if pre.len() < 5 || post.len() < 3 {
        return None;
    }
    Some(MountInfoLine { root: pre[3], mount_point: pre[4], fstype: post[0], super_opts: post[2] })
}

/// One line of /proc/PID/cgroup (cgroups(7)): `hierarchy-id:controller,list:path`, and
/// `0::path` for the unified hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcCgroupLine<'a> {
    pub id: &'a str,
    pub controllers: &'a str,
    pub path: &'a str,
}

impl ProcCgroupLine<'_> {
    /// The line of the unified (v2) hierarchy.
    pub fn is_v2(&self) -> bool {
        self.id == "0" && self.controllers.is_empty()
    }
    /// The hierarchy has `controller` bound to it.
    pub fn has(&self, controller: &str) -> bool {
        self.controllers.split(',').any(|c| c == controller)
    }
}

/// Split one /proc/PID/cgroup line; `None` for a line without its three fields.
pub fn parse_cgroup_line(line: &str) -> Option<ProcCgroupLine<'_>> {
    let mut parts = line.splitn(3, ':');
    Some(ProcCgroupLine { id: parts.next()?, controllers: parts.next()?, path: parts.next()? })
}

// ANCHOR: detect
/// Find the hierarchies from the text of /proc/self/mountinfo and /proc/self/cgroup; paths
/// are taken below `fs_root` (`/` on a real system).
pub fn detect(mountinfo: &str, self_cgroup: &str, fs_root: &Path) -> Result<Hierarchy> {
    let under = |p: &str| fs_root.join(p.trim_start_matches('/'));
    let mut v2 = Vec::new();
    let mut v1 = BTreeMap::new();
    for line in mountinfo.lines() {
        let Some(m) = parse_mountinfo_line(line) else { continue };
        let (mountpoint, fstype, superopts) = (unescape(m.mount_point), m.fstype, m.super_opts);
        match fstype {
            "cgroup2" => v2.push(under(&mountpoint)),
            "cgroup" => {
                for opt in superopts.split(',') {
                    if ["memory", "cpu", "cpuacct", "pids", "blkio", "cpuset", "freezer", "devices"].contains(&opt) {
                        // The caller's own group in this hierarchy, from /proc/self/cgroup
                        // (hierarchy-id:controller,list:path).
                        let own = self_cgroup
                            .lines()
                            .filter_map(parse_cgroup_line)
                            .find(|l| l.has(opt))
                            .map(|l| l.path.to_string())
                            .unwrap_or_else(|| "/".into());
                        v1.insert(opt.to_string(), under(&mountpoint).join(own.trim_start_matches('/')));
                    }
                }
            }
            _ => {}
        }
    }
    // A cgroup2 mount counts only if its root offers the controllers: on a "hybrid" host
    // it is mounted (at /sys/fs/cgroup/unified) with every controller still bound to v1.
    for mount in v2 {
        let offered = std::fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
        if REQUIRED.iter().all(|c| words(&offered).contains(c)) {
            return Ok(Hierarchy::V2 { mount });
        }
    }
    if !v1.is_empty() {
        return Ok(Hierarchy::V1 { controllers: v1 });
    }
    Err(Error::not_found("no usable cgroup hierarchy: no cgroup2 mount with memory, cpu and pids, and no cgroup v1 mounts"))
}
// ANCHOR_END: detect

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
    if let Some(cg) = boxkit_group(h, path)? {
        return Ok(cg.procs_files().into_iter().filter(|p| p.exists()).collect());
    }
    Ok(vec![path.join("cgroup.procs")])
}

/// Whether `dir`'s parent is a `boxkit/` group.
pub fn in_boxkit(dir: &Path) -> bool {
    dir.parent().and_then(|p| p.file_name()).map(|n| n == "boxkit").unwrap_or(false)
}

/// The group at `path` if boxkit created it (`…/boxkit/NAME` in every hierarchy).
pub fn boxkit_group(h: &Hierarchy, path: &Path) -> Result<Option<Cgroup>> {
    let (true, Some(name)) = (in_boxkit(path), path.file_name().and_then(|n| n.to_str())) else { return Ok(None) };
    let cg = Cgroup::named(h, name)?;
    Ok(cg.dirs().iter().any(|(_, d)| d == path).then_some(cg))
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

fn controllers_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default()
}

/// The controllers a v2 group hands to its children (its `cgroup.subtree_control`): what
/// every child's `cgroup.controllers` lists.
fn enabled_below(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    text.split_whitespace().map(|c| c.trim_start_matches('+').to_string()).collect()
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

    /// Each directory once: co-mounted v1 controllers (`cpu,cpuacct`) share one.
    pub fn unique_dirs(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = Vec::new();
        for (_, d) in self.dirs() {
            if !v.contains(&d) {
                v.push(d);
            }
        }
        v
    }

    /// The `cgroup.procs` files a process writes its pid to, to join the group.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.unique_dirs().into_iter().map(|d| d.join("cgroup.procs")).collect()
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
            Hierarchy::V2 { mount } => create_v2(mount, name)?,
            Hierarchy::V1 { .. } => {
                let mut made = Vec::new();
                for (ctl, dir) in cg.dirs() {
                    let parent = dir.parent().unwrap();
                    if !made.contains(&dir) {
                        mkdir_exists_ok(parent)?;
                        mkdir_child(&dir)?;
                        made.push(dir.clone());
                    }
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

    /// The group's directory for `controller`, if this kernel gives the group that
    /// controller (on v2: it is listed in the group's cgroup.controllers).
    fn need(&self, controller: &str, flag: &str) -> Result<PathBuf> {
        let v1_name = if controller == "io" { "blkio" } else { controller };
        match self.dir_of(v1_name) {
            Some(d) if !self.is_v2() || enabled_below(d.parent().unwrap()).iter().any(|c| c == controller) => Ok(d),
            Some(d) => Err(Error::not_found(format!(
                "{flag}: the {controller} controller is not available in {} (enable it in the parent's cgroup.subtree_control)",
                d.parent().unwrap_or(&d).display()
            ))),
            None => Err(Error::not_found(format!("{flag}: the {v1_name} controller is not mounted (no cgroup v1 hierarchy for it)"))),
        }
    }

    /// Move a process into the group.
    pub fn add(&self, pid: i32) -> Result<()> {
        for p in self.procs_files() {
            write(&p, &pid.to_string())?;
        }
        Ok(())
    }

    /// The processes in the group now.
    pub fn pids(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self
            .procs_files()
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .flat_map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect::<Vec<i32>>())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    // ANCHOR: kill_all
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
    // ANCHOR_END: kill_all

    /// Remove the group (its processes must be gone), and boxkit's parent group when empty.
    pub fn remove(&self) -> Result<()> {
        let mut first_error = None;
        for d in self.unique_dirs() {
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

// ANCHOR: create_v2
/// Make `boxkit/NAME` at the top of a v2 hierarchy, with the controllers handed down to it.
/// boxkit/ itself never holds a process (v2's "no internal processes" rule), and another
/// boxkit process may remove it when its own group goes: a `NAME` made in a boxkit/ that
/// was removed and made again a moment before lacks the controllers, so it is made again.
fn create_v2(mount: &Path, name: &str) -> Result<()> {
    let parent = mount.join("boxkit");
    let dir = parent.join(name);
    for _ in 0..20 {
        mkdir_exists_ok(&parent)?;
        let offered = controllers_of(&parent);
        if !REQUIRED.iter().all(|c| words(&offered).contains(c)) {
            let _ = std::fs::remove_dir(&parent); // only if empty (we may have made it)
            return Err(Error::invalid(format!(
                "{}: the memory, cpu and pids controllers are not all enabled in {} (it offers: {})",
                parent.display(),
                mount.join("cgroup.subtree_control").display(),
                offered.trim()
            )));
        }
        let enable: Vec<String> = CONTROLLERS.iter().filter(|c| words(&offered).contains(c)).map(|c| format!("+{c}")).collect();
        match std::fs::write(parent.join("cgroup.subtree_control"), enable.join(" ")) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue, // boxkit/ vanished
            r => r.ctx(|| format!("write {:?} to {}", enable.join(" "), parent.join("cgroup.subtree_control").display()))?,
        }
        explain!("write {:?} > {}", enable.join(" "), parent.join("cgroup.subtree_control").display());
        match std::fs::create_dir(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            r => r.ctx(|| format!("mkdir {}", dir.display()))?,
        }
        let enabled = enabled_below(&parent);
        if REQUIRED.iter().all(|c| enabled.iter().any(|e| e == c)) {
            explain!("mkdir {} (a new cgroup)", dir.display());
            return Ok(());
        }
        std::fs::remove_dir(&dir).ctx(|| format!("rmdir {}", dir.display()))?;
    }
    Err(Error::new(crate::Kind::System, format!("mkdir {}: its parent keeps vanishing", dir.display())))
}
// ANCHOR_END: create_v2

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
