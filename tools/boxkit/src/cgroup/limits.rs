//! Limits and the files they are written to: v2's `memory.max`, `memory.swap.max`,
//! `cpu.max`, `cpu.weight`, `pids.max`, `io.weight`/`io.bfq.weight`, `cpuset.cpus`; v1's
//! `memory.limit_in_bytes`, `memory.memsw.limit_in_bytes`, `cpu.cfs_quota_us`,
//! `cpu.shares`, `pids.max`, `blkio.weight`/`blkio.bfq.weight`, `cpuset.cpus`.
//! (Documentation/admin-guide/cgroup-v2.rst "Controllers"; cgroup-v1/memory.rst,
//! scheduler/sched-bwc.rst, block/bfq-iosched.rst "Group scheduling with BFQ".)
//! A limit this kernel cannot apply is an error naming the flag, never a silent no-op.

use super::{write, Cgroup, Hierarchy};
use crate::error::{Error, Result};
use std::path::Path;

/// Limits, as `docker run` spells them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// Bytes of memory.
    pub memory: Option<u64>,
    /// Memory plus swap, in bytes (Docker's `--memory-swap`); -1 for unlimited swap. When
    /// unset, a memory limit allows as much swap again (Docker's default).
    pub memory_swap: Option<i64>,
    /// CPUs' worth of time: 0.5 is half of one CPU (quota over a 100 ms period).
    pub cpus: Option<f64>,
    /// Relative CPU weight, 1–10000 (v2); from `--cpu-shares` 2–262144 on v1.
    pub cpu_weight: Option<u64>,
    pub cpu_shares: Option<u64>,
    pub pids: Option<u64>,
    /// Relative I/O weight, 1–10000 (v2 `io.weight`'s scale; converted for BFQ's 1–1000).
    pub io_weight: Option<u64>,
    /// CPUs the group may run on: `0-1`, `0,2`.
    pub cpuset: Option<String>,
}

const PERIOD_US: u64 = 100_000;

/// runc's conversion from v1 cpu.shares (2–262144) to v2 cpu.weight (1–10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 { 0 } else { 1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142 }
}

/// The reverse, for a weight given on a v1 host.
pub fn weight_to_shares(weight: u64) -> u64 {
    2 + (weight.clamp(1, 10_000) - 1) * 262_142 / 9999
}

/// An io.weight (1–10000) on BFQ's scale (1–1000): runc's blkio → io.weight conversion
/// (`1 + (blkio - 10) * 9999 / 990`) run backwards, so 10000 is BFQ's 1000.
pub fn io_weight_to_bfq(weight: u64) -> u64 {
    10 + (weight.clamp(1, 10_000) - 1) * 990 / 9999
}

/// Parse `64M`, `1g`, `512k`, `1048576` (bytes).
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let (num, mult) = match t.chars().last().map(|c| c.to_ascii_lowercase()) {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('b') => (&t[..t.len() - 1], 1),
        _ => (t, 1),
    };
    let n: f64 = num.parse().map_err(|_| Error::invalid(format!("bad size {s:?}: use a number with an optional k, m or g")))?;
    if !n.is_finite() || n < 0.0 {
        return Err(Error::invalid(format!("bad size {s:?}: not a size")));
    }
    Ok((n * mult as f64) as u64)
}

/// Whether an I/O weight would act on anything: weights are honoured only by the BFQ
/// scheduler and by v2's io.cost controller, each per device. `sys` is the sysfs mount
/// (`/sys`). A weight no device honours is refused rather than written for nothing.
pub fn io_weight_effective(sys: &Path, h: &Hierarchy) -> Result<()> {
    let bfq = std::fs::read_dir(sys.join("block"))
        .map(|rd| rd.flatten().any(|d| std::fs::read_to_string(d.path().join("queue/scheduler")).unwrap_or_default().contains("[bfq]")))
        .unwrap_or(false);
    let iocost = match h {
        Hierarchy::V2 { mount } => std::fs::read_to_string(mount.join("io.cost.qos")).unwrap_or_default().contains("enable=1"),
        Hierarchy::V1 { .. } => false,
    };
    if bfq || iocost {
        return Ok(());
    }
    Err(Error::invalid(
        "--io-weight would do nothing: no block device uses the bfq scheduler (echo bfq > /sys/block/DEV/queue/scheduler) and io.cost is not enabled",
    ))
}

