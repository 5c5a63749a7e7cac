//! box-export: a bundle's root filesystem (or an image's, flattened) as a tar on stdout.

use boxkit::store::Store;
use boxkit_cli::{Common, ExitCodes};
use clap::Parser;
use std::io::{BufWriter, IsTerminal};
use std::path::PathBuf;

/// Write a root filesystem as a tar stream on standard output, like `docker export`.
///
/// Entries come in a fixed order (depth-first, names sorted), so the same tree always gives
/// the same bytes, and `box-export B | box-import - name` round-trips it.
#[derive(Parser)]
#[command(name = "box-export", version, after_help = "Examples:\n  box-export ./bundle > rootfs.tar\n  box-export --image busybox | tar -tv | head")]
struct Args {
    /// The bundle whose rootfs to export
    #[arg(value_name = "BUNDLE", required_unless_present = "image", conflicts_with = "image")]
    bundle: Option<PathBuf>,
    /// Export an image from the store instead: its layers applied, flattened into one tree
    #[arg(long, value_name = "REF")]
    image: Option<String>,
    #[command(flatten)]
    common: Common,
}

fn main() {
    boxkit_cli::main("box-export", ExitCodes::Standard, |a: &Args| a.common.explain, run)
}

fn run(a: Args) -> boxkit::Result<i32> {
    if std::io::stdout().is_terminal() {
        return Err(boxkit::Error::invalid("refusing to write a tar stream to a terminal: redirect stdout"));
    }
    let out = BufWriter::with_capacity(256 << 10, std::io::stdout().lock());
    match (&a.bundle, &a.image) {
        (Some(bundle), _) => {
            let spec = boxkit::runtime::load(bundle)?;
            let root = spec.root.map(|r| r.path).unwrap_or_else(|| "rootfs".to_string());
            boxkit::export::export(&bundle.join(root), out)?;
        }
        (None, Some(name)) => {
            let store = Store::open(&a.common.images_dir())?;
            let image = store.image(name)?;
            let tmp = tempfile::Builder::new()
                .prefix(".export-")
                .tempdir_in(a.common.root_dir())
                .map_err(|e| boxkit::Error::io("create a scratch directory", e))?;
            let rootfs = tmp.path().join("rootfs");
            boxkit::unpack::new_rootfs(&rootfs)?;
            boxkit::unpack::apply_layers(&store, &image, &rootfs)?;
            boxkit::export::export(&rootfs, out)?;
        }
        (None, None) => unreachable!("clap requires one"),
    }
    Ok(0)
}
