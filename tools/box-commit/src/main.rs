//! box-commit: a bundle's changes become a new layer on top of its image, and a new image.
//! Prints the manifest digest.

use boxkit::commit::CommitOptions;
use boxkit::reference::Reference;
use boxkit::store::Store;
use boxkit_cli::{Common, ExitCodes};
use clap::{ArgAction, Parser};
use std::path::PathBuf;

/// Create a new image from a bundle's changes, like `docker commit`.
///
/// An overlay bundle (box-mount-layers) gives its upper directory; a copied bundle (box-unpack)
/// is compared with the record box-unpack wrote (rootfs.mtree). The new layer is gzip, its
/// entries in a canonical order: the same changes give the same layer digest (mtimes are
/// clamped to $SOURCE_DATE_EPOCH when it is set; the image's creation time is
/// $SOURCE_DATE_EPOCH or now). A running container is frozen while its files are read.
#[derive(Parser)]
#[command(
    name = "box-commit",
    version,
    after_help = "Examples:\n  box-commit ./bb mybusybox:v2\n  box-commit -m 'add curl' -a 'Ann <ann@example.org>' -c 'CMD [\"sh\"]' ./bb app:1\n  box-commit --pause=false ./bb snapshot"
)]
struct Args {
    /// The bundle (made by box-unpack or box-mount-layers)
    #[arg(value_name = "BUNDLE")]
    bundle: PathBuf,
    /// The name to give the new image: myimage, alice/app:v1, localhost:5000/x:t
    #[arg(value_name = "REF")]
    reference: String,
    /// A Dockerfile instruction to apply to the image config (CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, VOLUME, STOPSIGNAL); repeatable
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    changes: Vec<String>,
    /// A commit message (the history comment)
    #[arg(short = 'm', long)]
    message: Option<String>,
    /// The author ("Ann <ann@example.org>")
    #[arg(short = 'a', long)]
    author: Option<String>,
    /// Freeze the container's processes while its files are read (--pause=false to not)
    #[arg(short = 'p', long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pause: bool,
    #[command(flatten)]
    common: Common,
}

fn main() {
    boxkit_cli::main("box-commit", ExitCodes::Standard, |a: &Args| a.common.explain, run)
}

fn run(a: Args) -> boxkit::Result<i32> {
    let reference = Reference::parse(&a.reference)?;
    let store = Store::open(&a.common.images_dir())?;
    let opts = CommitOptions { changes: a.changes, message: a.message, author: a.author, pause: a.pause };
    let desc = boxkit::commit::commit(&store, &a.bundle, &reference, &opts)
        .map_err(|e| e.context(format!("commit {}", a.bundle.display())))?;
    boxkit_cli::print_line(&desc.digest)?;
    Ok(0)
}
