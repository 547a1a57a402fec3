//! SSM rate control: `max_concurrency` and `max_errors` for dispatching to many targets.
//!
//! Owns how a [`model::Rate`] turns into a number for a target set, and [`dispatch`], which runs
//! one future per target under those limits, in the manner of SSM State Manager ("Using targets
//! and rate controls"):
//!
//! - **Concurrency** is a count, or a percentage of the targets; at most that many run at once.
//! - **Errors:** dispatch stops sending to additional targets once the number of errors
//!   *exceeds* the threshold. A threshold of 0 stops after the first error; 3 stops when the
//!   fourth error arrives. Invocations already running when the threshold is crossed finish
//!   (and may fail too, so more failures than the threshold can be reported); targets never
//!   started are reported as [`Dispatched::NotStarted`].
//!
//! Rounding, for percentages of `n` targets (SSM does not document it; these are our choices):
//! concurrency is `floor(p × n / 100)` but at least 1, so a rollout never exceeds its
//! percentage except to make progress at all; the error threshold is `floor(p × n / 100)`, so a
//! fraction of an error is not tolerated (10% of 50 targets: stop at the sixth error; 10% of
//! 9: stop at the first).
//!
//! **Architecture Invariant:** knows nothing of agents, tasks or transports: a target is any
//! `T` and its outcome any `R`, judged by the caller's `is_error`.

use std::collections::HashMap;
use std::future::Future;

use tokio::task::JoinSet;

use crate::model;

/// What became of one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dispatched<R> {
    /// It ran to completion with this outcome.
    Done(R),
    /// Its future panicked (or its task was cancelled by a runtime shutting down); the text says
    /// why. Counts as an error, like a failed outcome.
    Panicked(String),
    /// It was never started, because the error threshold was crossed first.
    NotStarted,
}

/// The number of targets a concurrency rate lets run at once out of `n_targets`.
///
/// `Count(c)`: `c`. `Percent(p)`: `floor(p × n_targets / 100)`. Both are at least 1, so
/// dispatch always makes progress (lowering already rejects a zero count).
pub fn concurrency_limit(rate: model::Rate, n_targets: usize) -> usize {
    let limit = match rate {
        model::Rate::Count(count) => usize::try_from(count).unwrap_or(usize::MAX),
        model::Rate::Percent(percent) => percent_of(percent, n_targets),
    };
    limit.max(1)
}

/// The error threshold out of `n_targets`: dispatch stops once failures *exceed* this number.
///
/// `Count(c)`: `c`. `Percent(p)`: `floor(p × n_targets / 100)`; so 0 (or a percentage that
/// rounds down to 0) stops after the first error.
pub fn error_threshold(rate: model::Rate, n_targets: usize) -> usize {
    match rate {
        model::Rate::Count(count) => usize::try_from(count).unwrap_or(usize::MAX),
        model::Rate::Percent(percent) => percent_of(percent, n_targets),
    }
}

/// Runs `run(target)` for every target, at most [`concurrency_limit`] at once, starting them in
/// target order.
///
/// Once more than [`error_threshold`] of the finished ones failed (as judged by `is_error`, or
/// by panicking), no new target starts; the running ones finish. Returns one entry per target,
/// in target order.
///
/// Each future is spawned on the current tokio runtime, which is why it must be `Send +
/// 'static`; `run` itself is only called from the calling task. Dropping the returned future
/// aborts the running ones.
pub async fn dispatch<T, R, F, Fut>(
    targets: Vec<T>,
    max_concurrency: model::Rate,
    max_errors: model::Rate,
    is_error: impl Fn(&R) -> bool,
    mut run: F,
) -> Vec<Dispatched<R>>
where
    F: FnMut(T) -> Fut,
    Fut: Future<Output = R> + Send + 'static,
    R: Send + 'static,
{
    let n_targets = targets.len();
    let limit = concurrency_limit(max_concurrency, n_targets);
    let threshold = error_threshold(max_errors, n_targets);

    let mut outcomes: Vec<Option<Dispatched<R>>> = (0..n_targets).map(|_| None).collect();
    let mut not_started = targets.into_iter().enumerate();
    let mut running = JoinSet::new();
    // A panicked task comes back without its output, so its target is found by task id.
    let mut target_of_task = HashMap::new();
    let mut n_errors = 0usize;
    loop {
        while running.len() < limit && n_errors <= threshold {
            let Some((target_idx, target)) = not_started.next() else {
                break;
            };
            let handle = running.spawn(run(target));
            target_of_task.insert(handle.id(), target_idx);
        }
        let Some(joined) = running.join_next_with_id().await else {
            break;
        };
        let (task_id, dispatched, failed) = match joined {
            Ok((task_id, outcome)) => {
                let failed = is_error(&outcome);
                (task_id, Dispatched::Done(outcome), failed)
            }
            Err(join_error) => {
                let task_id = join_error.id();
                (task_id, Dispatched::Panicked(describe(join_error)), true)
            }
        };
        if failed {
            n_errors += 1;
        }
        if let Some(target_idx) = target_of_task.remove(&task_id) {
            outcomes[target_idx] = Some(dispatched);
        }
    }
    outcomes
        .into_iter()
        .map(|outcome| outcome.unwrap_or(Dispatched::NotStarted))
        .collect()
}

