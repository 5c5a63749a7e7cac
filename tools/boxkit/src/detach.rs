//! Recorded and detached runs: a container whose life is written to its state file, and
//! `box-spawn -d`, whose container goes on under a supervisor after box-spawn returns.
//!
//! Reference: daemon(7) (the double fork: setsid so no terminal can signal the supervisor,
//! a second fork so it can never acquire one), setsid(2), fork(2), and [`crate::state`].
//!
//! ```text
//! box-spawn -d ─ fork ─▶ child: setsid ─ fork ─▶ supervisor: stdin /dev/null, stdout+stderr
//!    │                     └─ exits at once        → container.log; spawn(); record the exit
//!    └─ reads the ready pipe: "started" (prints the name, exit 0) or the error (exit 125…)
//! ```

use crate::error::{Context, Error, Kind, Result};
use crate::explain;
use crate::runtime::Spec;
use crate::spawn::{self, SpawnOptions};
use crate::state::{self, StartHook, State, Status};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::{Arc, Mutex};

// ANCHOR: run_recorded
/// Run the container, writing its state to `dir/state.json` as it goes: `created` now,
/// `running` with its pid once its command runs, `exited` with its status at the end.
pub fn run_recorded(dir: &Path, mut st: State, bundle: &Path, spec: &Spec, mut opts: SpawnOptions) -> Result<i32> {
    let me = std::process::id() as i32;
    st.supervisor_pid = me;
    st.supervisor_start_time = state::start_time(me).unwrap_or(0);
    st.status = Status::Created;
    state::write(dir, &st)?;
    let shared = Arc::new(Mutex::new(st));
    let (hook_state, hook_dir, then) = (shared.clone(), dir.to_path_buf(), opts.on_start.take());
    opts.on_start = Some(StartHook(Arc::new(move |pid| {
        let mut s = hook_state.lock().unwrap_or_else(|p| p.into_inner());
        s.pid = Some(pid);
        s.pid_start_time = state::start_time(pid);
        s.status = Status::Running;
        s.started_at = Some(state::now());
        let _ = state::write(&hook_dir, &s);
        if let Some(h) = &then {
            (h.0)(pid);
        }
    })));
    let result = spawn::spawn(bundle, spec, &opts);
    let mut s = shared.lock().unwrap_or_else(|p| p.into_inner()).clone();
    s.status = Status::Exited;
    s.finished_at = Some(state::now());
    match &result {
        Ok(code) => s.exit_code = Some(*code),
        Err(e) => {
            // The exit status a failure to start stands for (as `boxkit-cli` maps it).
            s.exit_code = Some(e.kind().runner_exit_code());
            s.error = Some(e.to_string());
        }
    }
    state::write(dir, &s)?;
    result
}
// ANCHOR_END: run_recorded

// ANCHOR: detach
/// Start the container under a detached supervisor and return once its command runs (or
/// with the error that kept it from running). Its stdout and stderr go to `st.log_path`;
/// its stdin is /dev/null unless `keep_stdin`. Only for a single-threaded caller.
pub fn detach(dir: &Path, st: State, bundle: &Path, spec: &Spec, opts: SpawnOptions, keep_stdin: bool) -> Result<()> {
    let log_path = st.log_path.clone().ok_or_else(|| Error::invalid("a detached container needs a log file"))?;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).ctx(|| format!("open {}", log_path.display()))?;
    std::fs::set_permissions(&log_path, std::os::unix::fs::PermissionsExt::from_mode(0o640)).ctx(|| "chmod log")?;
    let null = std::fs::File::open("/dev/null").ctx(|| "open /dev/null")?;
    let bundle = std::fs::canonicalize(bundle).ctx(|| format!("bundle {}", bundle.display()))?;
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(|| "pipe")?;
    explain!("fork, setsid, fork: the supervisor of {} outlives box-spawn", st.name);
    // SAFETY: the caller is single-threaded; the children only run the code below.
    match unsafe { nix::unistd::fork() }.ctx(|| "fork")? {
        nix::unistd::ForkResult::Parent { child } => {
            drop(ready_w);
            // The supervisor cleans up after the container; this process must not.
            std::mem::forget(opts.cleanup);
            let mut report = Vec::new();
            let _ = std::fs::File::from(ready_r).read_to_end(&mut report);
            let _ = nix::sys::wait::waitpid(child, None);
            match report.split_first() {
                Some((b'o', _)) => Ok(()),
                Some(_) => Err(Error::from_report(&report)),
                None => Err(Error::new(Kind::System, "the supervisor exited before the container started")),
            }
        }
        nix::unistd::ForkResult::Child => {
            drop(ready_r);
            let _ = nix::unistd::setsid();
            // SAFETY: as above; the intermediate child leaves at once.
            match unsafe { nix::unistd::fork() } {
                Ok(nix::unistd::ForkResult::Child) => {}
                _ => unsafe { libc::_exit(0) },
            }
            // SAFETY: dup2 onto the standard descriptors of this (new) process.
            unsafe {
                if !keep_stdin {
                    libc::dup2(null.as_raw_fd(), 0);
                }
                libc::dup2(log.as_raw_fd(), 1);
                libc::dup2(log.as_raw_fd(), 2);
            }
            drop((null, log));
            let _ = std::env::set_current_dir("/");
            let ready = Arc::new(Mutex::new(Some(std::fs::File::from(ready_w))));
            let mut opts = opts;
            let on_ready = ready.clone();
            opts.on_start = Some(StartHook(Arc::new(move |_| {
                if let Some(mut w) = on_ready.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    let _ = w.write_all(b"o");
                }
            })));
            let result = run_recorded(dir, st, &bundle, spec, opts);
            if let Err(e) = &result {
                if let Some(mut w) = ready.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    let _ = w.write_all(&e.to_report());
                } else {
                    let _ = writeln!(std::io::stderr(), "box-spawn: {e}");
                }
            }
            // SAFETY: the supervisor's work is done; leave without the caller's exit path.
            unsafe { libc::_exit(0) };
        }
    }
}
// ANCHOR_END: detach
