//! The walls box-spawn puts up beyond namespaces, and `--privileged`, which takes them down:
//! Docker's capability set, its seccomp profile, runc's masked and read-only paths, a device
//! filter in the container's own cgroup, a cgroup namespace and a read-only /sys/fs/cgroup.
//!
//! Reference: Docker's defaults (moby `oci/caps/defaults.go`, `oci/defaults.go`,
//! `profiles/seccomp/default.json`) and `docker run --privileged` (docs.docker.com "Runtime
//! privilege and Linux capabilities"); runc's `libcontainer/specconv` (default masked and
//! read-only paths, allowed devices); cgroup_namespaces(7); the OCI runtime spec
//! config-linux.md "seccomp".
//!
//! Two halves: the host side runs before clone ([`ContainerCgroup::setup`], [`prepare`]:
//! a cgroup with its device filter, and a [`Plan`]); the child side runs the plan
//! ([`enter_cgroup_ns`] after joining the cgroup, [`mount_cgroup_tree`] after pivot_root,
//! and the seccomp filter last before execve).

use crate::caps;
use crate::cgroup::{self, Cgroup, Hierarchy};
use crate::devices;
use crate::error::{Context, Error, Result};
use crate::explain;
use crate::runtime::{Capabilities, Spec, DEFAULT_CAPABILITIES, MASKED_PATHS, READONLY_PATHS};
use crate::seccomp::Filter;
use nix::mount::{mount, MsFlags};
use std::path::{Path, PathBuf};

/// What the caller asked for (`--privileged`, `--seccomp unconfined`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub privileged: bool,
    pub seccomp_unconfined: bool,
}

/// What the child does beyond config.json. The default is nothing beyond it (and image
/// device nodes stay inert: the rootfs is bound `nodev`).
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Installed last before execve.
    pub seccomp: Option<Filter>,
    /// unshare(CLONE_NEWCGROUP) once in the container's cgroup.
    pub cgroupns: bool,
    /// The cgroup filesystems to mount at /sys/fs/cgroup (empty: none).
    pub cgroup_mounts: Vec<CgroupMount>,
    pub cgroup_writable: bool,
    /// A device filter stands between the container and devices: device nodes in the
    /// image may stay live (no `nodev` on the rootfs).
    pub image_devices: bool,
}

/// One cgroup hierarchy as the host mounts it below /sys/fs/cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    /// `""` for a cgroup2 mount at /sys/fs/cgroup itself, else the directory name (`memory`).
    pub name: String,
    pub fstype: String,
    /// v1: the controllers and `name=` of the hierarchy (`cpu,cpuacct`, `name=systemd`).
    pub options: String,
}

// ANCHOR: container_cgroup
/// The cgroup the container runs in: one box-spawn creates (`boxkit/spawn-<pid>`, removed
/// when this is dropped) or one given with `--cgroup`. Its device filter is written only into
/// a group boxkit created.
pub struct ContainerCgroup {
    procs: Vec<PathBuf>,
    created: Option<Cgroup>,
    /// The host's cgroup mounts, read with the rest (`None`: read them in [`prepare`]).
    cgroup_mounts: Option<Vec<CgroupMount>>,
    /// A device filter is in place: the container may hold CAP_MKNOD.
    pub devices_filtered: bool,
}

impl ContainerCgroup {
    /// No cgroup at all (no device filter either).
    pub fn none() -> ContainerCgroup {
        ContainerCgroup { procs: Vec::new(), created: None, cgroup_mounts: None, devices_filtered: false }
    }

