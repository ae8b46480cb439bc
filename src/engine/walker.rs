//! A bounded, parallel walk of a DAG.
//!
//! A vertex runs only after all its dependencies finished successfully; at most
//! `parallelism` vertices run at once. When a vertex fails, every vertex that
//! depends on it (transitively) is skipped, and independent branches go on.
//! Once cancelled, no new vertex starts; running ones finish.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::task::JoinSet;

/// What became of one vertex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<E> {
    /// Ran and succeeded.
    Done,
    /// Ran and failed.
    Failed(E),
    /// Not run because a dependency failed or was skipped; holds the index of the
    /// failed vertex at the root of the cause.
    Skipped(usize),
    /// Not run because the walk was cancelled.
    Cancelled,
}

/// A cancellation flag shared with the Ctrl-C handler.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<CancelInner>);

#[derive(Debug, Default)]
struct CancelInner {
    flag: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Cancel {
    /// A fresh, uncancelled flag.
    pub fn new() -> Self {
        Self::default()
    }
    /// Stops starting new work.
    pub fn cancel(&self) {
        self.0.flag.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }
    /// Whether cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.0.flag.load(Ordering::SeqCst)
    }
    /// Resolves once cancelled (at once if it already is).
    pub async fn cancelled(&self) {
        loop {
            let notified = self.0.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// Walks vertices `0..n` where `deps[i]` lists what `i` needs first. `run(i)`
/// runs vertex `i`. Returns the outcome of every vertex.
///
/// `deps` must be acyclic (the graph module rejects cycles before this runs); a
/// vertex on a cycle would simply never become ready and is reported as
/// cancelled.
pub async fn walk<E, F, Fut>(deps: &[Vec<usize>], parallelism: usize, cancel: &Cancel, run: F) -> Vec<Outcome<E>>
where
    E: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
{
    let n = deps.len();
    let parallelism = parallelism.max(1);
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut waiting: Vec<usize> = vec![0; n];
    for (i, ds) in deps.iter().enumerate() {
        waiting[i] = ds.len();
        for &d in ds {
            dependents[d].push(i);
        }
    }
    let mut outcomes: Vec<Option<Outcome<E>>> = (0..n).map(|_| None).collect();
    let mut ready: VecDeque<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
    let mut running: JoinSet<(usize, Result<(), E>)> = JoinSet::new();

    loop {
        while running.len() < parallelism && !cancel.is_cancelled() {
            let Some(i) = ready.pop_front() else { break };
            let fut = run(i);
            running.spawn(async move { (i, fut.await) });
        }
        let Some(joined) = running.join_next().await else { break };
        let (i, result) = match joined {
            Ok(r) => r,
            // A panicking vertex is a bug; surface it rather than hang.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        match result {
            Ok(()) => {
                outcomes[i] = Some(Outcome::Done);
                for &d in &dependents[i] {
                    waiting[d] -= 1;
                    if waiting[d] == 0 && outcomes[d].is_none() {
                        ready.push_back(d);
                    }
                }
            }
            Err(e) => {
                outcomes[i] = Some(Outcome::Failed(e));
                skip_dependents(i, i, &dependents, &mut outcomes);
            }
        }
    }
    outcomes.into_iter().map(|o| o.unwrap_or(Outcome::Cancelled)).collect()
}

fn skip_dependents<E>(root: usize, from: usize, dependents: &[Vec<usize>], outcomes: &mut [Option<Outcome<E>>]) {
    let mut stack = dependents[from].clone();
    while let Some(d) = stack.pop() {
        if outcomes[d].is_none() {
            outcomes[d] = Some(Outcome::Skipped(root));
            stack.extend(dependents[d].iter().copied());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn order_respects_dependencies_and_failures_skip_dependents() {
        // 0 -> 1 -> 2 ; 3 independent ; 1 fails
        let deps = vec![vec![], vec![0], vec![1], vec![]];
        let log = Arc::new(Mutex::new(Vec::new()));
        let out = walk(&deps, 4, &Cancel::new(), |i| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(i);
                if i == 1 { Err("boom") } else { Ok(()) }
            }
        })
        .await;
        assert_eq!(out, vec![Outcome::Done, Outcome::Failed("boom"), Outcome::Skipped(1), Outcome::Done]);
        let log = log.lock().unwrap();
        assert!(!log.contains(&2));
        let p0 = log.iter().position(|&x| x == 0).unwrap();
        let p1 = log.iter().position(|&x| x == 1).unwrap();
        assert!(p0 < p1);
    }

    #[tokio::test]
    async fn concurrency_is_capped_and_reached() {
        let deps: Vec<Vec<usize>> = (0..50).map(|_| vec![]).collect();
        let now = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let out = walk(&deps, 7, &Cancel::new(), |_| {
            let (now, max) = (now.clone(), max.clone());
            async move {
                let c = now.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(c, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                Ok::<(), ()>(())
            }
        })
        .await;
        assert!(out.iter().all(|o| *o == Outcome::Done));
        assert_eq!(max.load(Ordering::SeqCst), 7);
    }

    #[tokio::test]
    async fn cancel_stops_new_work() {
        let deps = vec![vec![], vec![0], vec![1]];
        let cancel = Cancel::new();
        let c2 = cancel.clone();
        let out = walk(&deps, 1, &cancel, move |i| {
            let c2 = c2.clone();
            async move {
                if i == 0 {
                    c2.cancel();
                }
                Ok::<(), ()>(())
            }
        })
        .await;
        assert_eq!(out, vec![Outcome::Done, Outcome::Cancelled, Outcome::Cancelled]);
    }
}
