-- The small helper functions on the hot paths, in PL/pgSQL instead of SQL.
--
-- A `language sql` function that cannot be inlined (these cannot: each sets `search_path`, and
-- some are SECURITY DEFINER) is parsed, analysed and planned again on every call: PostgreSQL
-- keeps no plan of a SQL function across queries. Profiling the contribution benchmark with
-- `perf` put a sixth of the database's time in `fmgr_sql`, mostly re-parsing these helpers
-- (the RLS membership checks, the audit digest, notification and idempotency writes). A PL/pgSQL
-- function keeps its plans for the life of the connection. Same signatures, same volatility,
-- same security and settings, same answers; `create or replace` keeps every grant.

create or replace function internal.audit_digest(
  p_prev_hash text, p_chain_key text, p_chain_seq bigint, p_action text, p_table_name text,
  p_record_id text, p_chama_id uuid, p_actor_id uuid, p_actor_role text, p_old_row jsonb,
  p_new_row jsonb, p_metadata jsonb, p_created_at timestamptz)
  returns text
  language plpgsql
  immutable
  set search_path = ''
  as $$
begin
  return encode(extensions.digest(
    concat_ws(E'\x1f',
      p_prev_hash, p_chain_key, p_chain_seq::text, p_action, coalesce(p_table_name, ''),
      coalesce(p_record_id, ''), coalesce(p_chama_id::text, ''), coalesce(p_actor_id::text, ''),
      coalesce(p_actor_role, ''), coalesce(p_old_row::text, ''), coalesce(p_new_row::text, ''),
      coalesce(p_metadata::text, ''),
      to_char(p_created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')),
    'sha256'), 'hex');
end
$$;

create or replace function internal.audit_log(
  p_action text, p_table text, p_record_id text, p_chama_id uuid, p_metadata jsonb,
  p_actor_id uuid default null)
  returns bigint
  language plpgsql
  security definer
  set search_path = ''
  as $$
begin
  return internal.audit_append(p_action, p_table, p_record_id, p_chama_id,
                               coalesce(p_actor_id, auth.uid()), null, null, p_metadata);
end
$$;

create or replace function internal.notify(
  p_user_id uuid, p_chama_id uuid, p_type text, p_title text, p_body text, p_data jsonb)
  returns void
  language plpgsql
  set search_path = ''
  as $$
begin
  insert into public.notifications (user_id, chama_id, type, title, body, data)
  values (p_user_id, p_chama_id, p_type, p_title, p_body, p_data);
end
$$;

create or replace function internal.idempotency_store(
  p_scope text, p_key text, p_request_hash text, p_status integer, p_response jsonb)
  returns void
  language plpgsql
  set search_path = ''
  as $$
begin
  insert into internal.idempotency_keys (scope, key, request_hash, status, response_status,
                                         response_body, completed_at)
  values (p_scope, p_key, p_request_hash, 'completed', p_status, p_response, now());
end
$$;

create or replace function internal.transaction_json(p_id uuid)
  returns jsonb
  language plpgsql
  stable
  set search_path = ''
  as $$
begin
  return (
    select jsonb_build_object(
      'id', t.id, 'chama_id', t.chama_id, 'member_id', t.user_id, 'type', t.type,
      'amount', t.amount, 'currency', t.currency, 'status', t.status,
      'payment_method', t.payment_method, 'reference', t.reference,
      'mpesa_receipt', t.mpesa_receipt, 'description', t.description,
      'reverses_id', t.reverses_id, 'reason', t.reason, 'recorded_by', t.created_by,
      'created_at', t.created_at)
    from public.transactions t where t.id = p_id);
end
$$;

create or replace function internal.chama_name(p_chama_id uuid)
  returns text
  language plpgsql
  stable
  set search_path = ''
  as $$
begin
  return (select name from public.chamas where id = p_chama_id);
end
$$;

create or replace function public.has_chama_role(p_chama_id uuid, p_roles text[])
  returns boolean
  language plpgsql
  stable
  security definer
  set search_path = ''
  as $$
begin
  return exists (
    select from public.chama_members m
     where m.chama_id = p_chama_id
       and m.user_id = (select auth.uid())
       and m.status = 'active'
       and m.role = any (p_roles));
end
$$;

create or replace function public.is_chama_member(p_chama_id uuid)
  returns boolean
  language plpgsql
  stable
  security definer
  set search_path = ''
  as $$
begin
  return exists (
    select from public.chama_members m
     where m.chama_id = p_chama_id
       and m.user_id = (select auth.uid())
       and m.status = 'active');
end
$$;

create or replace function public.is_chama_official(p_chama_id uuid)
  returns boolean
  language plpgsql
  stable
  set search_path = ''
  as $$
begin
  return public.has_chama_role(p_chama_id, array['chairperson', 'treasurer', 'secretary']);
end
$$;

create or replace function public.is_platform_admin()
  returns boolean
  language plpgsql
  stable
  set search_path = ''
  as $$
begin
  return coalesce((select auth.jwt()) -> 'app_metadata' ->> 'platform_role', '') = 'admin';
end
$$;

create or replace function public.shares_chama_with(p_user_id uuid)
  returns boolean
  language plpgsql
  stable
  security definer
  set search_path = ''
  as $$
begin
  return exists (
    select from public.chama_members mine
      join public.chama_members theirs on theirs.chama_id = mine.chama_id
     where mine.user_id = (select auth.uid()) and mine.status = 'active'
       and theirs.user_id = p_user_id and theirs.status in ('active', 'pending'));
end
$$;

create or replace function public.caller_phone()
  returns text
  language plpgsql
  stable
  set search_path = ''
  as $$
begin
  return case when coalesce((select auth.jwt()) ->> 'phone', '') = '' then null
              else '+' || ltrim((select auth.jwt()) ->> 'phone', '+') end;
end
$$;

create or replace function public.storage_chama_id(p_name text)
  returns uuid
  language plpgsql
  immutable
  set search_path = ''
  as $$
begin
  return case when split_part(p_name, '/', 1) ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
              then split_part(p_name, '/', 1)::uuid end;
end
$$;

create or replace function internal.active_officials(p_chama_id uuid)
  returns integer
  language plpgsql
  stable
  set search_path = ''
  as $$
begin
  return (select count(*)::integer from public.chama_members
           where chama_id = p_chama_id and status = 'active'
             and role in ('chairperson', 'treasurer', 'secretary'));
end
$$;

create or replace function internal.eligible_approvers(p_chama_id uuid, p_requester uuid)
  returns integer
  language plpgsql
  stable
  set search_path = ''
  as $$
begin
  return (select count(*)::integer from public.chama_members
           where chama_id = p_chama_id and status = 'active'
             and role in ('chairperson', 'treasurer', 'secretary') and user_id <> p_requester);
end
$$;

create or replace function internal.payment_request_json(p_id uuid)
  returns jsonb
  language plpgsql
  stable
  set search_path = ''
  as $$
begin
  return (
    select jsonb_build_object(
      'id', r.id, 'chama_id', r.chama_id, 'member_id', r.user_id, 'phone', r.phone,
      'amount', r.amount, 'currency', r.currency, 'status', r.status, 'channel', r.channel,
      'checkout_request_id', r.checkout_request_id, 'mpesa_receipt', r.mpesa_receipt,
      'failure_reason', r.failure_reason, 'transaction_id', r.transaction_id,
      'expires_at', r.expires_at, 'created_at', r.created_at, 'updated_at', r.updated_at)
    from public.payment_requests r where r.id = p_id);
end
$$;

create or replace function internal.disbursement_json(p_id uuid)
  returns jsonb
  language plpgsql
  stable
  set search_path = ''
  as $$
begin
  return (
    select jsonb_build_object(
      'id', r.id, 'chama_id', r.chama_id, 'requested_by', r.requested_by,
      'recipient_member_id', r.recipient_user_id, 'recipient_phone', r.recipient_phone,
      'amount', r.amount, 'currency', r.currency, 'reason', r.reason, 'status', r.status,
      'required_approvals', r.required_approvals, 'approvals', r.approvals_count,
      'rejections', r.rejections_count, 'transaction_id', r.transaction_id,
      'result', r.result_desc, 'decided_at', r.decided_at, 'expires_at', r.expires_at,
      'created_at', r.created_at,
      'decisions', coalesce((
        select jsonb_agg(jsonb_build_object('official_id', a.approver_id, 'decision', a.decision,
                                            'comment', a.comment, 'at', a.created_at)
                         order by a.created_at)
          from public.disbursement_approvals a where a.request_id = r.id), '[]'::jsonb))
    from public.disbursement_requests r where r.id = p_id);
end
$$;

create or replace function internal.store_mpesa_callback(
  p_kind text, p_key text, p_payload jsonb, p_source_ip inet, p_status text, p_error text)
  returns bigint
  language plpgsql
  set search_path = ''
  as $$
declare
  v_id bigint;
begin
  insert into internal.mpesa_callbacks (kind, idempotency_key, payload, source_ip, status, error)
    values (p_kind, p_key, p_payload, p_source_ip, p_status, p_error)
    on conflict on constraint mpesa_callbacks_idempotency_key do nothing
    returning id into v_id;
  return v_id;
end
$$;

create or replace function internal.mpesa_failure_reason(p_code integer)
  returns text
  language plpgsql
  immutable
  set search_path = ''
  as $$
begin
  return case p_code
    when 1 then 'Your M-Pesa balance was not enough for this payment.'
    when 1001 then 'Another M-Pesa payment was in progress on your phone. Please try again in a minute.'
    when 1019 then 'The M-Pesa prompt expired before it was answered. Please try again.'
    when 1025 then 'M-Pesa could not send the prompt to your phone. Please try again.'
    when 1032 then 'You cancelled the M-Pesa prompt.'
    when 1037 then 'Your phone could not be reached. Check that it is on and has network, then try again.'
    when 2001 then 'The M-Pesa PIN entered was wrong.'
    else format('M-Pesa could not complete the payment (code %s).', p_code)
  end;
end
$$;

create or replace function internal.stk_push_sent(
  p_id uuid, p_merchant_request_id text, p_checkout_request_id text)
  returns boolean
  language plpgsql
  set search_path = ''
  as $$
begin
  update public.payment_requests
     set status = 'sent', merchant_request_id = p_merchant_request_id,
         checkout_request_id = p_checkout_request_id
   where id = p_id and status = 'queued';
  return found;
end
$$;
