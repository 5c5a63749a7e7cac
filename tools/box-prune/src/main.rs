//! box-prune: the garbage collector of the image store and the layer cache.

use boxkit_cli::{Common, ExitCodes};
use clap::Parser;

/// Remove what nothing uses, like `docker image prune` (and `docker system prune` for the
/// layer cache and leftovers).
///
/// Removes the dangling images (no name) no live bundle was made from; with -a, every image
/// no live bundle was made from. Then deletes every blob that index.json does not reach
/// (through indexes, manifests, configs and layers) and no live bundle's manifest reaches,
/// every cached layer ($BOXKIT_ROOT/layers/sha256/DIFF_ID) that no image in index.json and no
/// live bundle needs, the temporary files interrupted writers left, and the records of
/// bundles that no longer exist.
///
/// Prints on stdout what it removed, one per line: the digest of each blob deleted, then the
/// path of each cached layer, temporary file and bundle record removed; on stderr, the images
/// removed and the total space reclaimed. Waits until no other boxkit process uses the store,
/// and keeps them waiting until it is done.
#[derive(Parser)]
#[command(name = "box-prune", version, after_help = "Examples:\n  box-prune\n  box-prune -a")]
struct Args {
    /// Also remove tagged images that no live bundle uses
    #[arg(short, long)]
    all: bool,
    #[command(flatten)]
    common: Common,
}

fn main() {
    boxkit_cli::main("box-prune", ExitCodes::Standard, |a: &Args| a.common.explain, run)
}

fn run(a: Args) -> boxkit::Result<i32> {
    let freed = boxkit::gc::prune(&a.common.root_dir(), a.all)?;
    for d in &freed.images {
        match d.ref_name() {
            Some(name) => eprintln!("Untagged: {}", boxkit::images::familiar(name)),
            None => eprintln!("Deleted image: {}", d.digest),
        }
    }
    for (d, _) in &freed.blobs {
        boxkit_cli::print_line(d)?;
    }
    for (p, _) in freed.layers.iter().chain(&freed.temporary) {
        boxkit_cli::print_line(p.display())?;
    }
    for p in &freed.bundles {
        boxkit_cli::print_line(p.display())?;
    }
    eprintln!("Total reclaimed space: {}", boxkit::images::docker_size(freed.total(), 4));
    Ok(0)
}
