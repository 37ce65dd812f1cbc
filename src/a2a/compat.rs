//! Payload compatibility at the edge: v0.2-style `content` → v0.3 `parts`.
//!
//! Why: senders built on A2A v0.2 put a message's text in `content` (a
//! string, or a list) where v0.3 and later expect `parts`. An older
//! platform learned this the hard way: a receiving SDK's validator
//! rejected such messages after the sender had already been told
//! "accepted", so briefs vanished silently. Converting at the edge gives
//! every receiver the compat for free, and rejecting a message that has
//! neither field *loudly* (a 400 for the caller that sent it) removes the
//! silent-drop class entirely.
//!
//! Rules (pure, no IO):
//! * `parts` already a non-empty list → kept as is (the hot path); a stray
//!   `content` next to it is dropped.
//! * `content` a non-empty string → one text part.
//! * `content` a list → one part per item: a string becomes a text part,
//!   an object is taken as a part (a v0.2 `type` tag becomes `kind`, an
//!   untagged object with a string `text` is tagged as text). Any other
//!   item is an error naming its position.
//! * `content` of any other type (number, boolean, object, null) → error.
//! * neither → error.
//!
//! The message id is not invented here: the edge that calls this decides
//! (a random id would make the function impure and resends unrecognisable).

use serde_json::{json, Map, Value};

use super::wire::type_name;

