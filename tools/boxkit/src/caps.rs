//! Capabilities: root's powers split into named pieces, and which of them a container keeps.
//!
//! Reference: capabilities(7) — the bounding, permitted, effective, inheritable and ambient
//! sets, and how execve(2) recomputes them; capset(2); prctl(2) `PR_CAPBSET_DROP`,
//! `PR_SET_KEEPCAPS`, `PR_CAP_AMBIENT`. The order is runc's: drop from the bounding set while
//! still privileged, keep capabilities across the uid change, then set the rest.

use crate::error::{Error, Result};
use crate::explain;
use crate::runtime::Capabilities;
use std::io;

/// Names in the order of their numbers (linux/capability.h).
pub const NAMES: [&str; 41] = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
];

/// A set of capabilities as a bit mask.
pub fn mask(names: &[String]) -> Result<u64> {
    let mut m = 0u64;
    for n in names {
        let i = NAMES
            .iter()
            .position(|x| x.eq_ignore_ascii_case(n))
            .ok_or_else(|| Error::invalid(format!("unknown capability {n:?}")))?;
        m |= 1 << i;
    }
    Ok(m)
}

/// The highest capability this kernel knows.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(NAMES.len() as u32 - 1)
}

fn prctl(op: libc::c_int, a: libc::c_ulong, b: libc::c_ulong) -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(op, a, b, 0 as libc::c_ulong, 0 as libc::c_ulong) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

// ANCHOR: drop_bounding
/// Step 1, while still fully privileged: drop everything outside `bounding` from the bounding
/// set (no later execve can ever regain it), and ask to keep capabilities across setuid.
pub fn drop_bounding(caps: &Capabilities) -> Result<()> {
    let keep = mask(&caps.bounding)?;
    for c in 0..=last_cap() {
        if keep & (1 << c) == 0 {
            prctl(libc::PR_CAPBSET_DROP, c as _, 0).map_err(|e| Error::io(format!("prctl(PR_CAPBSET_DROP, {c})"), e))?;
        }
    }
    explain!("prctl(PR_CAPBSET_DROP, …) for all but {} capabilities", caps.bounding.len());
    prctl(libc::PR_SET_KEEPCAPS, 1, 0).map_err(|e| Error::io("prctl(PR_SET_KEEPCAPS)", e))
}
// ANCHOR_END: drop_bounding

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}
const CAP_V3: u32 = 0x2008_0522;

// ANCHOR: apply_sets
/// Step 2, after the uid change: set the effective, permitted and inheritable sets with
/// capset(2), and raise the ambient ones.
pub fn apply_sets(caps: &Capabilities) -> Result<()> {
    prctl(libc::PR_SET_KEEPCAPS, 0, 0).map_err(|e| Error::io("prctl(PR_SET_KEEPCAPS, 0)", e))?;
    let (e, p, i) = (mask(&caps.effective)?, mask(&caps.permitted)?, mask(&caps.inheritable)?);
    let mut hdr = CapHeader { version: CAP_V3, pid: 0 };
    let data = [
        CapData { effective: e as u32, permitted: p as u32, inheritable: i as u32 },
        CapData { effective: (e >> 32) as u32, permitted: (p >> 32) as u32, inheritable: (i >> 32) as u32 },
    ];
    // SAFETY: version-3 header with two data words, as capset(2) requires.
    if unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) } != 0 {
        return Err(Error::io("capset", io::Error::last_os_error()));
    }
    explain!("capset(effective={e:#x}, permitted={p:#x}, inheritable={i:#x})");
    prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as _, 0).ok();
    let a = mask(&caps.ambient)?;
    for c in 0..64 {
        if a & (1 << c) != 0 {
            prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE as _, c)
                .map_err(|e| Error::io(format!("raise ambient capability {}", NAMES[c as usize]), e))?;
        }
    }
    Ok(())
}
// ANCHOR_END: apply_sets

#[cfg(test)]
mod tests {
    #[test]
    fn masks() {
        assert_eq!(super::mask(&["CAP_CHOWN".into(), "cap_kill".into()]).unwrap(), 0b100001);
        assert!(super::mask(&["CAP_NOPE".into()]).is_err());
    }
}
