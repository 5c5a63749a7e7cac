//! box-mount-layers: an image becomes a bundle whose rootfs is an overlay of the image's
//! cached layers, with the bundle's own upper/ and work/. Prints the bundle path.

use boxkit::overlay::{self, Api, Made};
use boxkit::store::Store;
use boxkit_cli::{Common, ExitCodes};
use clap::Parser;
use std::io::Write;
use std::path::PathBuf;

/// Make a bundle whose rootfs/ is an overlay mount of the image's layers: no copy of the image.
///
/// Each layer is extracted once into $BOXKIT_ROOT/layers/sha256/<diff_id>/ (verified, in
/// overlayfs's whiteout form) and shared by every bundle of every image that has it; the
/// container's changes go to BUNDLE/upper/. Where overlayfs cannot be used (no overlay
/// support, the bundle or the layer cache on overlayfs, no permission to mount) the image is
/// copied instead, as box-unpack does, with a message saying why.
#[derive(Parser)]
#[command(
    name = "box-mount-layers",
    version,
    after_help = "Examples:\n  box-mount-layers busybox ./c1 && box-spawn ./c1 -- sh\n  box-mount-layers --unmount ./c1"
)]
struct Args {
    /// The image: a name from the store
    #[arg(value_name = "REF", required_unless_present = "unmount")]
    reference: Option<String>,
    /// The bundle directory to create (must not exist)
    #[arg(value_name = "BUNDLE", required_unless_present = "unmount")]
    bundle: Option<PathBuf>,
    /// Unmount BUNDLE's rootfs (its upper/ stays, for box-commit) and forget the bundle
    #[arg(long, value_name = "BUNDLE", conflicts_with_all = ["reference", "copy"])]
    unmount: Option<PathBuf>,
    /// Copy the image into rootfs/ (as box-unpack does) instead of mounting an overlay
    #[arg(long)]
    copy: bool,
    /// How to mount: "fsconfig" (one lowerdir+ per layer, Linux 6.8), "mount" (mount(2),
    /// options in one page; many layers get short names), or "auto" (the first that works)
    #[arg(long, value_name = "API", default_value = "auto", value_parser = ["auto", "fsconfig", "mount"])]
    mount_api: String,
    #[command(flatten)]
    common: Common,
}

fn main() {
    boxkit_cli::main("box-mount-layers", ExitCodes::Standard, |a: &Args| a.common.explain, run)
}

fn run(a: Args) -> boxkit::Result<i32> {
    let root = a.common.root_dir();
    if let Some(bundle) = &a.unmount {
        overlay::unmount_bundle(bundle).map_err(|e| e.context(format!("unmount {}", bundle.display())))?;
        boxkit::bundle::unregister(&root, bundle)?;
        boxkit_cli::print_line(bundle.display())?;
        return Ok(0);
    }
    let (reference, bundle) = (a.reference.unwrap(), a.bundle.unwrap());
    // Held until the bundle is made: the collector cannot remove blobs or cached layers.
    let store = Store::open(&a.common.images_dir())?;
    let image = store.image(&reference)?;
    let name = boxkit::reference::Reference::parse(&reference).map(|r| r.to_string()).unwrap_or(reference.clone());
    let api = match a.mount_api.as_str() {
        "fsconfig" => Api::Fsconfig,
        "mount" => Api::Legacy,
        _ => Api::Auto,
    };
    let context = |e: boxkit::Error| e.context(format!("mount {} on {}", reference, bundle.display()));
    // An ordinary user's mount could not outlive this process: the bundle is made for a
    // user namespace with the caller's maps, and box-spawn mounts the overlay.
    let ids = (boxkit::userns::Caller::current().uid != 0).then(overlay::caller_mapping);
    let made = match (&ids, a.copy) {
        (_, true) => Made::Unavailable(String::new()),
        (Some(m), false) => overlay::prepare_bundle(&store, &image, &name, &root, &bundle, m).map_err(context)?,
        (None, false) => overlay::mount_bundle(&store, &image, &name, &root, &bundle, api).map_err(context)?,
    };
    let info = match made {
        Made::Overlay(info) => {
            if ids.is_some() {
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "box-mount-layers: rootfs/ is not mounted here: box-spawn mounts the overlay inside the container's namespaces"
                );
            }
            info
        }
        Made::Unavailable(why) => {
            if !why.is_empty() {
                let _ = writeln!(std::io::stderr().lock(), "box-mount-layers: {why}; copying the image instead (as box-unpack does)");
            }
            boxkit::unpack::unpack_bundle_mapped(&store, &image, &name, &bundle, ids.as_ref()).map_err(context)?
        }
    };
    // So box-rmi and box-prune know this bundle still uses the image (and its layers).
    boxkit::bundle::register(&root, &bundle, &info)?;
    boxkit_cli::print_line(bundle.display())?;
    Ok(0)
}
