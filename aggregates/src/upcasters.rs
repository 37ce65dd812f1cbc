//! Event schema evolution: turn payloads stored by older code into the
//! current shape before anything decodes them.
//!
//! Events are immutable — the hash chain covers the exact stored bytes — so
//! an event whose shape changed is never rewritten in the table. Instead,
//! every reader upcasts it on the way in. There are two kinds of reader and
//! both must see the same thing, or an audit could disagree with the write
//! path about an aggregate's state:
//!
//! * the write path (`PersistedEventStore::with_upcasters(upcasters())`),
//!   which folds the aggregate before deciding a command;
//! * the log readers (projections, audit), which decode positioned entries
//!   through [`upcast`].
//!
//! Both take their list from [`upcasters`], in the order they must apply.
//!
//! # Versions
//!
//! | event                 | version | shape                                   |
//! |-----------------------|---------|-----------------------------------------|
//! | `DelegationSent`      | `0.9`   | no `task_preview`                       |
//! | `DelegationSent`      | `1.0`   | `task_preview` = first 100 chars of `task` |
//! | `DelegationCompleted` | `0.9`   | no `response_preview`                   |
//! | `DelegationCompleted` | `1.0`   | `response_preview` = first 300 chars of `result` |
//! | `QueueItemCompleted`  | `1.0`   | the outcome as the views' JSON: `response_body` = `{"text": …}`, `{"error": …}` or `null` |
//! | `QueueItemCompleted`  | `1.1`   | `outcome` typed ([`Outcome`]), the JSON derived from it ([`response_body`](crate::queue_item::response_body)) |
//!
//! An upcaster derives the missing field exactly as the aggregate does when
//! it emits the newer event, so an upcast event is indistinguishable from
//! the one the current code would have written. The one thing no upcaster
//! can restore is what was never stored: the 1.0 code wrote a `null`
//! `response_body` only for a task the agent cancelled, without its reason,
//! so that becomes [`Outcome::Canceled`] with [`UNRECORDED_CANCEL_REASON`].
//!
//! An upcaster never panics on odd input: a payload that is not the shape it
//! expects is passed on unchanged, and decoding then reports it as the
//! payload error it is.

use std::sync::LazyLock;

use cqrs_es::persist::{EventUpcaster, SemanticVersionEventUpcaster, SerializedEvent};
use serde_json::Value;

use crate::delegation::{Outcome, RESPONSE_PREVIEW_CHARS, TASK_PREVIEW_CHARS};
use crate::preview;

/// The version every event type is written at today, but those whose shape
/// changed since (below).
pub const CURRENT_VERSION: &str = "1.0";

/// The version `QueueItemCompleted` is written at today: its outcome typed.
pub const QUEUE_ITEM_COMPLETED_VERSION: &str = "1.1";

/// The reason of a cancelled outcome upcast from a 1.0
/// `QueueItemCompleted`, which did not store it.
pub const UNRECORDED_CANCEL_REASON: &str = "the agent canceled its task";

/// Every upcaster, in the order they apply (oldest target version first).
/// A fresh list per call: `PersistedEventStore::with_upcasters` takes
/// ownership of one.
pub fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
    vec![
        Box::new(SemanticVersionEventUpcaster::new(
            "DelegationSent",
            CURRENT_VERSION,
            Box::new(|payload| {
                derive_preview(
                    payload,
                    "DelegationSent",
                    "task",
                    "task_preview",
                    TASK_PREVIEW_CHARS,
                )
            }),
        )),
        Box::new(SemanticVersionEventUpcaster::new(
            "DelegationCompleted",
            CURRENT_VERSION,
            Box::new(|payload| {
                derive_preview(
                    payload,
                    "DelegationCompleted",
                    "result",
                    "response_preview",
                    RESPONSE_PREVIEW_CHARS,
                )
            }),
        )),
        Box::new(SemanticVersionEventUpcaster::new(
            "QueueItemCompleted",
            QUEUE_ITEM_COMPLETED_VERSION,
            Box::new(typed_queued_outcome),
        )),
    ]
}

static UPCASTERS: LazyLock<Vec<Box<dyn EventUpcaster>>> = LazyLock::new(upcasters);

