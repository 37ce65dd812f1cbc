//! The server's TCP port: a free one on 127.0.0.1, new at every start.
//!
//! Why its own file: a fixed port would collide with the machine's own
//! PostgreSQL, another service or a parallel test process. The port is found
//! by binding port 0 and is released before postgres binds it, so another
//! process may take it in between; the start then recognizes that in the
//! server log and tries again with another port.

use std::net::{Ipv4Addr, TcpListener};

use anyhow::{Context, Result};

/// How many free ports to try if another process grabs the one we picked before postgres binds it.
pub(super) const PORT_ATTEMPTS: usize = 3;

/// A port on 127.0.0.1 that nobody listened on a moment ago.
pub(super) fn pick_free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("failed to find a free TCP port on 127.0.0.1")?;
    Ok(listener
        .local_addr()
        .context("failed to read the bound port")?
        .port())
}

/// Whether the server log of a failed start says the port was taken.
pub(super) fn is_port_conflict(log: &str) -> bool {
    log.contains("Address already in use") || log.contains("could not bind")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_picked_port_can_be_bound() -> Result<()> {
        let port = pick_free_port()?;
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
        Ok(())
    }

    #[test]
    fn a_taken_port_is_told_from_other_failures() {
        assert!(is_port_conflict(
            "LOG:  could not bind IPv4 address \"127.0.0.1\": Address already in use"
        ));
        assert!(!is_port_conflict(
            "FATAL:  data directory has wrong ownership"
        ));
    }
}
