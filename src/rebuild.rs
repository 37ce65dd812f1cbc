//! Rebuilding a projection's view from the log while the service runs.
//!
//! Truncating the view and replaying the log in one transaction would block
//! every reader of the view for the whole replay and hold a transaction id
//! the sequencer's horizon waits for — on a long log, minutes of a stalled
//! service. Instead the view is rebuilt *beside* the live one:
//!
//! 1. **Shadow.** For each table of the projection, an empty copy
//!    (`like … including all`: columns, defaults, constraints, indexes) in
//!    the schema `ledger_rebuild`.
//! 2. **Build.** The log is replayed into the copies in short transactions
//!    of one batch each, with `search_path` pointing at `ledger_rebuild`
//!    first, so the projection's own SQL (which names its tables without a
//!    schema) writes to the copies. Readers keep reading the live view; the
//!    live runner keeps applying new entries to it; nothing holds a
//!    transaction open for longer than a batch.
//! 3. **Swap.** One short transaction: lock the projection's checkpoint
//!    row (the live runners wait), apply the last few entries to the
//!    copies, move the live tables out (`ledger_retired`) and the copies in,
//!    give the copies' indexes the live indexes' names, set the checkpoint,
//!    drop the retired tables. Readers wait only for this transaction.
//!
//! The projection's SQL must therefore never qualify its tables with a
//! schema — the projections crate keeps to that.

use projections::Projection;
use sqlx::{Connection, PgConnection, PgPool, Postgres, Transaction};

use crate::projection_runner::{apply_batch, lock_checkpoint, save_checkpoint, RunnerError};

/// The schema the copies are built in.
const SHADOW: &str = "ledger_rebuild";
/// The schema the replaced tables pass through on their way out.
const RETIRED: &str = "ledger_retired";
/// Catch up outside the swap's lock until the copies trail the log by at
/// most this many entries.
const SWAP_GAP: i64 = 500;

/// Progress of a rebuild, for reporting: `position` of `head` applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildProgress {
    pub position: i64,
    pub head: i64,
}

/// Rebuild `projection` online; returns the checkpoint it ends at.
pub async fn rebuild(pool: &PgPool, projection: &dyn Projection) -> Result<i64, RunnerError> {
    rebuild_reporting(pool, projection, &mut |_| {}).await
}

/// [`rebuild`], calling `report` after every batch.
#[tracing::instrument(skip_all, fields(projection = projection.name()), err)]
pub async fn rebuild_reporting(
    pool: &PgPool,
    projection: &dyn Projection,
    report: &mut (dyn FnMut(RebuildProgress) + Send),
) -> Result<i64, RunnerError> {
    sqlx::query("insert into projection_checkpoints (name) values ($1) on conflict do nothing")
        .bind(projection.name())
        .execute(pool)
        .await?;
    let mut conn = pool.acquire().await?;
    // The schema the service's tables live in (the migrations create them
    // unqualified).
    let live: String = sqlx::query_scalar("select current_schema()")
        .fetch_one(&mut *conn)
        .await?;
    let live = quote_ident(&live);
    prepare_shadow(&mut conn, &live, projection.tables()).await?;

    // Build: one short transaction per batch.
    let mut position = 0;
    loop {
        let head = log_head(&mut conn).await?;
        if head - position <= SWAP_GAP {
            break;
        }
        let mut tx = shadow_transaction(&mut conn, &live).await?;
        let next = apply_batch(&mut tx, projection, position).await?;
        tx.commit().await?;
        if next == position {
            break;
        }
        position = next;
        report(RebuildProgress { position, head });
    }

    // Swap: short, under the checkpoint's lock.
    let mut tx = shadow_transaction(&mut conn, &live).await?;
    lock_checkpoint(&mut tx, projection.name()).await?;
    loop {
        let next = apply_batch(&mut tx, projection, position).await?;
        if next == position {
            break;
        }
        position = next;
    }
    sqlx::query(&format!("set local search_path = {live}"))
        .execute(&mut *tx)
        .await?;
    swap_tables(&mut tx, &live, projection.tables()).await?;
    save_checkpoint(&mut tx, projection.name(), position).await?;
    tx.commit().await?;
    let head = log_head(&mut conn).await?;
    report(RebuildProgress { position, head });
    Ok(position)
}

async fn log_head(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("select coalesce(max(position), 0) from ledger_log")
        .fetch_one(&mut *conn)
        .await
}

/// A transaction whose unqualified table names resolve to the copies.
async fn shadow_transaction<'c>(
    conn: &'c mut PgConnection,
    live: &str,
) -> Result<Transaction<'c, Postgres>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    // Derived data, rebuilt from the log after a crash: no flush wait.
    sqlx::query("set local synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("set local search_path = {SHADOW}, {live}"))
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Empty copies of `tables` in the shadow schema (an earlier, interrupted
/// rebuild's copies are dropped first).
async fn prepare_shadow(
    conn: &mut PgConnection,
    live: &str,
    tables: &[&str],
) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::query(&format!("create schema if not exists {SHADOW}"))
        .execute(&mut *tx)
        .await?;
    for table in tables {
        // Table names come from the projection's own static list.
        sqlx::query(&format!("drop table if exists {SHADOW}.{table}"))
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!(
            "create table {SHADOW}.{table} (like {live}.{table} including all)"
        ))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// Move the live tables out and the copies in, keeping index names.
async fn swap_tables(
    tx: &mut Transaction<'_, Postgres>,
    live: &str,
    tables: &[&str],
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("create schema if not exists {RETIRED}"))
        .execute(&mut **tx)
        .await?;
    for table in tables {
        // What each live index is, by its definition without its name.
        let live_indexes: Vec<(String, String)> = sqlx::query_as(INDEX_SIGNATURES)
            .bind(format!("{live}.{table}"))
            .fetch_all(&mut **tx)
            .await?;
        sqlx::query(&format!("drop table if exists {RETIRED}.{table}"))
            .execute(&mut **tx)
            .await?;
        sqlx::query(&format!("alter table {live}.{table} set schema {RETIRED}"))
            .execute(&mut **tx)
            .await?;
        sqlx::query(&format!("alter table {SHADOW}.{table} set schema {live}"))
            .execute(&mut **tx)
            .await?;
        let copied: Vec<(String, String)> = sqlx::query_as(INDEX_SIGNATURES)
            .bind(format!("{live}.{table}"))
            .fetch_all(&mut **tx)
            .await?;
        for (copy, signature) in copied {
            if let Some((name, _)) = live_indexes.iter().find(|(_, other)| *other == signature) {
                if *name != copy {
                    sqlx::query(&format!(
                        "alter index {live}.{} rename to {}",
                        quote_ident(&copy),
                        quote_ident(name)
                    ))
                    .execute(&mut **tx)
                    .await?;
                }
            }
        }
        sqlx::query(&format!("drop table {RETIRED}.{table}"))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The indexes of table `$1`: (name, definition without name and table).
const INDEX_SIGNATURES: &str = "select c.relname::text, \
     regexp_replace(pg_get_indexdef(i.indexrelid), '^CREATE (UNIQUE )?INDEX \\S+ ON \\S+ ', 'CREATE \\1INDEX ON ') \
     from pg_index i join pg_class c on c.oid = i.indexrelid \
     where i.indrelid = $1::regclass order by c.relname";

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
