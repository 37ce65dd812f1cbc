//! The live feed: websocket subscribers that replay history from a cursor
//! and then go live.
//!
//! * [`hub`] — one per process: tails the positioned log once and fans the
//!   broadcast messages out to every subscriber.
//! * [`subscriber`] — one per connection: replays `position > from` from
//!   the log, switches to the hub's live stream with no gap and no
//!   duplicate at the seam, and closes a consumer that falls too far behind
//!   with the last position it delivered, so the client can resume.
//!
//! `GET /ws` (authentication and the upgrade) is the HTTP layer's, in
//! `http/live.rs`; nothing here depends on `http`.

pub mod hub;
pub mod subscriber;

pub use hub::{Hub, HubConfig};