/// Why a message could not be normalised to parts; the `Display` text is
/// meant for the 400 answer to the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    #[error("the message must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    #[error("the message has neither `parts` (A2A v0.3+) nor `content` (A2A v0.2)")]
    NoContent,
    #[error("the message's `parts` must be a list, got {0}")]
    PartsNotAList(&'static str),
    #[error("the message's `content` must be a string or a list, got {0}")]
    ContentWrongType(&'static str),
    #[error("the message's `content` is empty")]
    ContentEmpty,
    #[error("item {index} of the message's `content` must be a string or an object, got {kind}")]
    ContentItemWrongType { index: usize, kind: &'static str },
}

/// Returns `message` with its content as a v0.3 `parts` list and without a
/// `content` field; every other field is kept.
pub fn normalize_content(message: &Value) -> Result<Value, NormalizeError> {
    let Value::Object(fields) = message else {
        return Err(NormalizeError::NotAnObject(type_name(message)));
    };
    let mut out: Map<String, Value> = fields.clone();
    let content = out.remove("content");

    match out.get("parts") {
        Some(Value::Array(parts)) if !parts.is_empty() => return Ok(Value::Object(out)),
        // An empty list falls through to `content`, like an absent one.
        Some(Value::Array(_)) | None | Some(Value::Null) => {}
        Some(other) => return Err(NormalizeError::PartsNotAList(type_name(other))),
    }

    let parts = match content {
        None | Some(Value::Null) => return Err(NormalizeError::NoContent),
        Some(Value::String(text)) => {
            if text.is_empty() {
                return Err(NormalizeError::ContentEmpty);
            }
            vec![text_part(text)]
        }
        Some(Value::Array(items)) => {
            if items.is_empty() {
                return Err(NormalizeError::ContentEmpty);
            }
            items
                .into_iter()
                .enumerate()
                .map(|(index, item)| content_item_to_part(index, item))
                .collect::<Result<Vec<_>, _>>()?
        }
        Some(other) => return Err(NormalizeError::ContentWrongType(type_name(&other))),
    };
    out.insert("parts".to_string(), Value::Array(parts));
    Ok(Value::Object(out))
}

fn text_part(text: String) -> Value {
    json!({ "kind": "text", "text": text })
}

fn content_item_to_part(index: usize, item: Value) -> Result<Value, NormalizeError> {
    match item {
        Value::String(text) => Ok(text_part(text)),
        Value::Object(mut part) => {
            if !part.contains_key("kind") {
                if let Some(tag) = part.remove("type") {
                    part.insert("kind".to_string(), tag);
                } else if part.get("text").is_some_and(Value::is_string) {
                    part.insert("kind".to_string(), json!("text"));
                }
            }
            Ok(Value::Object(part))
        }
        other => Err(NormalizeError::ContentItemWrongType {
            index,
            kind: type_name(&other),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v0_2_string_content_becomes_one_text_part_and_content_is_removed() {
        let normalized = normalize_content(&json!({
            "messageId": "m1", "role": "user", "content": "hello there"
        }))
        .expect("normalized");
        assert_eq!(
            normalized,
            json!({
                "messageId": "m1", "role": "user",
                "parts": [{ "kind": "text", "text": "hello there" }]
            })
        );
    }

    #[test]
    fn v0_2_list_content_becomes_parts_one_per_item() {
        let normalized = normalize_content(&json!({
            "role": "user",
            "content": [
                "plain string",
                { "type": "text", "text": "typed" },
                { "text": "untagged" },
                { "kind": "file", "file": { "uri": "https://x/y.pdf" } }
            ]
        }))
        .expect("normalized");
        assert_eq!(
            normalized["parts"],
            json!([
                { "kind": "text", "text": "plain string" },
                { "kind": "text", "text": "typed" },
                { "kind": "text", "text": "untagged" },
                { "kind": "file", "file": { "uri": "https://x/y.pdf" } }
            ])
        );
        assert!(normalized.get("content").is_none());
    }

    #[test]
    fn v0_3_parts_are_kept_untouched() {
        let message = json!({
            "messageId": "m", "role": "user", "contextId": "c",
            "parts": [{ "kind": "text", "text": "a" }, { "kind": "text", "text": "b" }]
        });
        assert_eq!(normalize_content(&message), Ok(message.clone()));
    }

    #[test]
    fn stray_content_next_to_parts_is_dropped() {
        let normalized = normalize_content(&json!({
            "parts": [{ "kind": "text", "text": "real" }], "content": "stale"
        }))
        .expect("normalized");
        assert_eq!(
            normalized,
            json!({ "parts": [{ "kind": "text", "text": "real" }] })
        );
    }

    #[test]
    fn empty_parts_fall_back_to_content() {
        let normalized =
            normalize_content(&json!({ "parts": [], "content": "x" })).expect("normalized");
        assert_eq!(
            normalized["parts"],
            json!([{ "kind": "text", "text": "x" }])
        );
    }

    #[test]
    fn a_message_with_neither_parts_nor_content_is_rejected_with_a_clear_error() {
        for message in [
            json!({ "messageId": "m", "role": "user" }),
            json!({ "parts": [] }),
            json!({ "parts": null, "content": null }),
        ] {
            let err = normalize_content(&message).expect_err("rejected");
            assert_eq!(err, NormalizeError::NoContent);
            assert!(err.to_string().contains("neither `parts`"), "{err}");
        }
    }

    #[test]
    fn content_of_the_wrong_type_is_rejected_naming_the_type() {
        let cases = [
            (json!({ "content": 42 }), "a number"),
            (json!({ "content": true }), "a boolean"),
            (json!({ "content": { "text": "x" } }), "an object"),
        ];
        for (message, kind) in cases {
            let err = normalize_content(&message).expect_err("rejected");
            assert_eq!(err, NormalizeError::ContentWrongType(kind));
        }
    }

    #[test]
    fn a_content_list_item_of_the_wrong_type_is_rejected_naming_its_position() {
        let err = normalize_content(&json!({ "content": ["ok", 7] })).expect_err("rejected");
        assert_eq!(
            err,
            NormalizeError::ContentItemWrongType {
                index: 1,
                kind: "a number"
            }
        );
        assert_eq!(
            err.to_string(),
            "item 1 of the message's `content` must be a string or an object, got a number"
        );
    }

    #[test]
    fn empty_content_is_rejected() {
        assert_eq!(
            normalize_content(&json!({ "content": "" })),
            Err(NormalizeError::ContentEmpty)
        );
        assert_eq!(
            normalize_content(&json!({ "content": [] })),
            Err(NormalizeError::ContentEmpty)
        );
    }

    #[test]
    fn parts_that_are_not_a_list_and_messages_that_are_not_objects_are_rejected() {
        assert_eq!(
            normalize_content(&json!({ "parts": "hello" })),
            Err(NormalizeError::PartsNotAList("a string"))
        );
        assert_eq!(
            normalize_content(&json!("hello")),
            Err(NormalizeError::NotAnObject("a string"))
        );
    }
}
