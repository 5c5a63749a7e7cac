//! box-spawn's `docker run` options: -e, -w, -u, --hostname; mounts (-v, named and anonymous
//! volumes, --tmpfs, the image's Volumes); terminals (-t, -i); detached containers (-d) and
//! their state files.

use crate::support::{stderr, stdout, Scratch};
use std::path::Path;
use std::process::{Output, Stdio};

/// box-spawn with `BOXKIT_ROOT` in the scratch dir.
fn spawn(s: &Scratch, extra: &[&str], bundle: &Path, script: &str) -> Output {
    s.spawn_sh(bundle, extra, script)
}



#[test]
fn env_workdir_user_and_hostname() {
    let s = Scratch::new();
    let b = s.busybox_bundle("b");
    let before = std::fs::read(b.join("config.json")).unwrap();
    let o = s
        .cmd("box-spawn")
        .args(["-e", "A=1", "-e", "FROM_CALLER", "-e", "NOT_SET_ANYWHERE", "-w", "/work/dir", "-u", "nobody:nogroup", "--hostname", "box-1"])
        .arg(&b)
        .args(["--", "sh", "-c", "echo $A $FROM_CALLER ${NOT_SET_ANYWHERE-unset}; pwd; id -u; id -g; hostname; echo $HOSTNAME $HOME"])
        .env("FROM_CALLER", "passed")
        .env_remove("NOT_SET_ANYWHERE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o), "1 passed unset\n/work/dir\n65534\n65534\nbox-1\nbox-1 /nonexistent\n");
    assert_eq!(std::fs::read(b.join("config.json")).unwrap(), before, "config.json on disk changed");
    let o = spawn(&s, &["-u", "ghost"], &b, "true");
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("user \"ghost\" is not in the image's /etc/passwd"), "{}", stderr(&o));
    let o = spawn(&s, &["-w", "relative"], &b, "true");
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("not an absolute path"));
}

#[test]
fn bind_mounts_tmpfs_and_their_flags() {
    let s = Scratch::new();
    let b = s.busybox_bundle("b");
    let host = s.join("host");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("f"), "from host\n").unwrap();
    let rw = format!("{}:/rw", host.display());
    let ro = format!("{}:/ro:ro", host.display());
    let o = spawn(
        &s,
        &["-v", &rw, "-v", &ro, "--tmpfs", "/scratch:size=1m,mode=0700"],
        &b,
        "cat /ro/f; echo new > /rw/new; touch /ro/x 2>/dev/null || echo ro-refused; \
         grep -E ' /(ro|rw|scratch) ' /proc/mounts | cut -d' ' -f2-4 | sort",
    );
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..2], ["from host", "ro-refused"], "{out}");
    assert!(lines[2].starts_with("/ro ") && lines[2].contains("ro,") && lines[2].contains("nodev"), "{out}");
    assert!(lines[3].starts_with("/rw ") && lines[3].contains("rw,") && lines[3].contains("nodev"), "{out}");
    assert!(lines[4].starts_with("/scratch tmpfs") && lines[4].contains("noexec") && lines[4].contains("size=1024k"), "{out}");
    assert!(lines[4].contains("mode=700"), "{out}");
    assert_eq!(std::fs::read_to_string(host.join("new")).unwrap(), "new\n");
    // A host path must exist and be absolute; a relative one is a (bad) volume name.
    let o = spawn(&s, &["-v", &format!("{}:/x", s.join("missing").display())], &b, "true");
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("bind source"), "{}", stderr(&o));
    let o = spawn(&s, &["-v", "./host:/x"], &b, "true");
    assert!(stderr(&o).contains("not a valid volume name"), "{}", stderr(&o));
}

