//! box-images: the images in the store, one row per name, as `docker images` lists them.

use boxkit::images::{self, Row};
use boxkit::reference::Reference;
use boxkit::store::Store;
use boxkit::Error;
use boxkit_cli::{Common, ExitCodes};
use clap::Parser;

/// List the images in the store, like `docker images`.
///
/// One row per name; an image with several names shows once per name, an image without a
/// name (dangling) as <none> <none>, an image named by digest (name@sha256:…) with TAG <none>.
/// IMAGE ID is the digest of the image config (the first 12 hex digits unless --no-trunc);
/// a multi-platform index shows as one row whose IMAGE ID is the index's own digest and whose
/// CREATED is that of this machine's platform. SIZE is the bytes the image's blobs take in
/// the store: compressed layers, config and manifests, each blob the image reaches counted
/// once (a layer shared by two images counts in both rows). Newest first.
#[derive(Parser)]
#[command(name = "box-images", version, after_help = "Examples:\n  box-images\n  box-images busybox\n  box-images -q --filter dangling=true | xargs -r box-rmi")]
struct Args {
    /// Only images of this repository (busybox, localhost:5000/x), or this name (busybox:1.36)
    #[arg(value_name = "REPOSITORY[:TAG]")]
    reference: Option<String>,
    /// Print only the image IDs, each once
    #[arg(short, long)]
    quiet: bool,
    /// Show the digest index.json names for each row (the manifest's, or the index's)
    #[arg(long)]
    digests: bool,
    /// Only dangling images (dangling=true) or only named ones (dangling=false)
    #[arg(short, long, value_name = "dangling=true|false")]
    filter: Vec<String>,
    /// Show whole image IDs (sha256:…)
    #[arg(long)]
    no_trunc: bool,
    #[command(flatten)]
    common: Common,
}

fn main() {
    boxkit_cli::main("box-images", ExitCodes::Standard, |a: &Args| a.common.explain, run)
}

fn run(a: Args) -> boxkit::Result<i32> {
    let mut dangling: Option<bool> = None;
    for f in &a.filter {
        dangling = Some(match f.as_str() {
            "dangling=true" | "dangling=1" => true,
            "dangling=false" | "dangling=0" => false,
            _ => return Err(Error::invalid(format!("unsupported filter {f:?}: box-images knows dangling=true and dangling=false"))),
        });
    }
    let wanted = a.reference.as_deref().map(Wanted::parse).transpose()?;
    let dir = a.common.images_dir();
    let rows = if dir.join("oci-layout").exists() { images::list(&Store::open(&dir)?)? } else { Vec::new() };
    let rows: Vec<Row> = rows
        .into_iter()
        .filter(|r| dangling.map_or(true, |d| d == r.name.is_none()))
        .filter(|r| wanted.as_ref().map_or(true, |w| w.matches(r)))
        .collect();
    let id = |r: &Row| if a.no_trunc { r.id.to_string() } else { r.id.short().to_string() };
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        for r in rows.iter().filter(|r| seen.insert(r.id.clone())) {
            boxkit_cli::print_line(id(r))?;
        }
        return Ok(0);
    }
    let now = boxkit::oci::unix_now();
    let mut cells = vec![header(a.digests)];
    for r in &rows {
        let mut line = vec![r.repository.clone(), r.tag.clone()];
        if a.digests {
            line.push(r.digest.to_string());
        }
        line.push(id(r));
        line.push(r.created.map_or_else(|| "N/A".to_string(), |c| images::human_duration(now - c)));
        line.push(images::docker_size(r.size, 3));
        cells.push(line);
    }
    for line in images::table(&cells) {
        boxkit_cli::print_line(line)?;
    }
    Ok(0)
}

fn header(digests: bool) -> Vec<String> {
    let mut h = vec!["REPOSITORY", "TAG"];
    if digests {
        h.push("DIGEST");
    }
    h.extend(["IMAGE ID", "CREATED", "SIZE"]);
    h.into_iter().map(String::from).collect()
}

/// The REPOSITORY[:TAG] argument, normalized as names are stored.
struct Wanted {
    repository: String,
    tag: Option<String>,
}

impl Wanted {
    fn parse(s: &str) -> boxkit::Result<Wanted> {
        let r = Reference::parse(s)?;
        let has_tag = s.rsplit('/').next().is_some_and(|last| last.contains(':'));
        Ok(Wanted { repository: r.repository(), tag: if has_tag { r.tag().map(String::from) } else { None } })
    }
    fn matches(&self, row: &Row) -> bool {
        let Some(r) = row.name.as_deref().filter(|n| n.contains('/')).and_then(|n| Reference::parse(n).ok()) else { return false };
        r.repository() == self.repository && self.tag.as_deref().map_or(true, |t| r.tag() == Some(t))
    }
}