/// `floor(percent × n / 100)`, without overflow.
fn percent_of(percent: u8, n: usize) -> usize {
    let n = u128::try_from(n).unwrap_or(u128::MAX);
    usize::try_from(u128::from(percent) * n / 100).unwrap_or(usize::MAX)
}

/// A panic's message when it has a text one.
fn describe(join_error: tokio::task::JoinError) -> String {
    if join_error.is_cancelled() {
        return "cancelled".to_string();
    }
    let payload = join_error.into_panic();
    let message = payload
        .downcast_ref::<&str>()
        .map(|text| text.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned());
    match message {
        Some(message) => format!("panicked: {message}"),
        None => "panicked".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::model::Rate::{Count, Percent};

    #[test]
    fn concurrency_limit_cases() {
        // (rate, targets, limit)
        let cases = [
            (Count(5), 100, 5),
            (Count(5), 2, 5), // more than there are targets is harmless
            (Count(0), 10, 1),
            (Percent(10), 50, 5),
            (Percent(10), 55, 5), // rounds down
            (Percent(10), 9, 1),  // but never below 1
            (Percent(0), 10, 1),
            (Percent(100), 7, 7),
            (Percent(50), 0, 1),
        ];
        for (rate, n_targets, expected) in cases {
            assert_eq!(
                concurrency_limit(rate, n_targets),
                expected,
                "{rate:?} of {n_targets}"
            );
        }
    }

    #[test]
    fn error_threshold_cases() {
        // (rate, targets, threshold)
        let cases = [
            (Count(0), 10, 0),
            (Count(3), 10, 3),
            (Percent(10), 50, 5),
            (Percent(10), 9, 0),
            (Percent(40), 10, 4),
            (Percent(100), 7, 7),
            (Percent(0), 7, 0),
        ];
        for (rate, n_targets, expected) in cases {
            assert_eq!(
                error_threshold(rate, n_targets),
                expected,
                "{rate:?} of {n_targets}"
            );
        }
    }

    /// What the test targets do.
    #[derive(Clone, Copy, Debug)]
    enum Behavior {
        Succeed,
        Fail,
        Panic,
    }

    /// Counts in-flight runs and the most seen at once.
    #[derive(Default)]
    struct Gauge {
        in_flight: AtomicUsize,
        max_seen: AtomicUsize,
        n_started: AtomicUsize,
    }

    /// Dispatches targets that sleep `millis` each and then behave as told; outcomes are
    /// `Ok(idx)` / `Err(idx)`.
    async fn check(
        behaviors: &[(Behavior, u64)],
        max_concurrency: model::Rate,
        max_errors: model::Rate,
    ) -> (Vec<Dispatched<Result<usize, usize>>>, Arc<Gauge>) {
        let gauge = Arc::new(Gauge::default());
        let targets: Vec<(usize, Behavior, u64)> = behaviors
            .iter()
            .enumerate()
            .map(|(idx, (behavior, millis))| (idx, *behavior, *millis))
            .collect();
        let outcomes = dispatch(
            targets,
            max_concurrency,
            max_errors,
            Result::is_err,
            |(idx, behavior, millis)| {
                let gauge = Arc::clone(&gauge);
                async move {
                    gauge.n_started.fetch_add(1, Ordering::SeqCst);
                    let now = gauge.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    gauge.max_seen.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(millis)).await;
                    gauge.in_flight.fetch_sub(1, Ordering::SeqCst);
                    match behavior {
                        Behavior::Succeed => Ok(idx),
                        Behavior::Fail => Err(idx),
                        Behavior::Panic => panic!("target {idx} blew up"),
                    }
                }
            },
        )
        .await;
        (outcomes, gauge)
    }

    fn all_succeed(n: usize) -> Vec<(Behavior, u64)> {
        (0..n)
            .map(|idx| (Behavior::Succeed, 10 + (idx as u64 * 7) % 5))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn never_more_than_the_count_at_once() {
        for limit in [1u32, 3, 8] {
            let (outcomes, gauge) = check(&all_succeed(20), Count(limit), Count(0)).await;
            let expected: Vec<_> = (0..20).map(|idx| Dispatched::Done(Ok(idx))).collect();
            assert_eq!(outcomes, expected);
            let max_seen = gauge.max_seen.load(Ordering::SeqCst);
            assert!(max_seen <= limit as usize, "limit {limit}, saw {max_seen}");
            // With waits of a few milliseconds the limit is actually reached.
            assert_eq!(max_seen, limit as usize, "limit {limit}");
        }
    }

    #[tokio::test]
    async fn percent_concurrency() {
        // 25% of 20 is 5; 10% of 5 rounds down to 0 and is raised to 1.
        let (outcomes, gauge) = check(&all_succeed(20), Percent(25), Count(0)).await;
        assert!(
            outcomes
                .iter()
                .all(|it| matches!(it, Dispatched::Done(Ok(_))))
        );
        assert_eq!(gauge.max_seen.load(Ordering::SeqCst), 5);
        let (outcomes, gauge) = check(&all_succeed(5), Percent(10), Count(0)).await;
        assert_eq!(outcomes.len(), 5);
        assert_eq!(gauge.max_seen.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn zero_max_errors_stops_after_the_first_failure() {
        use Behavior::*;
        let behaviors = [(Succeed, 1), (Fail, 1), (Succeed, 1), (Succeed, 1)];
        let (outcomes, gauge) = check(&behaviors, Count(1), Count(0)).await;
        assert_eq!(
            outcomes,
            [
                Dispatched::Done(Ok(0)),
                Dispatched::Done(Err(1)),
                Dispatched::NotStarted,
                Dispatched::NotStarted
            ]
        );
        assert_eq!(gauge.n_started.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn count_max_errors_stops_once_exceeded() {
        use Behavior::*;
        // Threshold 2: the third failure (target 4) stops dispatch.
        let behaviors = [
            (Fail, 1),
            (Succeed, 1),
            (Fail, 1),
            (Succeed, 1),
            (Fail, 1),
            (Succeed, 1),
            (Fail, 1),
        ];
        let (outcomes, _) = check(&behaviors, Count(1), Count(2)).await;
        assert_eq!(
            outcomes,
            [
                Dispatched::Done(Err(0)),
                Dispatched::Done(Ok(1)),
                Dispatched::Done(Err(2)),
                Dispatched::Done(Ok(3)),
                Dispatched::Done(Err(4)),
                Dispatched::NotStarted,
                Dispatched::NotStarted,
            ]
        );
    }

    #[tokio::test]
    async fn percent_max_errors() {
        use Behavior::*;
        // 20% of 10 targets: threshold 2, so the third failure stops dispatch.
        let mut behaviors = vec![(Fail, 1); 10];
        behaviors[1] = (Succeed, 1);
        let (outcomes, gauge) = check(&behaviors, Count(1), Percent(20)).await;
        assert_eq!(gauge.n_started.load(Ordering::SeqCst), 4);
        assert_eq!(
            outcomes[..4],
            [
                Dispatched::Done(Err(0)),
                Dispatched::Done(Ok(1)),
                Dispatched::Done(Err(2)),
                Dispatched::Done(Err(3))
            ]
        );
        assert!(outcomes[4..].iter().all(|it| *it == Dispatched::NotStarted));
        // 10% of 9 rounds down to 0: the first failure stops it.
        let (outcomes, _) = check(
            &[(Fail, 1), (Succeed, 1), (Succeed, 1)],
            Count(1),
            Percent(10),
        )
        .await;
        assert_eq!(
            outcomes,
            [
                Dispatched::Done(Err(0)),
                Dispatched::NotStarted,
                Dispatched::NotStarted
            ]
        );
    }

    #[tokio::test]
    async fn running_ones_finish_after_the_threshold_is_crossed() {
        use Behavior::*;
        // Three at once: target 0 fails at once while 1 and 2 are still running; they finish
        // (one of them failing too, beyond the threshold), and nothing new starts.
        let behaviors = [
            (Fail, 0),
            (Succeed, 30),
            (Fail, 30),
            (Succeed, 1),
            (Succeed, 1),
        ];
        let (outcomes, gauge) = check(&behaviors, Count(3), Count(0)).await;
        assert_eq!(
            outcomes,
            [
                Dispatched::Done(Err(0)),
                Dispatched::Done(Ok(1)),
                Dispatched::Done(Err(2)),
                Dispatched::NotStarted,
                Dispatched::NotStarted,
            ]
        );
        assert_eq!(gauge.n_started.load(Ordering::SeqCst), 3);
        assert_eq!(gauge.in_flight.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_panic_is_a_failure_of_its_target_only() {
        use Behavior::*;
        let behaviors = [(Succeed, 1), (Panic, 1), (Succeed, 1), (Succeed, 1)];
        let (outcomes, _) = check(&behaviors, Count(1), Count(1)).await;
        assert_eq!(
            outcomes,
            [
                Dispatched::Done(Ok(0)),
                Dispatched::Panicked("panicked: target 1 blew up".into()),
                Dispatched::Done(Ok(2)),
                Dispatched::Done(Ok(3)),
            ]
        );
        let (outcomes, _) = check(&behaviors, Count(1), Count(0)).await;
        assert_eq!(
            outcomes[2..],
            [Dispatched::NotStarted, Dispatched::NotStarted]
        );
    }

    #[tokio::test]
    async fn no_targets() {
        let (outcomes, gauge) = check(&[], Percent(50), Percent(0)).await;
        assert!(outcomes.is_empty());
        assert_eq!(gauge.n_started.load(Ordering::SeqCst), 0);
    }
}