#[test]
fn named_volumes_are_filled_from_the_image_and_outlive_the_container() {
    let s = Scratch::new();
    let b = s.busybox_bundle("b");
    // First use: the empty volume gets the image's /etc.
    let o = spawn(&s, &["-v", "conf:/etc"], &b, "head -1 /etc/passwd; echo kept > /etc/mine");
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o), "root:x:0:0:root:/root:/bin/sh\n");
    let data = s.join("volumes/conf/_data");
    assert_eq!(std::fs::read_to_string(data.join("mine")).unwrap(), "kept\n");
    assert!(!b.join("rootfs/etc/mine").exists(), "wrote to the image, not the volume");
    // Later runs see the volume, not the image; read-only when asked.
    let o = spawn(&s, &["-v", "conf:/mnt:ro"], &b, "cat /mnt/mine; touch /mnt/x 2>/dev/null || echo ro");
    assert_eq!(stdout(&o), "kept\nro\n");
    assert_eq!(s.ok("box-volume", &["ls"]), "conf\n");
    let v: serde_json::Value = serde_json::from_str(&s.ok("box-volume", &["inspect", "conf"])).unwrap();
    assert_eq!(v[0]["Name"], "conf");
    assert_eq!(v[0]["Driver"], "local");
    assert_eq!(v[0]["Mountpoint"], data.to_str().unwrap());
    assert_eq!(s.ok("box-volume", &["create", "empty"]), "empty\n");
    assert_eq!(s.ok("box-volume", &["ls"]), "conf\nempty\n");
    let (_, err) = s.fails("box-volume", &["create", "../x"]);
    assert!(err.contains("not a valid volume name"), "{err}");

    // In use by a running container: rm refuses.
    let mut c = s
        .cmd("box-spawn")
        .args(["-v", "conf:/data"])
        .arg(&b)
        .args(["--", "sh", "-c", "echo ready; read x; true"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_ready(&mut c);
    let (_, err) = s.fails("box-volume", &["rm", "conf"]);
    assert!(err.contains("volume conf is in use by a running container"), "{err}");
    drop(c.stdin.take());
    assert!(c.wait().unwrap().success());
    assert_eq!(s.ok("box-volume", &["rm", "conf", "empty"]), "conf\nempty\n");
    assert_eq!(s.ok("box-volume", &["ls"]), "");
    let (_, err) = s.fails("box-volume", &["rm", "conf"]);
    assert!(err.contains("no volume conf"), "{err}");
}

fn wait_ready(c: &mut std::process::Child) {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(c.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
}

#[test]
fn image_volumes_get_anonymous_volumes_inside_the_rootfs() {
    // containerd CVE-2022-23648: an image volume of /../../etc/shadow must be the
    // rootfs's /etc/shadow, never the host's.
    let s = Scratch::new();
    crate::support::make_image(
        s.path(),
        "vols",
        &[crate::support::busybox_tar()],
        "none",
        Some(serde_json::json!({"config": {"Cmd": ["sh"], "Volumes": {"/etc": {}, "/../../etc/shadow": {}, "/cache": {}}}})),
    );
    let b = crate::support::unpack(&s, "vols", "b");
    let o = spawn(&s, &["-v", "mine:/cache"], &b, "head -1 /etc/passwd; ls -A /etc/shadow | wc -l; grep -c ' /etc' /proc/mounts");
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o), "root:x:0:0:root:/root:/bin/sh\n0\n2\n");
    let mut names = s.ok("box-volume", &["ls"]).lines().map(String::from).collect::<Vec<_>>();
    assert!(names.contains(&"mine".to_string()), "-v replaces the image volume at the same path: {names:?}");
    names.retain(|n| n != "mine");
    assert_eq!(names.len(), 2, "{names:?}");
    for n in &names {
        assert_eq!(n.len(), 64);
        assert!(n.bytes().all(|c| c.is_ascii_hexdigit()));
        let v: serde_json::Value = serde_json::from_str(&s.ok("box-volume", &["inspect", n])).unwrap();
        assert!(v[0]["Labels"].get("com.docker.volume.anonymous").is_some());
    }
    // Nothing of the host's /etc/shadow was copied anywhere.
    let host_shadow = std::fs::read("/etc/shadow").unwrap_or_default();
    for n in &names {
        let d = s.join(&format!("volumes/{n}/_data"));
        assert!(!d.join("shadow").is_file() || std::fs::read(d.join("shadow")).unwrap() != host_shadow);
        if let Ok(f) = std::fs::read(d.join("passwd")) {
            assert_eq!(f, std::fs::read(b.join("rootfs/etc/passwd")).unwrap());
        }
    }
}

