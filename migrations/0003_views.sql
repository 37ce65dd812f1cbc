-- read models. each is rebuilt from position 0 by `ledger projections rebuild`.

-- the registry, projected from workspace events
create table workspaces (
    id             uuid primary key,
    name           text,
    url            text,
    delivery_mode  text not null,
    -- sha256 hex of the workspace token; the token itself is never stored
    token_hash     text not null,
    active_tasks   bigint,
    max_concurrent bigint,
    registered_at  timestamptz not null,
    updated_at     timestamptz not null
);
-- serves authentication: token hash -> workspace
create unique index workspaces_token_hash on workspaces (token_hash);

-- current state of each delegation
create table delegations (
    delegation_id    uuid primary key,
    source_id        uuid not null,
    target_id        uuid not null,
    task             text not null,
    origin           text not null,
    status           text not null,
    result           text,
    response_preview text,
    error            text,
    queue_id         uuid,
    attempts         integer not null default 0,
    remote_task_id   text,
    idempotency_key  text,
    -- [{status, at}] in order
    history          jsonb not null default '[]',
    created_at       timestamptz not null,
    updated_at       timestamptz not null
);
create index delegations_source on delegations (source_id, created_at desc);
create index delegations_target on delegations (target_id, created_at desc);
-- serves "non-terminal delegations" scans (dispatcher resume)
create index delegations_open on delegations (status) where status not in ('completed', 'failed');

-- the activity feed, in the shape of the seed's activity_logs rows
create table activity_logs (
    id            uuid primary key,
    workspace_id  uuid not null,
    activity_type text not null,
    method        text,
    source_id     uuid,
    target_id     uuid,
    summary       text not null,
    status        text,
    request_body  jsonb,
    response_body jsonb,
    error_detail  text,
    delegation_id uuid,
    created_at    timestamptz not null,
    -- feed order: the log position of the event that created the row, then
    -- the row's ordinal among the rows that event created
    log_position  bigint not null,
    ordinal       integer not null,
    unique (log_position, ordinal)
);
-- serves the feed (newest first), the since_id cursor (oldest first after a
-- row) and the delegation list, all per workspace
create index activity_logs_feed on activity_logs (workspace_id, log_position, ordinal);
-- serves the in-place status update of a delegation's `delegate` row
create index activity_logs_delegate_row on activity_logs (delegation_id) where method = 'delegate';
