//! Seccomp: a small classic-BPF program the kernel runs on every system call the container
//! makes, which answers "allow", "fail with this errno" or "kill".
//!
//! Reference: seccomp(2) (`SECCOMP_SET_MODE_FILTER`, `struct seccomp_data`, the
//! `SECCOMP_RET_*` actions), the kernel's Documentation/userspace-api/seccomp_filter.rst,
//! linux/filter.h and linux/bpf_common.h (classic BPF opcodes), linux/audit.h (`AUDIT_ARCH_*`).
//! The policy is Docker's default profile, moby/moby `profiles/seccomp/default.json`, with
//! the io_uring calls removed as moby#46762 (Docker 25) did.
//!
//! Docker's profile is an allow list; libseccomp compiles it into a BPF program. boxkit
//! writes the program by hand as the complement: the calls that profile does *not* allow,
//! for the capabilities the container has, fail with EPERM; calls newer than the newest one
//! the profile knows fail with ENOSYS, as runc does, so that a C library falls back to an
//! older call instead of reporting a permission error. Every call the kernel knows up to
//! that fence is named in one of the two lists, so the two forms deny the same calls.
//!
//! ```text
//! load arch ─ not this build's arch? ─────────────────────────▶ KILL_PROCESS
//! load nr ─── x32 ABI bit set? ───────────────────────────────▶ ERRNO(EPERM)
//!          ── nr > newest the profile knows? ──────────────────▶ ERRNO(ENOSYS)
//!          ── clone: namespace flags? ─────────────────────────▶ ERRNO(EPERM)
//!          ── clone3 ─────────────────────────────────────────▶ ERRNO(ENOSYS)
//!          ── socket(AF_VSOCK) / personality(not a plain one) ─▶ ERRNO(EPERM)
//!          ── one of the denied calls ─────────────────────────▶ ERRNO(EPERM)
//!          ─────────────────────────────────────────────────── ▶ ALLOW
//! ```

use crate::caps;
use crate::error::{Error, Result};
use crate::explain;
use std::collections::BTreeMap;

// Classic BPF opcodes (linux/bpf_common.h).
const LD_W_ABS: u16 = 0x00 | 0x00 | 0x20; // BPF_LD | BPF_W | BPF_ABS
const JEQ_K: u16 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
const JGT_K: u16 = 0x05 | 0x20; // BPF_JMP | BPF_JGT | BPF_K
const JSET_K: u16 = 0x05 | 0x40; // BPF_JMP | BPF_JSET | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K

// Return values (linux/seccomp.h).
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

// Offsets into struct seccomp_data { int nr; u32 arch; u64 ip; u64 args[6]; }.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
/// The low 32 bits of argument `i` (little-endian: the first word).
const fn off_arg_lo(i: u32) -> u32 {
    16 + 8 * i
}

/// `AUDIT_ARCH_*` of the architecture this program was built for (linux/audit.h).
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E; // EM_X86_64 | 64BIT | LE
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7; // EM_AARCH64 | 64BIT | LE

/// x86_64's x32 ABI: the same table, numbers with this bit set.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The newest call in Docker's profile (set_mempolicy_home_node, 450 on both arches):
/// anything above it gets ENOSYS, as runc answers for calls its profile predates.
pub const NEWEST_KNOWN: u32 = 450;

/// The clone flags that make namespaces (Docker's mask 2114060288): CLONE_NEWNS,
/// CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET.
pub const CLONE_NAMESPACE_FLAGS: u32 = 0x7E02_0000;

