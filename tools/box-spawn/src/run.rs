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
}

/// What a run holds until its container has exited.
pub struct Prepared {
    pub root: PathBuf,
    /// Locks marking the volumes in use.
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

/// Run the container.
pub fn start(_r: &RunArgs, prepared: Prepared, bundle: &Path, spec: &boxkit::runtime::Spec, opts: boxkit::spawn::SpawnOptions) -> boxkit::Result<i32> {
    let status = boxkit::spawn::spawn(bundle, spec, &opts);
    drop(prepared);
    status
}
