//! box-save: images from the store, with all their layers, config and history, as one tar
//! archive on stdout (or in a file): an OCI image layout and a `docker save` archive at once.

use boxkit::store::Store;
use boxkit_cli::{Common, ExitCodes};
use clap::Parser;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::PathBuf;

/// Write images as a tar archive, like `docker save`.
///
/// The archive holds every blob as stored (manifests, configs, compressed layers), an OCI
/// index.json and Docker's manifest.json and repositories, so `docker load`, `skopeo`
/// (`docker-archive:` and `oci-archive:`) and `box-load` all read it. The same images give
/// the same bytes (times are $SOURCE_DATE_EPOCH, or the epoch).
#[derive(Parser)]
#[command(
    name = "box-save",
    version,
    after_help = "Examples:\n  box-save busybox > busybox.tar\n  box-save -o images.tar busybox alpine:3.20\n  box-save busybox | gzip | ssh host box-load"
)]
struct Args {
    /// The images to save: busybox, alice/app:v1, name@sha256:…
    #[arg(value_name = "REF", required = true)]
    images: Vec<String>,
    /// Write to FILE (replaced only once complete) instead of standard output
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

fn main() {
    boxkit_cli::main("box-save", ExitCodes::Standard, |a: &Args| a.common.explain, run)
}

fn run(a: Args) -> boxkit::Result<i32> {
    let store = Store::open(&a.common.images_dir())?;
    match &a.output {
        None => {
            if std::io::stdout().is_terminal() {
                return Err(boxkit::Error::invalid("refusing to write a tar archive to a terminal: redirect stdout or use -o FILE"));
            }
            let mut out = BufWriter::with_capacity(256 << 10, std::io::stdout().lock());
            boxkit::save::save(&store, &a.images, &mut out)?;
            out.flush().map_err(|e| boxkit::Error::io("write stdout", e))?;
        }
        Some(path) => {
            let io = |what: String| move |e| boxkit::Error::io(what, e);
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => std::path::Path::new("."),
            };
            let tmp = tempfile::Builder::new()
                .prefix(".box-save-")
                .tempfile_in(dir)
                .map_err(io(format!("create a temporary file in {}", dir.display())))?;
            let mut out = BufWriter::with_capacity(256 << 10, tmp);
            boxkit::save::save(&store, &a.images, &mut out)?;
            let tmp = out.into_inner().map_err(|e| boxkit::Error::io("write the archive", e.into_error()))?;
            tmp.as_file().sync_all().map_err(io(format!("fsync {}", path.display())))?;
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))
                .map_err(io(format!("chmod {}", path.display())))?;
            tmp.persist(path).map_err(|e| boxkit::Error::io(format!("rename into {}", path.display()), e.error))?;
        }
    }
    Ok(0)
}
