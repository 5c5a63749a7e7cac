//! Running a bundle: a process in new namespaces, with the bundle's rootfs as its `/`.
//!
//! Reference: clone(2), namespaces(7), pid_namespaces(7) (PID 1 and signals), pivot_root(2),
//! execve(2), and the OCI runtime spec's lifecycle (create, start, the process's exit).
//!
//! ```text
//! box-spawn (host)                        child: PID 1 in new pid, mount, uts, ipc, net ns
//! ─────────────────                       ───────────────────────────────────────────────
//! block forwarded signals
//! clone(CLONE_NEWPID|CLONE_NEWNS|…) ────▶ make / private, bind rootfs, mounts, /dev
//! read the error pipe                     sethostname, pivot_root(".", "."), mask /proc …
//!   (EOF = execve succeeded)              rlimits, drop capabilities, setuid, chdir, seccomp
//! sigwait: forward or reap ◀────────────  execve(args)   (with --init: fork, then reap)
//! exit with the child's status
//! ```
//!
//! Failures before execve travel back over a close-on-exec pipe as a kind and a message, so
//! the caller sees `box-spawn: mount proc on /proc: …` and exit 125, 126 or 127.

use crate::caps;
use crate::error::{Context, Error, Kind, Result};
use crate::explain;
use crate::fsroot::Root;
use crate::mount;
use crate::runtime::{Process, Spec};
use crate::seccomp::Filter;
use crate::{rootless, userns};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};

/// How to run a bundle.
#[derive(Debug, Clone, Default)]
pub struct SpawnOptions {
    /// Replace the process's args (`box-spawn B -- sh -c …`).
    pub args: Option<Vec<String>>,
    /// Run a tiny init as PID 1 that reaps zombies and forwards signals to the command.
    pub init: bool,
    /// `cgroup.procs` files to join before anything else (box-cgroup-limit --create).
    pub cgroup_procs: Vec<PathBuf>,
    /// `--userns`: a new user namespace with these maps, whatever config.json says. Without
    /// it: config.json's user namespace, or (for anyone but root) `Auto`; see [`userns::choose`].
    pub userns: Option<userns::Request>,
    /// `-t`: the pty the container gets as its terminal, and what the copy loop connects.
    pub terminal: Option<crate::pty::Terminal>,
    /// Called with the container's pid once its command is running (the state file).
    pub on_start: Option<crate::state::StartHook>,
    /// Seccomp, cgroup namespace, /sys/fs/cgroup, device nodes (hardening::prepare).
    pub hardening: crate::hardening::Plan,
    /// Dropped by whoever supervises the container, once it is over: the cgroup box-spawn
    /// made for it is removed then (in a detached run, by the supervisor, not the caller).
    pub cleanup: Option<std::sync::Arc<dyn std::any::Any + Send + Sync>>,
    /// An overlay bundle whose rootfs is not mounted: the overlay to mount on it in the
    /// container's mount namespace (see [`crate::overlay::pending`]).
    pub overlay: Option<crate::overlay::Pending>,
}

/// Signals box-spawn passes on to the container.
const FORWARDED: [Signal; 8] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
];

/// The signals a supervisor forwards, as a set (block them before starting the child).
pub fn forwarded_set() -> SigSet {
    let mut s = SigSet::empty();
    for sig in FORWARDED {
        s.add(sig);
    }
    s
}

/// [`forwarded_set`] and SIGCHLD: what a supervisor blocks, then waits for.
pub fn supervised_set() -> SigSet {
    let mut s = forwarded_set();
    s.add(Signal::SIGCHLD);
    s
}

