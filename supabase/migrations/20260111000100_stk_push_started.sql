-- An STK push is sent at most once.
--
-- Daraja has no idempotency key for STK pushes: a push sent twice prompts the member twice, and
-- both prompts can be paid. So the worker records that it is about to call Daraja, and commits,
-- before the call. An attempt that finds this mark without the push's answer (the worker died
-- during the call, or the answer was lost) does not push again: the request fails with a reason
-- that tells the member what to do, and the callback of a prompt that did go out, whose
-- CheckoutRequestID nobody recorded, is held for review and credited by an official. Only a
-- push that certainly did not get through (no connection, 503, 429) has its mark cleared and
-- is retried.

alter table public.payment_requests add column push_started_at timestamptz;

-- The worker is about to push; false when an earlier attempt got this far already.
create function internal.stk_push_starting(p_id uuid) returns boolean
  language plpgsql
  set search_path = ''
  as $$
begin
  update public.payment_requests set push_started_at = now()
   where id = p_id and status = 'queued' and push_started_at is null;
  return found;
end
$$;

-- The push certainly did not reach Daraja: it may be sent again.
create function internal.stk_push_not_sent(p_id uuid) returns void
  language plpgsql
  set search_path = ''
  as $$
begin
  update public.payment_requests set push_started_at = null
   where id = p_id and status = 'queued';
end
$$;

revoke all on function internal.stk_push_starting(uuid), internal.stk_push_not_sent(uuid) from public;
grant execute on function internal.stk_push_starting(uuid), internal.stk_push_not_sent(uuid) to service_role;
