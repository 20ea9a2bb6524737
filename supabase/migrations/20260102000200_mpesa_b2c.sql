-- Payouts by M-Pesa B2C, never twice.
--
-- An approved withdrawal has an outbox message `payout`. Before calling Daraja the worker marks
-- the request `processing` with our OriginatorConversationID (`pesachama-<request id>`, unique)
-- and commits; only then does it call. A worker that finds a request already `processing`
-- never pays again: it asks Daraja for the transaction's status instead (topic
-- `mpesa.b2c_status`). The result callback settles it through internal.settle_disbursement:
-- paid (receipt recorded) or returned to the chama by a journal. A queue timeout is not a
-- failure: it asks for the status too.

-- The worker is about to call Daraja; false when someone already did (or it was settled).
create function internal.b2c_payout_starting(p_request_id uuid) returns text
  language plpgsql
  set search_path = ''
  as $$
declare
  v_originator text := 'pesachama-' || p_request_id;
begin
  update public.disbursement_requests
     set status = 'processing', originator_conversation_id = v_originator
   where id = p_request_id and status = 'approved' and originator_conversation_id is null;
  if found then
    return v_originator;
  end if;
  return null;
end
$$;

-- Daraja accepted the payment: the ConversationID its result will carry.
create function internal.b2c_payout_accepted(p_request_id uuid, p_conversation_id text) returns void
  language sql
  set search_path = ''
  as $$
  update public.disbursement_requests set conversation_id = p_conversation_id
   where id = p_request_id and conversation_id is null
$$;

-- Asks the worker to query the status of a payout after p_delay.
create function internal.enqueue_b2c_status(p_request_id uuid, p_delay interval, p_reason text) returns void
  language sql
  set search_path = ''
  as $$
  insert into internal.outbox (topic, payload, dedupe_key, run_after)
    values ('mpesa.b2c_status', jsonb_build_object('disbursement_request_id', p_request_id, 'reason', p_reason),
            'b2c_status:' || p_request_id || ':' || gen_random_uuid(), now() + p_delay)
$$;

-- Applies a stored B2C result, queue timeout or status result, parsed by the server.
-- Answers the callback's new status.
create function internal.apply_b2c_callback(
  p_callback_id bigint,
  p_originator_conversation_id text,
  p_conversation_id text,
  p_result_code integer,
  p_result_desc text,
  p_receipt text,
  p_amount bigint
) returns text
  language plpgsql
  set search_path = ''
  as $$
declare
  v_callback internal.mpesa_callbacks;
  v_request public.disbursement_requests;
  v_problem text;
begin
  select * into v_callback from internal.mpesa_callbacks where id = p_callback_id for update;
  if not found then
    raise exception 'callback % not found', p_callback_id using errcode = 'PX404';
  end if;
  if v_callback.status <> 'received' then
    return v_callback.status;
  end if;
  select * into v_request from public.disbursement_requests
   where originator_conversation_id = p_originator_conversation_id
      or (p_conversation_id <> '' and conversation_id = p_conversation_id)
   limit 1;
  if not found then
    update internal.mpesa_callbacks set status = 'review', applied_at = now(),
           error = 'no payout has this OriginatorConversationID or ConversationID'
     where id = p_callback_id;
    return 'review';
  end if;
  perform 1 from public.chamas where id = v_request.chama_id for update;
  select * into v_request from public.disbursement_requests where id = v_request.id for update;

  if v_callback.kind in ('b2c_timeout', 'status_timeout') then
    -- Not a failure: the request waited too long in Daraja's queue. Ask what became of it.
    if v_request.status = 'processing' then
      perform internal.enqueue_b2c_status(v_request.id, interval '30 seconds', 'queue timeout');
    end if;
    update internal.mpesa_callbacks set status = 'applied', applied_at = now(),
           error = 'queue timeout: status query enqueued'
     where id = p_callback_id;
    return 'applied';
  end if;

  if v_callback.kind = 'status_result' and p_result_code = 2032 then
    -- Daraja never had this payment (it did not get the request): it may be made, once.
    if v_request.status = 'processing' and v_request.conversation_id is null then
      update public.disbursement_requests set status = 'approved', originator_conversation_id = null
       where id = v_request.id;
      update internal.outbox set status = 'pending', run_after = now(), attempts = 0, locked_until = null
       where dedupe_key = 'payout:' || v_request.id;
      update internal.mpesa_callbacks set status = 'applied', applied_at = now(),
             error = 'not found at Daraja: payout enqueued again'
       where id = p_callback_id;
      return 'applied';
    end if;
    v_problem := 'Daraja does not know a payout it accepted';
  elsif v_request.status not in ('approved', 'processing') then
    if (p_result_code = 0) = (v_request.status = 'completed') then
      update internal.mpesa_callbacks set status = 'duplicate', applied_at = now(),
             error = format('the payout is already %s', v_request.status)
       where id = p_callback_id;
      return 'duplicate';
    end if;
    v_problem := format('a result %s for a payout already %s', p_result_code, v_request.status);
  elsif p_result_code = 0 and p_amount is not null and p_amount <> v_request.amount then
    v_problem := format('amount %s does not match the payout''s %s', p_amount, v_request.amount);
  elsif p_result_code = 0 and (p_receipt is null or p_receipt !~ '^[A-Z0-9]{10}$') then
    v_problem := 'a successful result without a receipt';
  end if;

  if v_problem is not null then
    update internal.mpesa_callbacks set status = 'review', error = v_problem, applied_at = now()
     where id = p_callback_id;
    return 'review';
  end if;

  update public.disbursement_requests
     set conversation_id = coalesce(conversation_id, nullif(p_conversation_id, '')),
         result_code = p_result_code,
         mpesa_receipt = case when p_result_code = 0 then p_receipt end
   where id = v_request.id;
  if p_result_code = 0 then
    perform internal.settle_disbursement(v_request.id, true, p_receipt, 'paid by M-Pesa', null);
  else
    perform internal.settle_disbursement(v_request.id, false, null,
      case p_result_code
        when 1 then 'the chama''s M-Pesa account had too little money'
        when 2001 then 'the M-Pesa initiator credentials were refused'
        when 2040 then 'the recipient''s number is not registered for M-Pesa'
        else format('M-Pesa refused the payout (code %s: %s)', p_result_code, left(p_result_desc, 200))
      end, null);
  end if;
  update internal.mpesa_callbacks set status = 'applied', applied_at = now(), error = null
   where id = p_callback_id;
  return 'applied';
end
$$;

revoke all on function internal.b2c_payout_starting(uuid), internal.b2c_payout_accepted(uuid, text),
  internal.enqueue_b2c_status(uuid, interval, text),
  internal.apply_b2c_callback(bigint, text, text, integer, text, text, bigint)
  from public;
grant execute on function internal.b2c_payout_starting(uuid), internal.b2c_payout_accepted(uuid, text),
  internal.enqueue_b2c_status(uuid, interval, text),
  internal.apply_b2c_callback(bigint, text, text, integer, text, text, bigint)
  to service_role;
