-- Audit: every insert, update and delete of a domain table is recorded in public.audit_logs in
-- the same transaction, with the actor from the request's JWT claims and the old and new row.
-- The log is append-only for every role (no grant, and a trigger that refuses), and each row is
-- chained to the previous row of its chain by a SHA-256 hash, so that editing or deleting a row
-- (even by a superuser who disables the trigger) is detected by internal.verify_audit_chain().
--
-- Chains: one per chama ('chama:<id>'), one per user for what belongs to no chama
-- ('user:<id>'), and 'platform' for the rest. Appending locks only the head of its own chain.

-- The exact text a row's hash covers. Timestamps are rendered in UTC so the result does not
-- depend on the session's TimeZone.
create function internal.audit_digest(
  p_prev_hash text,
  p_chain_key text,
  p_chain_seq bigint,
  p_action text,
  p_table_name text,
  p_record_id text,
  p_chama_id uuid,
  p_actor_id uuid,
  p_actor_role text,
  p_old_row jsonb,
  p_new_row jsonb,
  p_metadata jsonb,
  p_created_at timestamptz
) returns text
  language sql immutable
  set search_path = ''
  as $$
  select encode(extensions.digest(
    concat_ws(E'\x1f',
      p_prev_hash, p_chain_key, p_chain_seq::text, p_action, coalesce(p_table_name, ''),
      coalesce(p_record_id, ''), coalesce(p_chama_id::text, ''), coalesce(p_actor_id::text, ''),
      coalesce(p_actor_role, ''), coalesce(p_old_row::text, ''), coalesce(p_new_row::text, ''),
      coalesce(p_metadata::text, ''),
      to_char(p_created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')),
    'sha256'), 'hex')
$$;

-- Appends one entry to its chain and returns its id. Every audit path goes through here.
create function internal.audit_append(
  p_action text,
  p_table_name text,
  p_record_id text,
  p_chama_id uuid,
  p_actor_id uuid,
  p_old_row jsonb,
  p_new_row jsonb,
  p_metadata jsonb
) returns bigint
  language plpgsql
  security definer
  set search_path = ''
  as $$
declare
  v_chain text;
  v_seq bigint;
  v_prev text;
  v_role text := coalesce(nullif(auth.role(), ''), current_user::text);
  v_now timestamptz := now();
  v_id bigint;
begin
  v_chain := case
    when p_chama_id is not null then 'chama:' || p_chama_id
    when p_actor_id is not null then 'user:' || p_actor_id
    else 'platform'
  end;
  insert into internal.audit_chain_heads as h (chain_key, last_seq, last_hash)
    values (v_chain, 1, '')
    on conflict (chain_key) do update set last_seq = h.last_seq + 1
    returning h.last_seq, h.last_hash into v_seq, v_prev;
  insert into public.audit_logs (action, table_name, record_id, chama_id, actor_id, actor_role,
                                 old_row, new_row, metadata, chain_key, chain_seq, prev_hash, hash,
                                 created_at)
    values (p_action, p_table_name, p_record_id, p_chama_id, p_actor_id, v_role,
            p_old_row, p_new_row, coalesce(p_metadata, '{}'::jsonb), v_chain, v_seq, v_prev,
            internal.audit_digest(v_prev, v_chain, v_seq, p_action, p_table_name, p_record_id,
                                  p_chama_id, p_actor_id, v_role, p_old_row, p_new_row,
                                  coalesce(p_metadata, '{}'::jsonb), v_now),
            v_now)
    returning id, hash into v_id, v_prev;
  update internal.audit_chain_heads set last_hash = v_prev where chain_key = v_chain;
  return v_id;
end
$$;

-- For events that are not row changes (sign-in, password change, ...), called by the server.
create function internal.audit_log(
  p_action text,
  p_table text,
  p_record_id text,
  p_chama_id uuid,
  p_metadata jsonb,
  p_actor_id uuid default null
) returns bigint
  language sql
  security definer
  set search_path = ''
  as $$
  select internal.audit_append(p_action, p_table, p_record_id, p_chama_id,
                               coalesce(p_actor_id, auth.uid()), null, null, p_metadata)
$$;

-- The row trigger. Arguments: columns whose changes alone are not worth an entry (for example
-- balances that the ledger maintains: the journal is their record).
create function internal.audit_row() returns trigger
  language plpgsql
  security definer
  set search_path = ''
  as $$
declare
  v_old jsonb := case when tg_op in ('UPDATE', 'DELETE') then to_jsonb(old) end;
  v_new jsonb := case when tg_op in ('INSERT', 'UPDATE') then to_jsonb(new) end;
  v_row jsonb := coalesce(v_new, v_old);
  v_ignored text[] := coalesce(tg_argv::text[], '{}') || array['updated_at'];
  v_chama uuid;
  v_record text;
begin
  if tg_op = 'UPDATE' and (v_old - v_ignored) = (v_new - v_ignored) then
    return null;
  end if;
  v_chama := case
    when tg_table_name = 'chamas' then (v_row ->> 'id')::uuid
    else (v_row ->> 'chama_id')::uuid
  end;
  v_record := coalesce(v_row ->> 'id',
                       case when tg_table_name = 'meeting_attendance'
                            then (v_row ->> 'meeting_id') || '/' || (v_row ->> 'user_id') end);
  perform internal.audit_append(
    lower(tg_table_name) || '.' || lower(tg_op),
    tg_table_schema || '.' || tg_table_name,
    v_record,
    v_chama,
    auth.uid(),
    v_old,
    v_new,
    '{}'::jsonb);
  return null;
end
$$;

do $$
declare
  spec record;
begin
  for spec in
    select * from (values
      ('users', array[]::text[]),
      ('chamas', array['balance']),
      ('chama_members', array['contributed_total']),
      ('chama_invitations', array[]::text[]),
      ('transactions', array[]::text[]),
      ('disbursement_requests', array[]::text[]),
      ('disbursement_approvals', array[]::text[]),
      ('meetings', array[]::text[]),
      ('meeting_attendance', array[]::text[]),
      ('payment_requests', array[]::text[])
    ) as t(name, ignored)
  loop
    execute format(
      'create trigger audit_row after insert or update or delete on public.%I
         for each row execute function internal.audit_row(%s)',
      spec.name,
      (select coalesce(string_agg(quote_literal(c), ', '), '') from unnest(spec.ignored) as c));
  end loop;
end
$$;

-- Append-only, whoever asks.
create trigger audit_logs_append_only before update or delete on public.audit_logs
  for each row execute function internal.refuse_change();
create trigger audit_logs_no_truncate before truncate on public.audit_logs
  for each statement execute function internal.refuse_change();

-- Walks every chain and reports each entry whose hash or link does not check out, and each gap
-- (a deleted entry). An empty result means the log is intact.
create function internal.verify_audit_chain()
  returns table (chain_key text, chain_seq bigint, audit_id bigint, problem text)
  language sql stable
  set search_path = ''
  as $$
  with ordered as (
    select a.*,
           lag(a.hash) over w as expected_prev,
           lag(a.chain_seq) over w as previous_seq
      from public.audit_logs a
    window w as (partition by a.chain_key order by a.chain_seq)
  )
  select o.chain_key, o.chain_seq, o.id,
         case
           when o.hash <> internal.audit_digest(o.prev_hash, o.chain_key, o.chain_seq, o.action,
                                                 o.table_name, o.record_id, o.chama_id, o.actor_id,
                                                 o.actor_role, o.old_row, o.new_row, o.metadata,
                                                 o.created_at)
             then 'content does not match its hash'
           when o.chain_seq <> coalesce(o.previous_seq, 0) + 1
             then 'entries missing before this one'
           when o.prev_hash <> coalesce(o.expected_prev, '')
             then 'link to the previous entry is broken'
         end
    from ordered o
   where o.hash <> internal.audit_digest(o.prev_hash, o.chain_key, o.chain_seq, o.action,
                                          o.table_name, o.record_id, o.chama_id, o.actor_id,
                                          o.actor_role, o.old_row, o.new_row, o.metadata,
                                          o.created_at)
      or o.chain_seq <> coalesce(o.previous_seq, 0) + 1
      or o.prev_hash <> coalesce(o.expected_prev, '')
  union all
  -- The newest entries of a chain deleted: the head remembers how far the chain went.
  select h.chain_key, h.last_seq, null::bigint, 'entries missing at the end of the chain'
    from internal.audit_chain_heads h
   where h.last_seq > coalesce((select max(a.chain_seq) from public.audit_logs a
                                 where a.chain_key = h.chain_key), 0)
  union all
  -- The newest entry rewritten with a recomputed hash: no later entry links to it, but the
  -- head remembers its hash.
  select h.chain_key, h.last_seq, a.id, 'the newest entry does not match the chain head'
    from internal.audit_chain_heads h
    join public.audit_logs a on a.chain_key = h.chain_key and a.chain_seq = h.last_seq
   where a.hash <> h.last_hash
$$;

revoke all on function internal.audit_append(text, text, text, uuid, uuid, jsonb, jsonb, jsonb) from public;
revoke all on function internal.audit_log(text, text, text, uuid, jsonb, uuid) from public;
grant execute on all functions in schema internal to service_role;