// ANCHOR: clone_flags
/// The namespace flags config.json asks for.
fn clone_flags(spec: &Spec) -> Result<CloneFlags> {
    let mut flags = CloneFlags::empty();
    for ns in spec.linux.as_ref().map(|l| l.namespaces.as_slice()).unwrap_or(&[]) {
        if ns.path.is_some() {
            return Err(Error::invalid(format!("joining an existing {} namespace by path is not supported", ns.kind)));
        }
        flags |= match ns.kind.as_str() {
            "pid" => CloneFlags::CLONE_NEWPID,
            "network" => CloneFlags::CLONE_NEWNET,
            "ipc" => CloneFlags::CLONE_NEWIPC,
            "uts" => CloneFlags::CLONE_NEWUTS,
            "mount" => CloneFlags::CLONE_NEWNS,
            "cgroup" => CloneFlags::CLONE_NEWCGROUP,
            "user" => CloneFlags::CLONE_NEWUSER,
            other => return Err(Error::invalid(format!("unknown namespace type {other:?}"))),
        };
    }
    if !flags.contains(CloneFlags::CLONE_NEWNS) {
        return Err(Error::invalid("config.json must ask for a mount namespace: box-spawn pivots the root"));
    }
    Ok(flags)
}
// ANCHOR_END: clone_flags

// ANCHOR: spawn_fn
/// Run the bundle's process; returns its exit status (128+N when killed by signal N).
pub fn spawn(bundle: &Path, spec: &Spec, opts: &SpawnOptions) -> Result<i32> {
    let bundle = std::fs::canonicalize(bundle).ctx(|| format!("bundle {}", bundle.display()))?;
    let mut process = spec.process.clone().ok_or_else(|| Error::invalid("config.json has no process"))?;
    if let Some(args) = &opts.args {
        process.args = args.clone();
    }
    if process.args.is_empty() {
        return Err(Error::invalid("no command to run: config.json has no args and none were given"));
    }
    let rootfs = crate::runopts::rootfs_of(&bundle, spec)?;
    // A cgroup namespace is made in the child, once it is in its cgroup (hardening.rs).
    let mut flags = clone_flags(spec)? - CloneFlags::CLONE_NEWCGROUP;
    let mapping = userns::choose(spec, opts.userns, nix::unistd::geteuid().as_raw(), userns::Caller::current)?;
    if let Some(m) = &mapping {
        rootless::check_reachable(&rootfs, m)?;
    }
    let adapted = mapping.as_ref().map(|m| rootless::adapt_spec(spec, m, flags | CloneFlags::CLONE_NEWUSER));
    let spec = adapted.as_ref().unwrap_or(spec);
    let sync = if mapping.is_some() { flags |= CloneFlags::CLONE_NEWUSER; Some(userns::Sync::new()?) } else { None };

    // A caller that ignores SIGCHLD would make the kernel reap our child behind our back.
    // SAFETY: restoring a default disposition.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
    // Signals arriving from now on wait in the queue until the loop below forwards them.
    let old_mask = SigSet::thread_get_mask().ctx(|| "read signal mask")?;
    let blocked = supervised_set();
    blocked.thread_block().ctx(|| "block signals")?;

    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(|| "pipe")?;
    explain!("clone({})", flag_names(flags));
    // SAFETY: a raw clone without CLONE_VM behaves like fork(2): the child gets a copy of this
    // single-threaded process and continues here with a return value of 0.
    let pid = unsafe { libc::syscall(libc::SYS_clone, (flags.bits() as libc::c_long) | libc::SIGCHLD as libc::c_long, 0, 0, 0, 0) };
    if pid < 0 {
        return Err(Error::io(format!("clone({})", flag_names(flags)), std::io::Error::last_os_error()));
    }
    if pid == 0 {
        drop(err_r);
        let _ = old_mask.thread_set_mask();
        let result = child(&bundle, &rootfs, spec, &process, opts, err_w.as_raw_fd(), sync);
        // Only reached on failure: report it and die.
        let e = result.err().unwrap_or_else(|| Error::invalid("execve returned"));
        let _ = std::fs::File::from(err_w).write_all(&e.to_report());
        // SAFETY: leave the child at once, without running the parent's exit handlers.
        unsafe { libc::_exit(125) };
    }
    let child_pid = Pid::from_raw(pid as i32);
    drop(err_w);
    if let (Some(sync), Some(m)) = (sync, &mapping) {
        if let Err(e) = sync.release(pid as i32, m) {
            let _ = nix::sys::signal::kill(child_pid, Signal::SIGKILL);
            let _ = waitpid(child_pid, None);
            let _ = old_mask.thread_set_mask();
            return Err(e);
        }
    }
    let mut report = Vec::new();
    let _ = std::fs::File::from(err_r).read_to_end(&mut report);
    if !report.is_empty() {
        let _ = waitpid(child_pid, None);
        let _ = old_mask.thread_set_mask();
        return Err(Error::from_report(&report));
    }
    if let Some(hook) = &opts.on_start {
        (hook.0)(child_pid.as_raw());
    }
    let status = match &opts.terminal {
        Some(t) => crate::pty::supervise(child_pid, &blocked, t),
        None => supervise(child_pid, &blocked),
    };
    let _ = old_mask.thread_set_mask();
    status
}
// ANCHOR_END: spawn_fn

