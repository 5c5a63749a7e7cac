//! Container state files: what a named or detached container is, where it runs, how it
//! ended, in `$BOXKIT_ROOT/containers/NAME/state.json`, for later tools to read.
//!
//! Reference: the OCI runtime spec's runtime.md "State" (id, status, pid, bundle) and
//! Docker's `docker inspect` `.State` (Status, Pid, ExitCode, StartedAt, FinishedAt);
//! proc(5) `/proc/PID/stat` field 22 (`starttime`), rename(2) for atomic replacement.
//!
//! ```text
//! $BOXKIT_ROOT/containers/NAME/state.json     this file, replaced by rename at each change
//! $BOXKIT_ROOT/containers/NAME/container.log  a detached container's stdout and stderr
//! ```
//!
//! A pid alone can be reused after its process is gone; each pid is recorded with the
//! process's start time, and a reader trusts the pid only while `/proc/PID/stat` still shows
//! the same start time ([`alive`]). A state that says `running` while its pid is not alive
//! belongs to a supervisor that was killed: the container died with it.

use crate::error::{Context, Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

// ANCHOR: state_struct
/// `state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The state format's version (this is 1).
    pub version: u32,
    /// The unique name (`--name`, or generated): the directory's name.
    pub name: String,
    /// 64 hex digits, random, never reused.
    pub id: String,
    /// `created` (being set up), `running`, `exited`.
    pub status: Status,
    /// The container's first process as the host sees it (null until running).
    pub pid: Option<i32>,
    /// Its start time, `/proc/PID/stat` field 22 (clock ticks after boot).
    pub pid_start_time: Option<u64>,
    /// The box-spawn process that waits for the container (foreground, or the detached
    /// supervisor), with its start time.
    pub supervisor_pid: i32,
    pub supervisor_start_time: u64,
    /// The process's exit status (128+N if signal N killed it; 125/126/127 if it never ran).
    pub exit_code: Option<i32>,
    /// Why it never ran, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The bundle directory, absolute.
    pub bundle: PathBuf,
    /// The command (argv) run in the container.
    pub command: Vec<String>,
    /// RFC 3339 UTC times.
    pub created: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Where the output goes (detached containers; null when it went to the caller).
    pub log_path: Option<PathBuf>,
    /// Volumes (names under `$BOXKIT_ROOT/volumes`) the container mounts.
    #[serde(default)]
    pub volumes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Exited,
}
// ANCHOR_END: state_struct

/// Called by [`crate::spawn::spawn`] with the container's pid once its command runs.
#[derive(Clone)]
pub struct StartHook(pub Arc<dyn Fn(i32) + Send + Sync>);

impl std::fmt::Debug for StartHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StartHook")
    }
}

/// `$BOXKIT_ROOT/containers`.
pub fn containers_dir(root: &Path) -> PathBuf {
    root.join("containers")
}

/// Docker's rule for container names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn validate_name(name: &str) -> Result<()> {
    docker_name(name, 128, "container", "")
}

/// Docker's rule for names, `[a-zA-Z0-9][a-zA-Z0-9_.-]+` (so at least two characters, and
/// never `.`, `..` or anything with a `/`), at most `max` bytes; `what` is the kind of name
/// in the error, followed by `hint`.
pub(crate) fn docker_name(name: &str, max: usize, what: &str, hint: &str) -> Result<()> {
    let b = name.as_bytes();
    let ok = b.len() >= 2 && b.len() <= max && b[0].is_ascii_alphanumeric() && b[1..].iter().all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c));
    if ok { Ok(()) } else { Err(Error::invalid(format!("{name:?} is not a valid {what} name: use [a-zA-Z0-9][a-zA-Z0-9_.-]+{hint}"))) }
}

// ANCHOR: reserve
/// Claim a name: `mkdir containers/NAME` succeeds for one caller only, so two runs can
/// never share a name. With no name, one is made up (adjective_noun, as Docker does).
pub fn reserve(root: &Path, name: Option<&str>) -> Result<(String, PathBuf)> {
    let dir = containers_dir(root);
    std::fs::create_dir_all(&dir).ctx(|| format!("create {}", dir.display()))?;
    if let Some(n) = name {
        validate_name(n)?;
        return match std::fs::create_dir(dir.join(n)) {
            Ok(()) => Ok((n.to_string(), dir.join(n))),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(Error::invalid(format!(
                "the container name {n:?} is already in use ({}): remove that directory or choose another name",
                dir.join(n).display()
            ))),
            Err(e) => Err(Error::io(format!("create {}", dir.join(n).display()), e)),
        };
    }
    for attempt in 0..64 {
        let r = random_bytes::<4>()?;
        let mut n = format!("{}_{}", ADJECTIVES[r[0] as usize % ADJECTIVES.len()], NOUNS[r[1] as usize % NOUNS.len()]);
        if attempt >= 8 {
            n.push_str(&(u16::from_le_bytes([r[2], r[3]]) % 100).to_string());
        }
        match std::fs::create_dir(dir.join(&n)) {
            Ok(()) => return Ok((n.clone(), dir.join(n))),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(format!("create {}", dir.join(n).display()), e)),
        }
    }
    Err(Error::invalid("could not find a free container name: give one with --name"))
}
// ANCHOR_END: reserve

