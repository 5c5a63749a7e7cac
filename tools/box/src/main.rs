//! box: the front command. `box TOOL ARGS…` runs `box-TOOL ARGS…`, as git runs `git-TOOL`.
//!
//! The tool is looked up next to this binary first, then on `$PATH`, and replaces this
//! process (execve), so its exit status, signals and terminal are the tool's own.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// The tools this release ships, with one line each for `box help`.
const TOOLS: &[(&str, &str)] = &[
    ("import", "import a root filesystem tar (file or stdin) as a one-layer image"),
    ("unpack", "unpack an image into an OCI runtime bundle (config.json + rootfs/)"),
    ("mount-layers", "make a bundle whose rootfs is an overlay of the image's cached layers"),
    ("spawn", "run a bundle's process in new namespaces with pivot_root"),
    ("export", "write a bundle's or image's root filesystem as a tar stream"),
    ("cgroup-limit", "run a command under memory, CPU and process limits (cgroup v2 or v1)"),
    ("pull", "pull an image from a registry into the store (verified)"),
    ("push", "push an image from the store to a registry"),
    ("login", "check registry credentials and store them as Docker does"),
    ("logout", "remove stored registry credentials"),
    ("volume", "create, list, inspect and remove named volumes"),
    ("images", "list the images in the store: names, IDs, age and size"),
    ("tag", "give an image in the store another name"),
    ("rmi", "remove image names, and images (and their blobs) that lose their last one"),
    ("prune", "remove dangling images, unreferenced blobs and cached layers, leftovers"),
    ("commit", "commit a bundle's changes as a new layer and image (like docker commit)"),
    ("save", "write images, with every layer and their history, as a docker save / OCI archive"),
    ("load", "load images from a docker save or OCI archive (file or stdin) into the store"),
];

fn main() {
    let mut args = std::env::args_os().skip(1);
    let tool = match args.next() {
        None => {
            help();
            std::process::exit(2);
        }
        Some(t) => t,
    };
    let tool = tool.to_string_lossy().into_owned();
    match tool.as_str() {
        "help" | "-h" | "--help" => match args.next() {
            Some(t) => run(&t.to_string_lossy(), vec![OsString::from("--help")]),
            None => help(),
        },
        "-V" | "--version" => println!("box {}", env!("CARGO_PKG_VERSION")),
        _ => run(&tool, args.collect()),
    }
}

fn run(tool: &str, args: Vec<OsString>) {
    let name = format!("box-{tool}");
    let Some(path) = find(&name) else {
        eprintln!("box: '{tool}' is not a box tool (no {name} next to box or on PATH); see 'box help'");
        std::process::exit(127);
    };
    let err = std::process::Command::new(&path).arg0(&name).args(args).exec();
    eprintln!("box: run {}: {err}", path.display());
    std::process::exit(126);
}

/// Directories searched for `box-*`: this binary's own, then `$PATH`.
fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)) {
        dirs.push(dir);
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs
}

fn is_executable(p: &Path) -> bool {
    p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

fn find(name: &str) -> Option<PathBuf> {
    search_dirs().into_iter().map(|d| d.join(name)).find(|p| is_executable(p))
}

fn help() {
    println!("box: containers from small tools. Usage: box TOOL [ARGS…]   (runs box-TOOL)\n");
    println!("Tools:");
    let mut seen: Vec<String> = Vec::new();
    for (t, line) in TOOLS {
        if find(&format!("box-{t}")).is_some() {
            println!("  {t:<14} {line}");
            seen.push(t.to_string());
        }
    }
    // Other box-* programs on the search path (as git lists git-* commands).
    let mut extra: Vec<String> = Vec::new();
    for d in search_dirs() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(t) = n.strip_prefix("box-") {
                if !seen.iter().any(|s| s == t) && !extra.iter().any(|s| s == t) && !t.contains('.') && is_executable(&e.path()) {
                    extra.push(t.to_string());
                }
            }
        }
    }
    extra.sort();
    for t in extra {
        println!("  {t:<14} (box-{t}, found on PATH)");
    }
    println!("\nEvery tool takes --help, --root DIR (or $BOXKIT_ROOT) and --explain.");
}
