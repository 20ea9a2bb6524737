-- Status answers from the real Daraja are matched to their payout.
--
-- Daraja answers a TransactionStatusQuery under the query's own OriginatorConversationID and
-- ConversationID, not the payment's. When it knows the payment, the payment's ids are among the
-- answer's ResultParameters, which the server reads (`parse_status_result`). When it does not
-- (not found), or when the query timed out in its queue, the query's id is the only link. So
-- every query the worker sends is recorded with the payout it asks about, and the applier looks
-- there when no payout has the id.

create table internal.b2c_status_queries (
  originator_conversation_id text not null,
  request_id uuid not null,
  created_at timestamptz not null default now(),
  constraint b2c_status_queries_pkey primary key (originator_conversation_id),
  constraint b2c_status_queries_request_id_fkey foreign key (request_id)
    references public.disbursement_requests (id) on delete cascade
);
create index b2c_status_queries_request_id_idx on internal.b2c_status_queries (request_id);
revoke all on table internal.b2c_status_queries from public, anon, authenticated;

-- Daraja accepted a status query about the payout: the id its answer will carry.
create function internal.b2c_status_query_sent(p_request_id uuid, p_query_id text) returns void
  language plpgsql
  set search_path = ''
  as $$
begin
  insert into internal.b2c_status_queries (originator_conversation_id, request_id)
    values (p_query_id, p_request_id)
    on conflict do nothing;
end
$$;
revoke all on function internal.b2c_status_query_sent(uuid, text) from public;
grant execute on function internal.b2c_status_query_sent(uuid, text) to service_role;

create or replace function internal.apply_b2c_callback(
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
    -- A status answer that names only the query it answers (not found, queue timeout).
    select r.* into v_request
      from internal.b2c_status_queries q
      join public.disbursement_requests r on r.id = q.request_id
     where q.originator_conversation_id = p_originator_conversation_id;
  end if;
  if not found then
    update internal.mpesa_callbacks set status = 'review', applied_at = now(),
           error = 'no payout or status query has this OriginatorConversationID or ConversationID'
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
