//! Where reads go: read replicas when configured, else the primary, and
//! the consistency tokens that make either safe to read from.
//!
//! Commands, the sequencer, the projection runners and the dispatcher write
//! to the primary. GET routes, replays and audit queries only read, so a
//! fleet can move them onto PostgreSQL streaming standbys. A standby is
//! behind by its replication lag, so a read names the log position it must
//! see (`min_position`, from a command's `X-Ledger-Position`) and is served
//! only once the views it reads have applied that position there.
//!
//! Why a standby's views can be trusted at a position: each projection
//! runner writes a batch of views and its checkpoint in one transaction,
//! and a standby replays transactions in commit order; so once a standby's
//! `projection_checkpoints` show every view at `p`, its views hold every
//! entry up to `p` (and its log, written before them, too).
//!
//! Failure: a replica that does not answer is taken out of rotation and
//! the read goes to the primary (reads keep working, the primary takes the
//! load); a replica more than `max_lag` positions behind the primary's
//! views is out of rotation too. A background check every
//! [`CHECK_INTERVAL`] brings a replica back once it answers and has caught
//! up, and publishes its lag (`ledger_replica_lag_positions`,
//! `ledger_replica_up`, and `/readyz`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio::time::Instant;

use crate::db::{self, PoolSettings};
use crate::log::Progress;
use crate::metrics::{REPLICA_LAG, REPLICA_UP};

/// How often every replica's applied position is read in the background.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Longest the background check waits for a replica.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a read waits for a pooled replica connection before the
/// replica counts as down (a dead server must not hold reads for the
/// primary's acquire timeout).
const REPLICA_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);
/// First and longest pause between two looks at a replica's position while
/// a read waits for its `min_position`.
const POLL_FIRST: Duration = Duration::from_millis(2);
const POLL_MAX: Duration = Duration::from_millis(50);

/// How reads are routed and how long they wait for a position.
#[derive(Debug, Clone)]
pub struct ReadSettings {
    /// Read replicas (PostgreSQL URLs); empty: everything reads the primary.
    pub replica_urls: Vec<String>,
    /// A replica more positions behind the primary's views is out of
    /// rotation (and reported so by `/readyz`).
    pub max_lag: i64,
    /// Longest a read waits for its `min_position` before answering 503.
    pub min_position_wait: Duration,
}

impl Default for ReadSettings {
    fn default() -> Self {
        Self {
            replica_urls: Vec::new(),
            max_lag: 10_000,
            min_position_wait: Duration::from_secs(5),
        }
    }
}

/// A read could not be served at the position it asked for in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the views have not reached log position {wanted} yet (they stand at {applied}); try again"
)]
pub struct NotYetApplied {
    pub wanted: i64,
    pub applied: i64,
}

/// One replica as the background check and the reads last saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaStatus {
    /// Its URL without the password.
    pub name: String,
    pub reachable: bool,
    /// The position every view has applied there.
    pub applied: i64,
    /// Positions behind the primary's views.
    pub lag: i64,
    /// Whether reads go to it now.
    pub serving: bool,
}

#[derive(Debug)]
struct Replica {
    name: String,
    pool: PgPool,
    seen: Mutex<Seen>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    reachable: bool,
    applied: i64,
}

/// The pools reads are served from.
#[derive(Debug)]
pub struct ReadPools {
    primary: PgPool,
    progress: Arc<Progress>,
    replicas: Vec<Replica>,
    next: AtomicUsize,
    settings: ReadSettings,
}