impl Cgroup {
    /// Write the limits into the group's files.
    pub fn set(&self, l: &Limits) -> Result<()> {
        let v2 = self.is_v2();
        // ANCHOR: set_memory
        // Memory plus swap: checked before anything is written. v2 limits swap alone; v1
        // limits memory plus swap, as Docker's flag does.
        let swap = match l.memory_swap {
            // Docker's default: as much swap as memory, where the kernel accounts swap
            // (without a limit on it, v2 would let the group swap without bound).
            None => match (l.memory, self.dir_of("memory")) {
                (Some(mem), Some(d)) => {
                    let (file, value) = if v2 { ("memory.swap.max", mem) } else { ("memory.memsw.limit_in_bytes", mem.saturating_mul(2)) };
                    d.join(file).exists().then(|| (d.join(file), value.to_string()))
                }
                _ => None,
            },
            Some(total) => {
                let d = self.need("memory", "--memory-swap")?;
                let mem = l.memory.ok_or_else(|| Error::invalid("--memory-swap needs --memory"))?;
                if total >= 0 && (total as u64) < mem {
                    return Err(Error::invalid("--memory-swap is memory plus swap: it cannot be less than --memory"));
                }
                let (file, value) = if v2 {
                    ("memory.swap.max", if total < 0 { "max".to_string() } else { (total as u64 - mem).to_string() })
                } else {
                    ("memory.memsw.limit_in_bytes", if total < 0 { "-1".to_string() } else { total.to_string() })
                };
                if !d.join(file).exists() {
                    return Err(Error::not_found(format!("--memory-swap: swap accounting is off in this kernel (no {file}; boot with swapaccount=1)")));
                }
                Some((d.join(file), value))
            }
        };
        if let Some(m) = l.memory {
            let d = self.need("memory", "--memory")?;
            write(&d.join(if v2 { "memory.max" } else { "memory.limit_in_bytes" }), &m.to_string())?;
        }
        if let Some((file, value)) = swap {
            write(&file, &value)?;
        }
        // ANCHOR_END: set_memory
        // ANCHOR: set_cpus
        if let Some(c) = l.cpus {
            if !(c > 0.0 && c.is_finite()) {
                return Err(Error::invalid("--cpus must be more than 0"));
            }
            let quota = ((c * PERIOD_US as f64) as u64).max(1000);
            let d = self.need("cpu", "--cpus")?;
            if v2 {
                write(&d.join("cpu.max"), &format!("{quota} {PERIOD_US}"))?;
            } else {
                write(&d.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
                write(&d.join("cpu.cfs_quota_us"), &quota.to_string())?;
            }
        }
        // ANCHOR_END: set_cpus
        if let Some(s) = l.cpu_shares {
            if !(2..=262_144).contains(&s) {
                return Err(Error::invalid("--cpu-shares must be 2 to 262144"));
            }
        }
        let weight = l.cpu_weight.or(l.cpu_shares.map(shares_to_weight));
        if let Some(w) = weight {
            if !(1..=10_000).contains(&w) {
                return Err(Error::invalid("--cpu-weight must be 1 to 10000"));
            }
            let d = self.need("cpu", "--cpu-weight")?;
            if v2 {
                write(&d.join("cpu.weight"), &w.to_string())?;
            } else {
                let shares = l.cpu_shares.unwrap_or_else(|| weight_to_shares(w));
                write(&d.join("cpu.shares"), &shares.to_string())?;
            }
        }
        if let Some(p) = l.pids {
            if p == 0 {
                return Err(Error::invalid("--pids must be at least 1"));
            }
            write(&self.need("pids", "--pids")?.join("pids.max"), &p.to_string())?;
        }
        // ANCHOR: set_io
        if let Some(w) = l.io_weight {
            if !(1..=10_000).contains(&w) {
                return Err(Error::invalid("--io-weight must be 1 to 10000"));
            }
            let d = self.need("io", "--io-weight")?;
            // BFQ's own file where the scheduler is loaded (1–1000), else v2's io.weight
            // (honoured by io.cost) or v1's CFQ-era blkio.weight (10–1000).
            let bfq = if v2 { "io.bfq.weight" } else { "blkio.bfq.weight" };
            let (file, value) = if d.join(bfq).exists() {
                (bfq, io_weight_to_bfq(w).to_string())
            } else if v2 && d.join("io.weight").exists() {
                ("io.weight", format!("default {w}"))
            } else if !v2 && d.join("blkio.weight").exists() {
                ("blkio.weight", io_weight_to_bfq(w).max(10).to_string())
            } else {
                return Err(Error::not_found(format!(
                    "--io-weight: this kernel's {} controller has no weight file ({bfq} appears when the bfq scheduler is loaded)",
                    if v2 { "io" } else { "blkio" }
                )));
            };
            write(&d.join(file), &value)?;
        }
        // ANCHOR_END: set_io
        if let Some(c) = &l.cpuset {
            write(&self.need("cpuset", "--cpuset")?.join("cpuset.cpus"), c)?;
        }
        Ok(())
    }
}
