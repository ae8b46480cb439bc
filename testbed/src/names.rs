//! Unique names, so tests that share one testbed never touch each other's objects.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name `<prefix>-<suffix>` that is unique across test processes and runs: a valid Kubernetes
/// namespace (DNS-1123 label) and GCP project id when `prefix` is lowercase letters, digits and
/// hyphens starting with a letter. The prefix is cut so the whole name stays within 30 characters
/// (the GCP project id limit).
///
/// ```
/// let name = skyform_testbed::unique_name("helm");
/// assert!(name.starts_with("helm-") && name.len() <= 30);
/// ```
pub fn unique_name(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // pid and counter make it unique among running tests; the clock keeps names of earlier runs apart.
    let suffix = format!("{:x}{:x}{:05x}", std::process::id() & 0xffff, n, nanos & 0xfffff);
    let keep = 30usize.saturating_sub(suffix.len() + 1).min(prefix.len());
    let prefix = prefix[..keep].trim_end_matches('-');
    format!("{prefix}-{suffix}")
}

#[cfg(test)]
mod tests {
    use super::unique_name;

    #[test]
    fn names_are_distinct_short_and_keep_the_prefix() {
        let a = unique_name("kubectl-roundtrip");
        let b = unique_name("kubectl-roundtrip");
        assert_ne!(a, b);
        assert!(a.starts_with("kubectl-roundtrip-"), "{a}");
        let long = unique_name("a-very-long-prefix-that-would-not-fit-at-all");
        assert!(long.len() <= 30, "{long}");
        assert!(!long.contains("--"), "{long}");
    }
}
