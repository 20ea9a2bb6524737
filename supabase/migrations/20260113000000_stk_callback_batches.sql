-- M-Pesa STK callbacks applied a batch at a time.
--
-- A stored callback was applied by internal.apply_stk_callback, one transaction and about 45
-- statements each (BENCHMARKS.md, "batching the applier, tried and dropped"): calling it for
-- fifty callbacks in one transaction saved only the round trips and commits. Here the common
-- case, a success that matches its waiting request, is applied for a whole batch with one
-- statement per table. Every other case (a failure result, an unknown CheckoutRequestID, a
-- mismatch, a receipt seen before, a member who left) is answered "alone" and the server gives
-- it to internal.apply_stk_callback, whose rules decide it as before.
--
-- internal.post_contributions is the ledger half of such a batch: the chamas locked in id order,
-- their balances, the journals with their postings, the accounts' balances and the members'
-- totals, each one statement for every contribution of the batch.
--
-- The batch updates a payment request per callback, and their audit was the largest part of
-- its time: one chain append per row. UPDATEs of public.payment_requests are now audited once
-- per statement, from its transition tables, by the code that already audits INSERTs once per
-- statement (internal.audit_inserted_rows, which now calls it too): the same entries, in the
-- statement's row order. Other tables keep the row trigger, whose WHEN condition skips the
-- ledger-only updates of chamas and members without a call.

-- Audit, a statement at a time ---------------------------------------------------------------

-- One audit entry of a statement: who, and the row before and after (null for an insert).
create type internal.audit_entry as (actor_id uuid, old_row jsonb, new_row jsonb);