#[test]
fn nothing_is_mounted_over_proc_and_symlinks_stay_inside() {
    // runc CVE-2019-16884: a mount over /proc; a symlink to it must not get around the rule.
    let s = Scratch::new();
    let b = s.busybox_bundle("b");
    for arg in ["v1:/proc", "v1:/proc/sys", "v1:/../proc/self"] {
        let o = spawn(&s, &["-v", arg], &b, "true");
        assert_eq!(o.status.code(), Some(125), "{arg}");
        assert!(stderr(&o).contains("/proc are refused (runc CVE-2019-16884)"), "{arg}: {}", stderr(&o));
    }
    let o = spawn(&s, &["--tmpfs", "/proc/sys"], &b, "true");
    assert!(stderr(&o).contains("CVE-2019-16884"), "{}", stderr(&o));
    std::os::unix::fs::symlink("/proc/sys", b.join("rootfs/sneaky")).unwrap();
    let o = spawn(&s, &["--tmpfs", "/sneaky"], &b, "true");
    assert_eq!(o.status.code(), Some(125), "a kernel filesystem is never mounted through a symlink");
    let o = spawn(&s, &["-v", "v3:/sneaky"], &b, "true");
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("mount destination /sneaky is inside /proc"), "{}", stderr(&o));
    // An absolute symlink to a host directory resolves inside the rootfs.
    let host = s.join("host-target");
    std::fs::create_dir(&host).unwrap();
    std::fs::create_dir_all(b.join("rootfs").join(host.strip_prefix("/").unwrap())).unwrap();
    std::os::unix::fs::symlink(&host, b.join("rootfs/escape")).unwrap();
    let o = spawn(&s, &["-v", "v2:/escape"], &b, "echo x > /escape/written");
    assert!(o.status.success(), "{o:?}");
    assert!(!host.join("written").exists(), "the mount escaped the rootfs");
    assert_eq!(std::fs::read_to_string(s.join("volumes/v2/_data/written")).unwrap(), "x\n");
}

/// A pty made by the test: box-spawn runs with the slave as its controlling terminal and
/// stdin/stdout/stderr, as in an interactive shell. Returns (master, slave).
fn openpty(rows: u16, cols: u16) -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let (mut m, mut s) = (0, 0);
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    assert_eq!(unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), &ws) }, 0);
    unsafe { (std::fs::File::from_raw_fd(m), std::fs::File::from_raw_fd(s)) }
}

fn termios(fd: &std::fs::File) -> libc::termios {
    use std::os::fd::AsRawFd;
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) }, 0);
    t
}

fn same_termios(a: &libc::termios, b: &libc::termios) -> bool {
    (a.c_iflag, a.c_oflag, a.c_cflag, a.c_lflag, a.c_cc) == (b.c_iflag, b.c_oflag, b.c_cflag, b.c_lflag, b.c_cc)
}