    /// Join `given`, or create a group of our own; then, unless `privileged`, install the
    /// device filter: v1 `devices.deny`/`devices.allow`, v2 a BPF program.
    pub fn setup(given: Option<&Path>, privileged: bool) -> Result<ContainerCgroup> {
        // Each file is read once: mountinfo for the hierarchies and for /sys/fs/cgroup in
        // the container, /proc/self/cgroup for our own group.
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ctx(|| "read /proc/self/mountinfo");
        let mut me = ContainerCgroup::none();
        me.cgroup_mounts = mountinfo.as_deref().ok().map(cgroup_mounts_in);
        let host = mountinfo.and_then(|mi| {
            let own = std::fs::read_to_string("/proc/self/cgroup").ctx(|| "read /proc/self/cgroup")?;
            Ok((cgroup::detect(&mi, &own, Path::new("/"))?, own))
        });
        let (h, own) = match (host, given) {
            (Ok(host), _) => host,
            (Err(e), Some(_)) => return Err(e),
            (Err(e), None) => {
                explain!("no cgroup for the container ({e}): no device filter, so no CAP_MKNOD");
                return Ok(me);
            }
        };
        let dirs = match given {
            Some(p) => {
                me.procs = cgroup::procs_files(&h, p)?;
                cgroup::boxkit_group(&h, p)?.map(|c| c.dirs()).unwrap_or_default()
            }
            None => match enclosing_boxkit_group(&h, &own) {
                // Already in a group boxkit made (`box-cgroup-limit -- box-spawn B`): stay
                // there, so its limits, its OOM count and its --stats cover the container.
                enclosing if !enclosing.is_empty() => {
                    explain!("already in a boxkit cgroup: the container stays in it");
                    enclosing
                }
                _ => match create_own(&h) {
                    Ok(cg) => {
                        me.procs = cg.dirs().into_iter().map(|(_, d)| d.join("cgroup.procs")).filter(|p| p.exists()).collect();
                        let dirs = cg.dirs();
                        me.created = Some(cg);
                        dirs
                    }
                    Err(e) => {
                        explain!("no cgroup for the container ({e}): no device filter, so no CAP_MKNOD");
                        return Ok(me);
                    }
                },
            },
        };
        if privileged {
            explain!("--privileged: no device filter");
            return Ok(me);
        }
        if let Some((_, dir)) = dirs.iter().find(|(c, d)| c == "devices" && d.exists()) {
            devices::apply_v1(dir, &devices::DEFAULT_ALLOWED)?;
            me.devices_filtered = true;
        } else if let Some((_, dir)) = dirs.iter().find(|(c, d)| c == "unified" && d.exists()) {
            match devices::attach_v2(dir, &devices::DEFAULT_ALLOWED) {
                Ok(()) => me.devices_filtered = true,
                Err(e) => explain!("no device filter ({e}): no CAP_MKNOD"),
            }
        }
        Ok(me)
    }

    /// The `cgroup.procs` files the child writes "0" into.
    pub fn procs(&self) -> Vec<PathBuf> {
        self.procs.clone()
    }
}

impl Drop for ContainerCgroup {
    /// Remove the group box-spawn created (the PID namespace is gone, so is every process
    /// of the container; kill_all is for what escaped into the group by other means).
    fn drop(&mut self) {
        if let Some(cg) = self.created.take() {
            let _ = cg.kill_all();
            let _ = cg.remove();
        }
    }
}

/// `boxkit/spawn-<our pid>`. A group of that name can only be left by a box-spawn that was
/// killed and whose pid we now have: boxkit's own, so it is emptied and removed first.
fn create_own(h: &Hierarchy) -> Result<Cgroup> {
    let name = format!("spawn-{}", std::process::id());
    let old = Cgroup::named(h, &name)?;
    if old.dirs().iter().any(|(_, d)| d.exists()) {
        old.kill_all()?;
        old.remove()?;
    }
    Cgroup::create(h, &name, &cgroup::Limits::default())
}
// ANCHOR_END: container_cgroup

/// The directories, per hierarchy, of our own cgroup where it is a group boxkit created
/// (its parent is `boxkit/`); `self_cgroup` is the text of /proc/self/cgroup.
fn enclosing_boxkit_group(h: &Hierarchy, self_cgroup: &str) -> Vec<(String, PathBuf)> {
    match h {
        Hierarchy::V1 { controllers } => controllers.iter().filter(|(_, d)| cgroup::in_boxkit(d)).map(|(c, d)| (c.clone(), d.clone())).collect(),
        Hierarchy::V2 { mount } => {
            self_cgroup
                .lines()
                .filter_map(cgroup::parse_cgroup_line)
                .find(|l| l.is_v2())
                .map(|l| mount.join(l.path.trim_start_matches('/')))
                .filter(|d| cgroup::in_boxkit(d))
                .map(|d| vec![("unified".to_string(), d)])
                .unwrap_or_default()
        }
    }
}

/// Every capability box-spawn itself may pass on: all the kernel knows, less any already
/// missing from our own bounding set (a host that runs us with fewer).
fn all_capabilities() -> Vec<String> {
    (0..=caps::last_cap().min(caps::NAMES.len() as u32 - 1))
        // SAFETY: integer-only prctl; 1 when the capability is in our bounding set.
        .filter(|&c| unsafe { libc::prctl(libc::PR_CAPBSET_READ, c as libc::c_ulong, 0, 0, 0) } == 1)
        .map(|c| caps::NAMES[c as usize].to_string())
        .collect()
}

