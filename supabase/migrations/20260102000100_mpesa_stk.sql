-- M-Pesa contributions by STK push: starting one, recording what Daraja answered, and applying
-- its callback exactly once.
--
-- The shape shared with the USSD channel: a `public.payment_requests` row (status `queued`) and
-- an `internal.outbox` row with topic `mpesa.stk_push`, payload {"payment_request_id": "<uuid>"},
-- dedupe key `stk:<payment_request_id>`. The M-Pesa worker claims that topic, calls Daraja, and
-- stores MerchantRequestID / CheckoutRequestID (status `sent`).
--
-- Callbacks are stored raw in `internal.mpesa_callbacks` first (unique (kind, idempotency_key):
-- a repeat is not stored twice) and applied by internal.apply_stk_callback in one transaction.
-- Whatever does not add up (unknown CheckoutRequestID, another amount or phone, a success after
-- we gave up) goes to `review`, never to a balance.

-- Queues an STK push for a member: the payment request and its outbox message. Returns the id.
create function internal.start_stk_contribution(
  p_chama_id uuid,
  p_user_id uuid,
  p_amount bigint,
  p_phone text,
  p_channel text
) returns uuid
  language plpgsql
  set search_path = ''
  as $$
declare
  v_id uuid;
begin
  if p_amount is null or p_amount <= 0 or p_amount % 100 <> 0 then
    raise exception 'an M-Pesa amount is a positive number of whole shillings' using errcode = 'PX422';
  end if;
  insert into public.payment_requests (chama_id, user_id, phone, amount, channel)
    values (p_chama_id, p_user_id, p_phone, p_amount, p_channel)
    returning id into v_id;
  insert into internal.outbox (topic, payload, dedupe_key)
    values ('mpesa.stk_push', jsonb_build_object('payment_request_id', v_id), 'stk:' || v_id);
  return v_id;
end
$$;

-- The user-facing shape of a payment request.
create function internal.payment_request_json(p_id uuid) returns jsonb
  language sql stable
  set search_path = ''
  as $$
  select jsonb_build_object(
    'id', r.id, 'chama_id', r.chama_id, 'member_id', r.user_id, 'phone', r.phone,
    'amount', r.amount, 'currency', r.currency, 'status', r.status, 'channel', r.channel,
    'checkout_request_id', r.checkout_request_id, 'mpesa_receipt', r.mpesa_receipt,
    'failure_reason', r.failure_reason, 'transaction_id', r.transaction_id,
    'expires_at', r.expires_at, 'created_at', r.created_at, 'updated_at', r.updated_at)
  from public.payment_requests r where r.id = p_id
$$;

-- A member starts a contribution by STK push to their phone (or another), once per
-- Idempotency-Key. The answer is the queued payment request.
create function public.start_mpesa_contribution(
  p_chama_id uuid,
  p_amount bigint,
  p_phone text,
  p_idempotency_key text,
  p_request_hash text
) returns jsonb
  language plpgsql
  security definer
  set search_path = ''
  as $$
declare
  v_me uuid := auth.uid();
  v_scope text := 'mpesa_contribution:' || coalesce(auth.uid()::text, '');
  v_stored jsonb;
  v_phone text;
  v_id uuid;
  v_row jsonb;
begin
  if v_me is null then
    raise exception 'sign in to contribute' using errcode = '42501';
  end if;
  if not exists (select from public.chama_members
                  where chama_id = p_chama_id and user_id = v_me and status = 'active') then
    raise exception 'chama not found' using errcode = 'PX404';
  end if;
  v_stored := internal.idempotency_claim(v_scope, p_idempotency_key, p_request_hash);
  if v_stored is not null then
    return jsonb_build_object('replayed', true, 'payment_request', v_stored);
  end if;
  if (select status from public.chamas where id = p_chama_id) <> 'active' then
    raise exception 'this chama is not active' using errcode = 'P0001';
  end if;
  v_phone := coalesce(p_phone, (select phone from public.users where id = v_me));
  if v_phone is null then
    raise exception 'phone is required: your profile has no phone number' using errcode = 'PX422';
  end if;
  v_id := internal.start_stk_contribution(p_chama_id, v_me, p_amount, v_phone, 'app');
  v_row := internal.payment_request_json(v_id);
  perform internal.idempotency_store(v_scope, p_idempotency_key, p_request_hash, 202, v_row);
  return jsonb_build_object('replayed', false, 'payment_request', v_row);
end
$$;

