//! box-unpack: an image becomes an OCI runtime bundle (config.json + rootfs/).
//! Prints the bundle path.

use boxkit::store::Store;
use boxkit_cli::{Common, ExitCodes};
use clap::Parser;
use std::path::PathBuf;

/// Unpack an image into an OCI runtime bundle that box-spawn, runc or crun can run.
///
/// Layers are applied in order (whiteouts, hard links, devices, xattrs), each verified against
/// its digest, inside the rootfs and never outside it; config.json comes from the image config.
#[derive(Parser)]
#[command(name = "box-unpack", version, after_help = "Examples:\n  box-unpack busybox ./bb && box-spawn ./bb -- sh\n  box-unpack --layout ./skopeo-dir latest ./bundle")]
struct Args {
    /// The image: a name from the store (or from --layout)
    #[arg(value_name = "REF")]
    reference: String,
    /// The bundle directory to create (must not exist)
    #[arg(value_name = "BUNDLE")]
    bundle: PathBuf,
    /// Read the image from this OCI image layout (made by skopeo, umoci, buildah …) instead of the store
    #[arg(long, value_name = "DIR")]
    layout: Option<PathBuf>,
    /// For a container in a user namespace: "auto" or HOST:SIZE (as box-spawn --userns); files
    /// get the mapped owners and config.json the maps. Automatic (auto) for anyone but root
    #[arg(long, value_name = "MAP", num_args = 0..=1, require_equals = true, default_missing_value = "auto")]
    userns: Option<boxkit::userns::Request>,
    #[command(flatten)]
    common: Common,
}

fn main() {
    boxkit_cli::main("box-unpack", ExitCodes::Standard, |a: &Args| a.common.explain, run)
}

fn run(a: Args) -> boxkit::Result<i32> {
    let store = match &a.layout {
        Some(dir) => Store::open(dir)?,
        None => Store::open(&a.common.images_dir())?,
    };
    let image = store.image(&a.reference)?;
    let name = match &a.layout {
        Some(_) => a.reference.clone(),
        None => boxkit::reference::Reference::parse(&a.reference).map(|r| r.to_string()).unwrap_or(a.reference.clone()),
    };
    let caller = boxkit::userns::Caller::current();
    let request = a.userns.or(if caller.uid != 0 { Some(boxkit::userns::Request::Auto) } else { None });
    let ids = request.map(|r| boxkit::userns::plan(r, &caller));
    let info = boxkit::unpack::unpack_bundle_mapped(&store, &image, &name, &a.bundle, ids.as_ref())
        .map_err(|e| e.context(format!("unpack {} into {}", a.reference, a.bundle.display())))?;
    if a.layout.is_none() {
        // So box-rmi and box-prune know this bundle still uses the image.
        boxkit::bundle::register(&a.common.root_dir(), &a.bundle, &info)?;
    }
    boxkit_cli::print_line(a.bundle.display())?;
    Ok(0)
}
