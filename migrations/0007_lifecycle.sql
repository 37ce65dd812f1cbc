-- the rest of the A2A task lifecycle: a delegation may wait for input
-- (`input_required`, with the target's question) or be `canceled`, and a
-- managed delegation has a deadline.

alter table delegations
    add column deadline timestamptz,
    add column question text;

-- "non-terminal delegations" now leaves out `canceled` too
drop index delegations_open;
create index delegations_open on delegations (status)
    where status not in ('completed', 'failed', 'canceled');

-- serves the dispatcher's deadline sweep: live delegations by deadline
create index delegations_deadline on delegations (deadline)
    where deadline is not null and status not in ('completed', 'failed', 'canceled');

-- fencing of single-leader roles: the epoch of each role's current leader,
-- bumped by every newly elected leader. a fenced write checks its epoch
-- under a shared row lock in its own transaction, and the bump waits for
-- that lock: once a new leader is elected, no write of an older epoch can
-- commit. (the dispatcher records every send this way.)
create table leadership_epochs (
    role       text primary key,
    epoch      bigint not null check (epoch > 0),
    elected_at timestamptz not null default now()
);