/// Start box-spawn on the test's pty, as the session leader it belongs to.
fn spawn_on_pty(s: &Scratch, slave: &std::fs::File, args: &[&str]) -> std::process::Child {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let fd = slave.as_raw_fd();
    let mut c = s.cmd("box-spawn");
    c.args(args).stdin(slave.try_clone().unwrap()).stdout(slave.try_clone().unwrap()).stderr(slave.try_clone().unwrap());
    unsafe {
        c.pre_exec(move || {
            if libc::setsid() < 0 || libc::ioctl(fd, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c.spawn().unwrap()
}

/// Read the master until `want` appears (the pty ends with EIO once every slave is closed).
fn read_until(master: &mut std::fs::File, out: &mut String, want: &str) {
    use std::io::Read;
    let mut buf = [0u8; 4096];
    while !out.contains(want) {
        match master.read(&mut buf) {
            Ok(0) | Err(_) => panic!("the terminal closed before {want:?} appeared in {out:?}"),
            Ok(n) => out.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
}

#[test]
fn a_terminal_with_the_callers_size_and_raw_mode_restored() {
    use std::io::Write;
    let s = Scratch::new();
    let b = s.busybox_bundle("b");
    let (mut master, slave) = openpty(31, 97);
    let before = termios(&slave);
    let mut c = spawn_on_pty(
        &s,
        &slave,
        &["-t", "-i", b.to_str().unwrap(), "--", "sh", "-c", "tty; stty size; trap 'stty size; exit 4' WINCH; echo ready; read line; echo got=$line; while :; do sleep 0.05; done"],
    );
    let mut out = String::new();
    read_until(&mut master, &mut out, "ready");
    assert!(out.contains("/dev/console") || out.contains("/dev/pts/"), "{out:?}");
    assert!(out.contains("31 97"), "stty size inside: {out:?}");
    // Raw mode on the caller's terminal while the container runs: no echo there.
    assert_eq!(termios(&slave).c_lflag & libc::ECHO, 0, "the caller's terminal is not in raw mode");
    master.write_all(b"typed\r").unwrap();
    read_until(&mut master, &mut out, "got=typed");
    // Resize the caller's terminal: box-spawn gets SIGWINCH and resizes the container's.
    use std::os::fd::AsRawFd;
    let ws = libc::winsize { ws_row: 50, ws_col: 120, ws_xpixel: 0, ws_ypixel: 0 };
    assert_eq!(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) }, 0);
    read_until(&mut master, &mut out, "50 120");
    assert_eq!(c.wait().unwrap().code(), Some(4));
    assert!(same_termios(&termios(&slave), &before), "the caller's terminal settings were not restored");
}

#[test]
fn a_terminal_without_i_and_stdin_rules() {
    let s = Scratch::new();
    let b = s.busybox_bundle("b");
    // -t alone: the container has a terminal, the caller's terminal stays as it is.
    let (mut master, slave) = openpty(24, 80);
    let before = termios(&slave);
    let mut c = spawn_on_pty(&s, &slave, &["-t", b.to_str().unwrap(), "--", "sh", "-c", "tty; test -t 0 && echo stdin-is-tty; echo done"]);
    let mut out = String::new();
    read_until(&mut master, &mut out, "done");
    assert!(out.contains("stdin-is-tty"), "{out:?}");
    assert_eq!(c.wait().unwrap().code(), Some(0));
    assert!(same_termios(&termios(&slave), &before));
    // Without -t, a foreground container still reads the caller's stdin (as before).
    let mut c = s
        .cmd("box-spawn")
        .arg(&b)
        .args(["--", "sh", "-c", "test -t 0 || echo no-tty; cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    c.stdin.take().unwrap().write_all(b"piped\n").unwrap();
    assert_eq!(stdout(&c.wait_with_output().unwrap()), "no-tty\npiped\n");
}

fn state(s: &Scratch, name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(s.join(&format!("containers/{name}/state.json"))).unwrap()).unwrap()
}

/// Kills, on drop, the processes a detached run left (only the pids it recorded, and only
/// while they are still the processes that started then).
struct KillRecorded<'a>(&'a Scratch, String);

impl Drop for KillRecorded<'_> {
    fn drop(&mut self) {
        let Ok(bytes) = std::fs::read(self.0.join(&format!("containers/{}/state.json", self.1))) else { return };
        let st: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        for (pid, start) in [("supervisor_pid", "supervisor_start_time"), ("pid", "pid_start_time")] {
            if let (Some(p), Some(t)) = (st[pid].as_i64(), st[start].as_u64()) {
                if boxkit::state::alive(p as i32, t) {
                    unsafe { libc::kill(p as i32, libc::SIGKILL) };
                }
            }
        }
    }
}

/// Wait (at most a minute, as a guard against hanging, not a timing assertion) for a state.
fn wait_status(s: &Scratch, name: &str, want: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let st = state(s, name);
        if st["status"] == want {
            return st;
        }
        assert!(std::time::Instant::now() < deadline, "{name} never became {want}: {st}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn detached_containers_run_on_and_record_their_state() {
    let s = Scratch::new();
    let b = s.busybox_bundle("b");
    let _guard = KillRecorded(&s, "job".into());
    // The container waits for a file that only the test creates: -d returning while it
    // still runs shows it did not wait for the container.
    let o = spawn(&s, &["-d", "--name", "job", "-v", "jobdata:/data"], &b, "echo out; echo err >&2; while [ ! -e /tmp/go ]; do sleep 0.05; done; exit 3");
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o), "job\n");
    let st = state(&s, "job");
    assert_eq!(st["status"], "running", "{st}");
    assert_eq!(st["name"], "job");
    assert_eq!(st["id"].as_str().unwrap().len(), 64);
    assert_eq!(st["bundle"], b.canonicalize().unwrap().to_str().unwrap());
    assert_eq!(st["command"][0], "sh");
    assert_eq!(st["volumes"], serde_json::json!(["jobdata"]));
    let pid = st["pid"].as_i64().unwrap() as i32;
    assert!(boxkit::state::alive(pid, st["pid_start_time"].as_u64().unwrap()), "{st}");
    assert!(boxkit::state::alive(st["supervisor_pid"].as_i64().unwrap() as i32, st["supervisor_start_time"].as_u64().unwrap()));
    assert!(st["started_at"].as_str().unwrap().ends_with('Z') && st["finished_at"].is_null());
    // Names are unique; the volume is in use while the container runs.
    let o = spawn(&s, &["-d", "--name", "job"], &b, "true");
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("the container name \"job\" is already in use"), "{}", stderr(&o));
    let (_, err) = s.fails("box-volume", &["rm", "jobdata"]);
    assert!(err.contains("in use"), "{err}");

    std::fs::write(b.join("rootfs/tmp/go"), "").unwrap();
    let st = wait_status(&s, "job", "exited");
    assert_eq!(st["exit_code"], 3, "{st}");
    assert!(st["finished_at"].as_str().unwrap().ends_with('Z'));
    let log = std::fs::read_to_string(st["log_path"].as_str().unwrap()).unwrap();
    assert_eq!(log, "out\nerr\n");
    assert_eq!(Path::new(st["log_path"].as_str().unwrap()), s.join("containers/job/container.log"));
    // The supervisor leaves once it recorded the exit; the volume is free again.
    let sup = (st["supervisor_pid"].as_i64().unwrap() as i32, st["supervisor_start_time"].as_u64().unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while boxkit::state::alive(sup.0, sup.1) {
        assert!(std::time::Instant::now() < deadline, "the supervisor stayed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    s.ok("box-volume", &["rm", "jobdata"]);
}

#[test]
fn generated_names_foreground_names_and_failed_starts() {
    let s = Scratch::new();
    let b = s.busybox_bundle("b");
    let o = spawn(&s, &["-d"], &b, "exit 0");
    assert!(o.status.success(), "{o:?}");
    let name = stdout(&o).trim().to_string();
    let _guard = KillRecorded(&s, name.clone());
    assert!(boxkit::state::validate_name(&name).is_ok() && name.contains('_'), "{name}");
    assert_eq!(wait_status(&s, &name, "exited")["exit_code"], 0);
    // A foreground run with --name is recorded too; its output goes to the caller.
    let o = spawn(&s, &["--name", "fg"], &b, "echo hi; exit 5");
    assert_eq!((o.status.code(), stdout(&o).as_str()), (Some(5), "hi\n"));
    let st = state(&s, "fg");
    assert_eq!((st["status"].as_str(), st["exit_code"].as_i64(), st["log_path"].is_null()), (Some("exited"), Some(5), true));
    // A command that cannot start: -d fails as a foreground run would, and says why.
    let o = s.cmd("box-spawn").args(["-d", "--name", "bad2"]).arg(&b).args(["--", "no-such-command"]).stdin(Stdio::null()).output().unwrap();
    assert_eq!(o.status.code(), Some(127), "{o:?}");
    assert!(stderr(&o).contains("no-such-command: not found"), "{}", stderr(&o));
    let st = state(&s, "bad2");
    assert_eq!((st["status"].as_str(), st["exit_code"].as_i64()), (Some("exited"), Some(127)));
    assert!(st["error"].as_str().unwrap().contains("not found"));
}
