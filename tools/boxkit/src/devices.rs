//! The device filter: which device nodes a container may create and open, enforced by the
//! kernel when a process opens or mknods a device, whatever its capabilities.
//!
//! Reference: the kernel's Documentation/admin-guide/cgroup-v1/devices.rst (`devices.deny`,
//! `devices.allow`, entries `TYPE MAJOR:MINOR ACCESS`), cgroup-v2.rst "Device controller"
//! (no files: a `BPF_PROG_TYPE_CGROUP_DEVICE` program attached to the group), bpf(2)
//! (`BPF_PROG_LOAD`, `BPF_PROG_ATTACH`), linux/bpf.h (`struct bpf_cgroup_dev_ctx`,
//! `BPF_DEVCG_*`, the eBPF instruction encoding) and the OCI runtime spec config-linux.md
//! "Allowed Device Cgroup". The rules are runc's and Docker's defaults (runc
//! `libcontainer/specconv` AllowedDevices; the program's shape follows runc's
//! `libcontainer/cgroups/devices` devicefilter).
//!
//! With a filter in place a container may hold CAP_MKNOD, as under Docker: it can make a
//! node for the host's disk, but opening it fails with EPERM.

use crate::error::{Context, Error, Result};
use crate::explain;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// One rule: a device type (`a` all, `b` block, `c` char), major and minor (None = any),
/// and the access it allows (`r` read, `w` write, `m` mknod).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub kind: char,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: &'static str,
}

const fn rule(kind: char, major: Option<u32>, minor: Option<u32>, access: &'static str) -> Rule {
    Rule { kind, major, minor, access }
}

// ANCHOR: default_rules
/// What a container may use once everything else is denied: make any node (`m`), and read
/// and write the devices of the OCI spec's default /dev and its pseudo-terminals.
pub const DEFAULT_ALLOWED: [Rule; 10] = [
    rule('c', None, None, "m"),
    rule('b', None, None, "m"),
    rule('c', Some(1), Some(3), "rwm"),  // /dev/null
    rule('c', Some(1), Some(8), "rwm"),  // /dev/random
    rule('c', Some(1), Some(7), "rwm"),  // /dev/full
    rule('c', Some(5), Some(0), "rwm"),  // /dev/tty
    rule('c', Some(1), Some(5), "rwm"),  // /dev/zero
    rule('c', Some(1), Some(9), "rwm"),  // /dev/urandom
    rule('c', Some(136), None, "rwm"),   // /dev/pts/*
    rule('c', Some(5), Some(2), "rwm"),  // /dev/ptmx
];
// ANCHOR_END: default_rules

impl std::fmt::Display for Rule {
    /// The v1 `devices.allow` form: `c 1:3 rwm`, `b *:* m`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = |v: Option<u32>| v.map(|x| x.to_string()).unwrap_or_else(|| "*".into());
        write!(f, "{} {}:{} {}", self.kind, n(self.major), n(self.minor), self.access)
    }
}

// ANCHOR: apply_v1
/// cgroup v1: deny everything, then allow the rules one by one, in the group's `devices`
/// directory. A new group starts as its parent allows; it can only narrow that.
pub fn apply_v1(dir: &Path, rules: &[Rule]) -> Result<()> {
    let write = |file: &str, value: &str| {
        std::fs::write(dir.join(file), value).ctx(|| format!("write {value:?} to {}", dir.join(file).display()))
    };
    explain!("echo a > {}/devices.deny", dir.display());
    write("devices.deny", "a")?;
    for r in rules {
        write("devices.allow", &r.to_string())?;
    }
    explain!("devices.allow: {}", rules.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", "));
    Ok(())
}
// ANCHOR_END: apply_v1

/// One eBPF instruction (struct bpf_insn): opcode, dst and src registers, offset, immediate.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: (src << 4) | dst, off, imm }
}
// eBPF opcodes (linux/bpf.h, linux/bpf_common.h).
const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W: dst = *(u32 *)(src + off)
const AND32_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const RSH32_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const MOV32_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JNE_X: u8 = 0x5d; // BPF_JMP | BPF_JNE | BPF_X
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

