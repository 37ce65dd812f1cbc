//! The idempotency key aggregate.
//!
//! Its id is `workspace/key` (see [`aggregate_id`]), so every request with
//! the same key in the same workspace loads the same aggregate, and two
//! concurrent claims race on the event store's optimistic-concurrency check:
//! exactly one writes `IdempotencyKeyClaimed`, the other retries and then
//! sees the winner as the holder.
//!
//! Whether the current holder is "free" (failed, or never created because
//! the request that claimed the key died before sending it) lives in another
//! aggregate; this one cannot read it, so the caller looks it up and names
//! the holder it found free on the command (`free_holder`). Naming it, not
//! just saying "free", matters: a command retried after losing a race must
//! not take the key from the *winner*, whom the caller never checked. The
//! decision stays pure.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The longest key accepted, in characters.
pub const MAX_KEY_CHARS: usize = 255;

/// The aggregate id of `key` in `workspace_id`'s key space.
pub fn aggregate_id(workspace_id: Uuid, key: &str) -> String {
    format!("{workspace_id}/{key}")
}

#[derive(Debug, Clone, PartialEq)]
pub enum IdempotencyKeyCommand {
    /// Make `delegation_id` the holder of the key. Claiming again for the
    /// holder is a no-op; a key held by another delegation is taken over
    /// only if it is the `free_holder` the caller checked.
    Claim {
        workspace_id: Uuid,
        key: String,
        delegation_id: Uuid,
        /// The holder the caller checked and found free (its delegation
        /// failed or never came to exist); None if it found no holder.
        free_holder: Option<Uuid>,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum IdempotencyKeyEvent {
    IdempotencyKeyClaimed {
        workspace_id: Uuid,
        key: String,
        delegation_id: Uuid,
        /// The previous holder, when a free key was taken over.
        replaced: Option<Uuid>,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for IdempotencyKeyEvent {
    fn event_type(&self) -> String {
        match self {
            Self::IdempotencyKeyClaimed { .. } => "IdempotencyKeyClaimed",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1.0".to_string()
    }
}

/// Why a claim was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdempotencyKeyError {
    #[error("the idempotency key is empty")]
    EmptyKey,
    #[error("the idempotency key is longer than {max} characters")]
    KeyTooLong { max: usize },
    #[error("the idempotency key is held by delegation {delegation_id}")]
    Held { delegation_id: Uuid },
}

/// The state of one key: which delegation holds it, if any.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyKey {
    workspace_id: Option<Uuid>,
    key: String,
    holder: Option<Uuid>,
    claimed_at: Option<DateTime<Utc>>,
    /// How many times the key was claimed: 1 after the first claim, +1 per
    /// take-over. Callers derive each generation's delegation id from it, so
    /// concurrent requests with one key agree on the id they create.
    generation: u32,
}

impl IdempotencyKey {
    /// The delegation holding the key; `None` if it was never claimed.
    pub fn holder(&self) -> Option<Uuid> {
        self.holder
    }

    /// How many claims the key has had (0: never claimed).
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The time of the latest claim.
    pub fn claimed_at(&self) -> Option<DateTime<Utc>> {
        self.claimed_at
    }

    /// The events `command` causes, or why it is rejected. An empty list
    /// means the delegation already holds the key.
    fn decide(
        &self,
        command: IdempotencyKeyCommand,
    ) -> Result<Vec<IdempotencyKeyEvent>, IdempotencyKeyError> {
        let IdempotencyKeyCommand::Claim {
            workspace_id,
            key,
            delegation_id,
            free_holder,
            at,
        } = command;
        if key.is_empty() {
            return Err(IdempotencyKeyError::EmptyKey);
        }
        if key.chars().count() > MAX_KEY_CHARS {
            return Err(IdempotencyKeyError::KeyTooLong { max: MAX_KEY_CHARS });
        }
        let replaced = match self.holder {
            None => None,
            Some(holder) if holder == delegation_id => return Ok(Vec::new()),
            Some(holder) if free_holder == Some(holder) => Some(holder),
            Some(holder) => {
                return Err(IdempotencyKeyError::Held {
                    delegation_id: holder,
                })
            }
        };
        Ok(vec![IdempotencyKeyEvent::IdempotencyKeyClaimed {
            workspace_id,
            key,
            delegation_id,
            replaced,
            at,
        }])
    }
}

impl Aggregate for IdempotencyKey {
    const TYPE: &'static str = "idempotency_key";
    type Command = IdempotencyKeyCommand;
    type Event = IdempotencyKeyEvent;
    type Error = IdempotencyKeyError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            IdempotencyKeyEvent::IdempotencyKeyClaimed {
                workspace_id,
                key,
                delegation_id,
                at,
                ..
            } => {
                self.workspace_id = Some(workspace_id);
                self.key = key;
                self.holder = Some(delegation_id);
                self.claimed_at = Some(at);
                self.generation += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Given/when/then tests of the key; every time is a fixed instant.

    use chrono::{DateTime, Duration, Utc};
    use cqrs_es::test::TestFramework;
    use cqrs_es::{Aggregate, DomainEvent};
    use uuid::Uuid;

    use super::*;

    type KeyTest = TestFramework<IdempotencyKey>;

    const WORKSPACE: Uuid = Uuid::from_u128(0x51);
    const FIRST: Uuid = Uuid::from_u128(0xd1);
    const SECOND: Uuid = Uuid::from_u128(0xd2);
    const THIRD: Uuid = Uuid::from_u128(0xd3);

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-01-01T12:00:00Z")
            .expect("valid time")
            .with_timezone(&Utc)
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        t0() + Duration::seconds(seconds)
    }

    fn claim(
        key: &str,
        delegation_id: Uuid,
        free_holder: Option<Uuid>,
        seconds: i64,
    ) -> IdempotencyKeyCommand {
        IdempotencyKeyCommand::Claim {
            workspace_id: WORKSPACE,
            key: key.to_string(),
            delegation_id,
            free_holder,
            at: at(seconds),
        }
    }

    fn claimed(
        key: &str,
        delegation_id: Uuid,
        replaced: Option<Uuid>,
        seconds: i64,
    ) -> IdempotencyKeyEvent {
        IdempotencyKeyEvent::IdempotencyKeyClaimed {
            workspace_id: WORKSPACE,
            key: key.to_string(),
            delegation_id,
            replaced,
            at: at(seconds),
        }
    }

    #[test]
    fn the_aggregate_id_is_the_workspace_then_the_key() {
        assert_eq!(
            aggregate_id(WORKSPACE, "order-42"),
            "00000000-0000-0000-0000-000000000051/order-42"
        );
    }

    #[test]
    fn claiming_a_free_key_makes_the_delegation_its_holder() {
        KeyTest::with(())
            .given_no_previous_events()
            .when(claim("order-42", FIRST, None, 0))
            .then_expect_events(vec![claimed("order-42", FIRST, None, 0)]);
    }

    #[test]
    fn an_empty_key_is_rejected() {
        KeyTest::with(())
            .given_no_previous_events()
            .when(claim("", FIRST, None, 0))
            .then_expect_error(IdempotencyKeyError::EmptyKey);
    }

    #[test]
    fn a_key_over_255_characters_is_rejected() {
        KeyTest::with(())
            .given_no_previous_events()
            .when(claim(&"k".repeat(MAX_KEY_CHARS + 1), FIRST, None, 0))
            .then_expect_error(IdempotencyKeyError::KeyTooLong { max: MAX_KEY_CHARS });
    }

    #[test]
    fn the_key_limit_counts_characters_not_bytes() {
        // 255 characters, 510 bytes.
        let key = "é".repeat(MAX_KEY_CHARS);
        KeyTest::with(())
            .given_no_previous_events()
            .when(claim(&key, FIRST, None, 0))
            .then_expect_events(vec![claimed(&key, FIRST, None, 0)]);
    }

    #[test]
    fn claiming_again_for_the_holder_is_a_no_op() {
        for free_holder in [None, Some(FIRST)] {
            KeyTest::with(())
                .given(vec![claimed("order-42", FIRST, None, 0)])
                .when(claim("order-42", FIRST, free_holder, 5))
                .then_expect_events(vec![]);
        }
    }

    #[test]
    fn a_key_held_by_a_live_delegation_is_rejected() {
        KeyTest::with(())
            .given(vec![claimed("order-42", FIRST, None, 0)])
            .when(claim("order-42", SECOND, None, 5))
            .then_expect_error(IdempotencyKeyError::Held {
                delegation_id: FIRST,
            });
    }

    #[test]
    fn a_key_whose_holder_is_free_is_taken_over() {
        KeyTest::with(())
            .given(vec![claimed("order-42", FIRST, None, 0)])
            .when(claim("order-42", SECOND, Some(FIRST), 5))
            .then_expect_events(vec![claimed("order-42", SECOND, Some(FIRST), 5)]);
    }

    #[test]
    fn a_free_verdict_about_another_holder_does_not_take_the_key() {
        // The caller checked FIRST, but SECOND won the race meanwhile.
        KeyTest::with(())
            .given(vec![
                claimed("order-42", FIRST, None, 0),
                claimed("order-42", SECOND, Some(FIRST), 5),
            ])
            .when(claim("order-42", THIRD, Some(FIRST), 9))
            .then_expect_error(IdempotencyKeyError::Held {
                delegation_id: SECOND,
            });
    }

    #[test]
    fn after_a_take_over_the_new_holder_holds_the_key() {
        let mut key = IdempotencyKey::default();
        assert_eq!(key.holder(), None);
        key.apply(claimed("order-42", FIRST, None, 0));
        assert_eq!(key.holder(), Some(FIRST));
        assert_eq!(key.generation(), 1);
        key.apply(claimed("order-42", SECOND, Some(FIRST), 5));
        assert_eq!(key.holder(), Some(SECOND));
        assert_eq!(key.generation(), 2);
        assert_eq!(key.claimed_at(), Some(at(5)));
        KeyTest::with(())
            .given(vec![
                claimed("order-42", FIRST, None, 0),
                claimed("order-42", SECOND, Some(FIRST), 5),
            ])
            .when(claim("order-42", FIRST, None, 9))
            .then_expect_error(IdempotencyKeyError::Held {
                delegation_id: SECOND,
            });
    }

    #[test]
    fn the_event_survives_a_json_round_trip() {
        for event in [
            claimed("order-42", FIRST, None, 0),
            claimed("order-42", SECOND, Some(FIRST), 5),
        ] {
            let json = serde_json::to_value(&event).expect("serialize");
            assert!(json.get("IdempotencyKeyClaimed").is_some(), "{json}");
            let back: IdempotencyKeyEvent = serde_json::from_value(json).expect("deserialize");
            assert_eq!(back, event);
            assert_eq!(event.event_type(), "IdempotencyKeyClaimed");
            assert_eq!(event.event_version(), "1.0");
        }
    }

    #[test]
    fn errors_read_as_sentences() {
        assert_eq!(
            IdempotencyKeyError::Held {
                delegation_id: FIRST
            }
            .to_string(),
            "the idempotency key is held by delegation 00000000-0000-0000-0000-0000000000d1"
        );
    }
}
