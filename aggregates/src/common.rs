//! Values shared by every aggregate.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Who issued a command. Recorded on every event so auditors can answer
/// "who did this".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Actor {
    /// A workspace acting with its own token.
    Workspace(Uuid),
    /// The operator, acting with the admin token.
    Admin,
    /// The ledger itself (dispatcher, queue drain, process managers); the
    /// string names the component.
    System(String),
}

/// The first `max_chars` characters of `text` (never splits a character).
pub fn preview(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((byte_index, _)) => text[..byte_index].to_string(),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preview_keeps_short_text_whole() {
        assert_eq!(preview("abc", 10), "abc");
    }

    #[test]
    fn preview_cuts_on_character_boundaries() {
        assert_eq!(preview("héllo wörld", 7), "héllo w");
    }
}