// struct bpf_cgroup_dev_ctx { u32 access_type /* (access << 16) | type */; u32 major; u32 minor; }
const DEV_BLOCK: i32 = 1; // BPF_DEVCG_DEV_BLOCK
const DEV_CHAR: i32 = 2; // BPF_DEVCG_DEV_CHAR

fn access_bits(access: &str) -> i32 {
    access.chars().map(|c| match c {
        'm' => 1, // BPF_DEVCG_ACC_MKNOD
        'r' => 2, // BPF_DEVCG_ACC_READ
        'w' => 4, // BPF_DEVCG_ACC_WRITE
        _ => 0,
    }).fold(0, |a, b| a | b)
}

// ANCHOR: program
/// The cgroup v2 program: load the request into registers, then one block per rule that
/// jumps to the next block on any mismatch and returns 1 (allow) at its end; after the last
/// block, return 0 (deny).
///
/// ```text
/// r2 = ctx->access_type & 0xffff     device type
/// r3 = ctx->access_type >> 16        access asked for
/// r4 = ctx->major; r5 = ctx->minor
/// rule "c 1:3 rwm":  if r2 != 2 goto next; if r3 & 7 != r3 goto next;
///                    if r4 != 1 goto next; if r5 != 3 goto next; return 1
/// next: …            return 0
/// ```
pub fn program(rules: &[Rule]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(AND32_K, 2, 0, 0, 0xffff),
        insn(LDX_W, 3, 1, 0, 0),
        insn(RSH32_K, 3, 0, 0, 16),
        insn(LDX_W, 4, 1, 4, 0),
        insn(LDX_W, 5, 1, 8, 0),
    ];
    for r in rules {
        let mut block = Vec::new();
        // Each check is a jump to the end of this block; offsets are filled in below.
        match r.kind {
            'b' => block.push(insn(JNE_K, 2, 0, 0, DEV_BLOCK)),
            'c' => block.push(insn(JNE_K, 2, 0, 0, DEV_CHAR)),
            _ => {}
        }
        let bits = access_bits(r.access);
        if bits != 7 {
            // The access asked for must be within the rule's: (r3 & bits) == r3.
            block.push(insn(MOV32_X, 1, 3, 0, 0));
            block.push(insn(AND32_K, 1, 0, 0, bits));
            block.push(insn(JNE_X, 1, 3, 0, 0));
        }
        if let Some(m) = r.major {
            block.push(insn(JNE_K, 4, 0, 0, m as i32));
        }
        if let Some(m) = r.minor {
            block.push(insn(JNE_K, 5, 0, 0, m as i32));
        }
        block.push(insn(MOV64_K, 0, 0, 0, 1));
        block.push(insn(EXIT, 0, 0, 0, 0));
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == JNE_K || ins.code == JNE_X {
                ins.off = (len - i - 1) as i16;
            }
        }
        p.extend(block);
    }
    p.push(insn(MOV64_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}
// ANCHOR_END: program

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The leading fields of `union bpf_attr` for BPF_PROG_LOAD.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The fields of `union bpf_attr` for BPF_PROG_ATTACH.
#[repr(C)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a properly laid out prefix of union bpf_attr, and its size is passed.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if r < 0 { Err(std::io::Error::last_os_error()) } else { Ok(r) }
}

/// Load the program into the kernel; the verifier's log becomes part of the error.
fn load(prog: &[Insn]) -> Result<OwnedFd> {
    let license = b"Apache\0";
    let mut log = vec![0u8; 16 * 1024];
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        ..Default::default()
    };
    attr.prog_name[..12].copy_from_slice(b"boxkit_devic");
    match bpf(BPF_PROG_LOAD, &mut attr) {
        // SAFETY: a new descriptor that we own.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(e) => {
            let end = log.iter().position(|b| *b == 0).unwrap_or(0);
            let msg = String::from_utf8_lossy(&log[..end]).trim().replace('\n', "; ");
            Err(Error::io(format!("bpf(BPF_PROG_LOAD) of the device filter{}", if msg.is_empty() { String::new() } else { format!(" (verifier: {msg})") }), e))
        }
    }
}

