//! box-load: images from a `docker save` or OCI archive (file or stdin; plain, gzip or zstd)
//! into the store. Prints each loaded image's name, or its manifest digest when unnamed.

use boxkit::store::Store;
use boxkit_cli::{Common, ExitCodes};
use clap::Parser;
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

/// Load images from a tar archive, like `docker load`.
///
/// Reads what `docker save`, `box-save` and skopeo's `docker-archive:` and `oci-archive:`
/// write. Every blob is verified before it enters the store, and the images are named only
/// once all of them verified: a refused archive leaves no name behind (its verified blobs
/// stay unreferenced until box-prune). An image the archive names only by a bare tag
/// (`latest`) is loaded without a name; its digest is printed.
#[derive(Parser)]
#[command(
    name = "box-load",
    version,
    after_help = "Examples:\n  box-load -i busybox.tar\n  docker save busybox | box-load\n  skopeo copy docker://alpine docker-archive:/dev/stdout:alpine:latest | box-load"
)]
struct Args {
    /// Read the archive from FILE instead of standard input
    #[arg(short, long, value_name = "FILE")]
    input: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

fn main() {
    boxkit_cli::main("box-load", ExitCodes::Standard, |a: &Args| a.common.explain, run)
}

fn run(a: Args) -> boxkit::Result<i32> {
    let reader: Box<dyn Read + Send> = match &a.input {
        None => Box::new(std::io::stdin()),
        Some(p) => Box::new(File::open(p).map_err(|e| boxkit::Error::io(format!("open {}", p.display()), e))?),
    };
    let store = Store::init(&a.common.images_dir())?;
    let from = a.input.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "standard input".to_string());
    let loaded = boxkit::load::load(&store, reader).map_err(|e| e.context(format!("load {from}")))?;
    for l in &loaded {
        if let (Some(tag), true) = (&l.bare_tag, l.names.is_empty()) {
            eprintln!(
                "box-load: image {} is named only {tag:?} in index.json (a tag without a repository): loaded without a name",
                l.descriptor.digest
            );
        }
        if l.names.is_empty() {
            boxkit_cli::print_line(&l.descriptor.digest)?;
        }
        for n in &l.names {
            boxkit_cli::print_line(n)?;
        }
    }
    Ok(0)
}