// ANCHOR: supervise
/// Forward signals to `child` and wait for it; its status becomes ours (128+N on signal N).
/// The signals in `blocked` must be blocked in this thread.
pub fn supervise(child: Pid, blocked: &SigSet) -> Result<i32> {
    loop {
        let sig = blocked.wait().ctx(|| "sigwait")?;
        if sig == Signal::SIGCHLD {
            if let Some(code) = reap(child)? {
                return Ok(code);
            }
        } else {
            forward(child, sig);
        }
    }
}

/// Reap exited children; the status of `child` once it has exited.
pub(crate) fn reap(child: Pid) -> Result<Option<i32>> {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, code)) if p == child => return Ok(Some(code)),
            Ok(WaitStatus::Signaled(p, s, _)) if p == child => return Ok(Some(128 + s as i32)),
            Ok(WaitStatus::StillAlive) => return Ok(None),
            Err(nix::errno::Errno::ECHILD) => return Err(Error::new(Kind::System, format!("process {child} vanished without an exit status"))),
            Ok(_) => continue,
            Err(e) => return Err(Error::io("waitpid", e.into())),
        }
    }
}

/// Pass a signal box-spawn received on to the container.
pub(crate) fn forward(child: Pid, sig: Signal) {
    explain!("forward {sig} to pid {child}");
    let _ = nix::sys::signal::kill(child, sig);
}
// ANCHOR_END: supervise

fn flag_names(f: CloneFlags) -> String {
    let names = [
        (CloneFlags::CLONE_NEWPID, "CLONE_NEWPID"),
        (CloneFlags::CLONE_NEWNS, "CLONE_NEWNS"),
        (CloneFlags::CLONE_NEWUTS, "CLONE_NEWUTS"),
        (CloneFlags::CLONE_NEWIPC, "CLONE_NEWIPC"),
        (CloneFlags::CLONE_NEWNET, "CLONE_NEWNET"),
        (CloneFlags::CLONE_NEWCGROUP, "CLONE_NEWCGROUP"),
        (CloneFlags::CLONE_NEWUSER, "CLONE_NEWUSER"),
    ];
    names.iter().filter(|(x, _)| f.contains(*x)).map(|(_, n)| *n).collect::<Vec<_>>().join("|")
}

