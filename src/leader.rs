//! Single-leader election for background roles (the sequencer, the
//! dispatcher): a PostgreSQL session-level advisory lock held on a
//! dedicated connection. The leader owns that connection for as long as it
//! leads; when the process dies or the connection drops, PostgreSQL
//! releases the lock and another process's next campaign wins it.

use sqlx::{Connection, PgConnection, PgPool};

/// A dedicated connection holding the advisory lock `key`, or `None` when
/// another process holds it. Close the connection to step down.
pub async fn campaign(pool: &PgPool, key: i64) -> Result<Option<PgConnection>, sqlx::Error> {
    // Detached: a connection holding a session lock must never go back to
    // the pool, where another task could inherit the lock.
    let mut conn = pool.acquire().await?.detach();
    let elected: bool = sqlx::query_scalar("select pg_try_advisory_lock($1)")
        .bind(key)
        .fetch_one(&mut conn)
        .await?;
    if elected {
        Ok(Some(conn))
    } else {
        let _ = conn.close().await;
        Ok(None)
    }
}