// ANCHOR: attach_v2
/// cgroup v2: load the program and attach it to the group at `dir`. BPF_F_ALLOW_MULTI: a
/// program attached higher up (systemd's) still runs too, and all must allow. The group keeps
/// the program alive; it goes away with the group.
pub fn attach_v2(dir: &Path, rules: &[Rule]) -> Result<()> {
    let prog = program(rules);
    let fd = load(&prog)?;
    let group = std::fs::File::open(dir).ctx(|| format!("open {}", dir.display()))?;
    let mut attr = ProgAttachAttr {
        target_fd: group.as_raw_fd() as u32,
        attach_bpf_fd: fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(|e| Error::io(format!("bpf(BPF_PROG_ATTACH) to {}", dir.display()), e))?;
    explain!("bpf(BPF_PROG_ATTACH, BPF_CGROUP_DEVICE) to {}: {} instructions for {} rules", dir.display(), prog.len(), rules.len());
    Ok(())
}
// ANCHOR_END: attach_v2

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_lines() {
        let lines: Vec<String> = DEFAULT_ALLOWED.iter().map(|r| r.to_string()).collect();
        assert_eq!(lines[0], "c *:* m");
        assert_eq!(lines[2], "c 1:3 rwm");
        assert_eq!(lines[8], "c 136:* rwm");
        let t = tempfile::tempdir().unwrap();
        apply_v1(t.path(), &DEFAULT_ALLOWED[..2]).unwrap();
        // A plain file keeps only the last write: the kernel's file takes them one at a time.
        assert_eq!(std::fs::read_to_string(t.path().join("devices.deny")).unwrap(), "a");
        assert_eq!(std::fs::read_to_string(t.path().join("devices.allow")).unwrap(), "b *:* m");
    }

    #[test]
    fn program_shape() {
        let p = program(&[rule('c', Some(1), Some(3), "rwm"), rule('b', None, None, "m")]);
        // prologue 6; rule 1: type, major, minor, mov, exit = 5; rule 2: type, 3 access, mov, exit = 6; epilogue 2
        assert_eq!(p.len(), 6 + 5 + 6 + 2);
        assert_eq!(p[6], insn(JNE_K, 2, 0, 4, DEV_CHAR)); // to the start of rule 2
        assert_eq!(p[14], insn(JNE_X, 1, 3, 2, 0));
        assert_eq!(p[p.len() - 2], insn(MOV64_K, 0, 0, 0, 0));
    }

    /// The real thing, where a cgroup2 mount exists (also on a v1 "hybrid" host): attach the
    /// program to a new group, move a forked child in, and check what it may open.
    #[test]
    fn the_kernel_enforces_the_v2_program() {
        let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let Some(mount) = mi.lines().find_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            post.starts_with("cgroup2 ").then(|| pre.split_whitespace().nth(4).map(str::to_string)).flatten()
        }) else {
            eprintln!("skipped: no cgroup2 mount");
            return;
        };
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = Path::new(&mount).join(format!("boxkit-devtest-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        let result = std::panic::catch_unwind(|| {
            attach_v2(&dir, &DEFAULT_ALLOWED).unwrap();
            let t = tempfile::tempdir().unwrap();
            let c = |p: &str| std::ffi::CString::new(p).unwrap();
            let procs = c(dir.join("cgroup.procs").to_str().unwrap());
            let node = c(t.path().join("loop").to_str().unwrap());
            let null = c("/dev/null");
            // SAFETY: the child makes raw calls only and leaves with _exit.
            unsafe {
                let pid = libc::fork();
                if pid == 0 {
                    let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                    if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        libc::_exit(1);
                    }
                    libc::close(fd);
                    if libc::mknod(node.as_ptr(), libc::S_IFBLK | 0o600, libc::makedev(7, 0)) != 0 {
                        libc::_exit(2);
                    }
                    let fd = libc::open(node.as_ptr(), libc::O_RDONLY);
                    if fd >= 0 || *libc::__errno_location() != libc::EPERM {
                        libc::_exit(3);
                    }
                    if libc::open(null.as_ptr(), libc::O_RDWR) < 0 {
                        libc::_exit(4);
                    }
                    libc::_exit(0);
                }
                let mut status = 0;
                libc::waitpid(pid, &mut status, 0);
                status
            }
        });
        let _ = std::fs::remove_dir(&dir);
        let status = result.unwrap();
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "check {} failed", libc::WEXITSTATUS(status));
    }
}
