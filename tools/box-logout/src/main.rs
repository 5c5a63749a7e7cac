//! box-logout: remove stored registry credentials.

use boxkit_cli::{Common, ExitCodes};
use clap::Parser;

/// Log out of a registry, like `docker logout`: its entry leaves Docker's config.json.
#[derive(Parser)]
#[command(name = "box-logout", version)]
struct Args {
    /// The registry host: localhost:5000, quay.io, docker.io
    #[arg(value_name = "REGISTRY")]
    registry_host: String,
    #[command(flatten)]
    common: Common,
}

fn main() {
    boxkit_cli::main("box-logout", ExitCodes::Standard, |a: &Args| a.common.explain, run)
}

fn run(a: Args) -> boxkit::Result<i32> {
    let host = boxkit::auth::registry_host(&a.registry_host);
    let path = boxkit::auth::docker_config_path();
    if boxkit::auth::store_credentials(&path, &host, None)? {
        eprintln!("box-logout: removed credentials for {host} from {}", path.display());
    } else {
        eprintln!("box-logout: no credentials for {host} in {}", path.display());
    }
    Ok(0)
}