const ADJECTIVES: [&str; 24] = [
    "brave", "calm", "clever", "eager", "fervent", "gentle", "happy", "jolly", "keen", "kind", "lucid", "merry", "modest",
    "nifty", "quiet", "relaxed", "serene", "sharp", "stoic", "tender", "upbeat", "vivid", "witty", "zealous",
];
const NOUNS: [&str; 24] = [
    "babbage", "bell", "curie", "darwin", "euler", "fermat", "gauss", "hopper", "hypatia", "kepler", "lamport", "lovelace",
    "mccarthy", "noether", "pascal", "ritchie", "shannon", "thompson", "torvalds", "turing", "volta", "wilson", "wozniak", "yalow",
];

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    // SAFETY: getrandom(2) into a buffer of the size given.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), N, 0) };
    if n != N as isize {
        return Err(Error::io("getrandom", std::io::Error::last_os_error()));
    }
    Ok(buf)
}

/// A new container id: 64 hex digits.
pub fn new_id() -> Result<String> {
    Ok(random_bytes::<32>()?.iter().map(|b| format!("{b:02x}")).collect())
}

/// Now, RFC 3339 UTC.
pub fn now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    crate::oci::rfc3339(secs)
}

// ANCHOR: write
/// Replace `DIR/state.json`: write a temporary file, fsync it, rename it over the old one.
/// A reader sees the old state or the new one, never a mix.
pub fn write(dir: &Path, st: &State) -> Result<()> {
    let mut json = serde_json::to_vec_pretty(st).expect("serializing a state cannot fail");
    json.push(b'\n');
    crate::fsroot::replace_file(dir, "state.json", &json, 0o600)
}
// ANCHOR_END: write

/// Read `DIR/state.json`.
pub fn read(dir: &Path) -> Result<State> {
    let p = dir.join("state.json");
    let bytes = std::fs::read(&p).ctx(|| format!("read {}", p.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::invalid(format!("{}: {e}", p.display())))
}

// ANCHOR: start_time
/// Fields 3 and 22 of `/proc/PID/stat`: the process's state letter (`R`, `S`, `T`, `Z`…)
/// and when it started, in clock ticks after boot. The command name (field 2) may hold
/// spaces and parentheses: count from the last ')'.
pub fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut f = stat[stat.rfind(')')? + 1..].split_whitespace();
    // `f` starts at field 3 (state): field 22 is the 19th after it.
    let state = f.next()?.chars().next()?;
    Some((state, f.nth(18)?.parse().ok()?))
}

/// When the process started (field 22 of `/proc/PID/stat`).
pub fn start_time(pid: i32) -> Option<u64> {
    proc_stat(pid).map(|(_, start)| start)
}

/// Is `pid` still the process that started at `start` (and not a zombie)?
pub fn alive(pid: i32, start: u64) -> bool {
    matches!(proc_stat(pid), Some((state, t)) if state != 'Z' && state != 'X' && t == start)
}
// ANCHOR_END: start_time

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_generated_ones_look_like_docker() {
        let t = tempfile::tempdir().unwrap();
        let (n, d) = reserve(t.path(), Some("web")).unwrap();
        assert_eq!((n.as_str(), d.is_dir()), ("web", true));
        assert!(reserve(t.path(), Some("web")).unwrap_err().to_string().contains("already in use"));
        assert!(reserve(t.path(), Some("../x")).is_err());
        let (g, _) = reserve(t.path(), None).unwrap();
        assert!(g.contains('_') && validate_name(&g).is_ok(), "{g}");
    }

    #[test]
    fn start_time_tells_a_recycled_pid() {
        let me = std::process::id() as i32;
        let st = start_time(me).unwrap();
        assert!(alive(me, st));
        assert!(!alive(me, st + 1));
        assert!(!alive(i32::MAX, st));
    }

    #[test]
    fn state_round_trips() {
        let t = tempfile::tempdir().unwrap();
        let st = State {
            version: 1,
            name: "a1".into(),
            id: new_id().unwrap(),
            status: Status::Running,
            pid: Some(42),
            pid_start_time: Some(7),
            supervisor_pid: 41,
            supervisor_start_time: 6,
            exit_code: None,
            error: None,
            bundle: "/b".into(),
            command: vec!["sh".into()],
            created: now(),
            started_at: Some(now()),
            finished_at: None,
            log_path: None,
            volumes: vec![],
        };
        write(t.path(), &st).unwrap();
        assert_eq!(read(t.path()).unwrap(), st);
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(t.path().join("state.json")).unwrap()).unwrap();
        assert_eq!(v["status"], "running");
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 1, "temporary files left");
    }
}
