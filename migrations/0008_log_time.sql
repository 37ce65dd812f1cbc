-- the log time: every entry's recorded_at made monotonic in position order.
--
-- recorded_at is the event row's insert time, and events are positioned in
-- commit order, so a transaction that ran long puts an earlier time after a
-- later one. the sequencer assigns logged_at = max(previous logged_at,
-- recorded_at): never decreasing along the log, never more than one
-- transaction's length away from recorded_at, and a deterministic function
-- of the event rows (a crash re-positions them with the same times). so a
-- time bound is a position bound: audit queries turn from_time/to_time into
-- a position range with one lookup in this btree, whatever the log's length.
alter table ledger_log add column logged_at timestamptz;

update ledger_log l
   set logged_at = m.logged_at
  from (select position, max(recorded_at) over (order by position) as logged_at
          from ledger_log) m
 where m.position = l.position;

alter table ledger_log alter column logged_at set not null;

create index ledger_log_logged_at on ledger_log (logged_at, position);

-- superseded: time windows are position ranges now, served by the
-- (workspace, position) indexes of 0004 and the primary key. dropping them
-- also gives the sequencer back the cost of maintaining them.
drop index ledger_log_source_workspace_time;
drop index ledger_log_target_workspace_time;
drop index ledger_log_recorded_at;
