-- dispatch: the busy-target queue view, the dispatcher's checkpoint, and
-- the A2A version given at registration in the registry view (the
-- dispatcher reads targets from the view).

alter table workspaces add column protocol_version text;

-- queued requests for busy targets, projected from queue item events.
-- drain order is priority first (higher first), then the order in which the
-- items entered the log (fifo within a priority): `log_position` is the
-- position of the item's QueueItemEnqueued entry.
create table a2a_queue (
    queue_id        uuid primary key,
    -- the busy target
    workspace_id    uuid not null,
    caller_id       uuid not null,
    priority        smallint not null,
    status          text not null,
    attempts        integer not null default 0,
    last_error      text,
    method          text not null,
    idempotency_key text,
    delegation_id   uuid,
    response_body   jsonb,
    enqueued_at     timestamptz not null,
    dispatched_at   timestamptz,
    completed_at    timestamptz,
    expires_at      timestamptz,
    log_position    bigint not null
);
-- serves the heartbeat drain: a target's queued items in drain order
create index a2a_queue_drain on a2a_queue (workspace_id, priority desc, log_position)
    where status = 'queued';
-- serves GET /workspaces/{id}/a2a/queue for the target and for the caller
create index a2a_queue_target on a2a_queue (workspace_id, log_position desc);
create index a2a_queue_caller on a2a_queue (caller_id, log_position desc);

-- how far in the log a process manager (the dispatcher) has carried out its
-- reactions. kept apart from projection_checkpoints: a process manager
-- writes commands, not views, and runs only where dispatch is enabled.
create table process_checkpoints (
    name       text primary key,
    position   bigint not null default 0,
    updated_at timestamptz not null default now()
);