fn union(config: &mut Vec<String>, defaults: &[&str]) {
    for d in defaults {
        if !config.iter().any(|c| c == d) {
            config.push(d.to_string());
        }
    }
}

// ANCHOR: prepare
/// Adjust the spec to the hardening asked for, and say what the child must do beyond it.
///
/// Hardened (the default): the capabilities of config.json (Docker's set when it names
/// none), less CAP_MKNOD when no device filter is in place; runc's masked and read-only
/// paths added to the config's; Docker's seccomp profile; a cgroup namespace and a
/// read-only /sys/fs/cgroup. `--privileged`: every capability, no seccomp, no masked or
/// read-only paths, /sys and /sys/fs/cgroup writable, no device filter.
pub fn prepare(spec: &mut Spec, o: &Options, cg: &ContainerCgroup) -> Result<Plan> {
    let linux = spec.linux.get_or_insert_with(Default::default);
    let asks_cgroupns = linux.namespaces.iter().any(|n| n.kind == "cgroup");
    let config_seccomp = linux.extra.get("seccomp").filter(|v| !v.is_null()).cloned();
    let process = spec.process.as_mut().ok_or_else(|| Error::invalid("config.json has no process"))?;
    let mut plan = Plan { cgroupns: !o.privileged || asks_cgroupns, cgroup_writable: o.privileged, ..Plan::default() };
    if plan.cgroupns {
        plan.cgroup_mounts = cg.cgroup_mounts.clone().unwrap_or_else(host_cgroup_mounts);
    }
    if o.privileged {
        let all = all_capabilities();
        process.capabilities =
            Some(Capabilities { bounding: all.clone(), effective: all.clone(), permitted: all, inheritable: vec![], ambient: vec![] });
        linux.masked_paths.clear();
        linux.readonly_paths.clear();
        for m in spec.mounts.iter_mut().filter(|m| m.kind.as_deref() == Some("sysfs")) {
            m.options.retain(|o| o != "ro");
        }
        plan.image_devices = true;
        explain!("--privileged: all capabilities, no seccomp, no masked or read-only paths, /sys writable");
        return Ok(plan);
    }
    let caps = process.capabilities.get_or_insert_with(|| {
        let d: Vec<String> = DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()).collect();
        Capabilities { bounding: d.clone(), effective: d.clone(), permitted: d, inheritable: vec![], ambient: vec![] }
    });
    if !cg.devices_filtered {
        for set in [&mut caps.bounding, &mut caps.effective, &mut caps.permitted, &mut caps.inheritable, &mut caps.ambient] {
            set.retain(|c| !c.eq_ignore_ascii_case("CAP_MKNOD"));
        }
    }
    plan.image_devices = cg.devices_filtered;
    union(&mut linux.masked_paths, &MASKED_PATHS);
    union(&mut linux.readonly_paths, &READONLY_PATHS);
    plan.seccomp = if o.seccomp_unconfined || is_unconfined(config_seccomp.as_ref())? {
        explain!("seccomp: unconfined");
        None
    } else {
        Some(Filter::docker_default(caps::mask(&caps.bounding)?))
    };
    Ok(plan)
}
// ANCHOR_END: prepare

/// config.json `linux.seccomp`: absent or null gets box-spawn's default; a profile that
/// allows everything means unconfined; any other profile is refused rather than replaced
/// by a different one.
fn is_unconfined(profile: Option<&serde_json::Value>) -> Result<bool> {
    let Some(p) = profile else { return Ok(false) };
    let allow_all = p.get("defaultAction").and_then(|a| a.as_str()) == Some("SCMP_ACT_ALLOW")
        && p.get("syscalls").map(|s| s.is_null() || s.as_array().map(|a| a.is_empty()).unwrap_or(false)).unwrap_or(true);
    if allow_all {
        return Ok(true);
    }
    Err(Error::invalid(
        "config.json linux.seccomp: box-spawn does not read seccomp profiles; remove it to get Docker's default filter, or use --seccomp unconfined",
    ))
}

