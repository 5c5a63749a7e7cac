//! Holding a running container still while its files are read: the cgroup freezer when the
//! container is in a group boxkit created, `SIGSTOP`/`SIGCONT` of its exact processes
//! otherwise.
//!
//! Reference: Documentation/admin-guide/cgroup-v2.rst (`cgroup.freeze`, `cgroup.events`
//! "frozen"), Documentation/admin-guide/cgroup-v1/freezer-subsystem.rst (`freezer.state`:
//! FREEZING → FROZEN); signal(7) (SIGSTOP cannot be caught or ignored, not even by a PID
//! namespace's init when it comes from an ancestor namespace); pidfd_open(2),
//! pidfd_send_signal(2) (a signal that can never reach a recycled PID). `docker commit
//! --pause` does the same with its cgroup freezer.
//!
//! A container's processes are those whose root directory (`/proc/PID/root`) is the bundle's
//! `rootfs/` (same device and inode: pivot_root put them there). The freezer is used only when
//! all of them sit in one group below boxkit's own `boxkit/` group, because boxkit writes only
//! to groups it created: freezing any other group could stop processes that are not the
//! container's. Signals are the fallback; they reach exactly the PIDs found (through pidfds),
//! and a process the container forks between the scan and the stop is caught by scanning
//! again until nothing new appears. Processes that were already stopped are left stopped.
//!
//! Thawing is a `Drop`: it runs on every return, error or panic. SIGINT, SIGTERM and SIGHUP
//! are held back (blocked) while the container is frozen, and delivered after the thaw.

use crate::cgroup;
use crate::error::{Context, Error, Result};
use crate::explain;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The PIDs whose root directory is `rootfs` (by device and inode), sorted.
pub fn processes_in(rootfs: &Path) -> Result<Vec<i32>> {
    let want = std::fs::metadata(rootfs).ctx(|| format!("stat {}", rootfs.display()))?;
    let mut pids = Vec::new();
    for ent in std::fs::read_dir("/proc").ctx(|| "read /proc")?.flatten() {
        let Some(pid) = ent.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if let Ok(m) = std::fs::metadata(format!("/proc/{pid}/root")) {
            if m.dev() == want.dev() && m.ino() == want.ino() && pid != std::process::id() as i32 {
                pids.push(pid);
            }
        }
    }
    pids.sort_unstable();
    Ok(pids)
}

/// How the container is being held.
enum How {
    /// A freezer control file and the value that thaws it.
    Freezer { file: PathBuf, thaw: &'static str },
    /// pidfds of the processes we stopped.
    Signals(Vec<OwnedFd>),
    Nothing,
}

/// A frozen container; thawed when dropped.
pub struct Frozen {
    how: How,
    old_mask: libc::sigset_t,
}

// ANCHOR: freeze
/// Freeze every process whose root is `rootfs`.
pub fn freeze(rootfs: &Path) -> Result<Frozen> {
    let old_mask = block_signals();
    let mut frozen = Frozen { how: How::Nothing, old_mask };
    let pids = processes_in(rootfs)?;
    if pids.is_empty() {
        explain!("no process has {} as its root: nothing to freeze", rootfs.display());
        return Ok(frozen);
    }
    if let Some((file, freeze, thaw)) = boxkit_freezer(&pids) {
        explain!("freeze pids {pids:?} with the cgroup freezer: write {freeze:?} > {}", file.display());
        std::fs::write(&file, freeze).ctx(|| format!("write {freeze} to {}", file.display()))?;
        frozen.how = How::Freezer { file: file.clone(), thaw };
        wait_frozen(&file)?;
        return Ok(frozen);
    }
    explain!("pids {pids:?} are not in a cgroup boxkit created: stop them with SIGSTOP (pidfd_send_signal)");
    let mut stopped: Vec<(i32, OwnedFd)> = Vec::new();
    let mut seen: Vec<i32> = Vec::new();
    let mut round = pids;
    // A process may fork until it is stopped: scan again until a scan finds nothing new.
    while !round.is_empty() {
        for pid in round {
            seen.push(pid);
            if let Some(fd) = stop(pid, rootfs)? {
                stopped.push((pid, fd));
            }
        }
        round = processes_in(rootfs)?.into_iter().filter(|p| !seen.contains(p)).collect();
    }
    frozen.how = How::Signals(stopped.into_iter().map(|(_, fd)| fd).collect());
    Ok(frozen)
}
// ANCHOR_END: freeze

impl Drop for Frozen {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.how, How::Nothing) {
            How::Freezer { file, thaw } => {
                explain!("thaw: write {thaw:?} > {}", file.display());
                let _ = std::fs::write(&file, thaw);
            }
            How::Signals(fds) => {
                explain!("thaw: SIGCONT to the {} processes stopped", fds.len());
                for fd in fds {
                    let _ = pidfd_signal(fd.as_raw_fd(), libc::SIGCONT);
                }
            }
            How::Nothing => {}
        }
        // SAFETY: restores the mask saved by block_signals; pending signals arrive now.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old_mask, std::ptr::null_mut()) };
    }
}

fn block_signals() -> libc::sigset_t {
    // SAFETY: plain sigset manipulation on locals.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        old
    }
}

