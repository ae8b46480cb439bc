//! `join_all` without a futures crate: await many futures concurrently, keeping their order.

use std::future::Future;
use std::task::Poll;

/// Awaits every future of `fs` concurrently (on the current task) and returns their outputs in
/// the order given.
pub async fn join_all<F: Future>(fs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = fs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => out[i] = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending { Poll::Pending } else { Poll::Ready(()) }
    })
    .await;
    out.into_iter().map(|o| o.expect("every future finished")).collect()
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn outputs_keep_their_order_and_run_concurrently() {
        let start = tokio::time::Instant::now();
        let fs = (0..5u64).map(|i| async move {
            tokio::time::sleep(std::time::Duration::from_millis(50 - i * 10)).await;
            i
        });
        assert_eq!(super::join_all(fs).await, vec![0, 1, 2, 3, 4]);
        assert!(start.elapsed() < std::time::Duration::from_millis(200), "they ran at once");
    }
}