/// The cgroup filesystems mounted at and directly below /sys/fs/cgroup, from mountinfo.
pub fn host_cgroup_mounts() -> Vec<CgroupMount> {
    cgroup_mounts_in(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
}

/// The same, from the text of /proc/self/mountinfo.
fn cgroup_mounts_in(mi: &str) -> Vec<CgroupMount> {
    let known = std::fs::read_to_string("/proc/cgroups").unwrap_or_default();
    let controllers: Vec<&str> = known.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split_whitespace().next()).collect();
    parse_cgroup_mounts(mi, &controllers)
}

fn parse_cgroup_mounts(mountinfo: &str, controllers: &[&str]) -> Vec<CgroupMount> {
    let mut v = Vec::new();
    for line in mountinfo.lines() {
        let Some(m) = cgroup::parse_mountinfo_line(line) else { continue };
        if !(m.fstype == "cgroup" || m.fstype == "cgroup2") {
            continue;
        }
        // The raw field: a name with an escape (`\ooo`) is left out.
        let name = match m.mount_point.strip_prefix("/sys/fs/cgroup") {
            Some("") => "",
            Some(rest) => match rest.strip_prefix('/') {
                Some(n) if !n.is_empty() && !n.contains('/') && !n.contains('\\') && n != "." && n != ".." => n,
                _ => continue,
            },
            None => continue,
        };
        let options = if m.fstype == "cgroup" {
            m.super_opts.split(',').filter(|o| controllers.contains(o) || o.starts_with("name=")).collect::<Vec<_>>().join(",")
        } else {
            String::new()
        };
        v.retain(|m: &CgroupMount| m.name != name); // the last mount on a path is the one seen
        v.push(CgroupMount { name: name.to_string(), fstype: m.fstype.to_string(), options });
    }
    // A cgroup2 mount at /sys/fs/cgroup itself hides anything below it.
    if v.iter().any(|m| m.name.is_empty() && m.fstype == "cgroup2") {
        v.retain(|m| m.name.is_empty());
    }
    v.retain(|m| !(m.name.is_empty() && m.fstype == "cgroup"));
    v
}

// ANCHOR: child_side
/// In the child, once it is in the container's cgroup: a new cgroup namespace rooted there,
/// so /proc/self/cgroup says `0::/` and a cgroup mount shows only the container's group.
pub fn enter_cgroup_ns(plan: &Plan) -> Result<()> {
    if plan.cgroupns {
        explain!("unshare(CLONE_NEWCGROUP): the current cgroup becomes the namespace's root");
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP).ctx(|| "unshare(CLONE_NEWCGROUP)")?;
    }
    Ok(())
}