impl ReadPools {
    /// Pools for `settings.replica_urls` (connected on first use, so a
    /// replica that is down at start only stays out of rotation).
    pub fn new(
        primary: PgPool,
        progress: Arc<Progress>,
        settings: ReadSettings,
        pool: &PoolSettings,
    ) -> anyhow::Result<Self> {
        let replica_pool = PoolSettings {
            acquire_timeout: REPLICA_ACQUIRE_TIMEOUT,
            ..pool.clone()
        };
        let replicas = settings
            .replica_urls
            .iter()
            .map(|url| {
                Ok(Replica {
                    name: db::redact(url),
                    pool: db::connect_lazy_with(url, &replica_pool)?,
                    seen: Mutex::new(Seen::default()),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            primary,
            progress,
            replicas,
            next: AtomicUsize::new(0),
            settings,
        })
    }

    /// Longest a read waits for its `min_position`.
    pub fn min_position_wait(&self) -> Duration {
        self.settings.min_position_wait
    }

    /// The lag bound past which a replica is out of rotation.
    pub fn max_lag(&self) -> i64 {
        self.settings.max_lag
    }

    /// Whether any replica is configured.
    pub fn has_replicas(&self) -> bool {
        !self.replicas.is_empty()
    }

    /// The pool to serve a read from once its views have applied
    /// `min_position` (waiting at most `min_position_wait`): a replica in
    /// rotation, else the primary.
    pub async fn pool_for(&self, min_position: Option<i64>) -> Result<PgPool, NotYetApplied> {
        let deadline = Instant::now() + self.settings.min_position_wait;
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let count = self.replicas.len();
        for offset in 0..count {
            let replica = &self.replicas[(start + offset) % count];
            if !self.in_rotation(replica) {
                continue;
            }
            match self.wait_on_replica(replica, min_position, deadline).await {
                Ok(()) => return Ok(replica.pool.clone()),
                Err(Waited::NotYet(applied)) => {
                    return Err(NotYetApplied {
                        wanted: min_position.unwrap_or(0),
                        applied,
                    })
                }
                Err(Waited::Unreachable(error)) => {
                    tracing::warn!(replica = %replica.name, %error, "read replica does not answer; reading from the primary until it does");
                    replica.mark(Seen {
                        reachable: false,
                        ..replica.seen()
                    });
                }
            }
        }
        match min_position {
            Some(wanted)
                if !self
                    .progress
                    .wait_applied(wanted, remaining(deadline))
                    .await =>
            {
                Err(NotYetApplied {
                    wanted,
                    applied: self.progress.applied(),
                })
            }
            _ => Ok(self.primary.clone()),
        }
    }

    /// A replica in rotation whose views were last seen at or past
    /// `position`, without waiting or asking it (a replay page's source);
    /// `None`: read the primary.
    pub fn pool_at(&self, position: i64) -> Option<PgPool> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let count = self.replicas.len();
        (0..count)
            .map(|offset| &self.replicas[(start + offset) % count])
            .find(|replica| self.in_rotation(replica) && replica.seen().applied >= position)
            .map(|replica| replica.pool.clone())
    }

    /// Wait until `replica`'s views applied `min_position` (or, with no
    /// position to wait for, check that it answers).
    async fn wait_on_replica(
        &self,
        replica: &Replica,
        min_position: Option<i64>,
        deadline: Instant,
    ) -> Result<(), Waited> {
        // Always asked, even when the last look already showed the position:
        // the answer is also the check that the replica is still up, so a
        // dead one sends this read to the primary instead of failing it.
        let wanted = min_position.unwrap_or(i64::MIN);
        let mut pause = POLL_FIRST;
        loop {
            let applied = self
                .applied_on(&replica.pool)
                .await
                .map_err(Waited::Unreachable)?;
            replica.mark(Seen {
                reachable: true,
                applied,
            });
            if applied >= wanted {
                return Ok(());
            }
            if Instant::now() + pause > deadline {
                return Err(Waited::NotYet(applied));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(POLL_MAX);
        }
    }

    /// The position every view this process runs has applied on `pool`.
    async fn applied_on(&self, pool: &PgPool) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            "select coalesce(min(position), 0) from projection_checkpoints where name = any($1)",
        )
        .bind(self.progress.projection_names())
        .fetch_one(pool)
        .await
    }

    fn in_rotation(&self, replica: &Replica) -> bool {
        let seen = replica.seen();
        seen.reachable && self.lag(seen.applied) <= self.settings.max_lag
    }

    fn lag(&self, applied: i64) -> i64 {
        (self.progress.applied() - applied).max(0)
    }

    /// Every replica as last seen.
    pub fn status(&self) -> Vec<ReplicaStatus> {
        self.replicas
            .iter()
            .map(|replica| {
                let seen = replica.seen();
                ReplicaStatus {
                    name: replica.name.clone(),
                    reachable: seen.reachable,
                    applied: seen.applied,
                    lag: self.lag(seen.applied),
                    serving: self.in_rotation(replica),
                }
            })
            .collect()
    }

    /// Read every replica's position now and publish the lag metrics.
    pub async fn check(&self) {
        for replica in &self.replicas {
            let read = tokio::time::timeout(CHECK_TIMEOUT, self.applied_on(&replica.pool)).await;
            let seen = match read {
                Ok(Ok(applied)) => Seen {
                    reachable: true,
                    applied,
                },
                Ok(Err(error)) => {
                    if replica.seen().reachable {
                        tracing::warn!(replica = %replica.name, %error, "read replica does not answer");
                    }
                    Seen {
                        reachable: false,
                        ..replica.seen()
                    }
                }
                Err(_) => Seen {
                    reachable: false,
                    ..replica.seen()
                },
            };
            if seen.reachable && !replica.seen().reachable {
                tracing::info!(replica = %replica.name, applied = seen.applied, "read replica answers");
            }
            replica.mark(seen);
            let labels = [("replica", replica.name.clone())];
            ::metrics::gauge!(REPLICA_UP, &labels).set(f64::from(u8::from(seen.reachable)));
            ::metrics::gauge!(REPLICA_LAG, &labels).set(self.lag(seen.applied) as f64);
        }
    }

    /// Check the replicas every [`CHECK_INTERVAL`] until cancelled.
    pub async fn watch(self: Arc<Self>, cancel: tokio_util::sync::CancellationToken) {
        let mut every = tokio::time::interval(CHECK_INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => self.check().await,
                _ = cancel.cancelled() => return,
            }
        }
    }
}

impl Replica {
    fn seen(&self) -> Seen {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn mark(&self, seen: Seen) {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = seen;
    }
}

enum Waited {
    NotYet(i64),
    Unreachable(sqlx::Error),
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}
