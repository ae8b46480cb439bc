//! Where a command's time goes: `--timings` on `plan`, `apply`, `drift`, `check` and `destroy` (or
//! `SKYFORM_TIMINGS=1`, for a CronJob) records spans (a phase, the resource or provider it was for,
//! and what was done) and prints, at the end, the time per phase and per resource and the slowest
//! calls. Off, a span costs one atomic load.
//!
//! The resource a span belongs to comes from the task it runs in: the engine runs each resource's
//! work inside [`for_subject`], so an HTTP call, a helm run or a Kubernetes request made for it is
//! counted under it without the providers passing anything down.
//!
//! Written by hand rather than with `tracing`: the report is the one thing needed, and a span here
//! is a struct pushed to a vector.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// The environment variable that turns timings on.
pub const ENV: &str = "SKYFORM_TIMINGS";

static ON: AtomicBool = AtomicBool::new(false);
static START: OnceLock<Instant> = OnceLock::new();
static SPANS: Mutex<Vec<Span>> = Mutex::new(Vec::new());

tokio::task_local! {
    static SUBJECT: String;
}

/// The phases, in the order the report lists them.
pub const PHASES: &[&str] = &[
    "load",
    "state",
    "configure",
    "read",
    "diff",
    "policy",
    "apply",
    "check",
    "gcp",
    "kubernetes",
    "helm",
    "postgres",
];

/// One finished span.
#[derive(Debug, Clone)]
pub struct Span {
    /// The phase (one of [`PHASES`]).
    pub phase: &'static str,
    /// The resource, check or provider it was for; empty when none.
    pub subject: String,
    /// What was done (`GET sql/v1beta4/projects/p/instances/x`, `helm template`).
    pub what: String,
    /// When it started, in ms since the command started.
    pub start_ms: f64,
    /// How long it took, in ms.
    pub ms: f64,
}

/// Turns recording on (the command's start is now).
pub fn enable() {
    START.get_or_init(Instant::now);
    ON.store(true, Ordering::Relaxed);
}

/// Whether spans are recorded.
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Turns recording on when the environment asks for it.
pub fn enable_from_env() {
    if std::env::var(ENV).is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes")) {
        enable();
    }
}

/// A span running; recorded when dropped.
#[must_use = "a span is recorded when it is dropped"]
pub struct Guard {
    phase: &'static str,
    subject: String,
    what: String,
    start: Instant,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let origin = *START.get_or_init(Instant::now);
        let span = Span {
            phase: self.phase,
            subject: std::mem::take(&mut self.subject),
            what: std::mem::take(&mut self.what),
            start_ms: self.start.duration_since(origin).as_secs_f64() * 1e3,
            ms: self.start.elapsed().as_secs_f64() * 1e3,
        };
        SPANS.lock().unwrap_or_else(|e| e.into_inner()).push(span);
    }
}

/// Starts a span of `phase` for the current task's subject; `what` is called only when recording.
pub fn span(phase: &'static str, what: impl FnOnce() -> String) -> Option<Guard> {
    if !enabled() {
        return None;
    }
    let subject = SUBJECT.try_with(Clone::clone).unwrap_or_default();
    Some(Guard { phase, subject, what: what(), start: Instant::now() })
}

/// Starts a span of `phase` for `subject` (a resource, a provider).
pub fn span_for(phase: &'static str, subject: &dyn std::fmt::Display, what: impl FnOnce() -> String) -> Option<Guard> {
    if !enabled() {
        return None;
    }
    Some(Guard { phase, subject: subject.to_string(), what: what(), start: Instant::now() })
}

/// Runs `fut` with `subject` as the subject of the spans it starts.
pub async fn for_subject<F: Future>(subject: impl std::fmt::Display, fut: F) -> F::Output {
    if !enabled() {
        return fut.await;
    }
    let subject = subject.to_string();
    SUBJECT.scope(subject, fut).await
}

