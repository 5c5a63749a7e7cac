//! The `docker run` options of box-spawn: process options, mounts, terminals, detaching.
//! Everything here edits the spec and the spawn options in memory before the container starts.

use std::path::{Path, PathBuf};

/// Options as `docker run` spells them.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// Set an environment variable (KEY=VAL), or pass the caller's (KEY)
    #[arg(short = 'e', long = "env", value_name = "KEY[=VAL]")]
    pub env: Vec<String>,
    /// The working directory inside the container (created if missing)
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// Run as USER[:GROUP] (names from the image's /etc/passwd and /etc/group, or numbers)
    #[arg(short = 'u', long = "user", value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// The container's host name
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Mount a host path (absolute), a named volume, or a new anonymous volume (CTR alone)
    #[arg(short = 'v', long = "volume", value_name = "SRC:CTR[:ro]")]
    pub volume: Vec<String>,
    /// Mount a tmpfs (nosuid,nodev,noexec; OPTS: size=,mode=,uid=,gid=,exec,ro)
    #[arg(long, value_name = "CTR[:OPTS]")]
    pub tmpfs: Vec<String>,
    /// Give the container a pseudo-terminal (its stdin, stdout, stderr and /dev/console)
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Keep stdin open: with -t, copy the caller's input to the container (raw mode on a
    /// terminal); with -d, leave the caller's stdin to the container instead of /dev/null
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Run in the background: print the container's name and return once it runs; its
    /// output goes to $BOXKIT_ROOT/containers/NAME/container.log
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Name the container (unique); its state is kept in $BOXKIT_ROOT/containers/NAME/
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

/// What a run holds until its container has exited.
pub struct Prepared {
    pub root: PathBuf,
    /// Locks marking the volumes in use: never read, only kept open.
    #[allow(dead_code)]
    pub held: Vec<std::fs::File>,
    pub volumes: Vec<String>,
}

/// Apply the options to the spec and make the volumes ready.
pub fn prepare(r: &RunArgs, root: &Path, bundle: &Path, spec: &mut boxkit::runtime::Spec) -> boxkit::Result<Prepared> {
    let rootfs = boxkit::runopts::rootfs_of(bundle, spec)?;
    let o = boxkit::runopts::ProcessOptions {
        env: r.env.clone(),
        workdir: r.workdir.clone(),
        user: r.user.clone(),
        hostname: r.hostname.clone(),
    };
    boxkit::runopts::apply(spec, &rootfs, &o, |k| std::env::var(k).ok())?;
    let vols = r.volume.iter().map(|v| boxkit::volmount::parse_volume(v)).collect::<boxkit::Result<Vec<_>>>()?;
    let tmpfs = r.tmpfs.iter().map(|t| boxkit::volmount::parse_tmpfs(t)).collect::<boxkit::Result<Vec<_>>>()?;
    let plan = boxkit::volmount::plan(root, bundle, &rootfs, &vols, &tmpfs)?;
    spec.mounts.extend(plan.mounts);
    Ok(Prepared { root: root.to_path_buf(), held: plan.held, volumes: plan.volumes })
}

/// Run the container: with a terminal if asked, recorded in a state file if it has a name,
/// detached if asked.
pub fn start(r: &RunArgs, prepared: Prepared, bundle: &Path, spec: &boxkit::runtime::Spec, mut opts: boxkit::spawn::SpawnOptions) -> boxkit::Result<i32> {
    use boxkit::pty;
    let caller_tty = [0, 1].into_iter().find(|&fd| pty::is_terminal(fd));
    let term = if r.tty { Some(pty::open(if r.detach { None } else { caller_tty })?) } else { None };
    if let Some(p) = &term {
        use std::os::fd::AsRawFd;
        opts.terminal = Some(pty::Terminal {
            master: p.master.as_raw_fd(),
            slave: p.slave.as_raw_fd(),
            input: (r.interactive && !r.detach).then_some(0),
            output: 1,
            winsize_from: if r.detach { None } else { caller_tty },
            raw: (r.interactive && !r.detach && pty::is_terminal(0)).then_some(0),
        });
    }
    if r.name.is_none() && !r.detach {
        let status = boxkit::spawn::spawn(bundle, spec, &opts);
        drop((prepared, term));
        return status;
    }
    let (name, dir) = boxkit::state::reserve(&prepared.root, r.name.as_deref())?;
    let command = opts.args.clone().unwrap_or_else(|| spec.process.as_ref().map(|p| p.args.clone()).unwrap_or_default());
    let st = boxkit::state::State {
        version: 1,
        name: name.clone(),
        id: boxkit::state::new_id()?,
        status: boxkit::state::Status::Created,
        pid: None,
        pid_start_time: None,
        supervisor_pid: 0,
        supervisor_start_time: 0,
        exit_code: None,
        error: None,
        bundle: std::fs::canonicalize(bundle).unwrap_or_else(|_| bundle.to_path_buf()),
        command,
        created: boxkit::state::now(),
        started_at: None,
        finished_at: None,
        log_path: r.detach.then(|| dir.join("container.log")),
        volumes: prepared.volumes.clone(),
    };
    if r.detach {
        boxkit::detach::detach(&dir, st, bundle, spec, opts, r.interactive)?;
        drop((prepared, term));
        boxkit_cli::print_line(&name)?;
        return Ok(0);
    }
    let status = boxkit::detach::run_recorded(&dir, st, bundle, spec, opts);
    drop((prepared, term));
    status
}