// ANCHOR: child
/// Everything the child does, in order. Returns only on failure.
fn child(bundle: &Path, rootfs: &Path, spec: &Spec, p: &Process, opts: &SpawnOptions, report_fd: RawFd, userns: Option<userns::Sync>) -> Result<()> {
    // Die with box-spawn: a container must not outlive the process that supervises it.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) };
    // Join the cgroup first, so every later allocation is charged to it. "0" means the
    // writing process, whatever its pid in the new PID namespace.
    for procs in &opts.cgroup_procs {
        explain!("write \"0\" > {}", procs.display());
        std::fs::write(procs, "0").ctx(|| format!("join cgroup {}", procs.parent().unwrap_or(procs).display()))?;
    }
    // In a new user namespace: wait until box-spawn wrote the maps, then be its root.
    if let Some(sync) = userns {
        sync.wait_and_become_root()?;
    }
    crate::hardening::enter_cgroup_ns(&opts.hardening)?;
    nix::unistd::setsid().ctx(|| "setsid")?;
    if let Some(t) = &opts.terminal {
        crate::pty::make_controlling(t.slave)?;
    }
    mount::make_private()?;
    if let Some(p) = &opts.overlay {
        crate::overlay::mount_pending(p, rootfs)?;
    }
    mount::bind_self(rootfs, !opts.hardening.image_devices)?;
    let root = Root::open(rootfs)?;
    for m in &spec.mounts {
        mount::mount_one(&root, m, bundle)?;
    }
    if spec.mounts.iter().any(|m| m.destination == "/dev") {
        mount::populate_dev(&root)?;
        if let Some(t) = &opts.terminal {
            crate::pty::bind_console(&root, t.slave)?;
        }
    }
    drop(root);
    if let Some(h) = &spec.hostname {
        explain!("sethostname({h:?})");
        nix::unistd::sethostname(h).ctx(|| format!("sethostname {h:?}"))?;
    }
    mount::pivot_root(rootfs)?;
    crate::hardening::mount_cgroup_tree(&opts.hardening)?;
    if let Some(linux) = &spec.linux {
        mount::mask_paths(&linux.masked_paths)?;
        mount::readonly_paths(&linux.readonly_paths)?;
    }
    if spec.root.as_ref().map(|r| r.readonly).unwrap_or(false) {
        mount::readonly_root()?;
    }
    loopback_up();
    set_rlimits(p)?;
    if opts.init {
        return run_init(p, opts.hardening.seccomp.as_ref());
    }
    exec_process(p, Some(report_fd), opts.hardening.seccomp.as_ref())
}
// ANCHOR_END: child

// ANCHOR: run_init
/// `--init`: stay as PID 1, run the command as PID 2, forward signals to it, reap every
/// orphan that the kernel reparents to us, and exit with the command's status.
fn run_init(p: &Process, seccomp: Option<&Filter>) -> Result<()> {
    let set = supervised_set();
    set.thread_block().ctx(|| "block signals")?;
    // Not dumpable, from before the fork: no process in the container may open /proc/1/exe,
    // the host's box-spawn binary (runc CVE-2019-5736). The command's own execve makes it
    // dumpable again.
    // SAFETY: integer-only prctl.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong, 0, 0, 0) };
    // SAFETY: single-threaded; the child only calls exec_process.
    match unsafe { nix::unistd::fork() }.ctx(|| "fork")? {
        nix::unistd::ForkResult::Child => {
            let _ = set.thread_unblock();
            let e = exec_process(p, None, seccomp).unwrap_err();
            let _ = writeln!(std::io::stderr(), "box-spawn: {e}");
            unsafe { libc::_exit(e.kind().runner_exit_code()) };
        }
        nix::unistd::ForkResult::Parent { child } => {
            close_range(3, u32::MAX);
            // PID 1 keeps only what the command gets: its user, capabilities, no_new_privs
            // and seccomp filter (waiting and killing need nothing more).
            let confined = confine(p, seccomp)
                .and_then(|()| match &p.capabilities {
                    // execve leaves a non-root user only its ambient capabilities; the init
                    // never execs, so it gives up the same ones by hand.
                    Some(c) if p.user.uid != 0 => {
                        let mut c = c.clone();
                        c.effective = c.ambient.clone();
                        c.permitted = c.ambient.clone();
                        caps::apply_sets(&c)
                    }
                    _ => Ok(()),
                })
                .and_then(|()| match (seccomp, p.no_new_privileges) {
                    (Some(f), true) => f.install(),
                    _ => Ok(()),
                });
            if let Err(e) = confined {
                let _ = writeln!(std::io::stderr(), "box-spawn: init: {e}");
                let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                unsafe { libc::_exit(125) };
            }
            // SAFETY: integer-only prctl; a change of uid may have reset it.
            unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong, 0, 0, 0) };
            explain!("init: PID 1 reaps zombies and forwards signals to pid {child}");
            let code = supervise(child, &set)?;
            unsafe { libc::_exit(code) };
        }
    }
}
// ANCHOR_END: run_init

