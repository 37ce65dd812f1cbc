//! Single-leader election for background roles (the sequencer, the
//! dispatcher, the NATS exporter): a PostgreSQL session-level advisory lock
//! held on a dedicated connection. The leader owns that connection for as
//! long as it leads; when the process dies or the connection drops,
//! PostgreSQL releases the lock and another process's next campaign wins it.
//!
//! [`Election`] is the one campaign loop every role runs:
//!
//! ```text
//! let mut election = Election::new(&pool, "sequencer", LOCK_KEY, interval, &cancel);
//! while let Some(mut lock) = election.elected().await {
//!     let led = lead(&mut lock, …).await;
//!     election.step_down(lock, led).await;
//! }
//! ```
//!
//! It campaigns until elected (pausing between campaigns), hands over the
//! lock connection for the term, logs how the term ended, closes the
//! connection (releasing the lock) and pauses before campaigning again —
//! and stops, between campaigns or during a pause, once cancelled.

use std::time::Duration;

use sqlx::{Connection, PgConnection, PgPool};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often a leader checks its lock connection when nothing else uses
/// it: a leader that lost it must notice, and stop, even when idle.
pub const LIVENESS_CHECK: Duration = Duration::from_secs(2);

/// A dedicated connection holding the advisory lock `key`, or `None` when
/// another process holds it. Close the connection to step down.
pub async fn campaign(pool: &PgPool, key: i64) -> Result<Option<PgConnection>, sqlx::Error> {
    // Detached: a connection holding a session lock must never go back to
    // the pool, where another task could inherit the lock.
    let mut conn = pool.acquire().await?.detach();
    let elected: bool = sqlx::query_scalar("select pg_try_advisory_lock($1)")
        .bind(key)
        .fetch_one(&mut conn)
        .await?;
    if elected {
        Ok(Some(conn))
    } else {
        let _ = conn.close().await;
        Ok(None)
    }
}

/// An error that ended a term, as the election loop logs it.
pub trait TermError: std::fmt::Display {
    /// Whether the end calls for an operator's attention (logged at ERROR)
    /// rather than being an expected, passing condition (WARN). A lost
    /// lock connection or a failing database is severe.
    fn is_severe(&self) -> bool {
        true
    }
}

impl TermError for sqlx::Error {}

/// Pause before the next campaign after the `n`-th failure in a row.
type RetryPause<'a> = Box<dyn Fn(u32) -> Duration + Send + Sync + 'a>;
/// Told of every failed campaign (metrics).
type CampaignFailed<'a> = Box<dyn Fn(&sqlx::Error) + Send + Sync + 'a>;

/// One role's campaigns and terms, for the life of the process.
pub struct Election<'a> {
    pool: &'a PgPool,
    role: &'static str,
    lock_key: i64,
    /// Pause after a lost campaign or a term that ended cleanly.
    interval: Duration,
    cancel: &'a CancellationToken,
    retry_pause: Option<RetryPause<'a>>,
    campaign_failed: Option<CampaignFailed<'a>>,
    /// Failed campaigns and terms in a row.
    failures: u32,
    /// Pause before the next campaign (none before the first).
    pause: Option<Duration>,
}

impl<'a> Election<'a> {
    /// `role` names the role in log lines; `interval` is the pause between
    /// campaigns (and, unless [`Self::retry_pause`] says otherwise, after
    /// a failure).
    pub fn new(
        pool: &'a PgPool,
        role: &'static str,
        lock_key: i64,
        interval: Duration,
        cancel: &'a CancellationToken,
    ) -> Self {
        Self {
            pool,
            role,
            lock_key,
            interval,
            cancel,
            retry_pause: None,
            campaign_failed: None,
            failures: 0,
            pause: None,
        }
    }

    /// After the `n`-th failed campaign or term in a row (0-based), pause
    /// `pause(n)` instead of the interval (a backoff).
    pub fn retry_pause(mut self, pause: impl Fn(u32) -> Duration + Send + Sync + 'a) -> Self {
        self.retry_pause = Some(Box::new(pause));
        self
    }

    /// Call `failed` with the error of every failed campaign.
    pub fn on_campaign_error(mut self, failed: impl Fn(&sqlx::Error) + Send + Sync + 'a) -> Self {
        self.campaign_failed = Some(Box::new(failed));
        self
    }

    /// Campaign until elected: the lock connection, which the term uses
    /// and hands back to [`Self::step_down`]. `None` once cancelled.
    pub async fn elected(&mut self) -> Option<PgConnection> {
        let role = self.role;
        loop {
            if let Some(pause) = self.pause.take() {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = self.cancel.cancelled() => return None,
                }
            }
            if self.cancel.is_cancelled() {
                return None;
            }
            match campaign(self.pool, self.lock_key).await {
                Ok(Some(lock)) => {
                    tracing::info!(role, "{role} elected leader");
                    return Some(lock);
                }
                Ok(None) => self.succeeded(),
                Err(error) => {
                    if let Some(failed) = &self.campaign_failed {
                        failed(&error);
                    }
                    let pause = self.failed();
                    tracing::warn!(role, %error, ?pause, "{role} could not campaign");
                }
            }
        }
    }

    /// End a term: log how it `ended`, close the lock connection (which
    /// releases the lock) and pause before the next campaign.
    pub async fn step_down<E: TermError>(&mut self, lock: PgConnection, ended: Result<(), E>) {
        let role = self.role;
        match ended {
            Ok(()) => {
                self.succeeded();
                tracing::debug!(role, "{role} stepped down");
            }
            Err(error) => {
                let pause = self.failed();
                if error.is_severe() {
                    tracing::error!(role, %error, ?pause, "{role} stopped leading; campaigning again");
                } else {
                    tracing::warn!(role, %error, ?pause, "{role} stopped leading; campaigning again");
                }
            }
        }
        let _ = lock.close().await;
    }

    fn succeeded(&mut self) {
        self.failures = 0;
        self.pause = Some(self.interval);
    }

    /// Count a failure; the pause before the next campaign.
    fn failed(&mut self) -> Duration {
        let pause = match &self.retry_pause {
            Some(pause) => pause(self.failures),
            None => self.interval,
        };
        self.failures = self.failures.saturating_add(1);
        self.pause = Some(pause);
        pause
    }
}

/// A leader's periodic check that its lock connection still works (and so
/// that it still holds the lock).
#[derive(Debug)]
pub struct LivenessCheck {
    last: Instant,
}

impl LivenessCheck {
    /// The first check is due [`LIVENESS_CHECK`] from now.
    pub fn new() -> Self {
        Self {
            last: Instant::now(),
        }
    }

    /// Check `lock` if the last check is [`LIVENESS_CHECK`] ago or more.
    pub async fn if_due(&mut self, lock: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.last.elapsed() >= LIVENESS_CHECK {
            self.last = Instant::now();
            sqlx::query("select 1").execute(&mut *lock).await?;
        }
        Ok(())
    }
}

impl Default for LivenessCheck {
    fn default() -> Self {
        Self::new()
    }
}
