//! box-spawn: namespaces, pivot_root, /proc, /sys, /dev, identity, exit codes, signals,
//! descriptors, mount propagation, and the spawn attacks of THREATS.md.

use crate::support::{bin, path_env, stdout, Scratch};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};



fn mountinfo() -> usize {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().count()
}

#[test]
fn the_container_sees_its_own_world() {
    let s = Scratch::new();
    let b = s.busybox_bundle("web-1");
    let marker = s.join("host-only-marker");
    std::fs::write(&marker, "host").unwrap();
    let before = mountinfo();
    let o = s.spawn_sh(&b, &[], "hostname; echo pid=$$; ps -o pid,comm | sed 1d | wc -l; ls /; test -e /host-only-marker || echo no-marker; cat /etc/os-release | head -1");
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "web-1", "hostname comes from the bundle name");
    assert_eq!(lines[1], "pid=1", "the command is PID 1 in its own PID namespace");
    assert!(out.contains("no-marker"));
    assert!(!out.contains(&s.path().display().to_string()));
    assert_eq!(mountinfo(), before, "mounts leaked into the host namespace");
}

#[test]
fn proc_sys_dev_and_capabilities() {
    let s = Scratch::new();
    let b = s.busybox_bundle("b");
    let o = s.spawn_sh(
        &b,
        &[],
        "ls /dev | tr '\\n' ' '; echo; \
         grep -E '^(CapBnd|CapEff|NoNewPrivs)' /proc/self/status; \
         touch /sys/x 2>/dev/null || echo sys-ro; \
         echo x > /proc/sys/kernel/core_pattern 2>/dev/null || echo proc-sys-ro; \
         echo x > /proc/sysrq-trigger 2>/dev/null || echo sysrq-ro; \
         cat /proc/keys | wc -c; ls /sys/firmware | wc -l; \
         mount -t cgroup -o memory cgroup /mnt 2>/dev/null || echo no-cgroup-mount; \
         ip link 2>/dev/null | grep -c UP || cat /sys/class/net/lo/operstate",
    );
    assert!(o.status.success(), "{o:?}");
    insta::assert_snapshot!(stdout(&o));
}

#[test]
fn exit_codes_follow_the_process() {
    let s = Scratch::new();
    let b = s.busybox_bundle("b");
    let code = |extra: &[&str], args: &[&str]| {
        Command::new(bin("box-spawn")).args(extra).arg(&b).arg("--").args(args).stderr(Stdio::piped()).output().unwrap()
    };
    assert_eq!(code(&[], &["true"]).status.code(), Some(0));
    assert_eq!(code(&[], &["sh", "-c", "exit 7"]).status.code(), Some(7));
    let o = code(&[], &["no-such-command"]);
    assert_eq!(o.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&o.stderr).starts_with("box-spawn: exec no-such-command: not found"));
    assert_eq!(code(&[], &["/etc/passwd"]).status.code(), Some(126));
    // PID 1 ignores signals it has no handler for, even SIGKILL from inside: use --init.
    assert_eq!(code(&["--init"], &["sh", "-c", "kill -9 $$"]).status.code(), Some(137));
    assert_eq!(code(&["--init"], &["sh", "-c", "exit 3"]).status.code(), Some(3));
    let o = Command::new(bin("box-spawn")).arg(s.join("nope")).output().unwrap();
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not a bundle"));
}

