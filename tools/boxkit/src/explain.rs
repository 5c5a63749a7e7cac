//! `--explain`: a narration of each system call and format step, as the book describes it.
//!
//! Library code calls [`explain!`](crate::explain) at every step a learner should see
//! (`unshare(CLONE_NEWPID|…)`, `write blobs/sha256/ab12… (1.2 MiB, verified)`). Nothing is
//! formatted unless a binary turned narration on with [`enable`]; the library itself never
//! prints: the binary hands in the sink that writes the lines.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

static ENABLED: AtomicBool = AtomicBool::new(false);
static SINK: OnceLock<Box<dyn Fn(&str) + Send + Sync>> = OnceLock::new();

// ANCHOR: explain_enable
/// Turn narration on; every step is handed to `sink` as one line.
pub fn enable(sink: Box<dyn Fn(&str) + Send + Sync>) {
    let _ = SINK.set(sink);
    ENABLED.store(true, Ordering::Relaxed);
}
// ANCHOR_END: explain_enable

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

#[doc(hidden)]
pub fn emit(line: std::fmt::Arguments<'_>) {
    if let Some(sink) = SINK.get() {
        sink(&line.to_string());
    }
}

// ANCHOR: explain_macro
/// Narrate one step: `explain!("pivot_root(\".\", \".\")")`.
#[macro_export]
macro_rules! explain {
    ($($arg:tt)*) => {
        if $crate::explain::enabled() {
            $crate::explain::emit(format_args!($($arg)*));
        }
    };
}
// ANCHOR_END: explain_macro

/// A size in the units a person reads: `1.2 MiB`.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_sizes() {
        assert_eq!(super::human_size(12), "12 B");
        assert_eq!(super::human_size(1536), "1.5 KiB");
        assert_eq!(super::human_size(5 * 1024 * 1024), "5.0 MiB");
    }
}
