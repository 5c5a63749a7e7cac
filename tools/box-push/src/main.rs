//! box-push: an image from the store to a registry. Prints the manifest digest.

use boxkit::reference::Reference;
use boxkit::store::Store;
use boxkit_cli::{Common, ExitCodes};
use clap::Parser;

/// Push an image from the store to a registry, like `docker push`.
///
/// Only blobs the registry lacks are uploaded (HEAD first; a cross-repository mount when
/// the image came from another repository of the same registry); the manifest goes last,
/// byte for byte as stored, so its digest does not change.
#[derive(Parser)]
#[command(name = "box-push", version, after_help = "Examples:\n  box-push localhost:5000/team/app:v1\n  box-push busybox localhost:5000/mirror/busybox:latest")]
struct Args {
    /// The image in the store
    #[arg(value_name = "REF")]
    source: String,
    /// Where to push it (default: REF itself)
    #[arg(value_name = "DEST")]
    dest: Option<String>,
    /// Upload blobs in chunks of this many bytes (PATCH), instead of one PUT each
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    chunk_size: u64,
    #[command(flatten)]
    registry: boxkit_cli::RegistryArgs,
    #[command(flatten)]
    common: Common,
}

fn main() {
    boxkit_cli::main("box-push", ExitCodes::Standard, |a: &Args| a.common.explain, run)
}

fn run(a: Args) -> boxkit::Result<i32> {
    let dest = Reference::parse(a.dest.as_deref().unwrap_or(&a.source))?;
    let store = Store::open(&a.common.images_dir())?;
    let opts = boxkit::push::PushOptions { chunk_size: a.chunk_size, registry: a.registry.options() };
    let desc = boxkit::push::push(&store, &a.source, &dest, &opts).map_err(|e| e.context(format!("push {dest}")))?;
    boxkit_cli::print_line(&desc.digest)?;
    Ok(0)
}