-- Daraja accepted the push: the ids its callback will carry.
create function internal.stk_push_sent(p_id uuid, p_merchant_request_id text, p_checkout_request_id text)
  returns boolean
  language sql
  set search_path = ''
  as $$
  with sent as (
    update public.payment_requests
       set status = 'sent', merchant_request_id = p_merchant_request_id,
           checkout_request_id = p_checkout_request_id
     where id = p_id and status = 'queued'
     returning id)
  select exists (select from sent)
$$;

-- What a member reads when M-Pesa says no.
create function internal.mpesa_failure_reason(p_code integer) returns text
  language sql immutable
  set search_path = ''
  as $$
  select case p_code
    when 1 then 'Your M-Pesa balance was not enough for this payment.'
    when 1001 then 'Another M-Pesa payment was in progress on your phone. Please try again in a minute.'
    when 1019 then 'The M-Pesa prompt expired before it was answered. Please try again.'
    when 1025 then 'M-Pesa could not send the prompt to your phone. Please try again.'
    when 1032 then 'You cancelled the M-Pesa prompt.'
    when 1037 then 'Your phone could not be reached. Check that it is on and has network, then try again.'
    when 2001 then 'The M-Pesa PIN entered was wrong.'
    else format('M-Pesa could not complete the payment (code %s).', p_code)
  end
$$;

-- Daraja refused the push or M-Pesa reported a failure: the request fails, the member is told.
create function internal.fail_payment_request(p_id uuid, p_code integer, p_desc text, p_reason text)
  returns boolean
  language plpgsql
  set search_path = ''
  as $$
declare
  v_request public.payment_requests;
begin
  update public.payment_requests
     set status = 'failed', result_code = p_code, result_desc = left(p_desc, 500),
         failure_reason = p_reason
   where id = p_id and status in ('queued', 'sent')
   returning * into v_request;
  if not found then
    return false;
  end if;
  perform internal.notify(v_request.user_id, v_request.chama_id, 'transaction', 'M-Pesa payment not completed',
    format('KES %s: %s', to_char(v_request.amount / 100.0, 'FM999,999,999,990.00'), p_reason),
    jsonb_build_object('payment_request_id', p_id));
  return true;
end
$$;

-- Stores a callback as it came. Returns its id, or null when the same (kind, key) is there
-- already (a repeat: the unique constraint decides, not the caller).
create function internal.store_mpesa_callback(
  p_kind text, p_key text, p_payload jsonb, p_source_ip inet, p_status text, p_error text
) returns bigint
  language sql
  set search_path = ''
  as $$
  insert into internal.mpesa_callbacks (kind, idempotency_key, payload, source_ip, status, error)
    values (p_kind, p_key, p_payload, p_source_ip, p_status, p_error)
    on conflict on constraint mpesa_callbacks_idempotency_key do nothing
    returning id
$$;

-- Applies a stored STK callback, parsed by the server (the raw payload stays in the inbox).
-- p_amount is in cents, null unless the result is a success. Answers the callback's new status:
-- applied, failed_result (recorded as a failure), review, or received (not yet: the request
-- it names is not known yet and the grace period has not run out).
create function internal.apply_stk_callback(
  p_callback_id bigint,
  p_checkout_request_id text,
  p_result_code integer,
  p_result_desc text,
  p_amount bigint,
  p_receipt text,
  p_phone text,
  p_paid_at timestamptz,
  p_unknown_grace interval
) returns text
  language plpgsql
  set search_path = ''
  as $$
declare
  v_callback internal.mpesa_callbacks;
  v_request public.payment_requests;
  v_tx uuid;
  v_chama text;
  v_problem text;
