//! Following something that grows — the log, the events table — in rounds.
//!
//! Every follower in the service has the same shape: do a round; if it
//! made progress, go again at once; if it caught up, wait for news (a
//! `watch` change, a wake-up) or an idle timer, whichever comes first; if
//! it failed, pause and retry (or give up, when the failure ends a
//! leader's term); stop between rounds on cancellation. [`follow`] is that
//! loop, once, so the sequencer, the projection runner, the hub, the
//! dispatcher and the NATS exporter only say what a round is.
//!
//! News is marked seen *before* each round, so an announcement that
//! arrives while a round runs is never lost: the wait after it returns at
//! once and another round picks it up.
//!
//! A round is never interrupted by cancellation (it may be inside a
//! transaction); a round that may stop halfway safely selects on the token
//! itself.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Longest a caught-up follower waits for news before a round anyway (a
/// missed notification only delays it).
pub const IDLE_CHECK: Duration = Duration::from_millis(500);
/// Pause after a failed round before it is tried again (the same entries:
/// nothing is skipped).
pub const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// How a round went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// It did work and there may be more: the next round starts at once.
    Progressed,
    /// Nothing left: the next round waits for news or the idle check.
    CaughtUp,
    /// Work is there but cannot be done yet (it waits behind something
    /// about to finish): the next round waits for news or at most this
    /// long.
    Blocked(Duration),
}

/// What to do after a failed round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Pause this long, then try the round again.
    RetryAfter(Duration),
    /// End the follow with the error (a leader whose lock connection
    /// failed must step down, not retry).
    Stop,
}

/// What a follower does each round.
pub trait Rounds: Send {
    type Error: Send;

    /// One round.
    fn round(&mut self) -> impl Future<Output = Result<Round, Self::Error>> + Send;

    /// Decide about a failed round, the `failures`-th in a row (0-based),
    /// and log it as the follower sees fit.
    fn on_error(&mut self, error: &Self::Error, failures: u32) -> OnError;
}

/// Something that announces news worth another round.
pub trait News: Send {
    /// Forget what was announced so far: [`Self::changed`] waits for what
    /// comes after this.
    fn mark_seen(&mut self);

    /// Resolves once something was announced since the last mark (never,
    /// if nothing can be announced any more: the idle timer still runs).
    fn changed(&mut self) -> impl Future<Output = ()> + Send;
}

impl<T: Send + Sync> News for watch::Receiver<T> {
    fn mark_seen(&mut self) {
        self.mark_unchanged();
    }

    async fn changed(&mut self) {
        if watch::Receiver::changed(self).await.is_err() {
            // The sender is gone: no news will come; rely on the timer.
            std::future::pending::<()>().await;
        }
    }
}

/// Wake-ups in the manner of [`tokio::sync::Notify::notified`]: each call
/// of the function gives a future that resolves on the next wake-up, or at
/// once for one that came while nobody waited (so nothing needs marking).
pub struct WakeUps<F>(pub F);

impl<F, W> News for WakeUps<F>
where
    F: FnMut() -> W + Send,
    W: Future<Output = ()> + Send,
{
    fn mark_seen(&mut self) {}

    fn changed(&mut self) -> impl Future<Output = ()> + Send {
        (self.0)()
    }
}