// ANCHOR: exec_process
/// Become the configured user, with the configured capabilities, in the working directory,
/// then execve. Returns only on failure.
fn exec_process(p: &Process, report_fd: Option<RawFd>, seccomp: Option<&Filter>) -> Result<()> {
    let path = find_executable(&p.args[0], &p.env)?;
    let argv: Vec<CString> = p.args.iter().map(|a| cstring(a)).collect::<Result<_>>()?;
    let envp: Vec<CString> = p.env.iter().map(|a| cstring(a)).collect::<Result<_>>()?;
    confine(p, seccomp)?;
    // No descriptor but 0, 1, 2 (and the close-on-exec error pipe) may be open while we
    // change directory: a leaked host directory would let cwd=/proc/self/fd/N escape
    // (runc CVE-2024-21626).
    close_fds_except(report_fd);
    explain!("chdir({:?})", p.cwd);
    nix::unistd::chdir(p.cwd.as_str()).ctx(|| format!("chdir to the working directory {}", p.cwd))?;
    let cwd = std::env::current_dir().ctx(|| "getcwd")?;
    if !cwd.starts_with("/") || cwd.to_string_lossy().starts_with("(unreachable)") {
        return Err(Error::invalid(format!("working directory {} is outside the container", p.cwd)));
    }
    // Last, so that nothing box-spawn itself does runs under the filter.
    if let (Some(f), true) = (seccomp, p.no_new_privileges) {
        f.install()?;
    }
    explain!("execve({:?}, {:?})", path, p.args);
    let e = nix::unistd::execve(&cstring(&path.to_string_lossy())?, &argv, &envp).unwrap_err();
    let kind = match e {
        nix::errno::Errno::ENOENT => Kind::CommandNotFound,
        nix::errno::Errno::EACCES | nix::errno::Errno::ENOEXEC | nix::errno::Errno::EPERM => Kind::NotExecutable,
        _ => Kind::System,
    };
    Err(Error::new(kind, format!("exec {}: {}", p.args[0], e.desc())))
}
// ANCHOR_END: exec_process

