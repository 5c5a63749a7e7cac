//! box-cgroup-limit: limits on memory, CPU, processes and I/O, through cgroups (v2 or v1).

use boxkit::cgroup::{self, Cgroup, Limits};
use boxkit::explain::human_size;
use boxkit_cli::{Common, ExitCodes};
use clap::Parser;
use std::os::unix::process::CommandExt;

/// Put limits on a command with a cgroup, like `docker run --memory --cpus --pids-limit`.
///
/// `box-cgroup-limit [LIMITS] -- CMD…` runs CMD in a new cgroup and, when CMD ends, kills
/// whatever it left running there and removes the group; the exit status is CMD's (137, with a message, when the kernel killed it for
/// memory). `--create NAME` makes a group and prints its path (for box-spawn --cgroup);
/// `--join NAME -- CMD…` runs CMD in it and leaves the group in place; `--stats NAME` shows
/// its usage; `--remove NAME` deletes it. cgroup v2 is used where the kernel offers it, v1
/// otherwise.
#[derive(Parser)]
#[command(name = "box-cgroup-limit", version, after_help = "Examples:\n  box-cgroup-limit --memory 64M -- box-spawn ./bundle\n  box-cgroup-limit --cpus 0.5 --pids 100 -- make -j8\n  box-spawn --cgroup \"$(box-cgroup-limit --create web --memory 256M)\" ./bundle\n  box-cgroup-limit --join web -- sh -c 'make test'\n  box-cgroup-limit --stats web --json; box-cgroup-limit --remove web")]
struct Args {
    /// Memory limit: 64M, 1G, 512k, or bytes
    #[arg(long, short = 'm', value_name = "SIZE")]
    memory: Option<String>,
    /// Memory plus swap (Docker's meaning); -1 for unlimited swap; default: twice --memory
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// CPUs' worth of time (0.5 = half a CPU): a quota over a 100 ms period
    #[arg(long, value_name = "N")]
    cpus: Option<f64>,
    /// Relative CPU weight, 1-10000 (v2 cpu.weight)
    #[arg(long, value_name = "N")]
    cpu_weight: Option<u64>,
    /// Relative CPU shares, 2-262144 (v1 cpu.shares; converted on v2)
    #[arg(long, value_name = "N", conflicts_with = "cpu_weight")]
    cpu_shares: Option<u64>,
    /// Most processes (and threads) the group may hold
    #[arg(long, value_name = "N")]
    pids: Option<u64>,
    /// Relative I/O weight, 1-10000 (v2 io.weight; BFQ's 1-1000 scale converted); needs a disk using BFQ or io.cost
    #[arg(long, value_name = "N")]
    io_weight: Option<u64>,
    /// CPUs to run on: 0-1, 0,2
    #[arg(long, value_name = "CPUS")]
    cpuset: Option<String>,
    /// Create the group NAME with these limits and print its path
    #[arg(long, value_name = "NAME", conflicts_with_all = ["stats", "remove"])]
    create: Option<String>,
    /// Show the usage of group NAME (memory, pids, CPU time, throttling)
    #[arg(long, value_name = "NAME", conflicts_with = "remove")]
    stats: Option<String>,
    /// Print --stats as JSON
    #[arg(long, requires = "stats")]
    json: bool,
    /// Run the command in group NAME (made by --create), which stays after it ends
    #[arg(long, value_name = "NAME", conflicts_with_all = ["create", "stats", "remove"], requires = "command")]
    join: Option<String>,
    /// Remove group NAME (its processes must have ended)
    #[arg(long, value_name = "NAME")]
    remove: Option<String>,
    /// The command to run in a new group
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
    #[command(flatten)]
    common: Common,
}

fn main() {
    boxkit_cli::main("box-cgroup-limit", ExitCodes::Runner, |a: &Args| a.common.explain, run)
}

fn limits(a: &Args) -> boxkit::Result<Limits> {
    Ok(Limits {
        memory: a.memory.as_deref().map(cgroup::parse_size).transpose()?,
        memory_swap: match a.memory_swap.as_deref() {
            Some("-1") => Some(-1),
            Some(s) => Some(cgroup::parse_size(s)? as i64),
            None => None,
        },
        cpus: a.cpus,
        cpu_weight: a.cpu_weight,
        cpu_shares: a.cpu_shares,
        pids: a.pids,
        io_weight: a.io_weight,
        cpuset: a.cpuset.clone(),
    })
}