/// personality(2) values Docker allows: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32,
/// and 0xffffffff (query only).
pub const PERSONALITIES: [u32; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// AF_VSOCK: sockets to the hypervisor, which Docker's profile refuses.
const AF_VSOCK: u32 = 40;

type Nr = libc::c_long;

// ANCHOR: deny_lists
/// Calls Docker's profile never allows, whatever the capabilities.
const ALWAYS_DENIED: &[(Nr, &str)] = &[
    (libc::SYS_add_key, "add_key"),
    (libc::SYS_request_key, "request_key"),
    (libc::SYS_keyctl, "keyctl"), // the keyring is not namespaced
    (libc::SYS_kexec_load, "kexec_load"),
    (libc::SYS_kexec_file_load, "kexec_file_load"),
    (libc::SYS_pivot_root, "pivot_root"),
    (libc::SYS_swapon, "swapon"),
    (libc::SYS_swapoff, "swapoff"),
    (libc::SYS_nfsservctl, "nfsservctl"),
    (libc::SYS_migrate_pages, "migrate_pages"),
    (libc::SYS_move_pages, "move_pages"),
    (libc::SYS_userfaultfd, "userfaultfd"), // a tool for winning kernel races
    (libc::SYS_io_uring_setup, "io_uring_setup"), // submits calls seccomp never sees
    (libc::SYS_io_uring_enter, "io_uring_enter"),
    (libc::SYS_io_uring_register, "io_uring_register"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_uselib, "uselib"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_ustat, "ustat"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_sysfs, "sysfs"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS__sysctl, "_sysctl"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_getpmsg, "getpmsg"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_putpmsg, "putpmsg"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_afs_syscall, "afs_syscall"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_tuxcall, "tuxcall"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_security, "security"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_vserver, "vserver"),
];

/// Calls Docker's profile allows only to a container holding the capability.
const DENIED_WITHOUT: &[(&str, &[(Nr, &str)])] = &[
    ("CAP_SYS_ADMIN", &[
        (libc::SYS_mount, "mount"),
        (libc::SYS_umount2, "umount2"),
        (libc::SYS_unshare, "unshare"),
        (libc::SYS_setns, "setns"),
        (libc::SYS_sethostname, "sethostname"),
        (libc::SYS_setdomainname, "setdomainname"),
        (libc::SYS_fsopen, "fsopen"),
        (libc::SYS_fsconfig, "fsconfig"),
        (libc::SYS_fsmount, "fsmount"),
        (libc::SYS_fspick, "fspick"),
        (libc::SYS_move_mount, "move_mount"),
        (libc::SYS_open_tree, "open_tree"),
        (libc::SYS_mount_setattr, "mount_setattr"),
        (libc::SYS_quotactl, "quotactl"),
        (libc::SYS_quotactl_fd, "quotactl_fd"),
        (libc::SYS_lookup_dcookie, "lookup_dcookie"),
        (libc::SYS_fanotify_init, "fanotify_init"),
    ]),
    ("CAP_SYS_ADMIN|CAP_BPF", &[(libc::SYS_bpf, "bpf")]),
    ("CAP_SYS_ADMIN|CAP_PERFMON", &[(libc::SYS_perf_event_open, "perf_event_open")]),
    ("CAP_SYS_ADMIN|CAP_SYSLOG", &[(libc::SYS_syslog, "syslog")]),
    ("CAP_SYS_BOOT", &[(libc::SYS_reboot, "reboot")]),
    ("CAP_SYS_CHROOT", &[(libc::SYS_chroot, "chroot")]),
    ("CAP_SYS_MODULE", &[
        (libc::SYS_init_module, "init_module"),
        (libc::SYS_finit_module, "finit_module"),
        (libc::SYS_delete_module, "delete_module"),
    ]),
    ("CAP_SYS_PACCT", &[(libc::SYS_acct, "acct")]),
    ("CAP_SYS_PTRACE", &[
        (libc::SYS_kcmp, "kcmp"),
        (libc::SYS_pidfd_getfd, "pidfd_getfd"),
        (libc::SYS_process_madvise, "process_madvise"),
    ]),
    #[cfg(target_arch = "x86_64")]
    ("CAP_SYS_RAWIO", &[(libc::SYS_iopl, "iopl"), (libc::SYS_ioperm, "ioperm")]),
    ("CAP_SYS_TIME", &[(libc::SYS_settimeofday, "settimeofday"), (libc::SYS_clock_settime, "clock_settime")]),
    ("CAP_SYS_TTY_CONFIG", &[(libc::SYS_vhangup, "vhangup")]),
    ("CAP_SYS_NICE", &[
        (libc::SYS_mbind, "mbind"),
        (libc::SYS_set_mempolicy, "set_mempolicy"),
        (libc::SYS_get_mempolicy, "get_mempolicy"),
        (libc::SYS_set_mempolicy_home_node, "set_mempolicy_home_node"),
    ]),
    ("CAP_DAC_READ_SEARCH", &[(libc::SYS_open_by_handle_at, "open_by_handle_at")]),
];
// ANCHOR_END: deny_lists

/// One classic BPF instruction (struct sock_filter).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const Insn,
}

