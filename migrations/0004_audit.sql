-- audit: which workspaces each log entry concerns, and the indexes that keep
-- the audit queries (`GET /audit/events`, `/audit/streams/...`) fast on a
-- log of many millions of entries.
--
-- an event concerns up to two workspaces: the source and the target of a
-- delegation, the caller and the target of a queue item, the workspace of a
-- registration or an idempotency key (target null). the sequencer fills
-- both columns from the payload as it positions the event
-- (`projections::entry::workspaces_of`), so "everything that touched
-- workspace W" is two index range scans instead of a scan of every payload.
alter table ledger_log
    add column source_workspace uuid,
    add column target_workspace uuid;

-- entries positioned before this migration: the same mapping as
-- `workspaces_of`, in SQL. payloads are externally tagged enums
-- (`{"EventName": {fields}}`); a field that is not a uuid stays null.
with concerned as (
    select e.event_id, e.aggregate_type, body.value as fields
    from events e
    cross join lateral (select value from json_each(e.payload) limit 1) body
    where json_typeof(e.payload) = 'object'
),
named as (
    select event_id,
           case aggregate_type
               when 'delegation' then fields ->> 'source_id'
               when 'queue_item' then fields ->> 'caller_id'
               when 'workspace' then fields ->> 'workspace_id'
               when 'idempotency_key' then fields ->> 'workspace_id'
           end as source_text,
           case aggregate_type
               when 'delegation' then fields ->> 'target_id'
               when 'queue_item' then fields ->> 'target_id'
           end as target_text
    from concerned
    where json_typeof(fields) = 'object'
)
update ledger_log l
set source_workspace = case when n.source_text ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                            then n.source_text::uuid end,
    target_workspace = case when n.target_text ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                            then n.target_text::uuid end
from named n
where n.event_id = l.event_id;

-- serves `workspace_id=W` with keyset paging (`position > after order by
-- position limit n`): each side is read in position order straight off the
-- index and stops after n rows, however long W's history is. the query is a
-- union of the two sides (an OR of two columns cannot use one ordered index).
create index ledger_log_source_workspace on ledger_log (source_workspace, position)
    where source_workspace is not null;
create index ledger_log_target_workspace on ledger_log (target_workspace, position)
    where target_workspace is not null;

-- serves `workspace_id=W&from_time=&to_time=`: a narrow time window of a
-- workspace with a long history, where scanning W's entries in position
-- order would pass every entry before the window. the planner picks between
-- these and the (workspace, position) pair by the estimated selectivity.
create index ledger_log_source_workspace_time on ledger_log (source_workspace, recorded_at)
    where source_workspace is not null;
create index ledger_log_target_workspace_time on ledger_log (target_workspace, recorded_at)
    where target_workspace is not null;

-- serves `from_time=&to_time=` without a workspace when the window holds
-- fewer entries than a page (the planner then reads just the window). BRIN,
-- not btree: recorded_at follows log order up to the length of a
-- transaction, so block-range summaries bound it tightly, and it costs the
-- sequencer next to nothing where a btree costs as much as a workspace
-- index. known limit: for a window holding more than a page, the planner
-- (which cannot know recorded_at follows position) walks the primary key
-- from `after` instead, a cost that grows with the log before the window;
-- a btree would not change that plan (measured).
create index ledger_log_recorded_at on ledger_log using brin (recorded_at);

-- serves `event_type=T` with keyset paging (rare types such as
-- DelegationFailed are found without scanning the whole log).
create index ledger_log_event_type on ledger_log (event_type, position);

-- already served by indexes of 0002, listed so the picture is complete:
-- * `after=&limit=` alone: the primary key (position);
-- * `aggregate_type=&aggregate_id=` and `/audit/streams/{type}/{id}`:
--   ledger_log_aggregate (aggregate_type, aggregate_id, sequence), whose
--   sequence order is the aggregate's log order;
-- * the verifier's walk: the primary key, joined to events by
--   events_event_id.
