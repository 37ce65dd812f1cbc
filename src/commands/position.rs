//! The log position a request's commands reached, for its response.
//!
//! A request may run several commands (an idempotency key, then the
//! delegation; a heartbeat that drains a queue). Its response carries one
//! consistency token: the highest position any of them reached. Threading
//! that value back through every handler would make each one remember to
//! do it; instead the HTTP layer runs a request inside [`track`], and the
//! command bus [`note`]s each position it waited for. Outside a tracked
//! request (the dispatcher, the CLI), `note` does nothing.

use std::cell::Cell;
use std::future::Future;

tokio::task_local! {
    static REACHED: Cell<Option<i64>>;
}

/// Run `work`, answering with its output and the highest position a
/// command inside it reached (`None`: no command reached one).
pub async fn track<F: Future>(work: F) -> (F::Output, Option<i64>) {
    REACHED
        .scope(Cell::new(None), async move {
            let output = work.await;
            (output, REACHED.with(Cell::get))
        })
        .await
}

/// Record that a command of the current request reached `position`.
pub fn note(position: i64) {
    let _ = REACHED.try_with(|reached| {
        if reached.get().is_none_or(|known| known < position) {
            reached.set(Some(position));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tracked_request_answers_the_highest_position_noted() {
        let ((), reached) = track(async {
            note(7);
            note(3);
            note(9);
        })
        .await;
        assert_eq!(reached, Some(9));
    }

    #[tokio::test]
    async fn a_request_without_commands_reached_no_position() {
        let ((), reached) = track(async {}).await;
        assert_eq!(reached, None);
    }

    #[tokio::test]
    async fn noting_outside_a_tracked_request_is_harmless() {
        note(5);
        let ((), reached) = track(async {}).await;
        assert_eq!(reached, None);
    }
}
