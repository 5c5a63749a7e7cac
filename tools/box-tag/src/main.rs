//! box-tag: give an image in the store another name, as `docker tag` does.

use boxkit::reference::Reference;
use boxkit::store::Store;
use boxkit::Error;
use boxkit_cli::{Common, ExitCodes};
use clap::Parser;

/// Give an image another name, like `docker tag`. Prints nothing.
///
/// SOURCE is a name in the store (busybox, localhost:5000/x:1), a digest (sha256:…), or an
/// image ID or a unique prefix of one (as box-images shows). TARGET is a name with an
/// optional tag (latest when left out); if it already named another image, that image keeps
/// its other names or becomes dangling.
#[derive(Parser)]
#[command(name = "box-tag", version, after_help = "Examples:\n  box-tag busybox localhost:5000/busybox:1\n  box-tag 3f4e1a2b9c8d mine:v2")]
struct Args {
    #[arg(value_name = "SOURCE")]
    source: String,
    #[arg(value_name = "TARGET[:TAG]")]
    target: String,
    #[command(flatten)]
    common: Common,
}

fn main() {
    boxkit_cli::main("box-tag", ExitCodes::Standard, |a: &Args| a.common.explain, run)
}

fn run(a: Args) -> boxkit::Result<i32> {
    let target = Reference::parse(&a.target)?;
    if target.digest().is_some() {
        return Err(Error::invalid(format!("{}: a new name cannot hold a digest (the digest is the content's)", a.target)));
    }
    let store = Store::open(&a.common.images_dir())?;
    let mut d = boxkit::images::resolve_one(&store, &a.source)?;
    d.annotations.clear();
    store.tag(&target, &d)?;
    Ok(0)
}
