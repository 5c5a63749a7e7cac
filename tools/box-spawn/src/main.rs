//! box-spawn: run a bundle's process in new mount, PID, UTS, IPC and network namespaces,
//! with the bundle's rootfs as its root. Exits with the process's own status.

use boxkit_cli::{Common, ExitCodes};
use clap::Parser;
use std::path::PathBuf;

mod run;

/// Run an OCI runtime bundle (config.json + rootfs/) as a container process.
///
/// The process gets its own PID 1, hostname, mounts, IPC and network (loopback only), the
/// bundle's rootfs as / (pivot_root), /proc, a read-only /sys and a minimal /dev.
/// Exit status: the process's own; 128+N if signal N killed it; 125 if box-spawn failed,
/// 126 if the command cannot be executed, 127 if it is not found.
///
/// Signals sent to box-spawn (TERM, INT, HUP …) are passed on. Without --init the command is
/// PID 1 of its namespace, and the kernel drops signals to a PID 1 that has no handler for
/// them: a plain `sleep` ignores Ctrl-C. --init puts a small init in front that forwards
/// them and reaps orphaned processes.
///
/// Run by anyone but root, the container is rootless: a user namespace where the caller's
/// id is root, with its /etc/subuid range (through newuidmap) for the other ids.
#[derive(Parser)]
#[command(name = "box-spawn", version, after_help = "Examples:\n  box-spawn ./bundle\n  box-spawn ./bundle -- sh -c 'hostname; ps'\n  box-spawn --init ./bundle -- sh -c 'sleep 1 & exec sleep 2'")]
struct Args {
    /// The bundle directory (config.json and rootfs/)
    #[arg(value_name = "BUNDLE")]
    bundle: PathBuf,
    /// Run a minimal init as PID 1 that reaps zombies and forwards signals to the command
    #[arg(long)]
    init: bool,
    /// Run in this cgroup (a path printed by box-cgroup-limit --create)
    #[arg(long, value_name = "PATH")]
    cgroup: Option<PathBuf>,
    /// Run in a new user namespace: "auto" (root: root's /etc/subuid range, else
    /// 1000000000:65536) or HOST:SIZE. Automatic for anyone but root, and when config.json asks
    #[arg(long, value_name = "MAP", num_args = 0..=1, require_equals = true, default_missing_value = "auto")]
    userns: Option<boxkit::userns::Request>,
    #[command(flatten)]
    run: run::RunArgs,
    /// Turn the hardening off, like docker run --privileged: every capability, no seccomp,
    /// no masked or read-only paths, /sys and /sys/fs/cgroup writable, every device allowed
    #[arg(long)]
    privileged: bool,
    /// "default": Docker's default seccomp profile; "unconfined": no seccomp filter
    #[arg(long, value_name = "PROFILE", default_value = "default", value_parser = ["default", "unconfined"])]
    seccomp: String,
    /// The command to run instead of the one in config.json
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
    #[command(flatten)]
    common: Common,
}

fn main() {
    boxkit_cli::main("box-spawn", ExitCodes::Runner, |a: &Args| a.common.explain, run)
}

fn run(a: Args) -> boxkit::Result<i32> {
    let mut spec = boxkit::runtime::load(&a.bundle)?;
    let prepared = run::prepare(&a.run, &a.common.root_dir(), &a.bundle, &mut spec)?;
    let hardening = boxkit::hardening::Options { privileged: a.privileged, seccomp_unconfined: a.seccomp == "unconfined" };
    // Removes the cgroup it created when dropped, after the container has exited.
    let cgroup = boxkit::hardening::ContainerCgroup::setup(a.cgroup.as_deref(), a.privileged)?;
    let plan = boxkit::hardening::prepare(&mut spec, &hardening, &cgroup)?;
    let mut cgroup_procs = cgroup.procs();
    // Without root, a cgroup is usable only where it was delegated to the caller.
    if !cgroup_procs.iter().all(|p| boxkit::rootless::may_join_cgroup(p)) {
        let what = a.cgroup.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "the container's cgroup".into());
        eprintln!("box-spawn: note: {what} is not delegated to you: running without its limits");
        cgroup_procs.clear();
    }
    // An overlay bundle made by an ordinary user (or unmounted): box-spawn mounts it.
    let rootfs = boxkit::runopts::rootfs_of(&a.bundle, &spec)?;
    let overlay = boxkit::overlay::pending(&a.common.root_dir(), &a.bundle, &rootfs)?;
    let opts = boxkit::spawn::SpawnOptions {
        args: if a.command.is_empty() { None } else { Some(a.command) },
        init: a.init,
        cgroup_procs,
        userns: a.userns,
        hardening: plan,
        cleanup: Some(std::sync::Arc::new(cgroup)),
        overlay,
        ..Default::default()
    };
    run::start(&a.run, prepared, &a.bundle, &spec, opts)
}
