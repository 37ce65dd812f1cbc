-- the event store: the postgres-es `events` table, plus the ledger columns
-- the sequencer needs. postgres-es names its columns on insert, so the
-- defaults below fill the ledger columns without any change to postgres-es.
create table events (
    aggregate_type text    not null,
    aggregate_id   text    not null,
    sequence       bigint  not null check (sequence >= 0),
    event_type     text    not null,
    event_version  text    not null,
    payload        json    not null,
    metadata       json    not null,
    -- insertion order; breaks ties between the events of one transaction
    event_id       bigint  generated always as identity,
    -- the writing transaction. the sequencer only takes events whose
    -- transaction is older than every transaction still running, so no
    -- event can ever appear behind one it has already positioned.
    tx_id          xid8    not null default pg_current_xact_id(),
    recorded_at    timestamptz not null default now(),
    -- optimistic concurrency: a concurrent writer of the same aggregate
    -- collides on this key and is rejected
    primary key (aggregate_type, aggregate_id, sequence)
);

create unique index events_event_id on events (event_id);
-- serves the sequencer's scan: (tx_id, event_id) > watermark order by tx_id, event_id
create index events_tx_order on events (tx_id, event_id);

-- postgres-es expects this table to exist even when snapshots are not used
create table snapshots (
    aggregate_type   text   not null,
    aggregate_id     text   not null,
    last_sequence    bigint not null check (last_sequence >= 0),
    current_snapshot bigint not null check (current_snapshot >= 0),
    payload          json   not null,
    primary key (aggregate_type, aggregate_id, last_sequence)
);
