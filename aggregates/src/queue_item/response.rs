//! The JSON a completed queue item shows as its `response_body` — in the
//! `a2a_queue` view, the queue API and the item's audited state.
//!
//! The item's event carries its delegation's [`Outcome`] typed; this is the
//! one mapping from that outcome to the JSON readers have always seen
//! (before event version 1.1 the event stored exactly this JSON):
//! `{"text": result}` for a result, `{"error": reason}` for a failure, and
//! nothing for a task the agent cancelled.

use serde_json::{json, Value};

use crate::delegation::Outcome;

/// The `response_body` of a queue item completed with `outcome`.
pub fn response_body(outcome: &Outcome) -> Option<Value> {
    match outcome {
        Outcome::Completed { result } => Some(json!({ "text": result })),
        Outcome::Failed { error } => Some(json!({ "error": error })),
        Outcome::Canceled { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Literals of what the 1.0 code stored as `response_body` (its
    /// `queued_response`): the views must keep showing exactly these.
    #[test]
    fn an_outcome_shows_as_the_json_the_old_events_stored() {
        assert_eq!(
            response_body(&Outcome::Completed {
                result: "the answer is 42".into()
            }),
            Some(serde_json::from_str(r#"{"text":"the answer is 42"}"#).unwrap())
        );
        assert_eq!(
            response_body(&Outcome::Failed {
                error: "the agent's task t-1 ended failed".into()
            }),
            Some(serde_json::from_str(r#"{"error":"the agent's task t-1 ended failed"}"#).unwrap())
        );
        assert_eq!(
            response_body(&Outcome::Canceled {
                reason: "the agent canceled its task t-1".into()
            }),
            None
        );
    }
}