// ANCHOR: confine
/// Take on the process's user, groups, capabilities and no_new_privs: what the command
/// runs with, and what `--init` keeps while it waits (so PID 1 is no stronger than the
/// container it serves).
fn confine(p: &Process, seccomp: Option<&Filter>) -> Result<()> {
    // Without no_new_privs only CAP_SYS_ADMIN may install a filter: do it now, as runc does.
    if let (Some(f), false) = (seccomp, p.no_new_privileges) {
        f.install()?;
    }
    if let Some(c) = &p.capabilities {
        caps::drop_bounding(c)?;
    }
    let u = &p.user;
    explain!("setgroups({:?}); setresgid({2}); setresuid({1})", u.additional_gids, u.uid, u.gid);
    userns::setgroups(&u.additional_gids)?;
    let gid = nix::unistd::Gid::from_raw(u.gid);
    nix::unistd::setresgid(gid, gid, gid).ctx(|| format!("setresgid {}", u.gid))?;
    let uid = nix::unistd::Uid::from_raw(u.uid);
    nix::unistd::setresuid(uid, uid, uid).ctx(|| format!("setresuid {}", u.uid))?;
    // A change of uid clears the parent-death signal: ask for it again.
    // SAFETY: integer-only prctl.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) };
    if let Some(c) = &p.capabilities {
        caps::apply_sets(c)?;
    }
    // config.json's umask, else 0022 as runc sets it: never whatever the caller had.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(u.umask.unwrap_or(0o022)));
    if p.no_new_privileges {
        explain!("prctl(PR_SET_NO_NEW_PRIVS, 1): execve can never grant more privilege");
        // SAFETY: integer-only prctl.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) } != 0 {
            return Err(Error::io("prctl(PR_SET_NO_NEW_PRIVS)", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}
// ANCHOR_END: confine

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::invalid(format!("{s:?} holds a NUL byte")))
}

/// Search the container's PATH (from its environment) the way execvp does.
fn find_executable(cmd: &str, env: &[String]) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if cmd.contains('/') {
        let p = PathBuf::from(cmd);
        return match std::fs::metadata(&p) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(p),
            Ok(_) => Err(Error::new(Kind::NotExecutable, format!("exec {cmd}: not an executable file"))),
            Err(_) => Err(Error::new(Kind::CommandNotFound, format!("exec {cmd}: no such file in the container"))),
        };
    }
    let path = env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let mut found_non_exec = None;
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let p = Path::new(dir).join(cmd);
        if let Ok(m) = std::fs::metadata(&p) {
            if m.is_file() && m.permissions().mode() & 0o111 != 0 {
                return Ok(p);
            }
            found_non_exec.get_or_insert(p);
        }
    }
    match found_non_exec {
        Some(p) => Err(Error::new(Kind::NotExecutable, format!("exec {cmd}: {} is not executable", p.display()))),
        None => Err(Error::new(Kind::CommandNotFound, format!("exec {cmd}: not found in the container's PATH ({path})"))),
    }
}

fn set_rlimits(p: &Process) -> Result<()> {
    for r in &p.rlimits {
        let res = match r.kind.as_str() {
            "RLIMIT_CPU" => libc::RLIMIT_CPU,
            "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
            "RLIMIT_DATA" => libc::RLIMIT_DATA,
            "RLIMIT_STACK" => libc::RLIMIT_STACK,
            "RLIMIT_CORE" => libc::RLIMIT_CORE,
            "RLIMIT_RSS" => libc::RLIMIT_RSS,
            "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
            "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
            "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
            "RLIMIT_AS" => libc::RLIMIT_AS,
            "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
            "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
            "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
            "RLIMIT_NICE" => libc::RLIMIT_NICE,
            "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
            "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
            other => return Err(Error::invalid(format!("unknown rlimit {other:?}"))),
        };
        let lim = libc::rlimit { rlim_cur: r.soft as libc::rlim_t, rlim_max: r.hard as libc::rlim_t };
        // SAFETY: a valid rlimit struct.
        if unsafe { libc::setrlimit(res, &lim) } != 0 {
            return Err(Error::io(format!("setrlimit {}", r.kind), std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// Bring up `lo` in the new network namespace, as `docker run --network none` does.
fn loopback_up() {
    // SAFETY: an ioctl on a socket we own, with a zeroed ifreq naming "lo".
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return;
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        if libc::ioctl(s, libc::SIOCGIFFLAGS, &mut ifr) == 0 {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(s, libc::SIOCSIFFLAGS, &ifr);
        }
        libc::close(s);
    }
}

/// Close every descriptor from `first` to `last`, with close_range(2).
fn close_range(first: u32, last: u32) {
    // SAFETY: close_range(2) on our own descriptor table.
    unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) };
}

/// Close every descriptor above 2 but `keep` (the close-on-exec error pipe), with
/// close_range(2): no /proc needed, nothing missed.
fn close_fds_except(keep: Option<RawFd>) {
    match keep {
        Some(k) if k > 3 => {
            close_range(3, k as u32 - 1);
            close_range(k as u32 + 1, u32::MAX);
        }
        Some(3) => close_range(4, u32::MAX),
        _ => close_range(3, u32::MAX),
    }
}