// ANCHOR: boxkit_freezer
/// The freezer file of the one boxkit-created group holding all of `pids`, with the values
/// that freeze and thaw it; `None` when they are not all in one such group.
fn boxkit_freezer(pids: &[i32]) -> Option<(PathBuf, &'static str, &'static str)> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut group: Option<(PathBuf, &'static str, &'static str)> = None;
    for pid in pids {
        // A process that exited since it was listed (a short-lived child) is no obstacle.
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else { continue };
        let mut found = None;
        for line in text.lines() {
            let l = cgroup::parse_cgroup_line(line)?;
            let (v2, v1, path) = (l.is_v2(), l.has("freezer"), l.path);
            if !(v1 || v2) {
                continue;
            }
            let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
            // v2: boxkit/NAME at the top; v1: …/boxkit/NAME below the caller's group.
            let ours = comps.len() >= 2 && cgroup::in_boxkit(Path::new(path)) && (v1 || comps.len() == 2);
            if !ours {
                continue;
            }
            let mount = mount_of(&mountinfo, if v2 { "cgroup2" } else { "cgroup" }, v1)?;
            let dir = mount.join(path.trim_start_matches('/'));
            let f = if v2 { (dir.join("cgroup.freeze"), "1", "0") } else { (dir.join("freezer.state"), "FROZEN", "THAWED") };
            if f.0.exists() {
                found = Some(f);
                break;
            }
        }
        let Some(f) = found else {
            // An exiting process (a zombie: its root is gone) is shown in the root cgroup by
            // the kernel; it is no obstacle either. A live one outside boxkit's groups is.
            if std::fs::metadata(format!("/proc/{pid}/root")).is_err() {
                continue;
            }
            return None;
        };
        match &group {
            Some(g) if g.0 != f.0 => return None,
            _ => group = Some(f),
        }
    }
    // Never freeze a group this process is in: it would freeze itself.
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let g = group?;
    let gdir = g.0.parent()?.to_string_lossy().into_owned();
    if own.lines().filter_map(cgroup::parse_cgroup_line).map(|l| l.path).any(|p| p != "/" && gdir.ends_with(p)) {
        return None;
    }
    Some(g)
}
// ANCHOR_END: boxkit_freezer

/// Where the cgroup2 hierarchy, or the v1 hierarchy with the freezer, is mounted (its
/// mount root must be the hierarchy's root, as on the host).
fn mount_of(mountinfo: &str, fstype: &str, freezer: bool) -> Option<PathBuf> {
    mountinfo.lines().filter_map(cgroup::parse_mountinfo_line).find_map(|m| {
        let ok = m.fstype == fstype && m.root == "/" && (!freezer || m.super_opts.split(',').any(|o| o == "freezer"));
        ok.then(|| PathBuf::from(m.mount_point))
    })
}

/// Wait until the freezer says every process is frozen.
fn wait_frozen(file: &Path) -> Result<()> {
    for _ in 0..1000 {
        let done = if file.ends_with("cgroup.freeze") {
            let events = std::fs::read_to_string(file.with_file_name("cgroup.events")).unwrap_or_default();
            events.lines().any(|l| l == "frozen 1")
        } else {
            std::fs::read_to_string(file).unwrap_or_default().trim() == "FROZEN"
        };
        if done {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Err(Error::new(crate::Kind::System, format!("{}: the group did not freeze within 5 s", file.display())))
}

/// Stop one process through a pidfd, after checking the pidfd names the process whose root
/// is `rootfs`; `None` when it is gone or was already stopped (it is left as it was).
fn stop(pid: i32, rootfs: &Path) -> Result<Option<OwnedFd>> {
    // SAFETY: pidfd_open returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Ok(None); // exited
    }
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    // The PID might have been reused between the scan and pidfd_open: check again now that
    // the pidfd pins the process.
    if !processes_in_one(pid, rootfs) || matches!(state(pid), Some('T' | 'Z' | 'X') | None) {
        return Ok(None);
    }
    pidfd_signal(fd.as_raw_fd(), libc::SIGSTOP).ctx(|| format!("SIGSTOP pid {pid}"))?;
    for _ in 0..1000 {
        match state(pid) {
            Some('T' | 't' | 'Z' | 'X') | None => return Ok(Some(fd)),
            _ => std::thread::sleep(std::time::Duration::from_millis(1)),
        }
    }
    let _ = pidfd_signal(fd.as_raw_fd(), libc::SIGCONT);
    Err(Error::new(crate::Kind::System, format!("pid {pid} did not stop")))
}

fn processes_in_one(pid: i32, rootfs: &Path) -> bool {
    match (std::fs::metadata(format!("/proc/{pid}/root")), std::fs::metadata(rootfs)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// The state letter of /proc/PID/stat.
fn state(pid: i32) -> Option<char> {
    crate::state::proc_stat(pid).map(|(state, _)| state)
}

fn pidfd_signal(fd: RawFd, sig: i32) -> std::io::Result<()> {
    // SAFETY: pidfd_send_signal with no siginfo.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_send_signal, fd, sig, std::ptr::null::<libc::siginfo_t>(), 0) };
    if r < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
}
