//! The whole selection of `/audit/events` as ndjson, in bounded memory.

use std::io;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use sqlx::postgres::PgRow;
use sqlx::PgPool;

use super::events::Selection;
use super::{audit_event, NDJSON};

/// The ndjson stream sends lines in chunks of about this many bytes.
const NDJSON_CHUNK_BYTES: usize = 64 * 1024;
/// Chunks buffered between the database reader and a slow client. With
/// the chunk size this bounds a stream's memory (≈ 4 × 64 KiB), whatever
/// the size of the selection.
const NDJSON_BUFFERED_CHUNKS: usize = 4;
/// Entries read per query of an ndjson export.
const NDJSON_PAGE: i64 = 1000;

/// The whole selection as ndjson. A task reads the selection page by page
/// (keyset on position, so every statement is short whatever the size of
/// the log) and hands chunks to the response body through a bounded
/// channel: a slow client slows the reader down, nothing piles up in this
/// process.
///
/// An error after the first byte cannot become a status code any more: the
/// body is cut off instead, so the client sees an incomplete response
/// rather than a short one that looks whole.
pub(super) fn stream_ndjson(pool: PgPool, selection: Selection) -> Response {
    let (sender, receiver) =
        tokio::sync::mpsc::channel::<io::Result<Bytes>>(NDJSON_BUFFERED_CHUNKS);
    tokio::spawn(async move {
        let mut selection = selection;
        let mut chunk = Vec::with_capacity(NDJSON_CHUNK_BYTES);
        loop {
            let page = selection
                .query(Some(NDJSON_PAGE))
                .build()
                .try_map(|row: PgRow| audit_event(&row))
                .fetch_all(&pool)
                .await;
            let events = match page {
                Ok(events) => events,
                Err(error) => {
                    tracing::error!(%error, "audit ndjson stream failed; cutting the response off");
                    let _ = sender.send(Err(io::Error::other(error))).await;
                    return;
                }
            };
            for event in &events {
                if let Err(error) = serde_json::to_writer(&mut chunk, event) {
                    tracing::error!(%error, "audit ndjson stream failed; cutting the response off");
                    let _ = sender.send(Err(io::Error::other(error))).await;
                    return;
                }
                chunk.push(b'\n');
                if chunk.len() >= NDJSON_CHUNK_BYTES {
                    let full =
                        std::mem::replace(&mut chunk, Vec::with_capacity(NDJSON_CHUNK_BYTES));
                    if sender.send(Ok(Bytes::from(full))).await.is_err() {
                        return; // the client went away
                    }
                }
            }
            match events.last() {
                Some(last) if events.len() as i64 == NDJSON_PAGE => selection.after = last.position,
                _ => break,
            }
        }
        if !chunk.is_empty() {
            let _ = sender.send(Ok(Bytes::from(chunk))).await;
        }
    });
    let body = tokio_stream::wrappers::ReceiverStream::new(receiver);
    ([(header::CONTENT_TYPE, NDJSON)], Body::from_stream(body)).into_response()
}