/// After pivot_root, on the container's fresh sysfs: /sys/fs/cgroup as runc makes it.
/// v2: the cgroup2 filesystem, read-only. v1: a tmpfs holding each hierarchy read-only,
/// then the tmpfs itself made read-only. Inside the cgroup namespace each shows the
/// container's own group as its root.
pub fn mount_cgroup_tree(plan: &Plan) -> Result<()> {
    let base = Path::new("/sys/fs/cgroup");
    if plan.cgroup_mounts.is_empty() || !std::fs::symlink_metadata(base).map(|m| m.is_dir()).unwrap_or(false) {
        return Ok(());
    }
    // Only on the sysfs mounted a moment ago, never on a directory of the image.
    let on_sysfs = nix::sys::statfs::statfs("/sys").map(|s| s.filesystem_type() == nix::sys::statfs::SYSFS_MAGIC).unwrap_or(false);
    if !on_sysfs {
        return Ok(());
    }
    let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if !plan.cgroup_writable {
        flags |= MsFlags::MS_RDONLY;
    }
    let ro = if plan.cgroup_writable { "rw" } else { "ro" };
    if let Some(m) = plan.cgroup_mounts.iter().find(|m| m.name.is_empty()) {
        explain!("mount cgroup2 on /sys/fs/cgroup ({ro})");
        return mount(Some("cgroup"), base, Some(m.fstype.as_str()), flags, None::<&str>).ctx(|| "mount cgroup2 on /sys/fs/cgroup");
    }
    mount(Some("tmpfs"), base, Some("tmpfs"), flags - MsFlags::MS_RDONLY, Some("mode=755,size=64k"))
        .ctx(|| "mount tmpfs on /sys/fs/cgroup")?;
    for m in &plan.cgroup_mounts {
        let dir = base.join(&m.name);
        std::fs::create_dir(&dir).ctx(|| format!("mkdir {}", dir.display()))?;
        let data = if m.options.is_empty() { None } else { Some(m.options.as_str()) };
        if let Err(e) = mount(Some("cgroup"), &dir, Some(m.fstype.as_str()), flags, data) {
            // A hierarchy the kernel will not show again here stays an empty directory.
            explain!("skip {} ({}): {e}", dir.display(), m.options);
        }
    }
    explain!("/sys/fs/cgroup: a tmpfs with {} hierarchies, {ro}", plan.cgroup_mounts.len());
    if !plan.cgroup_writable {
        mount(None::<&str>, base, None::<&str>, flags | MsFlags::MS_REMOUNT, None::<&str>).ctx(|| "remount /sys/fs/cgroup read-only")?;
    }
    Ok(())
}
// ANCHOR_END: child_side

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices,release_agent=/x
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
50 23 0:40 / /mnt/other rw,relatime - cgroup cgroup rw,memory
";

    #[test]
    fn cgroup_mounts_from_mountinfo() {
        let ctl = ["cpu", "cpuacct", "devices", "memory"];
        let v = parse_cgroup_mounts(HYBRID, &ctl);
        let got: Vec<(&str, &str)> = v.iter().map(|m| (m.name.as_str(), m.options.as_str())).collect();
        assert_eq!(got, [("cpu,cpuacct", "cpu,cpuacct"), ("devices", "devices"), ("systemd", "name=systemd"), ("unified", "")]);
        let v2 = parse_cgroup_mounts("30 23 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n", &ctl);
        assert_eq!(v2, [CgroupMount { name: String::new(), fstype: "cgroup2".into(), options: String::new() }]);
    }

    fn spec() -> Spec {
        let t = tempfile::tempdir().unwrap();
        let config: crate::oci::ImageConfig =
            serde_json::from_str(r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{}}"#).unwrap();
        crate::runtime::spec_from_image(&config, t.path(), "h").unwrap()
    }

    #[test]
    fn mknod_only_with_a_device_filter() {
        let mut s = spec();
        let plan = prepare(&mut s, &Options::default(), &ContainerCgroup::none()).unwrap();
        let c = s.process.as_ref().unwrap().capabilities.clone().unwrap();
        assert!(!c.bounding.iter().any(|x| x == "CAP_MKNOD") && !plan.image_devices);
        assert!(plan.seccomp.is_some() && plan.cgroupns);
        assert!(s.linux.as_ref().unwrap().masked_paths.iter().any(|p| p == "/sys/devices/virtual/powercap"));

        let mut s = spec();
        let mut filtered = ContainerCgroup::none();
        filtered.devices_filtered = true;
        let plan = prepare(&mut s, &Options::default(), &filtered).unwrap();
        let c = s.process.as_ref().unwrap().capabilities.clone().unwrap();
        assert_eq!(caps::mask(&c.bounding).unwrap(), 0xa80425fb, "Docker's default set");
        assert!(plan.image_devices);
    }

    #[test]
    fn privileged_and_unconfined() {
        let mut s = spec();
        let plan = prepare(&mut s, &Options { privileged: true, ..Default::default() }, &ContainerCgroup::none()).unwrap();
        assert!(plan.seccomp.is_none() && plan.cgroup_writable);
        assert!(s.linux.as_ref().unwrap().masked_paths.is_empty());
        assert!(!s.mounts.iter().find(|m| m.destination == "/sys").unwrap().options.contains(&"ro".to_string()));
        assert_eq!(s.process.unwrap().capabilities.unwrap().bounding, all_capabilities());
        assert!(all_capabilities().len() > 30);

        let mut s = spec();
        let plan = prepare(&mut s, &Options { seccomp_unconfined: true, ..Default::default() }, &ContainerCgroup::none()).unwrap();
        assert!(plan.seccomp.is_none() && !plan.cgroup_writable);

        let mut s = spec();
        s.linux.as_mut().unwrap().extra.insert("seccomp".into(), serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW"}));
        assert!(prepare(&mut s, &Options::default(), &ContainerCgroup::none()).unwrap().seccomp.is_none());
        let mut s = spec();
        s.linux.as_mut().unwrap().extra.insert("seccomp".into(), serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}));
        assert!(prepare(&mut s, &Options::default(), &ContainerCgroup::none()).unwrap_err().to_string().contains("linux.seccomp"));
    }
}