-- Appends a statement's entries (`p_entries` in the statement's row order) to their chains, as
-- internal.audit_append would one by one: each chain's positions reserved with one upsert (heads
-- locked in key order), the hashes computed along each chain, one INSERT for all.
create function internal.audit_append_entries(
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
  v_chains text[];
  v_records text[];
  v_chamas uuid[];
  v_actors uuid[];
  v_olds jsonb[];
  v_news jsonb[];
  -- Per chain touched: the head after the reservation.
  v_heads text[];
  v_last_seqs bigint[];
  v_last_hashes text[];
  v_counts bigint[];
  v_seqs bigint[] := '{}';
  v_prevs text[] := '{}';
  v_hashes text[] := '{}';
  v_head integer := 0;
  v_seq bigint;
  v_prev text;
begin
  select array_agg(x.chain order by x.chain, x.pos), array_agg(x.record_id order by x.chain, x.pos),
         array_agg(x.chama_id order by x.chain, x.pos), array_agg(x.actor_id order by x.chain, x.pos),
         array_agg(x.old_row order by x.chain, x.pos), array_agg(x.new_row order by x.chain, x.pos)
    into v_chains, v_records, v_chamas, v_actors, v_olds, v_news
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
  if v_chains is null then
    return; -- nothing to record
  end if;

  with counted as (
    select c.chain, count(*) as n from unnest(v_chains) as c(chain) group by c.chain
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

  for i in 1 .. cardinality(v_chains) loop
    if i = 1 or v_chains[i] <> v_chains[i - 1] then
      v_head := v_head + 1;
      v_seq := v_last_seqs[v_head] - v_counts[v_head];
      v_prev := v_last_hashes[v_head]; -- '' for a chain this statement starts
    end if;
    v_seq := v_seq + 1;
    v_seqs := v_seqs || v_seq;
    v_prevs := v_prevs || v_prev;
    v_prev := internal.audit_digest(v_prev, v_chains[i], v_seq, v_action, v_table, v_records[i],
                                    v_chamas[i], v_actors[i], v_role, v_olds[i], v_news[i],
                                    '{}'::jsonb, v_now);
    v_hashes := v_hashes || v_prev;
  end loop;

  insert into public.audit_logs (action, table_name, record_id, chama_id, actor_id, actor_role,
                                 old_row, new_row, metadata, chain_key, chain_seq, prev_hash, hash,
                                 created_at)
  select v_action, v_table, e.record_id, e.chama_id, e.actor_id, v_role, e.old_row, e.new_row,
         '{}'::jsonb, e.chain, e.seq, e.prev, e.hash, v_now
    from unnest(v_chains, v_seqs, v_records, v_chamas, v_actors, v_olds, v_news, v_prevs, v_hashes)
           as e(chain, seq, record_id, chama_id, actor_id, old_row, new_row, prev, hash)
   order by e.chain, e.seq;

  update internal.audit_chain_heads h set last_hash = l.hash
    from (select distinct on (e.chain) e.chain, e.hash
            from unnest(v_chains, v_seqs, v_hashes) as e(chain, seq, hash)
           order by e.chain, e.seq desc) l
   where h.chain_key = l.chain;
end
$$;

revoke all on function internal.audit_append_entries(text, text, text, internal.audit_entry[]) from public;

-- The INSERT trigger of 20260112000000, its entries now appended by the shared code.
create or replace function internal.audit_inserted_rows() returns trigger
  language plpgsql
  security definer
  set search_path = ''
  as $$
declare
  v_uid uuid := auth.uid();
  -- Set by internal.record_manual_contributions only: its rows are its requesters' own.
  v_on_behalf boolean := coalesce(current_setting('pesachama.audit_actor_is_recorder', true), '') = 'on';
begin
  perform internal.audit_append_entries(tg_table_schema, tg_table_name, tg_op, array(
    select row(case when v_uid is null and v_on_behalf then (r.new_row ->> 'created_by')::uuid
                    else v_uid end,
               null, r.new_row)::internal.audit_entry
      from (select to_jsonb(c) as new_row from changed_rows c) r));
  return null;
end
$$;

-- UPDATEs, a statement at a time: the rows in which anything but the ignored columns (the
-- trigger's arguments, and `updated_at`) changed, as internal.audit_row decides per row.
create function internal.audit_updated_rows() returns trigger
  language plpgsql
  security definer
  set search_path = ''
  as $$
declare
  v_uid uuid := auth.uid();
  v_ignored text[] := coalesce(tg_argv::text[], '{}') || array['updated_at'];
begin
  perform internal.audit_append_entries(tg_table_schema, tg_table_name, tg_op, array(
    select row(v_uid, o.old_row, n.new_row)::internal.audit_entry
      from (select row_number() over () as pos, to_jsonb(c) as new_row from new_rows c) n
      join (select to_jsonb(c) as old_row from old_rows c) o
        on (o.old_row ->> 'id') = (n.new_row ->> 'id')
     where (o.old_row - v_ignored) is distinct from (n.new_row - v_ignored)
     order by n.pos));
  return null;
end
$$;

revoke all on function internal.audit_updated_rows() from public;

drop trigger audit_row_update on public.payment_requests;
create trigger audit_rows_update after update on public.payment_requests
  referencing old table as old_rows new table as new_rows
  for each statement execute function internal.audit_updated_rows();

-- The ledger, a batch at a time -----------------------------------------------------------------

-- One contribution of a batch, as the ledger needs it. Missing accounts are made.
create type internal.contribution_posting as (
  chama_id uuid,
  member_id uuid,
  amount bigint,
  memo text,
  actor uuid,
  cash_account uuid,
  equity_account uuid,
  journal_id uuid
);

-- Posts one contribution journal per row (cash debited, the member's equity credited) and moves
-- the balances it touches: the chama's, the two accounts', the member's contributed total. The
-- chamas are locked in id order first (a no-op for a caller who has locked them), so batches
-- and single contributions queue and never deadlock. Rows must be checked already: an active
-- member, a positive amount. The journals' balance is still checked at commit, as for any.
create function internal.post_contributions(p_rows internal.contribution_posting[]) returns void
  language plpgsql
  set search_path = ''
  set plan_cache_mode = force_generic_plan
  as $$
begin
  -- Accounts are made with the chama and the membership; one missing is made here.
  for j in 1 .. coalesce(cardinality(p_rows), 0) loop
    if p_rows[j].cash_account is null or p_rows[j].equity_account is null then
      p_rows[j].cash_account := internal.ensure_account(p_rows[j].chama_id, 'cash');
      p_rows[j].equity_account :=
        internal.ensure_account(p_rows[j].chama_id, 'member_equity', p_rows[j].member_id);
    end if;
  end loop;

  perform from public.chamas c
   where c.id in (select r.chama_id from unnest(p_rows) r)
   order by c.id
     for no key update;
  update public.chamas c set balance = c.balance + d.delta
    from (select r.chama_id, sum(r.amount) as delta from unnest(p_rows) r group by r.chama_id) d
   where c.id = d.chama_id;

  insert into internal.journals (id, chama_id, kind, memo, created_by)
  select r.journal_id, r.chama_id, 'contribution', r.memo, r.actor from unnest(p_rows) r;
  insert into internal.postings (journal_id, account_id, amount)
  select r.journal_id, p.account_id, p.amount
    from unnest(p_rows) r
    cross join lateral (values (r.cash_account, r.amount), (r.equity_account, -r.amount))
                    as p(account_id, amount);

  -- Credit-normal equity: a credit raises the member's total.
  update internal.ledger_accounts a set balance = a.balance + d.delta
    from (select p.account_id, sum(p.amount) as delta
            from unnest(p_rows) r
            cross join lateral (values (r.cash_account, r.amount), (r.equity_account, -r.amount))
                            as p(account_id, amount)
           group by p.account_id) d
   where a.id = d.account_id;
  update public.chama_members m set contributed_total = m.contributed_total + d.delta
    from (select r.chama_id, r.member_id, sum(r.amount) as delta
            from unnest(p_rows) r group by r.chama_id, r.member_id) d
   where m.chama_id = d.chama_id and m.user_id = d.member_id;
end
$$;

revoke all on function internal.post_contributions(internal.contribution_posting[]) from public;

-- One callback of a batch, as read under lock. `applies` says it goes ahead in the batch.
create type internal.stk_callback_in_batch as (
  callback_id bigint,
  callback_status text,
  checkout_request_id text,
  result_code integer,
  result_desc text,
  amount bigint,
  receipt text,
  phone text,
  paid_at timestamptz,
  request_id uuid,
  chama_id uuid,
  member_id uuid,
  chama_name text,
  applies boolean,
  cash_account uuid,
  equity_account uuid,
  journal_id uuid,
  transaction_id uuid
);

-- The batch's answer: each callback's status after it (null: left for the single function).
create function internal.stk_batch_answers(p_batch internal.stk_callback_in_batch[]) returns jsonb
  language sql immutable
  set search_path = ''
  as $$
  select coalesce(jsonb_agg(jsonb_build_object(
           'id', b.callback_id,
           'status', case when b.applies then 'applied'
                          when b.callback_status <> 'received' then b.callback_status end)
         order by b.callback_id), '[]'::jsonb)
    from unnest(p_batch) b
$$;

-- Applies a batch of stored STK callbacks, parsed by the server, in one transaction.
--
-- p_callbacks: [{"id": bigint, "checkout_request_id": text, "result_code": int,
--                "result_desc": text, "amount": bigint (cents), "receipt": text,
--                "phone": text (E.164), "paid_at": timestamptz}, ...]
-- Answers [{"id", "status"}, ...], one per callback: `applied` for a success credited here,
-- the stored status of a callback no longer `received` (applied before, by another worker or
-- before a restart), and null for one this batch leaves alone: the caller applies it with
-- internal.apply_stk_callback.
--
-- A success goes ahead here when, read under lock, its request is waiting (`queued` or
-- `sent`), the amount and phone are the request's, the receipt is well formed and new (to the
-- ledger and to the batch), no earlier callback of the batch names the same request, and the
-- member is still active; exactly the cases in which the single function credits at once.
-- Locks are taken in the single function's order: the callbacks (here in id order), then the
-- chamas in id order, then the requests in id order.
create function internal.apply_stk_callbacks(p_callbacks jsonb) returns jsonb
  language plpgsql
  set search_path = ''
  set plan_cache_mode = force_generic_plan
  -- A row held longer than this by another transaction fails the batch; the server then
  -- applies its callbacks one by one.
  set lock_timeout = '5s'
  as $$
declare
  v_batch internal.stk_callback_in_batch[];
begin
  perform from internal.mpesa_callbacks c
   where c.id in (select (e ->> 'id')::bigint from jsonb_array_elements(p_callbacks) e)
   order by c.id
     for update;

  -- Each callback with its stored status and the request it names (unlocked: for the lock
  -- order only; everything is read again below).
  select array_agg(row(
           q.id, c.status, q.checkout_request_id, q.result_code, q.result_desc, q.amount,
           q.receipt, q.phone, q.paid_at, r.id, r.chama_id, r.user_id, null, false,
           null, null, gen_random_uuid(), gen_random_uuid()
         )::internal.stk_callback_in_batch order by q.id)
    into v_batch
    from jsonb_to_recordset(p_callbacks) as q(
           id bigint, checkout_request_id text, result_code integer, result_desc text,
           amount bigint, receipt text, phone text, paid_at timestamptz)
    left join lateral (
      select c.status from internal.mpesa_callbacks c where c.id = q.id limit 1
    ) c on true
    left join lateral (
      select r.id, r.chama_id, r.user_id from public.payment_requests r
       where c.status = 'received' and q.result_code = 0
         and r.checkout_request_id = q.checkout_request_id
       limit 1
    ) r on true;

  if v_batch is null then
    return '[]'::jsonb;
  end if;

  perform from public.chamas c
   where c.id in (select b.chama_id from unnest(v_batch) b)
   order by c.id
     for no key update;
  perform from public.payment_requests r
   where r.id in (select b.request_id from unnest(v_batch) b)
   order by r.id
     for update;

  -- Under lock: which go ahead, and the accounts their money moves between.
  select array_agg(row(
           b.callback_id, b.callback_status, b.checkout_request_id, b.result_code, b.result_desc,
           b.amount, b.receipt, b.phone, b.paid_at, b.request_id, b.chama_id, b.member_id,
           ch.name, ok.applies, cash.id, eq.id, b.journal_id, b.transaction_id
         )::internal.stk_callback_in_batch order by b.callback_id)
    into v_batch
    from (select b0.*,
                 row_number() over (partition by b0.request_id order by b0.callback_id) as nth_for_request,
                 row_number() over (partition by b0.receipt order by b0.callback_id) as nth_for_receipt
            from unnest(v_batch) b0) b
    left join lateral (
      select r.status, r.amount, r.phone from public.payment_requests r
       where r.id = b.request_id limit 1
    ) r on true
    left join lateral (
      select c.name from public.chamas c where c.id = b.chama_id limit 1
    ) ch on true
    left join lateral (
      select m.user_id from public.chama_members m
       where m.chama_id = b.chama_id and m.user_id = b.member_id and m.status = 'active' limit 1
    ) m on true
    left join lateral (
      select a.id from internal.ledger_accounts a
       where a.chama_id = b.chama_id and a.kind = 'cash' and a.user_id is null limit 1
    ) cash on true
    left join lateral (
      select a.id from internal.ledger_accounts a
       where a.chama_id = b.chama_id and a.user_id = b.member_id limit 1
    ) eq on true
    cross join lateral (
      select coalesce(
               b.request_id is not null
               and b.nth_for_request = 1 and b.nth_for_receipt = 1
               and r.status in ('queued', 'sent')
               and b.amount = r.amount and b.phone = r.phone::text
               and b.receipt ~ '^[A-Z0-9]{10}$'
               and m.user_id is not null
               and not exists (select from public.transactions t where t.mpesa_receipt = b.receipt)
               and not exists (select from public.payment_requests p where p.mpesa_receipt = b.receipt),
             false) as applies
    ) ok;

  if not exists (select from unnest(v_batch) b where b.applies) then
    return internal.stk_batch_answers(v_batch);
  end if;

  perform internal.post_contributions(array(
    select row(b.chama_id, b.member_id, b.amount, 'M-Pesa contribution', null, b.cash_account,
               b.equity_account, b.journal_id)::internal.contribution_posting
      from unnest(v_batch) b where b.applies order by b.callback_id));

  insert into public.transactions (id, chama_id, user_id, type, amount, status, payment_method,
                                   reference, mpesa_receipt, phone, description, journal_id,
                                   created_at, updated_at)
  select b.transaction_id, b.chama_id, b.member_id, 'contribution', b.amount, 'completed', 'mpesa',
         b.checkout_request_id, b.receipt, b.phone, 'M-Pesa contribution', b.journal_id,
         coalesce(b.paid_at, now()), greatest(coalesce(b.paid_at, now()), now())
    from unnest(v_batch) b where b.applies
   order by b.callback_id;
  update public.payment_requests r
     set status = 'completed', mpesa_receipt = b.receipt, transaction_id = b.transaction_id,
         result_code = 0, result_desc = left(b.result_desc, 500), failure_reason = null
    from unnest(v_batch) b
   where b.applies and r.id = b.request_id;
  insert into public.notifications (user_id, chama_id, type, title, body, data)
  select b.member_id, b.chama_id, 'transaction', 'Contribution received',
         format('KES %s received by M-Pesa (%s) for %s',
                to_char(b.amount / 100.0, 'FM999,999,999,990.00'), b.receipt, b.chama_name),
         jsonb_build_object('transaction_id', b.transaction_id, 'payment_request_id', b.request_id)
    from unnest(v_batch) b where b.applies
   order by b.callback_id;
  update internal.mpesa_callbacks c
     set status = 'applied', applied_at = now(), error = null, attempts = c.attempts + 1
    from unnest(v_batch) b
   where b.applies and c.id = b.callback_id;

  return internal.stk_batch_answers(v_batch);
end
$$;

revoke all on function internal.apply_stk_callbacks(jsonb) from public;
revoke all on function internal.stk_batch_answers(internal.stk_callback_in_batch[]) from public;
grant execute on function internal.apply_stk_callbacks(jsonb) to service_role;