/// The spans recorded so far (taken: the next report starts empty).
pub fn take() -> Vec<Span> {
    std::mem::take(&mut *SPANS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// The report of `spans`, for people: wall time, then per phase the time spent (summed over what
/// ran side by side, so phases can add up to more than the wall time), the count and the slowest;
/// then the slowest resources with their phases.
pub fn report(spans: &[Span]) -> String {
    let wall = START.get().map(|s| s.elapsed().as_secs_f64() * 1e3).unwrap_or_default();
    let mut out = format!("Timings: {} wall\n", ms(wall));
    out.push_str("  phase          busy  count  slowest\n");
    for phase in PHASES {
        let of: Vec<&Span> = spans.iter().filter(|s| s.phase == *phase).collect();
        if of.is_empty() {
            continue;
        }
        let busy: f64 = of.iter().map(|s| s.ms).sum();
        let slowest = of.iter().max_by(|a, b| a.ms.total_cmp(&b.ms)).expect("not empty");
        let label = match (slowest.subject.is_empty(), slowest.what.is_empty()) {
            (false, false) => format!("{} ({})", slowest.what, slowest.subject),
            (true, _) => slowest.what.clone(),
            (false, true) => slowest.subject.clone(),
        };
        out.push_str(&format!("  {phase:<11} {:>8} {:>6}  {} {}\n", ms(busy), of.len(), ms(slowest.ms), label));
    }
    // Per resource: its read/diff/apply time, and what the providers did for it.
    let mut per: BTreeMap<&str, BTreeMap<&str, (f64, usize)>> = BTreeMap::new();
    for s in spans.iter().filter(|s| !s.subject.is_empty()) {
        let e = per.entry(&s.subject).or_default().entry(s.phase).or_default();
        e.0 += s.ms;
        e.1 += 1;
    }
    let own = |phases: &BTreeMap<&str, (f64, usize)>| -> f64 {
        ["configure", "read", "diff", "apply", "check"].iter().filter_map(|p| phases.get(p)).map(|v| v.0).sum()
    };
    let mut rows: Vec<_> = per.iter().map(|(k, v)| (*k, v)).collect();
    rows.sort_by(|a, b| own(b.1).total_cmp(&own(a.1)).then_with(|| a.0.cmp(b.0)));
    if !rows.is_empty() {
        out.push_str("  slowest resources (their own phases, then the calls made for them):\n");
    }
    for (subject, phases) in rows.iter().take(10) {
        let parts: Vec<String> = PHASES
            .iter()
            .filter_map(|p| {
                phases
                    .get(p)
                    .map(|(t, n)| if *n > 1 { format!("{p} {} ({n})", ms(*t)) } else { format!("{p} {}", ms(*t)) })
            })
            .collect();
        out.push_str(&format!("    {subject:<44} {}\n", parts.join(", ")));
    }
    out
}

fn ms(v: f64) -> String {
    if v >= 1000.0 { format!("{:.2} s", v / 1000.0) } else { format!("{v:.0} ms") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spans_are_recorded_under_their_task_subject_and_reported() {
        enable();
        for_subject("helm_release.sky", async {
            let _read = span("read", String::new);
            {
                let _h = span("helm", || "helm template".into());
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        })
        .await;
        drop(span_for("configure", &"provider.helm", String::new));
        let spans: Vec<Span> = take().into_iter().filter(|s| s.subject != "x").collect();
        let helm = spans.iter().find(|s| s.phase == "helm").expect("helm span");
        assert_eq!(helm.subject, "helm_release.sky");
        assert!(helm.ms >= 5.0, "{helm:?}");
        let text = report(&spans);
        assert!(text.starts_with("Timings: "), "{text}");
        assert!(text.contains("helm template (helm_release.sky)"), "{text}");
        assert!(text.contains("helm_release.sky") && text.contains("read "), "{text}");
        assert!(text.contains("configure"), "{text}");
    }
}
