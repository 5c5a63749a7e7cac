//! box-volume: named volumes under `$BOXKIT_ROOT/volumes` (Docker's layout: `NAME/_data`),
//! which `box-spawn -v NAME:/path` mounts and which outlive containers.

use boxkit_cli::{Common, ExitCodes};
use clap::{Parser, Subcommand};

/// Create, list, inspect and remove named volumes.
///
/// A volume is a directory, `$BOXKIT_ROOT/volumes/NAME/_data`, that box-spawn binds into a
/// container (`box-spawn -v NAME:/data BUNDLE`). `box-spawn -v` creates missing volumes
/// itself and fills an empty one with the image's files at the mount point. Volumes are
/// kept until removed; `rm` refuses a volume that a running container uses.
#[derive(Parser)]
#[command(
    name = "box-volume",
    version,
    after_help = "Examples:\n  box-volume create db\n  box-spawn -v db:/var/lib/db ./bundle\n  box-volume inspect db\n  box-volume ls\n  box-volume rm db"
)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
    #[command(flatten)]
    common: Common,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a volume (no error if it exists); prints its name
    Create {
        /// [a-zA-Z0-9][a-zA-Z0-9_.-]+ ; a random 64-hex name if left out
        name: Option<String>,
    },
    /// Print the name of every volume, one per line
    Ls,
    /// Print volumes as JSON, as docker volume inspect does
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes and their data (refused while a container uses one); prints each name
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

fn main() {
    boxkit_cli::main("box-volume", ExitCodes::Standard, |a: &Args| a.common.explain, run)
}

fn run(a: Args) -> boxkit::Result<i32> {
    let root = a.common.root_dir();
    match a.command {
        Cmd::Create { name } => {
            let name = match name {
                Some(n) => n,
                None => boxkit::volume::anonymous_name()?,
            };
            boxkit::volume::create(&root, &name, serde_json::Map::new())?;
            boxkit_cli::print_line(name)?;
        }
        Cmd::Ls => {
            for n in boxkit::volume::list(&root)? {
                boxkit_cli::print_line(n)?;
            }
        }
        Cmd::Inspect { names } => {
            let docs = names.iter().map(|n| boxkit::volume::inspect(&root, n)).collect::<boxkit::Result<Vec<_>>>()?;
            // Docker's indentation (four spaces), so the output can be compared with its own.
            let mut out = Vec::new();
            let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
            serde::Serialize::serialize(&docs, &mut ser).expect("serializing JSON values cannot fail");
            boxkit_cli::print_line(String::from_utf8_lossy(&out))?;
        }
        Cmd::Rm { names } => {
            for n in names {
                boxkit::volume::remove(&root, &n)?;
                boxkit_cli::print_line(n)?;
            }
        }
    }
    Ok(0)
}
