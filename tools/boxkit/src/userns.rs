//! User namespaces: a container whose root is an ordinary, unprivileged id on the host.
//!
//! Reference: user_namespaces(7) ("User and group ID mappings: uid_map and gid_map", the
//! `/proc/PID/setgroups` file, "Interaction of user namespaces and other types of
//! namespaces"), newuidmap(1), newgidmap(1), subuid(5), subgid(5); the OCI runtime spec,
//! config-linux.md "User namespace mappings" (`linux.uidMappings`, `linux.gidMappings`).
//!
//! A process in a new user namespace holds every capability *in that namespace* (and over
//! the namespaces it owns: its mounts, its hostname, its network) and none outside. Its ids
//! mean nothing until a process outside writes the maps, once:
//!
//! ```text
//! box-spawn (host ids)                         child
//! ────────────────────                         ─────
//! clone(CLONE_NEWUSER|CLONE_NEWNS|…) ────────▶ read the sync pipe (blocks)
//! write /proc/PID/uid_map and gid_map
//!   root: directly, any range
//!   a user: newuidmap/newgidmap (setuid helpers
//!   that check /etc/subuid, /etc/subgid), or
//!   "deny" > setgroups + its own id only
//! write one byte on the sync pipe ───────────▶ setresgid(0), setresuid(0): root in here
//!                                              mounts, pivot_root, capabilities, execve
//! ```
//!
//! Files keep host ids on disk: a file the container's root creates belongs to the host id
//! its uid 0 maps to, and a host file owned by an unmapped id (host root's, say) shows as
//! `nobody` (65534) inside and gets no help from the container's capabilities.

use crate::error::{Context, Error, Result};
use crate::explain;
use crate::runtime::{Namespace, Spec};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

// ANCHOR: idmap
/// One line of a uid_map or gid_map: ids `container_id ..+size` inside are
/// `host_id ..+size` outside. Serialized as the runtime spec's `uidMappings` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    #[serde(rename = "containerID")]
    pub container_id: u32,
    #[serde(rename = "hostID")]
    pub host_id: u32,
    pub size: u32,
}

/// The uid and gid maps of one user namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mapping {
    pub uids: Vec<IdMap>,
    pub gids: Vec<IdMap>,
}
// ANCHOR_END: idmap

/// The range root's containers get when root has no line in /etc/subuid: above what
/// useradd hands out to users (its default `SUB_UID_MAX` is 600100000), so it overlaps no
/// user's subordinate ids.
pub const ROOT_DEFAULT_RANGE: (u32, u32) = (1_000_000_000, 65536);

/// What `--userns` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Root: root's /etc/subuid range, else [`ROOT_DEFAULT_RANGE`]. A user: its own id as
    /// 0, then its /etc/subuid range from 1 (as rootless Podman does).
    Auto,
    /// `HOST:SIZE`: container ids 0..SIZE are host ids HOST..HOST+SIZE.
    Range { host: u32, size: u32 },
}

impl std::str::FromStr for Request {
    type Err = Error;
    fn from_str(s: &str) -> Result<Request> {
        if s == "auto" {
            return Ok(Request::Auto);
        }
        let bad = || Error::invalid(format!("--userns {s:?}: expected \"auto\" or HOST:SIZE (like 1000000000:65536)"));
        let (h, n) = s.split_once(':').ok_or_else(bad)?;
        let (host, size): (u32, u32) = (h.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?);
        if size == 0 || host.checked_add(size).is_none() {
            return Err(bad());
        }
        Ok(Request::Range { host, size })
    }
}

impl fmt::Display for IdMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.container_id, self.host_id, self.size)
    }
}

/// The text of a uid_map or gid_map file: one `inside outside count` line per range.
pub fn map_text(maps: &[IdMap]) -> String {
    maps.iter().map(|m| format!("{m}\n")).collect()
}

/// The host id that `id` inside maps to, if any.
pub fn to_host(maps: &[IdMap], id: u32) -> Option<u32> {
    maps.iter()
        .find(|m| id >= m.container_id && id - m.container_id < m.size)
        .map(|m| m.host_id + (id - m.container_id))
}

/// The id inside that the host id `id` maps to, if any.
pub fn to_container(maps: &[IdMap], id: u32) -> Option<u32> {
    maps.iter()
        .find(|m| id >= m.host_id && id - m.host_id < m.size)
        .map(|m| m.container_id + (id - m.host_id))
}

// ANCHOR: subids
/// The ranges `(start, count)` that /etc/subuid or /etc/subgid text grants a user, named
/// either by login name or by number (subuid(5)).
pub fn subid_ranges(text: &str, name: &str, id: u32) -> Vec<(u32, u32)> {
    let id = id.to_string();
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().splitn(3, ':');
            let (who, start, count) = (f.next()?, f.next()?, f.next()?);
            if who != name && who != id {
                return None;
            }
            Some((start.trim().parse().ok()?, count.trim().parse().ok()?))
        })
        .filter(|&(_, n)| n > 0)
        .collect()
}
// ANCHOR_END: subids

