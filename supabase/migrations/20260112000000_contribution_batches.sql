-- Contributions written a batch at a time, and the row triggers they fire made set-based.
--
-- Profiling the contribution benchmark showed a contribution costing about 25 statements and
-- as many trigger calls, each paying the executor's start-up: the database, not the server,
-- was the bottleneck. The server now gathers the manual contributions that arrive together
-- and records them with one call of internal.record_manual_contributions: one statement per
-- table for the whole batch, each request still checked, answered and made idempotent on its
-- own. A request that is refused leaves no trace; the others in its batch go ahead.
--
-- For one statement to do the work of many, the triggers it fires must not run once per row
-- for what can be done once per statement. Three of them change, with the same effect:
--
-- * audit of INSERTs: one call per statement (a transition table), which reserves the chain
--   positions of each chain with one upsert and appends every entry with one INSERT. The
--   actor is the signed-in user as before. The batch, which writes for many users at once
--   with none in the claims, sets `pesachama.audit_actor_is_recorder` for its transaction,
--   and its rows then name their `created_by`, the user who asked. One change of order: the
--   entry of an INSERT now follows the entries that the inserted row's own row triggers wrote
--   (a new chama's chairperson membership comes before the chama).
-- * realtime announcements: one call per statement and operation, a NOTIFY per row as before,
--   its `ts` taken at the end of the statement.
-- * queueing notifications for delivery: one call per statement, the same outbox rows (the
--   pushes of a statement before its SMS).
--
-- UPDATE and DELETE audit stay per row: they compare the old row with the new one.

-- Audit ----------------------------------------------------------------------------------------

create function internal.audit_inserted_rows() returns trigger
  language plpgsql
  security definer
  set search_path = ''
  set plan_cache_mode = force_generic_plan
  as $$
declare
  v_role text := coalesce(nullif(auth.role(), ''), current_user::text);
  v_uid uuid := auth.uid();
  -- Set by internal.record_manual_contributions only: its rows are its requesters' own.
  v_on_behalf boolean := coalesce(current_setting('pesachama.audit_actor_is_recorder', true), '') = 'on';
  v_now timestamptz := now();
  v_action text := lower(tg_table_name) || '.insert';
  v_table text := tg_table_schema || '.' || tg_table_name;
  -- The entries, in chain order and, within a chain, in the order the statement wrote them.
  v_chains text[];
  v_records text[];
  v_chamas uuid[];
  v_actors uuid[];
  v_rows jsonb[];
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
  select array_agg(e.chain order by e.chain, e.pos), array_agg(e.record_id order by e.chain, e.pos),
         array_agg(e.chama_id order by e.chain, e.pos), array_agg(e.actor_id order by e.chain, e.pos),
         array_agg(e.new_row order by e.chain, e.pos)
    into v_chains, v_records, v_chamas, v_actors, v_rows
    from (select x.pos, x.new_row, x.chama_id, x.actor_id, x.record_id,
                 case when x.chama_id is not null then 'chama:' || x.chama_id
                      when x.actor_id is not null then 'user:' || x.actor_id
                      else 'platform' end as chain
            from (select r.pos, r.new_row,
                         case when tg_table_name = 'chamas' then (r.new_row ->> 'id')::uuid
                              else (r.new_row ->> 'chama_id')::uuid end as chama_id,
                         case when v_uid is null and v_on_behalf
                              then (r.new_row ->> 'created_by')::uuid else v_uid end as actor_id,
                         coalesce(r.new_row ->> 'id',
                                  case when tg_table_name = 'meeting_attendance'
                                       then (r.new_row ->> 'meeting_id') || '/' || (r.new_row ->> 'user_id') end)
                           as record_id
                    from (select row_number() over () as pos, to_jsonb(c) as new_row
                            from changed_rows c) r) x) e;
  if v_chains is null then
    return null; -- the statement inserted nothing
  end if;

  -- Each chain's positions reserved with one upsert, heads locked in key order.
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

  -- The hashes, one after the other along each chain.
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
                                    v_chamas[i], v_actors[i], v_role, null, v_rows[i],
                                    '{}'::jsonb, v_now);
    v_hashes := v_hashes || v_prev;
  end loop;

  insert into public.audit_logs (action, table_name, record_id, chama_id, actor_id, actor_role,
                                 old_row, new_row, metadata, chain_key, chain_seq, prev_hash, hash,
                                 created_at)
  select v_action, v_table, e.record_id, e.chama_id, e.actor_id, v_role, null, e.new_row,
         '{}'::jsonb, e.chain, e.seq, e.prev, e.hash, v_now
    from unnest(v_chains, v_seqs, v_records, v_chamas, v_actors, v_rows, v_prevs, v_hashes)
           as e(chain, seq, record_id, chama_id, actor_id, new_row, prev, hash)
   order by e.chain, e.seq;

  update internal.audit_chain_heads h set last_hash = l.hash
    from (select distinct on (e.chain) e.chain, e.hash
            from unnest(v_chains, v_seqs, v_hashes) as e(chain, seq, hash)
           order by e.chain, e.seq desc) l
   where h.chain_key = l.chain;
  return null;
