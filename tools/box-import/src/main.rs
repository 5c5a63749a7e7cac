//! box-import: a root filesystem tar (file or stdin; plain, gzip or zstd) becomes a
//! one-layer image in the store. Prints the manifest digest.

use boxkit::reference::Reference;
use boxkit::store::Store;
use boxkit_cli::{Common, ExitCodes};
use clap::Parser;
use std::fs::File;
use std::io::Read;

/// Import a root filesystem tar as a one-layer image, like `docker import`.
///
/// The same tar always gives the same image digest: entries are written in a canonical
/// order and the creation time is $SOURCE_DATE_EPOCH (or the epoch).
#[derive(Parser)]
#[command(name = "box-import", version, after_help = "Examples:\n  box-import rootfs.tar.gz myimage:1\n  box-export bundle | box-import - copy:latest\n  box-import --change 'CMD [\"sh\"]' rootfs.tar busybox")]
struct Args {
    /// The tar to read, or - for standard input (when only REF is given, stdin is read)
    #[arg(value_name = "FILE|-")]
    input: String,
    /// The name to give the image: busybox, alice/app:v1, localhost:5000/x:t
    #[arg(value_name = "REF")]
    reference: Option<String>,
    /// A Dockerfile instruction to apply to the image config (CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, VOLUME); repeatable
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    changes: Vec<String>,
    /// A comment for the image's history
    #[arg(short = 'm', long)]
    message: Option<String>,
    #[command(flatten)]
    common: Common,
}

fn main() {
    boxkit_cli::main("box-import", ExitCodes::Standard, |a: &Args| a.common.explain, run)
}

fn run(a: Args) -> boxkit::Result<i32> {
    let (input, name) = match a.reference {
        Some(r) => (a.input, r),
        None => ("-".to_string(), a.input),
    };
    let reference = Reference::parse(&name)?;
    let store = Store::init(&a.common.images_dir())?;
    let reader: Box<dyn Read + Send> = if input == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(File::open(&input).map_err(|e| boxkit::Error::io(format!("open {input}"), e))?)
    };
    let opts = boxkit::import::ImportOptions { changes: a.changes, message: a.message };
    let desc = boxkit::import::import(&store, reader, &reference, &opts).map_err(|e| e.context(format!("import {input}")))?;
    boxkit_cli::print_line(&desc.digest)?;
    Ok(0)
}
