//! What every `box-*` binary shares: the common flags, the `--explain` sink, and the one
//! place where errors become messages and exit codes.
//!
//! Exit codes: 0 success; 1 failure; 2 usage error (clap). Tools that run a container
//! process ([`ExitCodes::Runner`]) follow `chroot`/`docker run`: the process's own status, 125
//! when the tool itself failed, 126 when the command cannot be executed, 127 when it is not
//! found.

use boxkit::{Error, Kind};
use clap::Parser;
use std::io::Write;
use std::path::PathBuf;

/// Flags every tool takes.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// The boxkit state directory (images/, layers/, containers/, volumes/)
    #[arg(long, env = "BOXKIT_ROOT", value_name = "DIR", global = true)]
    pub root: Option<PathBuf>,
    /// Narrate each system call and file-format step on stderr
    #[arg(long, global = true)]
    pub explain: bool,
}

impl Common {
    /// `--root`, else `$BOXKIT_ROOT`, else `/var/lib/boxkit` for root and
    /// `$XDG_DATA_HOME/boxkit` (or `~/.local/share/boxkit`) for anyone else.
    pub fn root_dir(&self) -> PathBuf {
        if let Some(r) = &self.root {
            return r.clone();
        }
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            return PathBuf::from("/var/lib/boxkit");
        }
        match std::env::var_os("XDG_DATA_HOME") {
            Some(x) if !x.is_empty() => PathBuf::from(x).join("boxkit"),
            _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/".into())).join(".local/share/boxkit"),
        }
    }

    /// The image store: `<root>/images`.
    pub fn images_dir(&self) -> PathBuf {
        self.root_dir().join("images")
    }
}

/// How a tool's failures map to exit codes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ExitCodes {
    /// 1 on any failure.
    Standard,
    /// 125 own failure, 126 not executable, 127 not found (the command inside the container).
    Runner,
}

fn code_for(kind: Kind, codes: ExitCodes) -> i32 {
    match (codes, kind) {
        (ExitCodes::Standard, _) => 1,
        (ExitCodes::Runner, kind) => kind.runner_exit_code(),
    }
}

/// Parse the arguments, run the tool, print an error as one line, and exit.
/// `run` returns the exit status on success (0, or a container process's status).
pub fn main<A: Parser>(tool: &'static str, codes: ExitCodes, explain: fn(&A) -> bool, run: fn(A) -> Result<i32, Error>) -> ! {
    let args = A::parse();
    if explain(&args) {
        boxkit::explain::enable(Box::new(move |line| {
            let _ = writeln!(std::io::stderr().lock(), "{tool}: explain: {line}");
        }));
    }
    let code = match run(args) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(std::io::stderr().lock(), "{tool}: {e}");
            code_for(e.kind(), codes)
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

/// Print identifiers on stdout, one per line, as every tool does.
pub fn print_line(s: impl std::fmt::Display) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{s}").and_then(|_| out.flush()).map_err(|e| Error::io("write stdout", e))
}

/// Flags of the tools that talk to registries.
#[derive(clap::Args, Debug, Clone)]
pub struct RegistryArgs {
    /// Allow plain HTTP to this registry (after trying HTTPS)
    #[arg(long)]
    pub insecure: bool,
    /// Trust this CA certificate (PEM) too, besides the system's and /etc/docker/certs.d/HOST/ca.crt
    #[arg(long, value_name = "FILE")]
    pub ca_file: Vec<PathBuf>,
}

impl RegistryArgs {
    pub fn options(&self) -> boxkit::registry::Options {
        boxkit::registry::Options { insecure: self.insecure, ca_files: self.ca_file.clone(), ..Default::default() }
    }
}
