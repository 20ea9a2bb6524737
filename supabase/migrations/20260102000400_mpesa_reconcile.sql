-- Reconciliation: STK requests that got no callback are asked about (STK query) and settled on
-- the answer; payouts with no result get a status query. An STK query says "paid" without a
-- receipt, so such a contribution is credited without one, and the late callback (if it ever
-- comes) adds the receipt instead of going to review.

-- Settles a request on the word of an STK query. Answers what it did: completed, failed, or
-- unchanged (it was settled meanwhile).
create function internal.apply_stk_query(p_request_id uuid, p_result_code integer, p_result_desc text)
  returns text
  language plpgsql
  set search_path = ''
  as $$
declare
  v_request public.payment_requests;
  v_tx uuid;
  v_chama text;
begin
  select * into v_request from public.payment_requests where id = p_request_id;
  if not found then
    raise exception 'payment request % not found', p_request_id using errcode = 'PX404';
  end if;
  perform 1 from public.chamas where id = v_request.chama_id for update;
  select * into v_request from public.payment_requests where id = p_request_id for update;
  if v_request.status not in ('queued', 'sent') then
    return 'unchanged';
  end if;
  if p_result_code <> 0 then
    perform internal.fail_payment_request(p_request_id, p_result_code, p_result_desc,
                                          internal.mpesa_failure_reason(p_result_code));
    return 'failed';
  end if;
  begin
    v_tx := internal.record_contribution(v_request.chama_id, v_request.user_id, v_request.amount,
              'mpesa', v_request.checkout_request_id, null, v_request.phone, 'M-Pesa contribution', null, now());
  exception
    when raise_exception then
      update public.payment_requests set status = 'review', result_desc = left(sqlerrm, 500)
       where id = p_request_id;
      return 'review';
  end;
  update public.payment_requests
     set status = 'completed', transaction_id = v_tx, result_code = 0,
         result_desc = left('confirmed by STK query: ' || coalesce(p_result_desc, ''), 500)
   where id = p_request_id;
  select name into v_chama from public.chamas where id = v_request.chama_id;
  perform internal.notify(v_request.user_id, v_request.chama_id, 'transaction', 'Contribution received',
    format('KES %s received by M-Pesa for %s', to_char(v_request.amount / 100.0, 'FM999,999,999,990.00'), v_chama),
    jsonb_build_object('transaction_id', v_tx, 'payment_request_id', p_request_id));
  return 'completed';
end
$$;

-- Payouts sent longer ago than p_older_than without a result.
create function internal.unsettled_payouts(p_older_than interval, p_limit integer) returns setof uuid
  language sql stable
  set search_path = ''
  as $$
  select id from public.disbursement_requests
   where status = 'processing' and updated_at <= now() - p_older_than
   order by updated_at limit p_limit
$$;

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


revoke all on function internal.apply_stk_query(uuid, integer, text), internal.unsettled_payouts(interval, integer) from public;
grant execute on function internal.apply_stk_query(uuid, integer, text), internal.unsettled_payouts(interval, integer) to service_role;