/// Who is asking, and what /etc/subuid and /etc/subgid grant them.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub subuids: Vec<(u32, u32)>,
    pub subgids: Vec<(u32, u32)>,
    /// newuidmap and newgidmap are installed (Debian package `uidmap`).
    pub have_helpers: bool,
}

impl Caller {
    /// The calling process, its /etc/subuid and /etc/subgid lines, and the helpers.
    pub fn current() -> Caller {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok().flatten().map(|u| u.name).unwrap_or_default();
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        Caller {
            uid,
            gid,
            subuids: subid_ranges(&read("/etc/subuid"), &name, uid),
            subgids: subid_ranges(&read("/etc/subgid"), &name, uid),
            have_helpers: find_program("newuidmap").is_some() && find_program("newgidmap").is_some(),
        }
    }
}

// ANCHOR: plan
/// The mapping `req` means for `caller`.
pub fn plan(req: Request, caller: &Caller) -> Mapping {
    let one = |host, size| vec![IdMap { container_id: 0, host_id: host, size }];
    if caller.uid == 0 {
        // Root may write any map: give the container a range of ids nobody else uses.
        let (uids, gids) = match req {
            Request::Range { host, size } => (one(host, size), one(host, size)),
            Request::Auto => match (caller.subuids.first(), caller.subgids.first()) {
                (Some(&(u, n)), Some(&(g, m))) => (one(u, n), one(g, m)),
                _ => (one(ROOT_DEFAULT_RANGE.0, ROOT_DEFAULT_RANGE.1), one(ROOT_DEFAULT_RANGE.0, ROOT_DEFAULT_RANGE.1)),
            },
        };
        return Mapping { uids, gids };
    }
    // A user is root inside as itself; the ids from 1 up come from its subordinate ranges,
    // which only the setuid helpers may map.
    let mut m = Mapping { uids: one(caller.uid, 1), gids: one(caller.gid, 1) };
    let (subuids, subgids) = match req {
        Request::Range { host, size } => (vec![(host, size)], vec![(host, size)]),
        Request::Auto => (caller.subuids.clone(), caller.subgids.clone()),
    };
    if caller.have_helpers && !subuids.is_empty() && !subgids.is_empty() {
        for (maps, ranges) in [(&mut m.uids, subuids), (&mut m.gids, subgids)] {
            let mut next = 1u32;
            for (start, count) in ranges {
                maps.push(IdMap { container_id: next, host_id: start, size: count });
                next = next.saturating_add(count);
            }
        }
    }
    m
}
// ANCHOR_END: plan

/// `linux.uidMappings` and `linux.gidMappings` of a config.json, if it asks for a new user
/// namespace. A `user` namespace without mappings gets `Auto`'s.
pub fn from_spec(spec: &Spec) -> Result<Option<Option<Mapping>>> {
    let Some(linux) = &spec.linux else { return Ok(None) };
    let Some(ns) = linux.namespaces.iter().find(|n| n.kind == "user") else { return Ok(None) };
    if ns.path.is_some() {
        return Err(Error::invalid("joining an existing user namespace by path is not supported"));
    }
    let get = |key: &str| -> Result<Vec<IdMap>> {
        match linux.extra.get(key) {
            None | Some(serde_json::Value::Null) => Ok(Vec::new()),
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| Error::invalid(format!("config.json linux.{key}: {e}"))),
        }
    };
    let (uids, gids) = (get("uidMappings")?, get("gidMappings")?);
    match (uids.is_empty(), gids.is_empty()) {
        (true, true) => Ok(Some(None)),
        (false, false) => Ok(Some(Some(Mapping { uids, gids }))),
        _ => Err(Error::invalid("config.json has uidMappings or gidMappings but not both")),
    }
}

// ANCHOR: choose
/// Whether to run in a new user namespace, and with which maps: `--userns` first, then
/// config.json's user namespace, then (for anyone but root) `Auto`: rootless. `uid` is the
/// caller's effective uid; `caller` is asked for the rest only when a mapping is planned.
pub fn choose(spec: &Spec, req: Option<Request>, uid: u32, caller: impl FnOnce() -> Caller) -> Result<Option<Mapping>> {
    let from = from_spec(spec)?;
    Ok(match (req, from) {
        (Some(r), _) => Some(plan(r, &caller())),
        (None, Some(Some(m))) => Some(m),
        (None, Some(None)) => Some(plan(Request::Auto, &caller())),
        (None, None) if uid != 0 => Some(plan(Request::Auto, &caller())),
        (None, None) => None,
    })
}
// ANCHOR_END: choose

