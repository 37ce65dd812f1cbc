//! The hash chain of the positioned log.
//!
//! `hash(n) = sha256(hash(n-1) ‖ canonical bytes of entry n)`, with 32 zero
//! bytes before position 1. The canonical bytes are the entry's position
//! and its event's identity and content, each field length-prefixed so no
//! two different entries can produce the same byte string:
//!
//! ```text
//! u64be(position) ‖ str(aggregate_type) ‖ str(aggregate_id) ‖ u64be(sequence)
//! ‖ str(event_type) ‖ str(event_version) ‖ str(payload) ‖ str(metadata)
//! str(s) = u64be(len(s)) ‖ utf8(s)
//! ```
//!
//! `payload` and `metadata` are the exact text stored in the event table's
//! `json` columns (PostgreSQL keeps `json` text verbatim), so the hash can be
//! recomputed from the event row at any time.

use sha2::{Digest, Sha256};

/// The hash "before" position 1.
pub const GENESIS: [u8; 32] = [0; 32];

/// The parts of an event that the chain covers.
#[derive(Debug, Clone, Copy)]
pub struct ChainedEvent<'a> {
    pub position: i64,
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub sequence: i64,
    pub event_type: &'a str,
    pub event_version: &'a str,
    pub payload: &'a str,
    pub metadata: &'a str,
}

/// The hash of `event` chained after `prev_hash`.
pub fn link(prev_hash: &[u8], event: &ChainedEvent<'_>) -> [u8; 32] {
    fn text(hasher: &mut Sha256, s: &str) {
        hasher.update((s.len() as u64).to_be_bytes());
        hasher.update(s.as_bytes());
    }
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    hasher.update((event.position as u64).to_be_bytes());
    text(&mut hasher, event.aggregate_type);
    text(&mut hasher, event.aggregate_id);
    hasher.update((event.sequence as u64).to_be_bytes());
    text(&mut hasher, event.event_type);
    text(&mut hasher, event.event_version);
    text(&mut hasher, event.payload);
    text(&mut hasher, event.metadata);
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(payload: &str) -> ChainedEvent<'_> {
        ChainedEvent {
            position: 1,
            aggregate_type: "delegation",
            aggregate_id: "a",
            sequence: 1,
            event_type: "DelegationSent",
            event_version: "1.0",
            payload,
            metadata: "{}",
        }
    }

    #[test]
    fn the_same_event_after_the_same_hash_links_to_the_same_hash() {
        assert_eq!(link(&GENESIS, &event("{}")), link(&GENESIS, &event("{}")));
    }

    #[test]
    fn a_changed_payload_changes_the_hash() {
        assert_ne!(link(&GENESIS, &event("{}")), link(&GENESIS, &event("{ }")));
    }

    #[test]
    fn a_changed_predecessor_changes_the_hash() {
        assert_ne!(link(&GENESIS, &event("{}")), link(&[1; 32], &event("{}")));
    }

    #[test]
    fn moving_bytes_between_fields_changes_the_hash() {
        let a = ChainedEvent {
            aggregate_type: "ab",
            aggregate_id: "c",
            ..event("{}")
        };
        let b = ChainedEvent {
            aggregate_type: "a",
            aggregate_id: "bc",
            ..event("{}")
        };
        assert_ne!(link(&GENESIS, &a), link(&GENESIS, &b));
    }
}
