//! The `docker run` options of box-spawn: process options, mounts, terminals, detaching.
//! Everything here edits the spec and the spawn options in memory before the container starts.

use std::path::Path;

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
}

/// Apply the options to the spec.
pub fn prepare(r: &RunArgs, bundle: &Path, spec: &mut boxkit::runtime::Spec) -> boxkit::Result<()> {
    let rootfs = boxkit::runopts::rootfs_of(bundle, spec)?;
    let o = boxkit::runopts::ProcessOptions {
        env: r.env.clone(),
        workdir: r.workdir.clone(),
        user: r.user.clone(),
        hostname: r.hostname.clone(),
    };
    boxkit::runopts::apply(spec, &rootfs, &o, |k| std::env::var(k).ok())
}
