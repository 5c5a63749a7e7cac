//! Usage figures of a group, from the kernel's own accounting: v2's `memory.current`,
//! `memory.peak`, `memory.events`, `pids.current`, `cpu.stat`; v1's `memory.usage_in_bytes`,
//! `memory.max_usage_in_bytes`, `memory.oom_control`, `cpuacct.usage`, `cpu.stat`.
//! (Documentation/admin-guide/cgroup-v2.rst "Memory Interface Files", "CPU Interface Files";
//! cgroup-v1/memory.rst, cgroup-v1/cpuacct.rst, scheduler/sched-bwc.rst "Statistics".)

use super::Cgroup;
use crate::error::{Error, Result};
use std::path::PathBuf;

/// What `--stats` shows. CPU times are in microseconds; `cpu_periods` counts the
/// enforcement periods (100 ms) in which the group had something to run, so
/// `cpu_usec / (cpu_periods × 100 ms)` is the share of a CPU it got while busy.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct Stats {
    pub memory_bytes: Option<u64>,
    pub memory_peak_bytes: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    pub pids: Option<u64>,
    pub pids_limit: Option<u64>,
    pub cpu_usec: Option<u64>,
    pub cpu_periods: Option<u64>,
    pub throttled_periods: Option<u64>,
    pub throttled_usec: Option<u64>,
    pub oom_kills: u64,
}

/// The number after `key ` in a flat-keyed file (`cpu.stat`, `memory.events`).
pub(super) fn key_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

impl Cgroup {
    // ANCHOR: oom_kills
    /// How many times the kernel's OOM killer killed a process of this group.
    pub fn oom_kills(&self) -> u64 {
        let Some(d) = self.dir_of("memory") else { return 0 };
        let file = if self.is_v2() { "memory.events" } else { "memory.oom_control" };
        let text = std::fs::read_to_string(d.join(file)).unwrap_or_default();
        key_value(&text, "oom_kill").unwrap_or(0)
    }
    // ANCHOR_END: oom_kills

    // ANCHOR: stats
    /// Usage: memory, peak memory, processes, CPU time, throttling.
    pub fn stats(&self) -> Result<Stats> {
        let read = |d: Option<PathBuf>, f: &str| d.and_then(|d| std::fs::read_to_string(d.join(f)).ok());
        // "max" (v2) and v1's "no limit" (a page-rounded i64::MAX) both read as None.
        let num = |d: Option<PathBuf>, f: &str| read(d, f).and_then(|s| s.trim().parse::<u64>().ok()).filter(|&n| n < (1 << 62));
        let mut s = Stats::default();
        if !self.path().exists() {
            return Err(Error::not_found(format!("cgroup {} does not exist", self.path().display())));
        }
        let (mem, pids, cpu) = (self.dir_of("memory"), self.dir_of("pids"), self.dir_of("cpu"));
        s.pids = num(pids.clone(), "pids.current");
        s.pids_limit = num(pids, "pids.max");
        let cpu_stat = read(cpu, "cpu.stat").unwrap_or_default();
        s.cpu_periods = key_value(&cpu_stat, "nr_periods");
        s.throttled_periods = key_value(&cpu_stat, "nr_throttled");
        if self.is_v2() {
            s.memory_bytes = num(mem.clone(), "memory.current");
            s.memory_peak_bytes = num(mem.clone(), "memory.peak"); // Linux 5.19 and later
            s.memory_limit_bytes = num(mem, "memory.max");
            s.cpu_usec = key_value(&cpu_stat, "usage_usec");
            s.throttled_usec = key_value(&cpu_stat, "throttled_usec");
        } else {
            s.memory_bytes = num(mem.clone(), "memory.usage_in_bytes");
            s.memory_peak_bytes = num(mem.clone(), "memory.max_usage_in_bytes");
            s.memory_limit_bytes = num(mem, "memory.limit_in_bytes");
            s.cpu_usec = num(self.dir_of("cpuacct"), "cpuacct.usage").map(|ns| ns / 1000);
            s.throttled_usec = key_value(&cpu_stat, "throttled_time").map(|ns| ns / 1000);
        }
        s.oom_kills = self.oom_kills();
        Ok(s)
    }
    // ANCHOR_END: stats
}
