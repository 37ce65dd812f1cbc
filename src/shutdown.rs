//! Cooperative shutdown for background tasks.
//!
//! One [`ShutdownTrigger`] is held by whoever decides to stop (the signal
//! handler, a test); every background loop holds a cheap clone of
//! [`Shutdown`] and selects on [`Shutdown::wait`] at each await point where
//! it may stop cleanly (between batches, never inside a transaction).

use tokio::sync::watch;

/// Fires the shutdown of every [`Shutdown`] made from it.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// Listens for the shutdown.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl ShutdownTrigger {
    pub fn new() -> (Self, Shutdown) {
        let (sender, receiver) = watch::channel(false);
        (Self(sender), Shutdown(receiver))
    }

    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

impl Shutdown {
    pub fn is_shutdown(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown was triggered (at once if it already was, or
    /// if the trigger was dropped).
    pub async fn wait(&mut self) {
        // An Err means the trigger is gone: treat that as shutdown too.
        let _ = self.0.wait_for(|stopped| *stopped).await;
    }
}
