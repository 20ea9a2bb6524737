-- The statement-level audit of 20260113000000, the same entries for less work.
--
-- Measured on the STK benchmark (BENCHMARKS.md, 2026-12-02), about 117 callbacks a batch: the
-- audit of the batch's payment request UPDATE and transactions INSERT was more than half of the
-- batch's time.
-- * internal.audit_updated_rows paired each row after with its row before by a join of the two
--   transition tables on the rows' JSON ids. Its plan is cached, and the plan the function had
--   kept was a nested loop: every old row serialised again for every new one, 17 ms a batch.
--   The rows before are now gathered once into an object by id and looked up, whatever the
--   plan. As with the join, a row after whose id no row before had is not recorded.
-- * internal.audit_append_entries sorted the entries six times, once per array it built (one
--   aggregate each). It now sorts them once into one array of rows.
-- The chains, positions, hashes and order of the entries are unchanged.

-- One entry of a statement on its way to its chain.
create type internal.audit_pending as (
  chain text,
  record_id text,
  chama_id uuid,
  actor_id uuid,
  old_row jsonb,
  new_row jsonb
);

create or replace function internal.audit_append_entries(
  p_schema text, p_table text, p_op text, p_entries internal.audit_entry[]
) returns void
  language plpgsql
  security definer
  set search_path = ''
  set plan_cache_mode = force_generic_plan
  as $$
declare
  v_role text := coalesce(nullif(auth.role(), ''), current_user::text);
  v_now timestamptz := now();
  v_action text := lower(p_table) || '.' || lower(p_op);
  v_table text := p_schema || '.' || p_table;
  -- The entries, in chain order and, within a chain, in the statement's order.
  v_rows internal.audit_pending[];
  v_row internal.audit_pending;
  -- Per chain touched: the head after the reservation.
  v_heads text[];
  v_last_seqs bigint[];
  v_last_hashes text[];
  v_counts bigint[];
  v_seqs bigint[] := '{}';
  v_prevs text[] := '{}';
  v_hashes text[] := '{}';
  v_head integer := 0;
  v_chain text;
  v_seq bigint;
  v_prev text;
begin
  select array_agg(row(x.chain, x.record_id, x.chama_id, x.actor_id, x.old_row, x.new_row)
                     ::internal.audit_pending order by x.chain, x.pos)
    into v_rows
    from (select s.*,
                 case when s.chama_id is not null then 'chama:' || s.chama_id
                      when s.actor_id is not null then 'user:' || s.actor_id
                      else 'platform' end as chain
            from (select e.pos, e.actor_id, e.old_row, e.new_row,
                         case when p_table = 'chamas' then (coalesce(e.new_row, e.old_row) ->> 'id')::uuid
                              else (coalesce(e.new_row, e.old_row) ->> 'chama_id')::uuid end as chama_id,
                         coalesce(coalesce(e.new_row, e.old_row) ->> 'id',
                                  case when p_table = 'meeting_attendance'
                                       then (coalesce(e.new_row, e.old_row) ->> 'meeting_id') || '/'
                                            || (coalesce(e.new_row, e.old_row) ->> 'user_id') end)
                           as record_id
                    from unnest(p_entries) with ordinality as e(actor_id, old_row, new_row, pos)) s) x;
  if v_rows is null then
    return; -- nothing to record
  end if;

  with counted as (
    select r.chain, count(*) as n from unnest(v_rows) r group by r.chain
  ), reserved as (
    insert into internal.audit_chain_heads as h (chain_key, last_seq, last_hash)
    select chain, n, '' from counted order by chain
    on conflict (chain_key) do update set last_seq = h.last_seq + excluded.last_seq
    returning h.chain_key, h.last_seq, h.last_hash
  )
  select array_agg(r.chain_key order by r.chain_key), array_agg(r.last_seq order by r.chain_key),
         array_agg(r.last_hash order by r.chain_key), array_agg(c.n order by r.chain_key)
    into v_heads, v_last_seqs, v_last_hashes, v_counts
    from reserved r join counted c on c.chain = r.chain_key;

  for i in 1 .. cardinality(v_rows) loop
    v_row := v_rows[i];
    if i = 1 or v_row.chain <> v_chain then
      v_chain := v_row.chain;
      v_head := v_head + 1;
      v_seq := v_last_seqs[v_head] - v_counts[v_head];
      v_prev := v_last_hashes[v_head]; -- '' for a chain this statement starts
    end if;
    v_seq := v_seq + 1;
    v_seqs := v_seqs || v_seq;
    v_prevs := v_prevs || v_prev;
    v_prev := internal.audit_digest(v_prev, v_row.chain, v_seq, v_action, v_table, v_row.record_id,
                                    v_row.chama_id, v_row.actor_id, v_role, v_row.old_row,
                                    v_row.new_row, '{}'::jsonb, v_now);
    v_hashes := v_hashes || v_prev;
  end loop;

  insert into public.audit_logs (action, table_name, record_id, chama_id, actor_id, actor_role,
                                 old_row, new_row, metadata, chain_key, chain_seq, prev_hash, hash,
                                 created_at)
  select v_action, v_table, e.record_id, e.chama_id, e.actor_id, v_role, e.old_row, e.new_row,
         '{}'::jsonb, e.chain, e.seq, e.prev, e.hash, v_now
    from unnest(v_rows, v_seqs, v_prevs, v_hashes)
           as e(chain, record_id, chama_id, actor_id, old_row, new_row, seq, prev, hash)
   order by e.chain, e.seq;

  update internal.audit_chain_heads h set last_hash = l.hash
    from (select distinct on (e.chain) e.chain, e.hash
            from unnest(v_rows, v_seqs, v_hashes)
                   as e(chain, record_id, chama_id, actor_id, old_row, new_row, seq, hash)
           order by e.chain, e.seq desc) l
   where h.chain_key = l.chain;
end
$$;

create or replace function internal.audit_updated_rows() returns trigger
  language plpgsql
  security definer
  set search_path = ''
  as $$
declare
  v_uid uuid := auth.uid();
  v_ignored text[] := coalesce(tg_argv::text[], '{}') || array['updated_at'];
  -- The rows before, by id.
  v_before jsonb;
begin
  select coalesce(jsonb_object_agg(o.old_row ->> 'id', o.old_row), '{}'::jsonb)
    into v_before
    from (select to_jsonb(c) as old_row from old_rows c) o
   where o.old_row ->> 'id' is not null;
  -- As the join did: a row after without its row before (its id changed) is not recorded.
  perform internal.audit_append_entries(tg_table_schema, tg_table_name, tg_op, array(
    select row(v_uid, v_before -> (n.new_row ->> 'id'), n.new_row)::internal.audit_entry
      from (select row_number() over () as pos, to_jsonb(c) as new_row from new_rows c) n
     where v_before ? (n.new_row ->> 'id')
       and ((v_before -> (n.new_row ->> 'id')) - v_ignored) is distinct from (n.new_row - v_ignored)
     order by n.pos));
  return null;
end
$$;