/// Run `rounds` until cancelled (then `Ok`), or until a failed round is
/// not to be retried (then its error). A caught-up round is followed by a
/// wait for `news`, at most `idle_check`.
pub async fn follow<R: Rounds>(
    rounds: &mut R,
    news: &mut impl News,
    idle_check: Duration,
    cancel: &CancellationToken,
) -> Result<(), R::Error> {
    let mut failures = 0u32;
    loop {
        if cancel.is_cancelled() {
            return Ok(());
        }
        news.mark_seen();
        let (pause, hear_news) = match rounds.round().await {
            Ok(Round::Progressed) => {
                failures = 0;
                continue;
            }
            Ok(Round::CaughtUp) => {
                failures = 0;
                (idle_check, true)
            }
            Ok(Round::Blocked(at_most)) => {
                failures = 0;
                (at_most, true)
            }
            Err(error) => match rounds.on_error(&error, failures) {
                OnError::Stop => return Err(error),
                OnError::RetryAfter(pause) => {
                    failures = failures.saturating_add(1);
                    (pause, false)
                }
            },
        };
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = news.changed(), if hear_news => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use tokio::time::Instant;

    use super::*;

    /// Rounds that play a script and record when each round ran.
    struct Script {
        outcomes: VecDeque<Result<Round, &'static str>>,
        ran_at: Arc<Mutex<Vec<Instant>>>,
        /// The `failures` argument of each `on_error` call.
        failures_seen: Vec<u32>,
        on_error: OnError,
    }

    impl Script {
        fn new(outcomes: impl IntoIterator<Item = Result<Round, &'static str>>) -> Self {
            Self {
                outcomes: outcomes.into_iter().collect(),
                ran_at: Default::default(),
                failures_seen: Vec::new(),
                on_error: OnError::RetryAfter(Duration::from_secs(3)),
            }
        }

        /// Seconds (of paused time) since `start` at which each round ran.
        fn times(&self, start: Instant) -> Vec<f64> {
            let ran_at = self.ran_at.lock().unwrap_or_else(|p| p.into_inner());
            ran_at
                .iter()
                .map(|at| (*at - start).as_secs_f64())
                .collect()
        }
    }

    impl Rounds for Script {
        type Error = &'static str;

        async fn round(&mut self) -> Result<Round, &'static str> {
            self.ran_at
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Instant::now());
            // Once the script is played, the follower is caught up.
            self.outcomes.pop_front().unwrap_or(Ok(Round::CaughtUp))
        }

        fn on_error(&mut self, _: &&'static str, failures: u32) -> OnError {
            self.failures_seen.push(failures);
            self.on_error
        }
    }

    const IDLE: Duration = Duration::from_secs(10);

    /// Follow `news` until `stop_at` of (paused) time has passed, with
    /// `meanwhile` running alongside (to announce news).
    async fn follow_until<R: Rounds>(
        rounds: &mut R,
        news: &mut impl News,
        stop_at: Duration,
        meanwhile: impl Future<Output = ()>,
    ) -> Result<(), R::Error> {
        let cancel = CancellationToken::new();
        let stopper = async {
            tokio::time::sleep(stop_at).await;
            cancel.cancel();
        };
        let (followed, (), ()) =
            tokio::join!(follow(rounds, news, IDLE, &cancel), stopper, meanwhile);
        followed
    }

    #[tokio::test(start_paused = true)]
    async fn a_round_that_progressed_is_followed_at_once() {
        let mut script = Script::new([Ok(Round::Progressed), Ok(Round::Progressed)]);
        let (_sender, mut news) = watch::channel(0);
        let start = Instant::now();
        let followed = follow_until(&mut script, &mut news, Duration::from_secs(1), async {}).await;
        assert_eq!(followed, Ok(()));
        assert_eq!(script.times(start), vec![0.0, 0.0, 0.0]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_caught_up_follower_waits_for_news_or_the_idle_check() {
        let mut script = Script::new([Ok(Round::CaughtUp), Ok(Round::CaughtUp)]);
        let (sender, mut news) = watch::channel(0);
        let start = Instant::now();
        // News at 2 s, none after it: the next round comes from the idle check.
        let announcer = async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            sender.send_replace(1);
        };
        let followed =
            follow_until(&mut script, &mut news, Duration::from_secs(17), announcer).await;
        assert_eq!(followed, Ok(()));
        // At start; on the news at 2 s; then the idle checks at 12 s.
        assert_eq!(script.times(start), vec![0.0, 2.0, 12.0]);
    }

    #[tokio::test(start_paused = true)]
    async fn news_announced_during_a_round_is_not_lost() {
        struct AnnouncingRound {
            sender: watch::Sender<i32>,
            rounds: u32,
        }
        impl Rounds for AnnouncingRound {
            type Error = ();
            async fn round(&mut self) -> Result<Round, ()> {
                self.rounds += 1;
                if self.rounds == 1 {
                    // Announced after the round began, before it ended.
                    self.sender.send_replace(1);
                }
                Ok(Round::CaughtUp)
            }
            fn on_error(&mut self, _: &(), _: u32) -> OnError {
                OnError::Stop
            }
        }
        let (sender, mut news) = watch::channel(0);
        let mut rounds = AnnouncingRound { sender, rounds: 0 };
        let followed = follow_until(&mut rounds, &mut news, Duration::from_secs(1), async {}).await;
        assert_eq!(followed, Ok(()));
        assert_eq!(rounds.rounds, 2, "the news brought a second round at once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_blocked_round_is_retried_after_its_own_wait() {
        let mut script = Script::new([Ok(Round::Blocked(Duration::from_millis(2)))]);
        let (_sender, mut news) = watch::channel(0);
        let start = Instant::now();
        let followed = follow_until(&mut script, &mut news, Duration::from_secs(1), async {}).await;
        assert_eq!(followed, Ok(()));
        assert_eq!(script.times(start), vec![0.0, 0.002]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_round_is_retried_after_the_pause_whatever_the_news() {
        let mut script = Script::new([Err("down"), Err("still down"), Ok(Round::Progressed)]);
        let (sender, mut news) = watch::channel(0);
        let start = Instant::now();
        // News during the pause does not cut it short.
        let announcer = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            sender.send_replace(1);
        };
        let followed =
            follow_until(&mut script, &mut news, Duration::from_secs(8), announcer).await;
        assert_eq!(followed, Ok(()));
        // Fails at 0 and 3; succeeds at 6 (and goes on at once, caught up).
        assert_eq!(script.times(start), vec![0.0, 3.0, 6.0, 6.0]);
        assert_eq!(script.failures_seen, vec![0, 1], "failures in a row");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_that_stops_ends_the_follow_with_its_error() {
        let mut script = Script::new([Ok(Round::Progressed), Err("lock lost")]);
        script.on_error = OnError::Stop;
        let (_sender, mut news) = watch::channel(0);
        let cancel = CancellationToken::new();
        let followed = follow(&mut script, &mut news, IDLE, &cancel).await;
        assert_eq!(followed, Err("lock lost"));
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_stops_a_waiting_follower_at_once() {
        for first in [Ok(Round::CaughtUp), Err("down")] {
            let mut script = Script::new([first]);
            let (_sender, mut news) = watch::channel(0);
            let start = Instant::now();
            let followed =
                follow_until(&mut script, &mut news, Duration::from_millis(100), async {}).await;
            assert_eq!(followed, Ok(()));
            assert_eq!(
                Instant::now() - start,
                Duration::from_millis(100),
                "stopped as soon as cancelled"
            );
            assert_eq!(script.times(start), vec![0.0]);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_follower_runs_no_round() {
        let mut script = Script::new([]);
        let (_sender, mut news) = watch::channel(0);
        let cancel = CancellationToken::new();
        cancel.cancel();
        assert_eq!(follow(&mut script, &mut news, IDLE, &cancel).await, Ok(()));
        assert!(script.times(Instant::now()).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn wake_ups_bring_a_round_like_news() {
        let notify = Arc::new(tokio::sync::Notify::new());
        let mut script = Script::new([Ok(Round::CaughtUp)]);
        let waker = notify.clone();
        let mut news = WakeUps(move || {
            let notify = waker.clone();
            async move { notify.notified().await }
        });
        let start = Instant::now();
        let waking = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            notify.notify_one();
        };
        let followed = follow_until(&mut script, &mut news, Duration::from_secs(2), waking).await;
        assert_eq!(followed, Ok(()));
        assert_eq!(script.times(start), vec![0.0, 1.0]);
    }
}
