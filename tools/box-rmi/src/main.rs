//! box-rmi: remove image names, and the images (and blobs) that lose their last one.

use boxkit::gc::{self, Candidates, Freed, Reach};
use boxkit::store::Store;
use boxkit_cli::{Common, ExitCodes};
use clap::Parser;

/// Remove images, like `docker rmi`.
///
/// Each REF is a name (busybox, x:1, x@sha256:…), a digest, or an image ID or a unique prefix
/// of one. A name is removed; an image that loses its last name leaves index.json, and every
/// blob (manifest, config, layer) and cached layer no other image or live bundle needs is
/// deleted. An ID shared by several names removes them all only with -f. An image a live
/// bundle (made by box-unpack or box-mount-layers) was made from is not removed: with -f it
/// is untagged and stays dangling until the bundle is gone, when box-prune collects it.
///
/// Prints "Untagged: NAME" on stderr for each name removed, and on stdout the digest of
/// every blob deleted, one per line. Waits while another boxkit process uses the store.
#[derive(Parser)]
#[command(name = "box-rmi", version, after_help = "Examples:\n  box-rmi busybox\n  box-rmi -f 3f4e1a2b9c8d\n  box-images -q --filter dangling=true | xargs -r box-rmi")]
struct Args {
    #[arg(value_name = "REF", required = true)]
    references: Vec<String>,
    /// Remove every name of an image given by ID, and untag images that bundles still use
    #[arg(short, long)]
    force: bool,
    #[command(flatten)]
    common: Common,
}

fn main() {
    boxkit_cli::main("box-rmi", ExitCodes::Standard, |a: &Args| a.common.explain, run)
}

fn run(a: Args) -> boxkit::Result<i32> {
    let root = a.common.root_dir();
    // Deleting blobs needs the collector's lock: no pull or commit is half done meanwhile.
    let store = Store::open_exclusive(&a.common.images_dir())?;
    let live = boxkit::bundle::live(&root)?;
    let mut removed = Reach::default();
    let mut status = 0;
    for r in &a.references {
        match boxkit::rmi::untag(&store, &live, r, a.force) {
            Ok(rm) => {
                for name in &rm.untagged {
                    eprintln!("Untagged: {}", boxkit::images::familiar(name));
                }
                for d in &rm.removed {
                    if let Err(e) = gc::walk(&store, d, &mut removed) {
                        // Its name is gone; box-prune collects whatever it leaves.
                        eprintln!("box-rmi: {e}: some of its blobs are left for box-prune");
                        status = 1;
                    }
                }
            }
            Err(e) => {
                eprintln!("box-rmi: {e}");
                status = 1;
            }
        }
    }
    let mut freed = Freed::default();
    gc::sweep(&store, &root, &live, Candidates::Among(&removed), &mut freed)?;
    for (d, _) in &freed.blobs {
        boxkit_cli::print_line(d)?;
    }
    Ok(status)
}
