-- Reading back the inbox's waiting callbacks, at any size of what the server holds.
--
-- 1. internal.pending_mpesa_callbacks (the worker's re-scan) skipped the callbacks the server's
--    appliers hold with a correlated NOT EXISTS over the array of their ids. PostgreSQL made it
--    a nested-loop anti join that read the whole array again for every waiting callback: with
--    8,192 held and 30,000 waiting, 13 s for one call, during which the re-scan kept a core
--    busy (STK benchmark, BENCHMARKS.md, 2026-12-02, evening). As NOT IN over the array, the
--    ids are hashed once: 8 ms. Same rows, same order.
-- 2. internal.spilled_stk_callbacks: the STK callbacks that found the server's queue full,
--    read back by the server itself as soon as its queue has room (crates/api/src/stk_batches.rs),
--    rather than by the worker's re-scan 5 s after they arrived, one batch at a time on one
--    connection while the appliers (one per core) sat idle. They are the STK callbacks still
--    `received` up to the last one the server left in the inbox, oldest first, but those its
--    appliers hold.
create or replace function internal.pending_mpesa_callbacks(
  p_older_than interval, p_limit integer, p_skip bigint[] default '{}'
) returns setof internal.mpesa_callbacks
  language sql stable
  set search_path = ''
  as $$
  select c.* from internal.mpesa_callbacks c
   where c.status = 'received' and c.received_at <= now() - p_older_than
     and c.id not in (select s.id from unnest(p_skip) as s(id) where s.id is not null)
   order by c.received_at, c.id
   limit p_limit
$$;

create function internal.spilled_stk_callbacks(
  p_up_to bigint, p_limit integer, p_skip bigint[] default '{}'
) returns setof internal.mpesa_callbacks
  language sql stable
  set search_path = ''
  as $$
  select c.* from internal.mpesa_callbacks c
   where c.status = 'received' and c.kind = 'stk' and c.id <= p_up_to
     and c.id not in (select s.id from unnest(p_skip) as s(id) where s.id is not null)
   order by c.received_at, c.id
   limit p_limit
$$;

revoke all on function internal.spilled_stk_callbacks(bigint, integer, bigint[]) from public;
grant execute on function internal.spilled_stk_callbacks(bigint, integer, bigint[])
  to service_role;