fn run(a: Args) -> boxkit::Result<i32> {
    let h = cgroup::detect_host()?;
    if let Some(name) = &a.stats {
        let s = Cgroup::named(&h, name)?.stats()?;
        if a.json {
            boxkit_cli::print_line(serde_json::to_string(&s).unwrap())?;
        } else {
            let opt = |v: Option<u64>, f: fn(u64) -> String| v.map(f).unwrap_or_else(|| "-".into());
            boxkit_cli::print_line(format!(
                "memory {} (peak {}, limit {})  pids {} (limit {})  cpu {} in {} periods  throttled {} periods, {}  oom kills {}",
                opt(s.memory_bytes, human_size),
                opt(s.memory_peak_bytes, human_size),
                opt(s.memory_limit_bytes, human_size),
                opt(s.pids, |p| p.to_string()),
                opt(s.pids_limit, |p| p.to_string()),
                opt(s.cpu_usec, |u| format!("{:.3}s", u as f64 / 1e6)),
                opt(s.cpu_periods, |p| p.to_string()),
                opt(s.throttled_periods, |p| p.to_string()),
                opt(s.throttled_usec, |u| format!("{:.3}s", u as f64 / 1e6)),
                s.oom_kills
            ))?;
        }
        return Ok(0);
    }
    if let Some(name) = &a.join {
        let cg = Cgroup::named(&h, name)?;
        if !cg.path().exists() {
            return Err(boxkit::Error::not_found(format!("cgroup {} does not exist (make it with --create {name})", cg.path().display())));
        }
        if limits(&a)? != Limits::default() {
            return Err(boxkit::Error::invalid("--join takes no limits: give them to --create"));
        }
        let before = cg.oom_kills();
        let code = run_in(&cg, &a.command)?;
        report_oom(&a.command[0], code, cg.oom_kills() - before, cg.stats().ok().and_then(|s| s.memory_limit_bytes));
        return Ok(code);
    }
    if let Some(name) = &a.remove {
        Cgroup::named(&h, name)?.remove()?;
        return Ok(0);
    }
    let l = limits(&a)?;
    if l.io_weight.is_some() {
        cgroup::io_weight_effective(std::path::Path::new("/sys"), &h)?;
    }
    if let Some(name) = &a.create {
        let cg = Cgroup::create(&h, name, &l)?;
        boxkit_cli::print_line(cg.path().display())?;
        return Ok(0);
    }
    if a.command.is_empty() {
        return Err(boxkit::Error::invalid("nothing to do: give -- CMD…, --create, --stats or --remove"));
    }
    // ANCHOR: run_and_remove
    let cg = Cgroup::create(&h, &format!("run-{}", std::process::id()), &l)?;
    let result = run_in(&cg, &a.command);
    let oom = cg.oom_kills();
    // What the command left running in the group ends with it, as a container's processes
    // end with the container; then the group can go.
    let removed = cg.kill_all().and_then(|_| cg.remove());
    let code = result?;
    report_oom(&a.command[0], code, oom, l.memory);
    removed?;
    Ok(code)
    // ANCHOR_END: run_and_remove
}

// ANCHOR: report_oom
/// The one line a caller sees when the kernel killed the command for memory: it ended with
/// SIGKILL (status 137) and the group's OOM-kill count went up.
fn report_oom(command: &str, code: i32, oom_kills: u64, limit: Option<u64>) {
    if code == 128 + libc::SIGKILL && oom_kills > 0 {
        let limit = limit.map(|m| format!(" of {}", human_size(m))).unwrap_or_default();
        eprintln!("box-cgroup-limit: {command} was killed by the kernel: the memory limit{limit} was reached");
    }
}
// ANCHOR_END: report_oom

/// Start `argv` inside `cg` (it joins before exec) and wait for it, forwarding signals.
fn run_in(cg: &Cgroup, argv: &[String]) -> boxkit::Result<i32> {
    let blocked = boxkit::spawn::supervised_set();
    let old = nix::sys::signal::SigSet::thread_get_mask().map_err(|e| boxkit::Error::io("sigprocmask", e.into()))?;
    blocked.thread_block().map_err(|e| boxkit::Error::io("sigprocmask", e.into()))?;
    // ANCHOR: join_before_exec
    let procs = cg.procs_files();
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    // SAFETY: this process is single-threaded; the child writes its pid and restores the mask.
    unsafe {
        cmd.pre_exec(move || {
            for p in &procs {
                std::fs::write(p, b"0")?;
            }
            old.thread_set_mask().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    // ANCHOR_END: join_before_exec
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = old.thread_set_mask();
            let kind = match e.kind() {
                std::io::ErrorKind::NotFound => boxkit::Kind::CommandNotFound,
                std::io::ErrorKind::PermissionDenied => boxkit::Kind::NotExecutable,
                _ => boxkit::Kind::System,
            };
            let why = match kind {
                boxkit::Kind::CommandNotFound => "not found".to_string(),
                boxkit::Kind::NotExecutable => "permission denied".to_string(),
                _ => e.to_string(),
            };
            return Err(boxkit::Error::new(kind, format!("run {}: {why}", argv[0])));
        }
    };
    let status = boxkit::spawn::supervise(nix::unistd::Pid::from_raw(child.id() as i32), &blocked);
    let _ = old.thread_set_mask();
    status
}