/// Apply every upcaster that accepts `event`, in order — exactly what
/// cqrs-es's `PersistedEventStore` does with the same list on load.
pub fn upcast(event: SerializedEvent) -> SerializedEvent {
    UPCASTERS.iter().fold(event, |event, upcaster| {
        if upcaster.can_upcast(&event.event_type, &event.event_version) {
            upcaster.upcast(event)
        } else {
            event
        }
    })
}

/// Whether any upcaster would change an event of this type and version
/// (lets readers skip building a [`SerializedEvent`] for current events).
pub fn needs_upcast(event_type: &str, event_version: &str) -> bool {
    UPCASTERS
        .iter()
        .any(|upcaster| upcaster.can_upcast(event_type, event_version))
}

/// `{variant: {source: "...", ...}}` → the same with `target` = preview of
/// `source`, unless `target` is already there. Payloads are externally
/// tagged enums (serde's default), hence the `variant` level.
fn derive_preview(
    mut payload: Value,
    variant: &str,
    source: &str,
    target: &str,
    max_chars: usize,
) -> Value {
    if let Some(Value::Object(fields)) = payload.get_mut(variant) {
        if !fields.contains_key(target) {
            if let Some(Value::String(text)) = fields.get(source) {
                let derived = preview(text, max_chars);
                fields.insert(target.to_string(), Value::String(derived));
            }
        }
    }
    payload
}

/// `{"QueueItemCompleted": {"response_body": <JSON>, ...}}` → the same with
/// `"outcome": <typed>` instead, unless `outcome` is already there.
fn typed_queued_outcome(mut payload: Value) -> Value {
    if let Some(Value::Object(fields)) = payload.get_mut("QueueItemCompleted") {
        if !fields.contains_key("outcome") {
            let body = fields.get("response_body").unwrap_or(&Value::Null);
            if let Some(outcome) = outcome_of_response_body(body) {
                if let Ok(outcome) = serde_json::to_value(outcome) {
                    fields.remove("response_body");
                    fields.insert("outcome".to_string(), outcome);
                }
            }
        }
    }
    payload
}