/// Where a conditional jump goes: on to the next instruction, or to a label.
#[derive(Clone, Copy)]
enum To {
    Next,
    L(&'static str),
}

/// A tiny assembler: classic BPF jumps are forward only, 0–255 instructions, counted from
/// the next instruction; labels are resolved once the program is complete.
#[derive(Default)]
struct Asm {
    code: Vec<(u16, To, To, u32)>,
    labels: BTreeMap<&'static str, usize>,
}

impl Asm {
    fn load(&mut self, off: u32) {
        self.code.push((LD_W_ABS, To::Next, To::Next, off));
    }
    fn jump(&mut self, op: u16, k: u32, yes: To, no: To) {
        self.code.push((op, yes, no, k));
    }
    fn ret(&mut self, k: u32) {
        self.code.push((RET_K, To::Next, To::Next, k));
    }
    fn label(&mut self, name: &'static str) {
        self.labels.insert(name, self.code.len());
    }
    fn finish(self) -> Vec<Insn> {
        let at = |i: usize, t: To| -> u8 {
            match t {
                To::Next => 0,
                To::L(name) => {
                    let target = self.labels[name];
                    let off = target.checked_sub(i + 1).expect("BPF jumps go forward");
                    u8::try_from(off).expect("BPF jump longer than 255 instructions")
                }
            }
        };
        self.code.iter().enumerate().map(|(i, &(code, jt, jf, k))| Insn { code, jt: at(i, jt), jf: at(i, jf), k }).collect()
    }
}

/// A compiled filter, ready to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub program: Vec<Insn>,
    /// The names of the calls that fail with EPERM (for --explain and the tests).
    pub denied: Vec<&'static str>,
}

fn has(caps_mask: u64, names: &str) -> bool {
    names.split('|').any(|n| caps::NAMES.iter().position(|x| *x == n).map(|i| caps_mask & (1 << i) != 0).unwrap_or(false))
}

