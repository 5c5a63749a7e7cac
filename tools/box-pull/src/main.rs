//! box-pull: an image from a registry into the store. Prints the manifest digest.

use boxkit::digest::Digest;
use boxkit::oci::Platform;
use boxkit::pull::{PullOptions, Progress};
use boxkit::reference::Reference;
use boxkit::store::Store;
use boxkit_cli::{Common, ExitCodes};
use clap::Parser;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

/// Pull an image from a registry into the store, like `docker pull`.
///
/// Docker Hub is the default registry (busybox means docker.io/library/busybox:latest).
/// Other hosts speak HTTPS; localhost and 127.0.0.1 (and any host with --insecure) are
/// tried with HTTPS first, then plain HTTP. Credentials come from
/// Docker's config.json (box-login writes it). Every manifest and blob is verified against
/// its digest before it becomes visible in the store.
#[derive(Parser)]
#[command(name = "box-pull", version, after_help = "Examples:\n  box-pull busybox\n  box-pull localhost:5000/team/app:v1\n  box-pull --platform linux/arm64 alpine:3.20\n  box-pull --resolve busybox")]
struct Args {
    /// The image: busybox, alice/app:v1, localhost:5000/x:t, name@sha256:…
    #[arg(value_name = "REF")]
    reference: String,
    /// The platform to choose from a multi-platform image (default: this machine's)
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
    /// Layers fetched at once
    #[arg(long, short = 'j', default_value_t = 3, value_name = "N")]
    jobs: usize,
    /// A mirror to try first for Docker Hub images (repeatable; also "registry-mirrors" in $BOXKIT_ROOT/config.json)
    #[arg(long, value_name = "URL")]
    mirror: Vec<String>,
    #[command(flatten)]
    registry: boxkit_cli::RegistryArgs,
    /// Print nothing but the digest (no progress bars; also the case when stdout is not a terminal)
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Print the normalized reference and the endpoint it would use, and exit (no network)
    #[arg(long)]
    resolve: bool,
    #[command(flatten)]
    common: Common,
}

fn main() {
    boxkit_cli::main("box-pull", ExitCodes::Standard, |a: &Args| a.common.explain, run)
}

fn parse_platform(s: &str) -> boxkit::Result<Platform> {
    let parts: Vec<&str> = s.split('/').collect();
    if parts.len() < 2 || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(boxkit::Error::invalid(format!("--platform {s:?}: expected os/arch or os/arch/variant")));
    }
    Ok(Platform { os: parts[0].into(), architecture: parts[1].into(), os_version: None, variant: parts.get(2).map(|v| v.to_string()) })
}

fn configured_mirrors(c: &Common) -> Vec<String> {
    let Ok(bytes) = std::fs::read(c.root_dir().join("config.json")) else { return Vec::new() };
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    v.get("registry-mirrors").and_then(|m| m.as_array()).map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default()
}

fn run(a: Args) -> boxkit::Result<i32> {
    let reference = Reference::parse(&a.reference)?;
    let mut mirrors = a.mirror.clone();
    mirrors.extend(configured_mirrors(&a.common));
    if a.resolve {
        let target = reference.digest().map(|d| d.to_string()).or_else(|| reference.tag().map(String::from)).unwrap();
        boxkit_cli::print_line(&reference)?;
        if reference.domain() == boxkit::reference::DEFAULT_DOMAIN {
            for m in &mirrors {
                boxkit_cli::print_line(format!("{}/v2/{}/manifests/{target}", m.trim_end_matches('/'), reference.path()))?;
            }
        }
        for base in boxkit::registry::endpoints(reference.domain(), a.registry.insecure) {
            boxkit_cli::print_line(format!("{base}/v2/{}/manifests/{target}", reference.path()))?;
        }
        return Ok(0);
    }
    let platform = match &a.platform {
        Some(p) => parse_platform(p)?,
        None => boxkit::store::host_platform(),
    };
    let store = Store::init(&a.common.images_dir())?;
    let opts = PullOptions {
        platform,
        jobs: a.jobs,
        mirrors,
        registry: a.registry.options(),
    };
    // Bars only for a person watching: stdout a pipe means a script wants the digest alone.
    let show = !a.quiet && std::io::stderr().is_terminal() && std::io::stdout().is_terminal() && !a.common.explain;
    let bars = Bars { multi: indicatif::MultiProgress::new(), bars: Mutex::new(HashMap::new()), show };
    let desc = boxkit::pull::pull(&store, &reference, &opts, &bars).map_err(|e| e.context(format!("pull {reference}")))?;
    boxkit_cli::print_line(&desc.digest)?;
    Ok(0)
}

/// One progress bar per blob, on a terminal only.
struct Bars {
    multi: indicatif::MultiProgress,
    bars: Mutex<HashMap<Digest, indicatif::ProgressBar>>,
    show: bool,
}

impl Progress for Bars {
    fn start(&self, d: &Digest, size: u64) {
        if !self.show {
            return;
        }
        let pb = self.multi.add(indicatif::ProgressBar::new(size));
        pb.set_style(
            indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                .unwrap()
                .progress_chars("=> "),
        );
        pb.set_prefix(d.short().to_string());
        self.bars.lock().unwrap().insert(d.clone(), pb);
    }
    fn advance(&self, d: &Digest, n: u64) {
        if let Some(pb) = self.bars.lock().unwrap().get(d) {
            pb.inc(n);
        }
    }
    fn done(&self, d: &Digest, skipped: bool) {
        if !self.show {
            return;
        }
        match self.bars.lock().unwrap().remove(d) {
            Some(pb) => pb.finish_with_message("done"),
            None if skipped => {
                let _ = self.multi.println(format!("{} already present", d.short()));
            }
            None => {}
        }
    }
}
