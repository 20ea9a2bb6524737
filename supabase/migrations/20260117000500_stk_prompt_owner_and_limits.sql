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