// ANCHOR: build
impl Filter {
    /// Docker's default profile for a container whose bounding set is `caps_mask`.
    pub fn docker_default(caps_mask: u64) -> Filter {
        let mut denied: Vec<(Nr, &'static str)> = ALWAYS_DENIED.to_vec();
        for (cap, calls) in DENIED_WITHOUT {
            if !has(caps_mask, cap) {
                denied.extend_from_slice(calls);
            }
        }
        let sys_admin = has(caps_mask, "CAP_SYS_ADMIN");
        let mut a = Asm::default();
        // 1. A call made through another ABI has other numbers: refuse to guess.
        a.load(OFF_ARCH);
        a.jump(JEQ_K, AUDIT_ARCH, To::Next, To::L("kill"));
        a.load(OFF_NR);
        #[cfg(target_arch = "x86_64")]
        a.jump(JSET_K, X32_SYSCALL_BIT, To::L("eperm"), To::Next);
        a.jump(JGT_K, NEWEST_KNOWN, To::L("enosys"), To::Next);
        // 2. Calls judged by their arguments.
        if !sys_admin {
            a.jump(JEQ_K, libc::SYS_clone as u32, To::L("clone"), To::Next);
            // ENOSYS, not EPERM: glibc then falls back to clone, which is filtered above.
            a.jump(JEQ_K, libc::SYS_clone3 as u32, To::L("enosys"), To::Next);
        }
        a.jump(JEQ_K, libc::SYS_socket as u32, To::L("socket"), To::Next);
        a.jump(JEQ_K, libc::SYS_personality as u32, To::L("personality"), To::Next);
        // 3. The deny list.
        for (nr, _) in &denied {
            a.jump(JEQ_K, *nr as u32, To::L("eperm"), To::Next);
        }
        a.ret(RET_ALLOW);

        a.label("clone");
        a.load(off_arg_lo(0)); // flags (the first argument on x86_64 and aarch64)
        a.jump(JSET_K, CLONE_NAMESPACE_FLAGS, To::L("eperm"), To::L("allow"));
        a.label("socket");
        a.load(off_arg_lo(0)); // domain
        a.jump(JEQ_K, AF_VSOCK, To::L("eperm"), To::L("allow"));
        a.label("personality");
        a.load(off_arg_lo(0)); // persona (the kernel reads an unsigned int)
        for p in PERSONALITIES {
            a.jump(JEQ_K, p, To::L("allow"), To::Next);
        }
        a.label("eperm");
        a.ret(RET_ERRNO | libc::EPERM as u32);
        a.label("enosys");
        a.ret(RET_ERRNO | libc::ENOSYS as u32);
        a.label("allow");
        a.ret(RET_ALLOW);
        a.label("kill");
        a.ret(RET_KILL_PROCESS);
        let mut names: Vec<&'static str> = denied.iter().map(|(_, n)| *n).collect();
        names.sort_unstable();
        Filter { program: a.finish(), denied: names }
    }
// ANCHOR_END: build

    // ANCHOR: install
    /// Install the filter on the calling thread; it is inherited across fork and execve and
    /// can never be removed. Needs `no_new_privs` or CAP_SYS_ADMIN. No
    /// SECCOMP_FILTER_FLAG_TSYNC: the caller is the container's single-threaded process.
    pub fn install(&self) -> Result<()> {
        explain!(
            "seccomp(SECCOMP_SET_MODE_FILTER): {} BPF instructions; EPERM for {} calls ({} …), ENOSYS above {NEWEST_KNOWN} and for clone3",
            self.program.len(),
            self.denied.len(),
            self.denied.iter().take(4).copied().collect::<Vec<_>>().join(", ")
        );
        let prog = SockFprog { len: self.program.len() as u16, filter: self.program.as_ptr() };
        // SAFETY: `prog` points at `self.program`, alive for the duration of the call; the
        // kernel copies the program.
        let r = unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &prog as *const SockFprog) };
        if r != 0 {
            return Err(Error::io("seccomp(SECCOMP_SET_MODE_FILTER)", std::io::Error::last_os_error()));
        }
        Ok(())
    }
    // ANCHOR_END: install
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run `body` in a forked child under `filter`; returns the child's wait status.
    /// The child makes raw system calls only (the test harness has other threads).
    fn in_child(filter: &Filter, body: fn() -> i32) -> i32 {
        // SAFETY: the child only calls prctl, seccomp, raw syscalls and _exit.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0);
            if pid == 0 {
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                let code = if filter.install().is_ok() { body() } else { 99 };
                libc::_exit(code);
            }
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
            status
        }
    }

    fn errno_of(r: libc::c_long) -> i32 {
        if r == -1 { std::io::Error::last_os_error().raw_os_error().unwrap_or(0) } else { 0 }
    }

    fn docker_caps() -> u64 {
        let names: Vec<String> = crate::runtime::DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()).collect();
        caps::mask(&names).unwrap()
    }

    #[test]
    fn jumps_resolve_and_the_program_fits() {
        let f = Filter::docker_default(docker_caps());
        assert!(f.program.len() < 200, "{} instructions", f.program.len());
        assert_eq!(f.program[0], Insn { code: LD_W_ABS, jt: 0, jf: 0, k: OFF_ARCH });
        for name in ["keyctl", "mount", "unshare", "bpf", "kexec_load", "io_uring_setup", "ptrace"].iter().take(6) {
            assert!(f.denied.contains(name), "{name}");
        }
        // ptrace is allowed (kernel >= 4.8); chroot is, with CAP_SYS_CHROOT in the default set.
        assert!(!f.denied.contains(&"ptrace") && !f.denied.contains(&"chroot"));
        let admin = Filter::docker_default(docker_caps() | 1 << 21);
        assert!(!admin.denied.contains(&"mount") && admin.denied.contains(&"keyctl"));
    }

    #[test]
    fn the_filter_denies_what_docker_denies() {
        let f = Filter::docker_default(docker_caps());
        let status = in_child(&f, || unsafe {
            // Each check returns its number on failure.
            if libc::syscall(libc::SYS_getpid) <= 0 {
                return 1;
            }
            if errno_of(libc::syscall(libc::SYS_keyctl, 0, -3i64, 0)) != libc::EPERM {
                return 2;
            }
            if errno_of(libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER)) != libc::EPERM {
                return 3;
            }
            if errno_of(libc::syscall(libc::SYS_clone3, 0, 0)) != libc::ENOSYS {
                return 4;
            }
            if errno_of(libc::syscall(libc::SYS_clone, libc::CLONE_NEWNS | libc::SIGCHLD, 0, 0, 0, 0)) != libc::EPERM {
                return 5;
            }
            if errno_of(libc::syscall(libc::SYS_personality, 0xffff_ffffu64)) != 0 {
                return 6;
            }
            if errno_of(libc::syscall(libc::SYS_personality, 0x0040000u64)) != libc::EPERM {
                return 7;
            }
            if errno_of(libc::syscall(libc::SYS_socket, AF_VSOCK, libc::SOCK_STREAM, 0)) != libc::EPERM {
                return 8;
            }
            let s = libc::syscall(libc::SYS_socket, libc::AF_UNIX, libc::SOCK_STREAM, 0);
            if s < 0 {
                return 9;
            }
            libc::close(s as i32);
            if errno_of(libc::syscall(NEWEST_KNOWN as libc::c_long + 2)) != libc::ENOSYS {
                return 10;
            }
            #[cfg(target_arch = "x86_64")]
            if errno_of(libc::syscall((X32_SYSCALL_BIT as libc::c_long) | libc::SYS_getpid)) != libc::EPERM {
                return 11;
            }
            if errno_of(libc::syscall(libc::SYS_mount, 0, 0, 0, 0, 0)) != libc::EPERM {
                return 12;
            }
            // A plain fork (clone without namespace flags) still works.
            let pid = libc::syscall(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0);
            if pid == 0 {
                libc::_exit(0);
            }
            if pid < 0 {
                return 13;
            }
            libc::waitpid(pid as i32, std::ptr::null_mut(), 0);
            0
        });
        assert!(libc::WIFEXITED(status), "status {status:#x}");
        assert_eq!(libc::WEXITSTATUS(status), 0, "check {} failed", libc::WEXITSTATUS(status));
    }

    #[test]
    fn with_cap_sys_admin_namespaces_are_allowed() {
        let f = Filter::docker_default(docker_caps() | 1 << 21);
        let status = in_child(&f, || unsafe {
            if libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUTS) != 0 {
                return 1;
            }
            if errno_of(libc::syscall(libc::SYS_keyctl, 0, -3i64, 0)) != libc::EPERM {
                return 2;
            }
            0
        });
        assert_eq!(status, 0, "check {} failed", libc::WEXITSTATUS(status));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn a_call_through_the_i386_abi_kills() {
        // getpid through `int 0x80` (i386 number 20): the arch check sees AUDIT_ARCH_I386.
        fn int80_getpid() -> i32 {
            let mut ret: i64 = 20;
            // SAFETY: int 0x80 with eax = 20 (getpid) has no side effects.
            unsafe { std::arch::asm!("int 0x80", inout("rax") ret, options(nostack)) };
            if ret > 0 { 0 } else { 1 }
        }
        let allow_all = Filter { program: vec![Insn { code: RET_K, jt: 0, jf: 0, k: RET_ALLOW }], denied: vec![] };
        if in_child(&allow_all, int80_getpid) != 0 {
            eprintln!("skipped: this kernel runs no i386 calls");
            return;
        }
        let status = in_child(&Filter::docker_default(docker_caps()), int80_getpid);
        assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS, "status {status:#x}");
    }
}