end
$$;

revoke all on function internal.audit_inserted_rows() from public;

-- INSERTs audited per statement; DELETEs stay per row (UPDATEs are audit_row_update's, unchanged).
do $$
declare
  v_table text;
begin
  foreach v_table in array array['users', 'chamas', 'chama_members', 'chama_invitations',
                                 'transactions', 'disbursement_requests', 'disbursement_approvals',
                                 'meetings', 'meeting_attendance', 'payment_requests']
  loop
    execute format('drop trigger audit_row on public.%I', v_table);
    execute format(
      'create trigger audit_row_delete after delete on public.%I
         for each row execute function internal.audit_row()', v_table);
    execute format(
      'create trigger audit_rows_insert after insert on public.%I
         referencing new table as changed_rows
         for each statement execute function internal.audit_inserted_rows()', v_table);
  end loop;
end
$$;

-- Realtime ---------------------------------------------------------------------------------------

-- The same announcement per row as internal.realtime_announce, from one call per statement.
create function internal.realtime_announce_rows() returns trigger
  language plpgsql
  set search_path = ''
  as $$
begin
  if tg_op = 'DELETE' then
    perform pg_notify('pesachama_realtime', jsonb_build_object(
      's', tg_table_schema, 't', tg_table_name, 'op', tg_op, 'id', c.id,
      'ts', clock_timestamp(), 'c', to_jsonb(c) -> 'chama_id', 'u', to_jsonb(c) -> 'user_id')::text)
      from changed_rows c;
  else
    perform pg_notify('pesachama_realtime', jsonb_build_object(
      's', tg_table_schema, 't', tg_table_name, 'op', tg_op, 'id', c.id,
      'ts', clock_timestamp())::text)
      from changed_rows c;
  end if;
  return null;
end
$$;

-- A transition table belongs to one event, so a published table gets three triggers.
create or replace function internal.realtime_publish(p_schema text, p_table text, p_delete_scope text)
  returns void
  language plpgsql
  set search_path = ''
  as $$
begin
  insert into internal.realtime_publication (schema_name, table_name, delete_scope)
  values (p_schema, p_table, p_delete_scope)
  on conflict (schema_name, table_name) do update set delete_scope = excluded.delete_scope;
  execute format('drop trigger if exists realtime_announce on %I.%I', p_schema, p_table);
  execute format('drop trigger if exists realtime_announce_insert on %I.%I', p_schema, p_table);
  execute format('drop trigger if exists realtime_announce_update on %I.%I', p_schema, p_table);
  execute format('drop trigger if exists realtime_announce_delete on %I.%I', p_schema, p_table);
  execute format('create trigger realtime_announce_insert after insert on %I.%I
                    referencing new table as changed_rows
                    for each statement execute function internal.realtime_announce_rows()',
                 p_schema, p_table);
  execute format('create trigger realtime_announce_update after update on %I.%I
                    referencing new table as changed_rows
                    for each statement execute function internal.realtime_announce_rows()',
                 p_schema, p_table);
  execute format('create trigger realtime_announce_delete after delete on %I.%I
                    referencing old table as changed_rows
                    for each statement execute function internal.realtime_announce_rows()',
                 p_schema, p_table);
end
$$;

select internal.realtime_publish(schema_name, table_name, delete_scope)
  from internal.realtime_publication order by schema_name, table_name;

-- Notification delivery ------------------------------------------------------------------------

-- The same outbox rows as internal.enqueue_notification: one push per device of the member, or
-- an SMS for a member with a phone and no device.
create function internal.enqueue_notifications() returns trigger
  language plpgsql
  security definer
  set search_path = ''
  as $$
begin
  insert into internal.outbox (topic, payload, dedupe_key)
  select 'push', jsonb_build_object('notification_id', n.id, 'device_id', d.id),
         'push:' || n.id || ':' || d.id
    from changed_rows n
    join public.device_tokens d on d.user_id = n.user_id;
  insert into internal.outbox (topic, payload, dedupe_key)
  select 'sms',
         jsonb_build_object('to', u.phone, 'notification_id', n.id,
                            'message', left(n.title || coalesce(': ' || n.body, ''), 459)),
         'sms:notification:' || n.id
    from changed_rows n
    join public.users u on u.id = n.user_id
   where u.phone is not null
     and not exists (select from public.device_tokens d where d.user_id = n.user_id);
  return null;
end
$$;

revoke all on function internal.enqueue_notifications() from public;

drop trigger notifications_deliver on public.notifications;
create trigger notifications_deliver after insert on public.notifications
  referencing new table as changed_rows
  for each statement execute function internal.enqueue_notifications();

-- The batch --------------------------------------------------------------------------------------

-- One request of a batch, as checked: `error` and `message` say why it is refused (SQLSTATEs as
-- public.record_manual_contribution raises them), `replay` holds the stored answer of a retry.
create type internal.contribution_in_batch as (
  i integer,
  actor uuid,
  chama_id uuid,
  member_id uuid,
  amount bigint,
  method text,
  reference text,
  description text,
  scope text,
  idempotency_key text,
  request_hash text,
  error text,
  message text,
  replay jsonb,
  cash_account uuid,
  equity_account uuid,
  chama_name text,
  journal_id uuid,
  transaction_id uuid
);

-- Records a batch of manual contributions, each as public.record_manual_contribution would
-- have, for the server (it has verified each request's token; `actor` is its user).
--
-- p_requests: [{"i": int, "actor": uuid, "chama_id": uuid, "member_id": uuid, "amount": bigint,
--               "method": text, "reference": text, "description": text,
--               "idempotency_key": text, "request_hash": text}, ...]
-- Answers one object per request: {"i", "replayed", "transaction"} when recorded or replayed,
-- {"i", "error", "message"} when refused.
--
-- The rules are the single function's, request by request (one difference: an amount that is
-- not positive is PX422 here, where the single function fails the transactions CHECK; the
-- API refuses such amounts before either): the actor must be an active
-- treasurer or chairperson of the chama (a chama they are not in is "not found"), the key
-- 1-255 characters and not in flight (a second request with the same key in the batch is in
-- flight), a used key answers its stored answer or, with another body, is refused; then the
-- method, the chama's status and the member. The requests that pass are written together:
-- the chamas locked in id order (so batches and single contributions queue, never deadlock),
-- then one statement per table. The ledger's own checks (balanced journals, at commit) still
-- hold for every journal.
--
-- Each read of another table is a LATERAL lookup by key, so that one generic plan is right for
-- a batch of any size; `plan_cache_mode` keeps PL/pgSQL from planning every statement again
-- for each batch (a custom plan per call cost a fifth of the database's time).
create function internal.record_manual_contributions(p_requests jsonb) returns jsonb
  language plpgsql
  security definer
  set search_path = ''
  set plan_cache_mode = force_generic_plan
  -- A chama row held longer than this by another transaction fails the batch, whose requests
  -- the server then tries alone: a busy chama holds up only its own requests.
  set lock_timeout = '5s'
  as $$
declare
  v_batch internal.contribution_in_batch[];
  v_answers jsonb;
begin
  -- The audit names each row's recorder (`created_by`) with the role requests have.
  perform set_config('request.jwt.claims', '{"role": "authenticated"}', true);
  perform set_config('pesachama.audit_actor_is_recorder', 'on', true);

  -- Who asks, and for which key: the keys of the requests allowed so far are locked here,
  -- so that the next statement (a new snapshot) sees any answer stored by a request that
  -- held the key before.
  select array_agg(row(
           r.i, r.actor, r.chama_id, r.member_id, r.amount, r.method, r.reference, r.description,
           r.scope, r.idempotency_key, r.request_hash, v.verdict[1], v.verdict[2], null,
           null, null, null, gen_random_uuid(), gen_random_uuid()
         )::internal.contribution_in_batch order by r.i)
    into v_batch
    from (select q.*, me.user_id as me_user, me.role as me_role,
                 -- a second copy of a key is in flight only behind a copy that may go ahead
                 row_number() over (
                   partition by q.actor, q.idempotency_key,
                                (me.user_id is not null and me.role in ('treasurer', 'chairperson'))
                   order by q.i) as nth
            from (select q0.*, 'contribution:' || coalesce(q0.actor::text, '') as scope
                    from jsonb_to_recordset(p_requests) as q0(
                           i integer, actor uuid, chama_id uuid, member_id uuid, amount bigint,
                           method text, reference text, description text, idempotency_key text,
                           request_hash text)) q
            left join lateral (
              select m.user_id, m.role from public.chama_members m
               where m.chama_id = q.chama_id and m.user_id = q.actor and m.status = 'active'
               limit 1
            ) me on true) r
    cross join lateral (
      select case
        when r.actor is null then array['42501', 'sign in to record a contribution']
        when r.me_user is null then array['PX404', 'chama not found']
        when r.me_role not in ('treasurer', 'chairperson') then
          array['42501', 'only the treasurer or the chairperson records contributions']
        when r.idempotency_key is null or char_length(r.idempotency_key) not between 1 and 255 then
          array['PX422', 'the Idempotency-Key must be 1 to 255 characters']
        when r.nth > 1
          or not pg_try_advisory_xact_lock(hashtextextended(r.scope || chr(31) || r.idempotency_key, 0)) then
          array['PX409', 'a request with this Idempotency-Key is still in progress; retry later']
      end as verdict
    ) v;

  if v_batch is null then
    return '[]'::jsonb;
  end if;

  -- What was asked: a used key answers its stored answer (or, with another body, is refused),
  -- then the method, the chama's status, the member; and the accounts the money moves between.
  select array_agg(row(
           b.i, b.actor, b.chama_id, b.member_id, b.amount, b.method, b.reference, b.description,
           b.scope, b.idempotency_key, b.request_hash,
           coalesce(b.error, v.verdict[1]), coalesce(b.message, v.verdict[2]),
           case when b.error is null and k.request_hash = b.request_hash then k.response_body end,
           cash.id, eq.id, c.name, b.journal_id, b.transaction_id
         )::internal.contribution_in_batch order by b.i)
    into v_batch
    from unnest(v_batch) b
    left join lateral (
      select k.key, k.request_hash, k.response_body from internal.idempotency_keys k
       where b.error is null and k.scope = b.scope and k.key = b.idempotency_key limit 1
    ) k on true
    left join lateral (
      select c.status, c.name from public.chamas c where c.id = b.chama_id limit 1
    ) c on true
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
      select case
        when b.error is not null then null
        when k.key is not null and k.request_hash is distinct from b.request_hash then
          array['PX422', 'this Idempotency-Key was already used with a different request']
        when k.key is not null then null
        when b.method is null or b.method not in ('cash', 'bank') then
          array['PX422', 'payment_method must be "cash" or "bank" (M-Pesa contributions arrive through M-Pesa)']
        when c.status <> 'active' then array['P0001', 'this chama is not active']
        when m.user_id is null then
          array['PX422', 'member_id is not an active member of this chama']
        when b.amount is null or b.amount <= 0 then
          array['PX422', 'amount must be a positive number of cents']
      end as verdict
    ) v;

  -- Accounts are made with the chama and the membership; one missing is made here.
  for j in 1 .. cardinality(v_batch) loop
    if v_batch[j].error is null and v_batch[j].replay is null
       and (v_batch[j].cash_account is null or v_batch[j].equity_account is null) then
      v_batch[j].cash_account := internal.ensure_account(v_batch[j].chama_id, 'cash');
      v_batch[j].equity_account :=
        internal.ensure_account(v_batch[j].chama_id, 'member_equity', v_batch[j].member_id);
    end if;
  end loop;

  -- 1. The chamas, locked in id order, then their balances moved.
  perform from public.chamas c
   where c.id in (select b.chama_id from unnest(v_batch) b where b.error is null and b.replay is null)
   order by c.id
     for no key update;
  update public.chamas c set balance = c.balance + d.delta
    from (select b.chama_id, sum(b.amount) as delta
            from unnest(v_batch) b where b.error is null and b.replay is null
           group by b.chama_id) d
   where c.id = d.chama_id;

  -- 2. The journals and their postings: cash debited, the member's equity credited.
  insert into internal.journals (id, chama_id, kind, memo, created_by)
  select b.journal_id, b.chama_id, 'contribution', coalesce(b.description, 'contribution'), b.actor
    from unnest(v_batch) b where b.error is null and b.replay is null
   order by b.i;
  insert into internal.postings (journal_id, account_id, amount)
  select b.journal_id, p.account_id, p.amount
    from unnest(v_batch) b
    cross join lateral (values (b.cash_account, b.amount), (b.equity_account, -b.amount))
                    as p(account_id, amount)
   where b.error is null and b.replay is null
   order by b.i;

  -- 3. The accounts, then the members' totals (credit-normal: a credit raises the total).
  update internal.ledger_accounts a set balance = a.balance + d.delta
    from (select p.account_id, sum(p.amount) as delta
            from unnest(v_batch) b
            cross join lateral (values (b.cash_account, b.amount), (b.equity_account, -b.amount))
                            as p(account_id, amount)
           where b.error is null and b.replay is null
           group by p.account_id) d
   where a.id = d.account_id;
  update public.chama_members m set contributed_total = m.contributed_total + d.delta
    from (select b.chama_id, b.member_id, sum(b.amount) as delta
            from unnest(v_batch) b where b.error is null and b.replay is null
           group by b.chama_id, b.member_id) d
   where m.chama_id = d.chama_id and m.user_id = d.member_id;

  -- 4. The user-facing record, the member's notification, the keys with their answers.
  insert into public.transactions (id, chama_id, user_id, type, amount, status, payment_method,
                                   reference, description, journal_id, created_by)
  select b.transaction_id, b.chama_id, b.member_id, 'contribution', b.amount, 'completed',
         b.method, b.reference, b.description, b.journal_id, b.actor
    from unnest(v_batch) b where b.error is null and b.replay is null
   order by b.i;
  insert into public.notifications (user_id, chama_id, type, title, body, data)
  select b.member_id, b.chama_id, 'transaction', 'Contribution received',
         format('KES %s recorded to %s', to_char(b.amount / 100.0, 'FM999,999,999,990.00'), b.chama_name),
         jsonb_build_object('transaction_id', b.transaction_id)
    from unnest(v_batch) b where b.error is null and b.replay is null
   order by b.i;

  with recorded as (
    select b.i, b.scope, b.idempotency_key, b.request_hash,
           internal.transaction_json(b.transaction_id) as body
      from unnest(v_batch) b
     where b.error is null and b.replay is null
  ), stored as (
    insert into internal.idempotency_keys (scope, key, request_hash, status, response_status,
                                           response_body, completed_at)
    select r.scope, r.idempotency_key, r.request_hash, 'completed', 201, r.body, now()
      from recorded r
  )
  select jsonb_agg(case
           when b.error is not null then
             jsonb_build_object('i', b.i, 'error', b.error, 'message', b.message)
           when b.replay is not null then
             jsonb_build_object('i', b.i, 'replayed', true, 'transaction', b.replay)
           else jsonb_build_object('i', b.i, 'replayed', false, 'transaction', r.body)
         end order by b.i)
    into v_answers
    from unnest(v_batch) b left join recorded r on r.i = b.i;
  return v_answers;
end
$$;

revoke all on function internal.record_manual_contributions(jsonb) from public;
grant execute on function internal.record_manual_contributions(jsonb) to service_role;
