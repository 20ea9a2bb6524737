-- USSD: what the Africa's Talking handler needs besides public.ussd_sessions.
--
-- A PIN chosen on USSD is typed twice on two hops; between them the first one is kept here,
-- bcrypt-hashed, for the session's lifetime, never in ussd_sessions.state (which must never
-- hold a PIN, not even hashed: a 4-digit hash is a PIN to anyone who can read the row).

create table internal.ussd_pending_pins (
  session_id text not null,
  pin_hash text not null,
  expires_at timestamptz not null default now() + interval '180 seconds',
  constraint ussd_pending_pins_pkey primary key (session_id),
  constraint ussd_pending_pins_session_fkey foreign key (session_id)
    references public.ussd_sessions (session_id) on delete cascade
);
create index ussd_pending_pins_expiry_idx on internal.ussd_pending_pins (expires_at);

-- A contribution started on USSD: the STK push intent and its outbox job, in one transaction
-- (the contract with the M-Pesa worker: topic mpesa.stk_push, payload {payment_request_id},
-- dedupe key stk:<id>). The handler never waits for Daraja; the worker sends the push.
-- Refuses, writing nothing: a non-member (PX404), a chama that is not active (P0001), an
-- amount outside KES 10 - 250,000 or with cents, which Daraja cannot take (PX422).
create function internal.ussd_start_contribution(
  p_chama_id uuid,
  p_user_id uuid,
  p_phone public.e164_phone,
  p_amount bigint
) returns uuid
  language plpgsql
  set search_path = ''
  as $$
declare
  v_id uuid;
begin
  if p_amount is null or p_amount < 1000 or p_amount > 25000000 or p_amount % 100 <> 0 then
    raise exception 'an M-Pesa contribution is whole shillings from KES 10 to KES 250,000'
      using errcode = 'PX422';
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
  insert into public.payment_requests (chama_id, user_id, phone, amount, purpose, status, channel)
    values (p_chama_id, p_user_id, p_phone, p_amount, 'contribution', 'queued', 'ussd')
    returning id into v_id;
  insert into internal.outbox (topic, payload, dedupe_key)
    values ('mpesa.stk_push', jsonb_build_object('payment_request_id', v_id), 'stk:' || v_id);
  return v_id;
end
$$;

revoke all on function internal.ussd_start_contribution(uuid, uuid, public.e164_phone, bigint) from public;
grant execute on function internal.ussd_start_contribution(uuid, uuid, public.e164_phone, bigint) to service_role;

-- Sessions past the telco's 180 seconds that never ended, marked so, and held PINs past their
-- time removed (for a worker or a cron job; the handler also refuses expired sessions itself).
create function internal.expire_ussd_sessions() returns integer
  language plpgsql
  set search_path = ''
  as $$
declare
  v_count integer;
begin
  delete from internal.ussd_pending_pins where expires_at <= now();
  update public.ussd_sessions set status = 'timeout'
   where status = 'active' and expires_at <= now();
  get diagnostics v_count = row_count;
  return v_count;
end
$$;

revoke all on function internal.expire_ussd_sessions() from public;
grant execute on function internal.expire_ussd_sessions() to service_role;