/// Record a mapping in config.json as runc does: a `user` namespace and the two maps.
pub fn write_into_spec(spec: &mut Spec, m: &Mapping) {
    let linux = spec.linux.get_or_insert_with(Default::default);
    if !linux.namespaces.iter().any(|n| n.kind == "user") {
        linux.namespaces.push(Namespace { kind: "user".into(), path: None });
    }
    linux.extra.insert("uidMappings".into(), serde_json::to_value(&m.uids).expect("ids serialize"));
    linux.extra.insert("gidMappings".into(), serde_json::to_value(&m.gids).expect("ids serialize"));
}

fn find_program(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin:/usr/sbin:/sbin".into());
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

// ANCHOR: write_maps
/// Write the maps of the process `pid`, which has just entered a new user namespace.
pub fn write_maps(pid: i32, m: &Mapping) -> Result<()> {
    let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
    let only_self = m.uids == [IdMap { container_id: 0, host_id: uid, size: 1 }]
        && m.gids == [IdMap { container_id: 0, host_id: gid, size: 1 }];
    let proc = Path::new("/proc").join(pid.to_string());
    let write = |file: &str, text: &str| {
        explain!("write {:?} > /proc/{pid}/{file}", text.trim_end());
        std::fs::write(proc.join(file), text).ctx(|| format!("write /proc/{pid}/{file} ({:?})", text.trim_end()))
    };
    if uid == 0 {
        // CAP_SETUID and CAP_SETGID outside: any ranges.
        write("uid_map", &map_text(&m.uids))?;
        return write("gid_map", &map_text(&m.gids));
    }
    if only_self {
        // An unprivileged process may map only its own ids, and its gid only once it gave
        // up setgroups(2): else dropping a group with setgroups could lift a "deny to group"
        // permission (user_namespaces(7), "The /proc/[pid]/setgroups file").
        write("setgroups", "deny")?;
        write("uid_map", &map_text(&m.uids))?;
        return write("gid_map", &map_text(&m.gids));
    }
    for (tool, maps) in [("newuidmap", &m.uids), ("newgidmap", &m.gids)] {
        let prog = find_program(tool).ok_or_else(|| {
            Error::not_found(format!("{tool} is needed to map more than your own id (Debian package uidmap)"))
        })?;
        let mut args = vec![pid.to_string()];
        for r in maps.iter() {
            args.extend([r.container_id.to_string(), r.host_id.to_string(), r.size.to_string()]);
        }
        explain!("{tool} {}", args.join(" "));
        let out = std::process::Command::new(&prog)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .ctx(|| format!("run {}", prog.display()))?;
        if !out.status.success() {
            let msg = String::from_utf8_lossy(&out.stderr);
            return Err(Error::new(
                crate::Kind::System,
                format!("{tool} {}: {} (are the ranges in /etc/sub{}id?)", args.join(" "), msg.trim(), &tool[3..4]),
            ));
        }
    }
    Ok(())
}
// ANCHOR_END: write_maps

/// The two ends of the pipe a child in a new user namespace waits on until its maps exist.
pub struct Sync {
    r: OwnedFd,
    w: OwnedFd,
}

impl Sync {
    pub fn new() -> Result<Sync> {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(|| "pipe")?;
        Ok(Sync { r, w })
    }

    /// In the parent: write the maps of `pid`, then let it go on.
    pub fn release(self, pid: i32, m: &Mapping) -> Result<()> {
        drop(self.r);
        write_maps(pid, m)?;
        std::fs::File::from(self.w).write_all(b"1").ctx(|| "release the child")
    }

    // ANCHOR: child_wait
    /// In the child: wait for the maps, then become root of the namespace.
    pub fn wait_and_become_root(self) -> Result<()> {
        drop(self.w);
        let mut b = [0u8; 1];
        let n = std::fs::File::from(self.r).read(&mut b).ctx(|| "wait for the id maps")?;
        if n != 1 {
            return Err(Error::invalid("the id maps were not written"));
        }
        // Root of the namespace but still the host's ids: take 0 inside (a no-op when the
        // caller's own id is the one mapped to 0). Changing ids clears the parent-death
        // signal, so ask for it again.
        if setgroups_allowed() {
            nix::unistd::setgroups(&[]).ctx(|| "setgroups([])")?;
        }
        let zero = (nix::unistd::Gid::from_raw(0), nix::unistd::Uid::from_raw(0));
        nix::unistd::setresgid(zero.0, zero.0, zero.0).ctx(|| "setresgid(0) in the user namespace: is gid 0 mapped?")?;
        nix::unistd::setresuid(zero.1, zero.1, zero.1).ctx(|| "setresuid(0) in the user namespace: is uid 0 mapped?")?;
        // SAFETY: integer-only prctl.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) };
        explain!("uid_map: {}", std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default().split_whitespace().collect::<Vec<_>>().join(" "));
        Ok(())
    }
    // ANCHOR_END: child_wait
}

/// Whether this process may call setgroups(2): not when /proc/self/setgroups says "deny".
pub fn setgroups_allowed() -> bool {
    std::fs::read_to_string("/proc/self/setgroups").map(|s| s.trim() != "deny").unwrap_or(true)
}

/// setgroups(2), skipped where the user namespace denies it (only one id mapped): the
/// process keeps the supplementary groups it came with, which show as `nogroup` inside.
pub fn setgroups(groups: &[u32]) -> Result<()> {
    if !setgroups_allowed() {
        explain!("skip setgroups({groups:?}): denied in this user namespace");
        return Ok(());
    }
    let g: Vec<nix::unistd::Gid> = groups.iter().map(|g| nix::unistd::Gid::from_raw(*g)).collect();
    nix::unistd::setgroups(&g).ctx(|| "setgroups")
}

/// Whether this process runs in a user namespace other than the host's (whose uid_map is
/// the identity over every id).
pub fn in_user_namespace() -> bool {
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(s) => s.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"],
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &str = "alice:100000:65536\n1001:165536:65536\nbob:231072:0\n# no\nalice:300000:10\n";

    #[test]
    fn subids_by_name_or_number() {
        assert_eq!(subid_ranges(SUB, "alice", 1000), [(100000, 65536), (300000, 10)]);
        assert_eq!(subid_ranges(SUB, "carol", 1001), [(165536, 65536)]);
        assert!(subid_ranges(SUB, "bob", 1002).is_empty());
    }

    #[test]
    fn requests_parse() {
        assert_eq!("auto".parse::<Request>().unwrap(), Request::Auto);
        assert_eq!("100000:65536".parse::<Request>().unwrap(), Request::Range { host: 100000, size: 65536 });
        for bad in ["", "1", "x:1", "1:0", "4294967295:2"] {
            assert!(bad.parse::<Request>().is_err(), "{bad}");
        }
    }

    #[test]
    fn plans() {
        let m = |c, h, s| IdMap { container_id: c, host_id: h, size: s };
        let root = Caller::default();
        assert_eq!(plan(Request::Auto, &root).uids, [m(0, 1_000_000_000, 65536)]);
        let root_sub = Caller { subuids: vec![(5, 10)], subgids: vec![(7, 10)], ..Caller::default() };
        assert_eq!(plan(Request::Auto, &root_sub), Mapping { uids: vec![m(0, 5, 10)], gids: vec![m(0, 7, 10)] });
        let user = Caller { uid: 1000, gid: 100, subuids: vec![(100000, 65536)], subgids: vec![(200000, 5)], have_helpers: true };
        let p = plan(Request::Auto, &user);
        assert_eq!(p.uids, [m(0, 1000, 1), m(1, 100000, 65536)]);
        assert_eq!(p.gids, [m(0, 100, 1), m(1, 200000, 5)]);
        assert_eq!(to_host(&p.uids, 0), Some(1000));
        assert_eq!(to_host(&p.uids, 65536), Some(165535));
        assert_eq!(to_host(&p.uids, 65537), None);
        // Without the setuid helpers (or without ranges), only the user's own id.
        let alone = Caller { have_helpers: false, ..user };
        assert_eq!(plan(Request::Auto, &alone), Mapping { uids: vec![m(0, 1000, 1)], gids: vec![m(0, 100, 1)] });
    }

    #[test]
    fn mappings_round_trip_through_config_json() {
        let t = tempfile::tempdir().unwrap();
        let config: crate::oci::ImageConfig =
            serde_json::from_str(r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{}}"#).unwrap();
        let mut spec = crate::runtime::spec_from_image(&config, t.path(), "h").unwrap();
        let root = Caller::default();
        assert_eq!(choose(&spec, None, root.uid, || root.clone()).unwrap(), None);
        let user = Caller { uid: 1000, gid: 1000, ..Caller::default() };
        assert_eq!(choose(&spec, None, user.uid, || user.clone()).unwrap(), Some(plan(Request::Auto, &user)));
        let m = Mapping { uids: vec![IdMap { container_id: 0, host_id: 7, size: 3 }], gids: vec![IdMap { container_id: 0, host_id: 8, size: 3 }] };
        write_into_spec(&mut spec, &m);
        let text = serde_json::to_string(&spec).unwrap();
        assert!(text.contains(r#""uidMappings":[{"containerID":0,"hostID":7,"size":3}]"#), "{text}");
        let back: Spec = serde_json::from_str(&text).unwrap();
        assert_eq!(choose(&back, None, root.uid, || root.clone()).unwrap(), Some(m));
        assert_eq!(choose(&back, Some(Request::Auto), root.uid, || root.clone()).unwrap(), Some(plan(Request::Auto, &root)));
    }
}
