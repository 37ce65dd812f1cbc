-- the positioned log: one dense, gap-free, hash-chained order over every
-- event, written only by the single sequencer leader. everything downstream
-- (projections, websocket hub, dispatcher, auditors) reads by position.
--
-- no foreign key to events on purpose: the audit verifier must be able to
-- report an event row deleted behind the ledger's back, not be prevented
-- from seeing it.
create table ledger_log (
    position       bigint primary key check (position > 0),
    event_id       bigint not null unique,
    -- the watermark of the sequencer: (tx_id, event_id) of the last entry
    tx_id          xid8   not null,
    aggregate_type text   not null,
    aggregate_id   text   not null,
    sequence       bigint not null,
    event_type     text   not null,
    recorded_at    timestamptz not null,
    -- sha256(prev_hash || canonical event bytes); 32 zero bytes before position 1
    prev_hash      bytea  not null,
    hash           bytea  not null
);

-- serves "where is this event in the log" and per-aggregate audit streams
create unique index ledger_log_aggregate on ledger_log (aggregate_type, aggregate_id, sequence);

-- one row per projection: the last position applied to its view, moved in
-- the same transaction as the view change (exactly-once effect)
create table projection_checkpoints (
    name       text primary key,
    position   bigint not null default 0 check (position >= 0),
    updated_at timestamptz not null default now()
);
