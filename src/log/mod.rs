//! The positioned log: one dense, gap-free, hash-chained order over every
//! event, and everything needed to follow it.
//!
//! `postgres-es` orders events only inside one aggregate. Subscribers and
//! auditors need one global order in which nothing is ever skipped or
//! repeated, even though transactions commit out of the order in which they
//! started. The [`sequencer`] builds that order; the [`reader`] serves it;
//! [`progress`] tells waiting code how far the log and each projection got;
//! [`chain`] defines the hash that makes tampering detectable; [`status`]
//! reads where the log and the views stand, for readiness and metrics;
//! [`follow`] is the round-wait-retry loop every follower of the log runs.

pub mod chain;
pub mod follow;
pub mod progress;
pub mod reader;
pub mod sequencer;
pub mod status;
pub mod verify;

pub use progress::{Progress, Visibility, Watermark};
pub use reader::LogReader;
