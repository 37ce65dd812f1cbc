//! Secrets of one installation, shared by all its nodes through the
//! database.
//!
//! Made once, on the first start against a database (by whichever node
//! gets there first: `on conflict do nothing`, then everyone reads the
//! stored one), and never rotated: values derived from them (idempotency
//! key delegation ids) must stay the same across restarts and nodes.

use sqlx::PgPool;

/// The secret keying idempotency-key delegation ids.
pub const IDEMPOTENCY_KEYS: &str = "idempotency_keys";

/// Bytes of a generated secret.
const SECRET_BYTES: usize = 32;

/// The secret called `name`, created now if this installation has none.
pub async fn installation_secret(pool: &PgPool, name: &str) -> anyhow::Result<Vec<u8>> {
    let mut fresh = [0u8; SECRET_BYTES];
    getrandom::fill(&mut fresh).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    sqlx::query(
        "insert into installation_secrets (name, secret) values ($1, $2) on conflict (name) do nothing",
    )
    .bind(name)
    .bind(&fresh[..])
    .execute(pool)
    .await?;
    let stored: Vec<u8> =
        sqlx::query_scalar("select secret from installation_secrets where name = $1")
            .bind(name)
            .fetch_one(pool)
            .await?;
    Ok(stored)
}