/// The outcome a 1.0 `response_body` stood for — read as the 1.0
/// dispatcher read it back (an `error` wins over a `text`); `None` for JSON
/// the 1.0 code never wrote.
fn outcome_of_response_body(body: &Value) -> Option<Outcome> {
    let field = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_string);
    match (field("error"), field("text")) {
        (Some(error), _) => Some(Outcome::Failed { error }),
        (None, Some(result)) => Some(Outcome::Completed { result }),
        (None, None) if body.is_null() => Some(Outcome::Canceled {
            reason: UNRECORDED_CANCEL_REASON.to_string(),
        }),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delegation::{DelegationEvent, Origin};
    use crate::queue_item::{response_body, QueueItemEvent};
    use crate::Actor;
    use chrono::{DateTime, Utc};
    use serde_json::json;
    use uuid::Uuid;

    const DELEGATION: Uuid = Uuid::from_u128(0xd1);
    const SOURCE: Uuid = Uuid::from_u128(0x5a);
    const TARGET: Uuid = Uuid::from_u128(0x7b);
    const QUEUE: Uuid = Uuid::from_u128(0x99);

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn serialized(event_type: &str, event_version: &str, payload: Value) -> SerializedEvent {
        SerializedEvent::new(
            DELEGATION.to_string(),
            1,
            "delegation".to_string(),
            event_type.to_string(),
            event_version.to_string(),
            payload,
            json!({}),
        )
    }

    /// A `DelegationSent` as the 0.9 code wrote it: no `task_preview`.
    fn sent_v0_9(task: &str) -> Value {
        json!({ "DelegationSent": {
            "delegation_id": DELEGATION,
            "source_id": SOURCE,
            "target_id": TARGET,
            "task": task,
            "origin": "recorded",
            "idempotency_key": null,
            "actor": { "kind": "workspace", "id": SOURCE },
            "at": "2024-05-01T12:00:00Z",
        }})
    }

    /// A `DelegationCompleted` as the 0.9 code wrote it: no `response_preview`.
    fn completed_v0_9(result: &str) -> Value {
        json!({ "DelegationCompleted": {
            "delegation_id": DELEGATION,
            "source_id": SOURCE,
            "target_id": TARGET,
            "result": result,
            "actor": { "kind": "workspace", "id": TARGET },
            "at": "2024-05-01T12:00:00Z",
        }})
    }

    #[test]
    fn a_v0_9_delegation_sent_does_not_decode_without_the_upcaster() {
        let error = serde_json::from_value::<DelegationEvent>(sent_v0_9("t")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "missing field `task_preview`",
            "the old shape really is incompatible"
        );
    }

    #[test]
    fn a_v0_9_delegation_sent_is_upcast_to_1_0_with_the_task_preview_derived_from_the_task() {
        let task = "x".repeat(150);
        let upcast = upcast(serialized("DelegationSent", "0.9", sent_v0_9(&task)));

        assert_eq!(upcast.event_version, "1.0.0");
        let event: DelegationEvent = serde_json::from_value(upcast.payload).unwrap();
        assert_eq!(
            event,
            DelegationEvent::DelegationSent {
                delegation_id: DELEGATION,
                source_id: SOURCE,
                target_id: TARGET,
                task: task.clone(),
                task_preview: "x".repeat(100),
                origin: Origin::Recorded,
                idempotency_key: None,
                queue: Default::default(),
                deadline: None,
                actor: Actor::Workspace(SOURCE),
                at: at(),
            }
        );
    }

    #[test]
    fn a_v0_9_delegation_completed_is_upcast_with_the_response_preview_derived_from_the_result() {
        let result = "é".repeat(301);
        let upcast = upcast(serialized(
            "DelegationCompleted",
            "0.9",
            completed_v0_9(&result),
        ));

        let event: DelegationEvent = serde_json::from_value(upcast.payload).unwrap();
        assert_eq!(
            event,
            DelegationEvent::DelegationCompleted {
                delegation_id: DELEGATION,
                source_id: SOURCE,
                target_id: TARGET,
                result: result.clone(),
                response_preview: "é".repeat(300),
                actor: Actor::Workspace(TARGET),
                at: at(),
            }
        );
    }

    #[test]
    fn a_current_event_passes_through_unchanged() {
        let mut payload = sent_v0_9("the task");
        payload["DelegationSent"]["task_preview"] = json!("kept as written");
        let event = serialized("DelegationSent", CURRENT_VERSION, payload.clone());

        assert!(!needs_upcast("DelegationSent", CURRENT_VERSION));
        assert_eq!(upcast(event.clone()), event);
    }

    #[test]
    fn an_old_event_that_already_has_the_field_keeps_its_value() {
        let mut payload = sent_v0_9("the task");
        payload["DelegationSent"]["task_preview"] = json!("written by hand");

        let upcast = upcast(serialized("DelegationSent", "0.9", payload));

        assert_eq!(
            upcast.payload["DelegationSent"]["task_preview"],
            json!("written by hand")
        );
    }

    #[test]
    fn other_event_types_and_unparseable_versions_are_not_upcast() {
        assert!(needs_upcast("DelegationSent", "0.9"));
        assert!(needs_upcast("DelegationCompleted", "0.9.3"));
        assert!(!needs_upcast("DelegationFailed", "0.9"));
        assert!(!needs_upcast("DelegationSent", "v0.9"));
        assert!(!needs_upcast("DelegationSent", ""));
    }

    #[test]
    fn a_payload_of_an_unexpected_shape_is_passed_on_unchanged() {
        for payload in [
            Value::Null,
            json!("text"),
            json!({ "DelegationSent": [1, 2] }),
            json!({ "DelegationSent": { "task": 7 } }),
            json!({ "SomethingElse": { "task": "t" } }),
        ] {
            let upcast = upcast(serialized("DelegationSent", "0.9", payload.clone()));
            assert_eq!(upcast.payload, payload);
            assert_eq!(upcast.event_version, "1.0.0");
        }
    }

    /// A `QueueItemCompleted` as the 1.0 code wrote it: the outcome as the
    /// JSON the views show.
    fn queue_item_completed_v1_0(response_body: Value) -> Value {
        json!({ "QueueItemCompleted": {
            "queue_id": QUEUE,
            "target_id": TARGET,
            "caller_id": SOURCE,
            "delegation_id": DELEGATION,
            "response_body": response_body,
            "at": "2024-05-01T12:00:00Z",
        }})
    }

    fn queue_item_completed(outcome: Outcome) -> QueueItemEvent {
        QueueItemEvent::QueueItemCompleted {
            queue_id: QUEUE,
            target_id: TARGET,
            caller_id: SOURCE,
            delegation_id: Some(DELEGATION),
            outcome,
            at: at(),
        }
    }

    /// The three `response_body`s the 1.0 dispatcher wrote, and the outcome
    /// each stood for.
    fn old_bodies() -> [(Value, Outcome); 3] {
        [
            (
                json!({ "text": "the answer is 42" }),
                Outcome::Completed {
                    result: "the answer is 42".into(),
                },
            ),
            (
                json!({ "error": "the agent's task t-1 ended failed: no" }),
                Outcome::Failed {
                    error: "the agent's task t-1 ended failed: no".into(),
                },
            ),
            (
                Value::Null,
                Outcome::Canceled {
                    reason: UNRECORDED_CANCEL_REASON.into(),
                },
            ),
        ]
    }

    #[test]
    fn a_v1_0_queue_item_completed_does_not_decode_without_the_upcaster() {
        let old = queue_item_completed_v1_0(json!({ "text": "t" }));
        let error = serde_json::from_value::<QueueItemEvent>(old).unwrap_err();
        assert_eq!(error.to_string(), "missing field `outcome`");
    }

    #[test]
    fn a_v1_0_queue_item_completed_is_upcast_to_1_1_with_its_outcome_typed() {
        assert!(needs_upcast("QueueItemCompleted", "1.0"));
        assert!(!needs_upcast(
            "QueueItemCompleted",
            QUEUE_ITEM_COMPLETED_VERSION
        ));
        for (body, outcome) in old_bodies() {
            let upcast = upcast(serialized(
                "QueueItemCompleted",
                "1.0",
                queue_item_completed_v1_0(body.clone()),
            ));

            assert_eq!(upcast.event_version, "1.1.0");
            let event: QueueItemEvent = serde_json::from_value(upcast.payload).unwrap();
            assert_eq!(event, queue_item_completed(outcome), "from {body}");
        }
    }

    #[test]
    fn an_upcast_outcome_shows_as_the_json_that_was_stored() {
        for (body, outcome) in old_bodies() {
            assert_eq!(outcome_of_response_body(&body).as_ref(), Some(&outcome));
            assert_eq!(response_body(&outcome), Some(body).filter(|b| !b.is_null()));
        }
    }

    #[test]
    fn a_v1_0_body_is_read_back_as_the_1_0_dispatcher_read_it() {
        assert_eq!(
            outcome_of_response_body(&json!({ "text": "t", "error": "e" })),
            Some(Outcome::Failed { error: "e".into() }),
            "an error wins"
        );
        let mut missing = queue_item_completed_v1_0(Value::Null);
        missing["QueueItemCompleted"]
            .as_object_mut()
            .unwrap()
            .remove("response_body");
        let upcast = upcast(serialized("QueueItemCompleted", "1.0", missing));
        let event: QueueItemEvent = serde_json::from_value(upcast.payload).unwrap();
        assert_eq!(
            event,
            queue_item_completed(Outcome::Canceled {
                reason: UNRECORDED_CANCEL_REASON.into()
            }),
            "an absent body is a null one"
        );
    }

    #[test]
    fn a_current_queue_item_completed_passes_through_unchanged() {
        let payload = serde_json::to_value(queue_item_completed(Outcome::Canceled {
            reason: "kept".into(),
        }))
        .unwrap();
        let event = serialized(
            "QueueItemCompleted",
            QUEUE_ITEM_COMPLETED_VERSION,
            payload.clone(),
        );
        assert_eq!(upcast(event.clone()), event);

        // An old version that somehow has the field keeps it.
        let upcast = upcast(serialized("QueueItemCompleted", "1.0", payload.clone()));
        assert_eq!(upcast.payload, payload);
    }

    #[test]
    fn a_v1_0_body_the_old_code_never_wrote_is_passed_on_unchanged() {
        for body in [json!({}), json!({ "text": 7 }), json!("text"), json!([1])] {
            let old = queue_item_completed_v1_0(body);
            let upcast = upcast(serialized("QueueItemCompleted", "1.0", old.clone()));
            assert_eq!(upcast.payload, old);
            assert!(serde_json::from_value::<QueueItemEvent>(upcast.payload).is_err());
        }
    }
}