#[test]
fn signals_reach_the_container() {
    let s = Scratch::new();
    let b = s.busybox_bundle("b");
    // Without --init the command is PID 1 and sees only signals it handles.
    let mut c = Command::new(bin("box-spawn"))
        .arg(&b)
        .args(["--", "sh", "-c", "trap 'echo got-term; exit 3' TERM; echo ready; while true; do sleep 0.05; done"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_ready(&mut c);
    unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
    let o = c.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(stdout(&o).contains("got-term"));
    // With --init, a plain command dies of the forwarded signal: 128+15.
    let mut c = Command::new(bin("box-spawn"))
        .args(["--init"])
        .arg(&b)
        .args(["--", "sh", "-c", "echo ready; exec sleep 30"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_ready(&mut c);
    unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
    assert_eq!(c.wait().unwrap().code(), Some(143));
}

fn wait_ready(c: &mut std::process::Child) {
    use std::io::BufRead;
    let out = c.stdout.as_mut().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(out).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
}

#[test]
fn init_reaps_orphans() {
    let s = Scratch::new();
    let b = s.busybox_bundle("b");
    // The subshell exits at once; its background sleep is reparented to PID 1 and exits
    // 0.1 s later. With --init, PID 1 reaps it: no zombie remains.
    let o = s.spawn_sh(&b, &["--init"], "(sleep 0.1 &); sleep 0.5; ps -o stat,comm | grep -c '^Z' || true; ps -o pid,comm | sed -n 2p");
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0", "a zombie was left: {out}");
    assert!(lines[1].trim().starts_with("1 "), "PID 1 is the init: {out}");
}

#[test]
fn stdin_env_cwd_and_user_come_from_config() {
    let s = Scratch::new();
    let tar = crate::support::busybox_tar();
    s.ok("box-import", &["-c", "USER nobody", "-c", "WORKDIR /tmp", "-c", "ENV GREETING=hi", tar.to_str().unwrap(), "nb"]);
    let b = crate::support::unpack(&s, "nb", "b");
    let mut c = Command::new(bin("box-spawn"))
        .arg(&b)
        .args(["--", "sh", "-c", "id -u; id -g; pwd; echo $GREETING; cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(b"from stdin\n").unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(o.status.success());
    assert_eq!(stdout(&o), "65534\n65534\n/tmp\nhi\nfrom stdin\n");
}

#[test]
fn no_host_descriptor_leaks_in() {
    let s = Scratch::new();
    let b = s.busybox_bundle("b");
    let dir = std::fs::File::open("/").unwrap();
    use std::os::fd::AsRawFd;
    let raw = dir.as_raw_fd();
    let mut c = Command::new(bin("box-spawn"));
    c.arg(&b).args(["--", "sh", "-c", "for f in /proc/self/fd/*; do echo $f; done"]).stdout(Stdio::piped());
    // Hand box-spawn an inheritable descriptor 9 for the host's root directory.
    unsafe {
        c.pre_exec(move || {
            if libc::dup2(raw, 9) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{o:?}");
    let fds: Vec<String> = stdout(&o).lines().map(|l| l.rsplit('/').next().unwrap().to_string()).collect();
    assert!(fds.iter().all(|f| ["0", "1", "2", "3"].contains(&f.as_str())), "open in the container: {fds:?}");
    assert!(!fds.contains(&"9".to_string()));
}

#[test]
fn a_cwd_through_proc_self_fd_fails() {
    // runc CVE-2024-21626: a working directory of /proc/self/fd/N must not reach the host.
    let s = Scratch::new();
    let b = s.busybox_bundle("b");
    for n in [3, 4, 5, 6, 7, 8] {
        crate::support::edit_config(&b, |spec| spec["process"]["cwd"] = format!("/proc/self/fd/{n}").into());
        let o = s.spawn_sh(&b, &[], "ls ..");
        assert_eq!(o.status.code(), Some(125), "cwd fd {n}: {o:?}");
    }
}

#[test]
fn a_symlinked_proc_or_dev_is_refused() {
    // runc CVE-2019-19921 / CVE-2023-27561: the rootfs's /proc is a symlink to elsewhere.
    let s = Scratch::new();
    let b = s.busybox_bundle("b");
    std::fs::remove_dir(b.join("rootfs/proc")).unwrap();
    std::os::unix::fs::symlink("/etc", b.join("rootfs/proc")).unwrap();
    let o = s.spawn_sh(&b, &[], "true");
    assert_eq!(o.status.code(), Some(125));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("/proc is or passes through a symlink"), "{err}");
    assert!(!b.join("rootfs/etc/self").exists(), "proc was mounted over the symlink target");
}

#[test]
fn the_host_binary_cannot_be_overwritten_through_proc() {
    // runc CVE-2019-5736: the container tries to write to the runtime through /proc/*/exe.
    let s = Scratch::new();
    let b = s.busybox_bundle("b");
    let before = std::fs::read(bin("box-spawn")).unwrap();
    for extra in [&[][..], &["--init"][..]] {
        let o = s.spawn_sh(&b, extra, "for p in 1 self; do echo pwned > /proc/$p/exe 2>/dev/null && echo wrote-$p; done; true");
        assert!(!stdout(&o).contains("wrote-1"), "{extra:?}: {o:?}");
    }
    assert_eq!(std::fs::read(bin("box-spawn")).unwrap(), before);
}

#[test]
fn explain_narrates_the_system_calls() {
    let s = Scratch::new();
    let b = s.busybox_bundle("b");
    let o = Command::new(bin("box-spawn")).arg("--explain").arg(&b).args(["--", "true"]).env("PATH", path_env()).output().unwrap();
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    for step in ["clone(CLONE_NEWPID|CLONE_NEWNS|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWNET)", "pivot_root(\".\", \".\")", "sethostname(\"b\")", "execve("] {
        assert!(err.contains(step), "missing {step:?} in:\n{err}");
    }
}

#[test]
fn device_nodes_can_be_made_but_not_opened() {
    // A layer may ship a device node, and a container may make one (CAP_MKNOD, as under
    // Docker): the device filter of the container's cgroup refuses to open either.
    let s = Scratch::new();
    let b = s.busybox_bundle("b");
    let dev = b.join("rootfs/hostloop");
    let c = std::ffi::CString::new(dev.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mknod(c.as_ptr(), libc::S_IFBLK | 0o666, libc::makedev(7, 0)) }, 0);
    let o = s.spawn_sh(&b, &[], "cat /hostloop 2>&1; echo rc=$?; mknod /tmp/sda b 8 0; echo mknod=$?; cat /tmp/sda 2>&1; echo rc=$?; head -c1 /dev/zero | wc -c");
    assert_eq!(
        stdout(&o),
        "cat: can't open '/hostloop': Operation not permitted\nrc=1\nmknod=0\ncat: can't open '/tmp/sda': Operation not permitted\nrc=1\n1\n"
    );
}

#[test]
fn read_only_and_nosuid_binds_keep_the_flags() {
    let s = Scratch::new();
    let b = s.busybox_bundle("b");
    let vol = s.join("vol");
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(vol.join("f"), "host data\n").unwrap();
    crate::support::edit_config(&b, |spec| {
        spec["mounts"].as_array_mut().unwrap().push(serde_json::json!({"destination": "/mnt", "type": "bind", "source": vol, "options": ["bind", "ro", "nosuid"]}));
        spec["root"]["readonly"] = true.into();
    });
    let o = s.spawn_sh(&b, &[], "cat /mnt/f; touch /mnt/x 2>/dev/null || echo mnt-ro; touch /x 2>/dev/null || echo root-ro; grep ' /mnt ' /proc/mounts | cut -d' ' -f4; grep ' / ' /proc/mounts | cut -d' ' -f4");
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..3], ["host data", "mnt-ro", "root-ro"], "{out}");
    assert!(lines[3].contains("ro") && lines[3].contains("nosuid"), "{out}");
    assert!(lines[4].starts_with("ro"), "{out}");
}

#[test]
fn a_non_root_container_dies_with_box_spawn() {
    let s = Scratch::new();
    let b = s.busybox_bundle("b");
    crate::support::edit_config(&b, |spec| {
        spec["process"]["user"] = serde_json::json!({"uid": 65534, "gid": 65534});
    });
    let mut c = Command::new(bin("box-spawn")).arg(&b).args(["--", "sh", "-c", "echo ready; exec sleep 1000"]).stdout(Stdio::piped()).spawn().unwrap();
    wait_ready(&mut c);
    // Find the container's sleep: a child of box-spawn.
    let children = std::fs::read_to_string(format!("/proc/{}/task/{}/children", c.id(), c.id())).unwrap();
    let sleeper: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
    c.wait().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::path::Path::new(&format!("/proc/{sleeper}")).exists() && std::fs::read_to_string(format!("/proc/{sleeper}/stat")).map(|s| !s.contains(") Z ")).unwrap_or(false) {
        assert!(std::time::Instant::now() < deadline, "the container outlived box-spawn");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    crate::hardening::remove_spawn_group(c.id());
}