begin
  select * into v_callback from internal.mpesa_callbacks where id = p_callback_id for update;
  if not found then
    raise exception 'callback % not found', p_callback_id using errcode = 'PX404';
  end if;
  if v_callback.status <> 'received' then
    return v_callback.status; -- applied already (by another worker, or before a restart)
  end if;
  update internal.mpesa_callbacks set attempts = attempts + 1 where id = p_callback_id;

  select * into v_request from public.payment_requests
   where checkout_request_id = p_checkout_request_id;
  if not found then
    if v_callback.received_at > now() - p_unknown_grace then
      update internal.mpesa_callbacks set error = 'no payment request has this CheckoutRequestID yet'
       where id = p_callback_id;
      return 'received';
    end if;
    update internal.mpesa_callbacks
       set status = 'review', error = 'no payment request has this CheckoutRequestID', applied_at = now()
     where id = p_callback_id;
    return 'review';
  end if;
  -- The chama row first (the ledger's lock order), then the request.
  perform 1 from public.chamas where id = v_request.chama_id for update;
  select * into v_request from public.payment_requests where id = v_request.id for update;

  if p_result_code <> 0 then
    if v_request.status in ('queued', 'sent') then
      perform internal.fail_payment_request(v_request.id, p_result_code, p_result_desc,
                                            internal.mpesa_failure_reason(p_result_code));
      update internal.mpesa_callbacks set status = 'applied', applied_at = now(), error = null
       where id = p_callback_id;
      return 'applied';
    end if;
    update internal.mpesa_callbacks
       set status = 'ignored', applied_at = now(),
           error = format('a failure for a request already %s', v_request.status)
     where id = p_callback_id;
    return 'ignored';
  end if;

  if v_request.status not in ('queued', 'sent') then
    v_problem := format('a successful payment for a request already %s', v_request.status);
  elsif p_amount is distinct from v_request.amount then
    v_problem := format('amount %s does not match the request''s %s', p_amount, v_request.amount);
  elsif p_phone is distinct from v_request.phone::text then
    v_problem := 'the paying phone does not match the request''s';
  elsif p_receipt is null or p_receipt !~ '^[A-Z0-9]{10}$' then
    v_problem := 'no valid MpesaReceiptNumber';
  end if;

  if v_problem is null then
    begin
      v_tx := internal.record_contribution(v_request.chama_id, v_request.user_id, v_request.amount,
                'mpesa', p_checkout_request_id, p_receipt, v_request.phone, 'M-Pesa contribution',
                null, coalesce(p_paid_at, now()));
    exception
      when unique_violation then
        v_problem := 'this M-Pesa receipt was credited already';
      when raise_exception then
        v_problem := sqlerrm; -- e.g. the member left the chama meanwhile
    end;
  end if;

  if v_problem is not null then
    update public.payment_requests
       set status = 'review', mpesa_receipt = case when p_receipt ~ '^[A-Z0-9]{10}$'
                                                    and not exists (select from public.payment_requests
                                                                     where mpesa_receipt = p_receipt)
                                                   then p_receipt end,
           result_code = p_result_code, result_desc = left(p_result_desc, 500)
     where id = v_request.id and status <> 'completed';
    update internal.mpesa_callbacks set status = 'review', error = v_problem, applied_at = now()
     where id = p_callback_id;
    return 'review';
  end if;

  update public.payment_requests
     set status = 'completed', mpesa_receipt = p_receipt, transaction_id = v_tx,
         result_code = 0, result_desc = left(p_result_desc, 500), failure_reason = null
   where id = v_request.id;
  select name into v_chama from public.chamas where id = v_request.chama_id;
  perform internal.notify(v_request.user_id, v_request.chama_id, 'transaction', 'Contribution received',
    format('KES %s received by M-Pesa (%s) for %s', to_char(v_request.amount / 100.0, 'FM999,999,999,990.00'),
           p_receipt, v_chama),
    jsonb_build_object('transaction_id', v_tx, 'payment_request_id', v_request.id));
  update internal.mpesa_callbacks set status = 'applied', applied_at = now(), error = null
   where id = p_callback_id;
  return 'applied';
end
$$;

-- Callbacks stored and not applied yet (a crash between storing and applying, or a request not
-- known yet): the worker applies them.
create function internal.pending_mpesa_callbacks(p_older_than interval, p_limit integer)
  returns setof internal.mpesa_callbacks
  language sql stable
  set search_path = ''
  as $$
  select * from internal.mpesa_callbacks
   where status = 'received' and received_at <= now() - p_older_than
   order by received_at, id
   limit p_limit
$$;

revoke all on function internal.start_stk_contribution(uuid, uuid, bigint, text, text),
  internal.payment_request_json(uuid), internal.stk_push_sent(uuid, text, text),
  internal.mpesa_failure_reason(integer), internal.fail_payment_request(uuid, integer, text, text),
  internal.store_mpesa_callback(text, text, jsonb, inet, text, text),
  internal.apply_stk_callback(bigint, text, integer, text, bigint, text, text, timestamptz, interval),
  internal.pending_mpesa_callbacks(interval, integer)
  from public;
grant execute on function internal.start_stk_contribution(uuid, uuid, bigint, text, text),
  internal.payment_request_json(uuid), internal.stk_push_sent(uuid, text, text),
  internal.mpesa_failure_reason(integer), internal.fail_payment_request(uuid, integer, text, text),
  internal.store_mpesa_callback(text, text, jsonb, inet, text, text),
  internal.apply_stk_callback(bigint, text, integer, text, bigint, text, text, timestamptz, interval),
  internal.pending_mpesa_callbacks(interval, integer)
  to service_role;
revoke all on function public.start_mpesa_contribution(uuid, bigint, text, text, text) from public, anon;
grant execute on function public.start_mpesa_contribution(uuid, bigint, text, text, text) to authenticated, service_role;
