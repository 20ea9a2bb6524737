-- Who may be sent an M-Pesa PIN prompt, and how often.
--
-- Until now any member could ask for STK prompts to any phone, as many as they liked (the app's
-- `phone` field, the Data API's `rpc/start_mpesa_contribution`), and a payment from that phone
-- was credited to the member: a stranger could be bombed with PIN prompts and, tired of them,
-- pay someone else's contribution. Now:
--
-- * the app and the Data API prompt only the caller's own verified phone
--   (`public.caller_phone()`: `auth.users.phone` with `phone_confirmed_at` set); another
--   `phone` is refused, and so is a caller with no verified phone, each naming the field;
-- * USSD prompts the phone that dialled (which the gateway asserts), as before;
-- * every channel meets `internal.start_stk_contribution`, which holds the rules of a prompt in
--   one place: whole shillings from KES 1 to KES 250,000 (the USSD function said KES 10, the
--   app KES 1 and the rpc had no ceiling), an active member of an active chama, and at most
--   5 prompts per 10 minutes per member and per phone (SQLSTATE PX429, answered 429).

-- The per-phone count reads this (the per-member one has payment_requests_user_id_idx).
create index payment_requests_phone_idx on public.payment_requests (phone, created_at desc);

-- Queues an STK push for a member: the payment request and its outbox message. Returns the id.
-- The only way a prompt is queued; its callers decide which phone is the member's.
create or replace function internal.start_stk_contribution(
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
  -- At most this many prompts in this window, per member and per phone, whatever the channel
  -- and whatever became of them (a cancelled prompt rang the phone too).
  c_prompts constant integer := 5;
  c_window constant interval := interval '10 minutes';
  v_id uuid;
  v_oldest timestamptz;
begin
  if p_amount is null or p_amount < 100 or p_amount > 25000000 or p_amount % 100 <> 0 then
    raise exception 'amount must be whole shillings from KES 1 to KES 250,000 (100 to 25000000 cents)'
      using errcode = 'PX422', column = 'amount';
  end if;
  if p_phone is null or p_phone !~ '^\+254[17][0-9]{8}$' then
    raise exception 'phone must be a Kenyan mobile number in E.164 (+2547XXXXXXXX)'
      using errcode = 'PX422', column = 'phone';
  end if;
  perform 1 from public.chama_members
   where chama_id = p_chama_id and user_id = p_user_id and status = 'active';
  if not found then
    raise exception 'chama not found' using errcode = 'PX404';
  end if;
  perform 1 from public.chamas where id = p_chama_id and status = 'active';
  if not found then
    raise exception 'this chama is not active' using errcode = 'P0001';
  end if;

  -- Two requests at once must not both see room for one: the counts are taken under a lock
  -- per member, then per phone (always in that order, so two of them never wait on each
  -- other). Each lock is one member's or one phone's, never shared by all chamas.
  perform pg_advisory_xact_lock(7301, hashtext(p_user_id::text));
  perform pg_advisory_xact_lock(7302, hashtext(p_phone));
  select min(created_at) into v_oldest
    from (select r.created_at from public.payment_requests r
           where r.user_id = p_user_id and r.created_at > now() - c_window
           order by r.created_at desc limit c_prompts) recent
   having count(*) >= c_prompts;
  if v_oldest is null then
    select min(created_at) into v_oldest
      from (select r.created_at from public.payment_requests r
             where r.phone = p_phone and r.created_at > now() - c_window
             order by r.created_at desc limit c_prompts) recent
     having count(*) >= c_prompts;
  end if;
  if v_oldest is not null then
    raise exception 'too many M-Pesa prompts: at most % in % minutes per member and per phone; try again in % minutes',
      c_prompts, extract(epoch from c_window)::integer / 60,
      greatest(1, ceil(extract(epoch from v_oldest + c_window - now()) / 60)::integer)
      using errcode = 'PX429';
  end if;

  insert into public.payment_requests (chama_id, user_id, phone, amount, channel)
    values (p_chama_id, p_user_id, p_phone, p_amount, p_channel)
    returning id into v_id;
  insert into internal.outbox (topic, payload, dedupe_key)
    values ('mpesa.stk_push', jsonb_build_object('payment_request_id', v_id), 'stk:' || v_id);
  return v_id;
end
$$;

-- A member starts a contribution by STK push to their own verified phone, once per
-- Idempotency-Key. The answer is the queued payment request. What changed: the phone is the
-- caller's confirmed one (`public.caller_phone()`), not the profile's, and `p_phone` may only
-- repeat it; the amount and the limits are checked by internal.start_stk_contribution.
create or replace function public.start_mpesa_contribution(
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
  v_phone text := public.caller_phone();
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
  if v_phone is null then
    raise exception 'verify your phone number first: M-Pesa prompts go only to your own verified number'
      using errcode = 'PX422', column = 'phone';
  end if;
  if p_phone is not null and p_phone is distinct from v_phone then
    raise exception 'phone must be your own verified number (leave it out to use it): M-Pesa prompts go to no other phone'
      using errcode = 'PX422', column = 'phone';
  end if;
  v_id := internal.start_stk_contribution(p_chama_id, v_me, p_amount, v_phone, 'app');
  v_row := internal.payment_request_json(v_id);
  perform internal.idempotency_store(v_scope, p_idempotency_key, p_request_hash, 202, v_row);
  return jsonb_build_object('replayed', false, 'payment_request', v_row);
end
$$;

-- A contribution started on USSD prompts the phone that dialled (the gateway asserts it). What
-- changed: the rules (amount, membership, limits) are internal.start_stk_contribution's.
create or replace function internal.ussd_start_contribution(
  p_chama_id uuid,
  p_user_id uuid,
  p_phone public.e164_phone,
  p_amount bigint
) returns uuid
  language sql
  set search_path = ''
  as $$
  select internal.start_stk_contribution(p_chama_id, p_user_id, p_amount, p_phone::text, 'ussd')
$$;


-- When a payment happened, and by whose clock ---------------------------------------------------
--
-- A callback's TransactionDate (STK) or TransTime (paybill) used to be the ledger date of the
-- contribution, unchecked: a callback dated 2099 was booked in 2099, which moves money between
-- periods, statements and "paid on time". Now every M-Pesa contribution is booked when we
-- received its callback (internal.mpesa_callbacks.received_at), and M-Pesa's date is kept in
-- the transaction's metadata as data:
--   {"mpesa_transaction_date": "<timestamptz>"}
-- plus "mpesa_date_off": true when it is more than a day from the prompt's creation (STK) or
-- from the receipt (paybill), for officials to look at. Such a payment is still credited: its
-- amount, phone, receipt and request were all checked, and its date no longer decides anything.

-- The metadata of M-Pesa's own date `p_mpesa_at`, compared with `p_expected_at`.
create function internal.mpesa_date(p_mpesa_at timestamptz, p_expected_at timestamptz)
  returns jsonb
  language sql immutable
  set search_path = ''
  as $$
  select case
    when p_mpesa_at is null then '{}'::jsonb
    else jsonb_build_object('mpesa_transaction_date', p_mpesa_at)
         || case when p_expected_at is not null
                      and abs(extract(epoch from p_mpesa_at - p_expected_at)) > 86400
                 then jsonb_build_object('mpesa_date_off', true)
                 else '{}'::jsonb end
  end
$$;
revoke all on function internal.mpesa_date(timestamptz, timestamptz) from public;
grant execute on function internal.mpesa_date(timestamptz, timestamptz) to service_role;

-- record_contribution (as in 20260101000200_ledger.sql) with one more argument, p_metadata,
-- the transactions row's metadata. Dropped first: an added defaulted argument would otherwise
-- make a second function that every 10-argument call finds ambiguous.
drop function internal.record_contribution(uuid, uuid, bigint, text, text, text, text, text, uuid, timestamptz);
create function internal.record_contribution(
  p_chama_id uuid,
  p_user_id uuid,
  p_amount bigint,
  p_method text,
  p_reference text default null,
  p_mpesa_receipt text default null,
  p_phone text default null,
  p_description text default null,
  p_actor_id uuid default null,
  p_at timestamptz default now(),
  p_metadata jsonb default '{}'::jsonb
) returns uuid
  language plpgsql
  set search_path = ''
  as $$
declare
  v_journal uuid;
  v_tx uuid;
begin
  if p_amount is null or p_amount <= 0 then
    raise exception 'a contribution must be a positive amount' using errcode = '23514',
      constraint = 'transactions_amount_positive';
  end if;
  if not exists (select from public.chama_members
                  where chama_id = p_chama_id and user_id = p_user_id and status = 'active') then
    raise exception 'user % is not an active member of chama %', p_user_id, p_chama_id
      using errcode = 'P0001';
  end if;
  v_journal := internal.post_journal(
    p_chama_id, 'contribution', coalesce(p_description, 'contribution'),
    jsonb_build_array(
      jsonb_build_object('account_id', internal.ensure_account(p_chama_id, 'cash'), 'amount', p_amount),
      jsonb_build_object('account_id', internal.ensure_account(p_chama_id, 'member_equity', p_user_id), 'amount', -p_amount)
    ),
    p_actor_id);
  insert into public.transactions (chama_id, user_id, type, amount, status, payment_method, reference,
                                   mpesa_receipt, phone, description, journal_id, created_by,
                                   metadata, created_at, updated_at)
    values (p_chama_id, p_user_id, 'contribution', p_amount, 'completed', p_method, p_reference,
            p_mpesa_receipt, p_phone, p_description, v_journal, p_actor_id, coalesce(p_metadata, '{}'::jsonb),
            p_at, greatest(p_at, now()))
    returning id into v_tx;
  return v_tx;
end
$$;

revoke all on function internal.record_contribution(uuid, uuid, bigint, text, text, text, text, text, uuid, timestamptz, jsonb) from public;
grant execute on function internal.record_contribution(uuid, uuid, bigint, text, text, text, text, text, uuid, timestamptz, jsonb) to service_role;

-- Applies one stored STK callback (as in 20260102000400_mpesa_reconcile.sql). What changed:
-- the contribution is booked at v_callback.received_at, not at the callback's TransactionDate
-- (p_paid_at), which goes into the transaction's metadata (internal.mpesa_date).
create or replace function internal.apply_stk_callback(
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

  if v_request.status = 'completed' and v_request.mpesa_receipt is null
     and p_amount = v_request.amount and p_phone = v_request.phone::text
     and p_receipt ~ '^[A-Z0-9]{10}$' then
    -- Credited already on the word of an STK query (which carries no receipt): the late
    -- callback brings the receipt, and nothing is credited twice.
    update public.payment_requests set mpesa_receipt = p_receipt where id = v_request.id;
    update public.transactions set mpesa_receipt = p_receipt where id = v_request.transaction_id;
    update internal.mpesa_callbacks set status = 'applied', applied_at = now(),
           error = 'receipt recorded for a payment confirmed by query'
     where id = p_callback_id;
    return 'applied';
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
                null, v_callback.received_at, internal.mpesa_date(p_paid_at, v_request.created_at));
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

-- Applies a batch of stored STK callbacks (as in 20260113000000_stk_callback_batches.sql,
-- whose comment describes it). What changed: the transactions insert, which books each
-- contribution at its callback's received_at and keeps b.paid_at (TransactionDate) in
-- metadata, joining the callback and the request for the two times. Its settings are those it
-- has now (plan_cache_mode as 20260115000300_stk_batch_plans_per_call.sql set it).
create or replace function internal.apply_stk_callbacks(p_callbacks jsonb) returns jsonb
  language plpgsql
  set search_path = ''
  set plan_cache_mode = force_custom_plan
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
                                   metadata, created_at, updated_at)
  select b.transaction_id, b.chama_id, b.member_id, 'contribution', b.amount, 'completed', 'mpesa',
         b.checkout_request_id, b.receipt, b.phone, 'M-Pesa contribution', b.journal_id,
         internal.mpesa_date(b.paid_at, r.created_at), c.received_at, greatest(c.received_at, now())
    from unnest(v_batch) b
    join internal.mpesa_callbacks c on c.id = b.callback_id
    join public.payment_requests r on r.id = b.request_id
   where b.applies
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

-- Applies a paybill confirmation (as in 20260102000300_mpesa_c2b.sql). What changed: booked
-- at v_callback.received_at; TransTime (p_paid_at) goes into metadata, compared with receipt.
create or replace function internal.apply_c2b_confirmation(
  p_callback_id bigint,
  p_trans_id text,
  p_amount bigint,
  p_bill_ref text,
  p_phone text,
  p_paid_at timestamptz
) returns text
  language plpgsql
  set search_path = ''
  as $$
declare
  v_callback internal.mpesa_callbacks;
  v_chama public.chamas;
  v_user uuid;
  v_tx uuid;
  v_problem text;
begin
  select * into v_callback from internal.mpesa_callbacks where id = p_callback_id for update;
  if not found then
    raise exception 'callback % not found', p_callback_id using errcode = 'PX404';
  end if;
  if v_callback.status <> 'received' then
    return v_callback.status;
  end if;
  select * into v_chama from public.chamas where paybill_account = upper(btrim(p_bill_ref));
  if not found then
    v_problem := format('no chama has the account number %s', p_bill_ref);
  elsif p_phone is null then
    v_problem := 'the payer''s phone is hidden (hashed MSISDN): match the member by hand';
  else
    select m.user_id into v_user
      from public.chama_members m join public.users u on u.id = m.user_id
     where m.chama_id = v_chama.id and m.status = 'active' and u.phone = p_phone;
    if v_user is null then
      v_problem := 'the paying phone is not an active member''s of this chama';
    end if;
  end if;
  if v_problem is null then
    begin
      v_tx := internal.record_contribution(v_chama.id, v_user, p_amount, 'mpesa', p_trans_id, p_trans_id,
                                           p_phone, 'M-Pesa paybill contribution', null, v_callback.received_at,
                                           internal.mpesa_date(p_paid_at, v_callback.received_at));
    exception
      when unique_violation then v_problem := 'this M-Pesa receipt was credited already';
      when raise_exception then v_problem := sqlerrm;
    end;
  end if;
  if v_problem is not null then
    update internal.mpesa_callbacks set status = 'review', error = v_problem, applied_at = now()
     where id = p_callback_id;
    return 'review';
  end if;
  perform internal.notify(v_user, v_chama.id, 'transaction', 'Contribution received',
    format('KES %s received by M-Pesa paybill (%s) for %s',
           to_char(p_amount / 100.0, 'FM999,999,999,990.00'), p_trans_id, v_chama.name),
    jsonb_build_object('transaction_id', v_tx));
  update internal.mpesa_callbacks set status = 'applied', applied_at = now(), error = null
   where id = p_callback_id;
  return 'applied';
end
$$;
