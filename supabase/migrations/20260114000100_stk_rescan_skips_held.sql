-- The STK appliers, continued.
--
-- * The grants that 20260113000000 missed: internal.apply_stk_callbacks runs with its
--   caller's rights, so the server's role must be able to run what it calls. (A database
--   migrated with 20260113000000 as it landed lacks them; its batches were refused and every
--   callback applied one at a time.)
-- * The worker's re-scan skips the callbacks the server's appliers hold: it read the oldest
--   100 pending callbacks and then skipped the held ones, so a held backlog hid the callbacks
--   behind it (a queue overflow, a C2B confirmation) until it drained.

grant execute on function internal.post_contributions(internal.contribution_posting[]),
                          internal.stk_batch_answers(internal.stk_callback_in_batch[])
  to service_role;

drop function internal.pending_mpesa_callbacks(interval, integer);

-- Callbacks still `received` after `p_older_than`, oldest first, but those in `p_skip`.
create function internal.pending_mpesa_callbacks(
  p_older_than interval, p_limit integer, p_skip bigint[] default '{}'
) returns setof internal.mpesa_callbacks
  language sql stable
  set search_path = ''
  as $$
  select c.* from internal.mpesa_callbacks c
   where c.status = 'received' and c.received_at <= now() - p_older_than
     and not exists (select from unnest(p_skip) as s(id) where s.id = c.id)
   order by c.received_at, c.id
   limit p_limit
$$;

revoke all on function internal.pending_mpesa_callbacks(interval, integer, bigint[]) from public;
grant execute on function internal.pending_mpesa_callbacks(interval, integer, bigint[])
  to service_role;
