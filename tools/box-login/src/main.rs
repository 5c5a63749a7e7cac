//! box-login: check credentials against a registry and store them where Docker does.

use boxkit::auth::{self, Credentials};
use boxkit_cli::{Common, ExitCodes};
use clap::Parser;
use std::io::{BufRead, IsTerminal, Write};

/// Log in to a registry, like `docker login`: the credentials are checked against the
/// registry, then stored in Docker's config.json ($DOCKER_CONFIG/config.json or
/// ~/.docker/config.json, mode 0600), where box-pull, box-push and docker find them.
#[derive(Parser)]
#[command(name = "box-login", version, after_help = "Examples:\n  echo \"$TOKEN\" | box-login --username alice --password-stdin localhost:5000")]
struct Args {
    /// The registry host: localhost:5000, quay.io, docker.io
    #[arg(value_name = "REGISTRY")]
    registry_host: String,
    /// The user name (asked for on a terminal when missing)
    #[arg(long, short = 'u')]
    username: Option<String>,
    /// Read the password from standard input
    #[arg(long)]
    password_stdin: bool,
    #[command(flatten)]
    registry: boxkit_cli::RegistryArgs,
    #[command(flatten)]
    common: Common,
}

fn main() {
    boxkit_cli::main("box-login", ExitCodes::Standard, |a: &Args| a.common.explain, run)
}

fn read_line(prompt: &str, secret: bool) -> boxkit::Result<String> {
    let tty = std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty").map_err(|e| boxkit::Error::io("open /dev/tty", e))?;
    let mut out = &tty;
    let _ = write!(out, "{prompt}");
    let _ = out.flush();
    let saved = if secret { nix_echo(&tty, false) } else { None };
    let mut line = String::new();
    let r = std::io::BufReader::new(&tty).read_line(&mut line);
    if let Some(t) = saved {
        let _ = nix::sys::termios::tcsetattr(&tty, nix::sys::termios::SetArg::TCSANOW, &t);
        let _ = writeln!(out);
    }
    r.map_err(|e| boxkit::Error::io("read from the terminal", e))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

fn nix_echo(tty: &std::fs::File, on: bool) -> Option<nix::sys::termios::Termios> {
    let saved = nix::sys::termios::tcgetattr(tty).ok()?;
    let mut t = saved.clone();
    t.local_flags.set(nix::sys::termios::LocalFlags::ECHO, on);
    nix::sys::termios::tcsetattr(tty, nix::sys::termios::SetArg::TCSANOW, &t).ok()?;
    Some(saved)
}

fn run(a: Args) -> boxkit::Result<i32> {
    let host = auth::registry_host(&a.registry_host);
    let username = match a.username {
        Some(u) => u,
        None if std::io::stdin().is_terminal() => read_line("Username: ", false)?,
        None => return Err(boxkit::Error::invalid("--username is needed when standard input is not a terminal")),
    };
    let password = if a.password_stdin {
        let mut s = String::new();
        std::io::stdin().read_line(&mut s).map_err(|e| boxkit::Error::io("read the password from stdin", e))?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else if std::io::stdin().is_terminal() {
        read_line("Password: ", true)?
    } else {
        return Err(boxkit::Error::invalid("give --password-stdin, or run on a terminal to be asked"));
    };
    if username.is_empty() || password.is_empty() {
        return Err(boxkit::Error::invalid("user name and password must not be empty"));
    }
    let creds = Credentials { username, password };
    let mut opts = a.registry.options();
    opts.credentials = Some(creds.clone());
    let bases = boxkit::registry::endpoints(&host, opts.insecure);
    boxkit::registry::first_that_works(&bases, |base| boxkit::registry::Client::new(base, "", &host, &opts)?.ping())
        .map_err(|e| e.context(format!("login to {host}")))?;
    let path = auth::docker_config_path();
    auth::store_credentials(&path, &host, Some(&creds))?;
    eprintln!("box-login: credentials for {host} stored in {}", path.display());
    Ok(0)
}
