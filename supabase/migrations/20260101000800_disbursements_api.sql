-- Withdrawals approved by k of the officials.
--
-- A member asks (request_disbursement); officials decide once each (decide_disbursement), never
-- on their own request; the chama's threshold at the time of the request applies. The approval
-- that reaches the threshold reserves the money (cash -> payouts in transit, under the chama's
-- lock, so two requests racing for the last shilling cannot both win) and enqueues the payout;
-- when the money is not there the request fails and says so. A payout is settled as paid
-- (in transit -> disbursements, with a `transactions` row) or returned (in transit -> cash).
-- Same SQLSTATE conventions as the contributions functions.

-- The user-facing shape of a request.
create function internal.disbursement_json(p_id uuid) returns jsonb
  language sql stable
  set search_path = ''
  as $$
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
  from public.disbursement_requests r where r.id = p_id
$$;

-- Active officials of a chama who may decide on a request by p_requester.
create function internal.eligible_approvers(p_chama_id uuid, p_requester uuid) returns integer
  language sql stable
  set search_path = ''
  as $$
  select count(*)::integer from public.chama_members
   where chama_id = p_chama_id and status = 'active'
     and role in ('chairperson', 'treasurer', 'secretary') and user_id <> p_requester
$$;

create function internal.notify(p_user_id uuid, p_chama_id uuid, p_type text, p_title text,
                                p_body text, p_data jsonb) returns void
  language sql
  set search_path = ''
  as $$
  insert into public.notifications (user_id, chama_id, type, title, body, data)
  values (p_user_id, p_chama_id, p_type, p_title, p_body, p_data)
$$;

create function public.request_disbursement(
  p_chama_id uuid,
  p_amount bigint,
  p_reason text,
  p_recipient_member_id uuid,
  p_idempotency_key text,
  p_request_hash text
) returns jsonb
  language plpgsql
  security definer
  set search_path = ''
  as $$
declare
  v_me uuid := auth.uid();
  v_scope text := 'disbursement:' || coalesce(auth.uid()::text, '');
  v_stored jsonb;
  v_recipient uuid := coalesce(p_recipient_member_id, auth.uid());
  v_phone text;
  v_required integer;
  v_eligible integer;
  v_id uuid;
  v_row jsonb;
  v_official record;
begin
  if v_me is null then
    raise exception 'sign in to request a withdrawal' using errcode = '42501';
  end if;
  if not public.is_chama_member(p_chama_id) then
    raise exception 'chama not found' using errcode = 'PX404';
  end if;
  v_stored := internal.idempotency_claim(v_scope, p_idempotency_key, p_request_hash);
  if v_stored is not null then
    return jsonb_build_object('replayed', true, 'request', v_stored);
  end if;
  if p_amount is null or p_amount <= 0 then
    raise exception 'amount must be positive' using errcode = 'PX422';
  end if;
  if p_reason is null or char_length(btrim(p_reason)) not between 3 and 500 then
    raise exception 'reason must be 3 to 500 characters' using errcode = 'PX422';
  end if;
  select u.phone into v_phone
    from public.chama_members m join public.users u on u.id = m.user_id
   where m.chama_id = p_chama_id and m.user_id = v_recipient and m.status = 'active';
  if not found then
    raise exception 'the recipient is not an active member of this chama' using errcode = 'PX422';
  end if;
  if v_phone is null then
    raise exception 'the recipient has no phone number to be paid on' using errcode = 'PX422';
  end if;
  select required_approvals into v_required from public.chamas
   where id = p_chama_id and status = 'active';
  if not found then
    raise exception 'this chama is not active' using errcode = 'P0001';
  end if;
  v_eligible := internal.eligible_approvers(p_chama_id, v_me);
  if v_eligible < v_required then
    raise exception 'this chama needs % approvals but only % officials other than you can approve; the chairperson must name more officials or lower the threshold',
      v_required, v_eligible using errcode = 'P0001';
  end if;

  insert into public.disbursement_requests (chama_id, requested_by, recipient_user_id, recipient_phone,
                                            amount, reason, required_approvals)
    values (p_chama_id, v_me, v_recipient, v_phone, p_amount, btrim(p_reason), v_required)
    returning id into v_id;
  for v_official in
    select user_id from public.chama_members
     where chama_id = p_chama_id and status = 'active'
       and role in ('chairperson', 'treasurer', 'secretary') and user_id <> v_me
  loop
    perform internal.notify(v_official.user_id, p_chama_id, 'approval', 'Withdrawal awaiting your approval',
      format('KES %s: %s', to_char(p_amount / 100.0, 'FM999,999,999,990.00'), btrim(p_reason)),
      jsonb_build_object('disbursement_request_id', v_id));
  end loop;
  v_row := internal.disbursement_json(v_id);
  perform internal.idempotency_store(v_scope, p_idempotency_key, p_request_hash, 201, v_row);
  return jsonb_build_object('replayed', false, 'request', v_row);
end
$$;

-- An official's decision. One per official per request (a second is a 409); the requester
-- never decides. The decision that settles the request acts on it at once.
create function public.decide_disbursement(p_request_id uuid, p_decision text, p_comment text)
  returns jsonb
  language plpgsql
  security definer
  set search_path = ''
  as $$
declare
  v_me uuid := auth.uid();
  v_request public.disbursement_requests;
  v_eligible integer;
  v_journal uuid;
  v_cash uuid;
  v_transit uuid;
  v_amount_text text;
begin
  if v_me is null then
    raise exception 'sign in to decide' using errcode = '42501';
  end if;
  if p_decision is null or p_decision not in ('approve', 'reject') then
    raise exception 'decision must be approve or reject' using errcode = 'PX422';
  end if;
  select * into v_request from public.disbursement_requests where id = p_request_id;
  if not found or not public.is_chama_member(v_request.chama_id) then
    raise exception 'withdrawal request not found' using errcode = 'PX404';
  end if;
  if not public.is_chama_official(v_request.chama_id) then
    raise exception 'only officials decide on withdrawals' using errcode = '42501';
  end if;
  if v_request.requested_by = v_me then
    raise exception 'you cannot decide on your own request' using errcode = '42501';
  end if;
  -- The chama first, then the request: the lock order of every money movement.
  perform 1 from public.chamas where id = v_request.chama_id for update;
  select * into v_request from public.disbursement_requests where id = p_request_id for update;
  if v_request.status <> 'pending' then
    raise exception 'this request is already %', v_request.status using errcode = 'P0001';
  end if;
  if v_request.expires_at <= now() then
    update public.disbursement_requests set status = 'expired', decided_at = now() where id = p_request_id;
    return internal.disbursement_json(p_request_id);
  end if;
  begin
    insert into public.disbursement_approvals (request_id, chama_id, approver_id, decision, comment)
      values (p_request_id, v_request.chama_id, v_me, p_decision, nullif(btrim(p_comment), ''));
  exception when unique_violation then
    raise exception 'you have already decided on this request' using errcode = 'PX409';
  end;

  v_amount_text := to_char(v_request.amount / 100.0, 'FM999,999,999,990.00');
  if p_decision = 'approve' then
    update public.disbursement_requests set approvals_count = approvals_count + 1
     where id = p_request_id returning * into v_request;
    if v_request.approvals_count >= v_request.required_approvals then
      -- Reserve the money, unless it is not there.
      if (select balance from public.chamas where id = v_request.chama_id) < v_request.amount then
        update public.disbursement_requests
           set status = 'failed', decided_at = now(),
               result_desc = 'approved, but the chama''s balance is not enough to pay it'
         where id = p_request_id;
        perform internal.notify(v_request.requested_by, v_request.chama_id, 'approval', 'Withdrawal could not be paid',
          format('Your request for KES %s was approved but the chama does not have enough money now.', v_amount_text),
          jsonb_build_object('disbursement_request_id', p_request_id));
        return internal.disbursement_json(p_request_id);
      end if;
      v_cash := internal.ensure_account(v_request.chama_id, 'cash');
      v_transit := internal.ensure_account(v_request.chama_id, 'payouts_in_transit');
      v_journal := internal.post_journal(v_request.chama_id, 'disbursement',
        'withdrawal approved: ' || v_request.reason,
        jsonb_build_array(
          jsonb_build_object('account_id', v_transit, 'amount', v_request.amount),
          jsonb_build_object('account_id', v_cash, 'amount', -v_request.amount)),
        v_me);
      update public.disbursement_requests
         set status = 'approved', decided_at = now(), journal_id = v_journal
       where id = p_request_id;
      insert into internal.outbox (topic, payload, dedupe_key)
        values ('payout', jsonb_build_object('disbursement_request_id', p_request_id,
                                             'phone', v_request.recipient_phone, 'amount', v_request.amount),
                'payout:' || p_request_id);
      perform internal.notify(v_request.requested_by, v_request.chama_id, 'approval', 'Withdrawal approved',
        format('Your request for KES %s was approved and will be paid to %s.', v_amount_text, v_request.recipient_phone),
        jsonb_build_object('disbursement_request_id', p_request_id));
    end if;
  else
    update public.disbursement_requests set rejections_count = rejections_count + 1
     where id = p_request_id returning * into v_request;
    v_eligible := internal.eligible_approvers(v_request.chama_id, v_request.requested_by);
    if v_eligible - v_request.rejections_count < v_request.required_approvals then
      update public.disbursement_requests set status = 'rejected', decided_at = now()
       where id = p_request_id;
      perform internal.notify(v_request.requested_by, v_request.chama_id, 'approval', 'Withdrawal rejected',
        format('Your request for KES %s was rejected.', v_amount_text),
        jsonb_build_object('disbursement_request_id', p_request_id));
    end if;
  end if;
  return internal.disbursement_json(p_request_id);
end
$$;

-- The requester withdraws a request still pending.
create function public.cancel_disbursement(p_request_id uuid) returns jsonb
  language plpgsql
  security definer
  set search_path = ''
  as $$
declare
  v_request public.disbursement_requests;
begin
  select * into v_request from public.disbursement_requests where id = p_request_id for update;
  if not found or not public.is_chama_member(v_request.chama_id) then
    raise exception 'withdrawal request not found' using errcode = 'PX404';
  end if;
  if v_request.requested_by is distinct from auth.uid() then
    raise exception 'only the member who asked cancels a request' using errcode = '42501';
  end if;
  if v_request.status <> 'pending' then
    raise exception 'this request is already % and cannot be cancelled', v_request.status
      using errcode = 'P0001';
  end if;
  update public.disbursement_requests set status = 'cancelled', decided_at = now() where id = p_request_id;
  return internal.disbursement_json(p_request_id);
end
$$;

-- Settles a reserved payout: paid (money leaves for good, a `disbursement` transaction is
-- written) or not (the money goes back to the chama's cash). Used by the treasurer for a payout
-- made in cash (p_paid true, through the API) and by the M-Pesa worker for B2C results.
create function internal.settle_disbursement(
  p_request_id uuid,
  p_paid boolean,
  p_reference text,
  p_result text,
  p_actor_id uuid
) returns jsonb
  language plpgsql
  set search_path = ''
  as $$
declare
  v_request public.disbursement_requests;
  v_journal uuid;
  v_tx uuid;
  v_transit uuid;
begin
  select * into v_request from public.disbursement_requests where id = p_request_id;
  if not found then
    raise exception 'withdrawal request not found' using errcode = 'PX404';
  end if;
  perform 1 from public.chamas where id = v_request.chama_id for update;
  select * into v_request from public.disbursement_requests where id = p_request_id for update;
  if v_request.status not in ('approved', 'processing') then
    raise exception 'this request is % and has no payout to settle', v_request.status
      using errcode = 'P0001';
  end if;
  v_transit := internal.ensure_account(v_request.chama_id, 'payouts_in_transit');
  if p_paid then
    v_journal := internal.post_journal(v_request.chama_id, 'payout_settled',
      'withdrawal paid: ' || v_request.reason,
      jsonb_build_array(
        jsonb_build_object('account_id', internal.ensure_account(v_request.chama_id, 'disbursements'), 'amount', v_request.amount),
        jsonb_build_object('account_id', v_transit, 'amount', -v_request.amount)),
      p_actor_id);
    insert into public.transactions (chama_id, user_id, type, amount, status, payment_method, reference,
                                     phone, description, journal_id, created_by)
      values (v_request.chama_id, v_request.recipient_user_id, 'disbursement', v_request.amount, 'completed',
              case when p_reference ~ '^[A-Z0-9]{10}$' then 'mpesa' else 'cash' end, p_reference,
              v_request.recipient_phone, v_request.reason, v_journal, p_actor_id)
      returning id into v_tx;
    update public.disbursement_requests
       set status = 'completed', transaction_id = v_tx, result_desc = coalesce(p_result, 'paid')
     where id = p_request_id;
    perform internal.notify(v_request.requested_by, v_request.chama_id, 'transaction', 'Withdrawal paid',
      format('KES %s was paid to %s.', to_char(v_request.amount / 100.0, 'FM999,999,999,990.00'), v_request.recipient_phone),
      jsonb_build_object('disbursement_request_id', p_request_id, 'transaction_id', v_tx));
  else
    perform internal.post_journal(v_request.chama_id, 'payout_failed',
      'withdrawal not paid, money returned: ' || coalesce(p_result, 'failed'),
      jsonb_build_array(
        jsonb_build_object('account_id', internal.ensure_account(v_request.chama_id, 'cash'), 'amount', v_request.amount),
        jsonb_build_object('account_id', v_transit, 'amount', -v_request.amount)),
      p_actor_id);
    update public.disbursement_requests set status = 'failed', result_desc = coalesce(p_result, 'failed')
     where id = p_request_id;
    perform internal.notify(v_request.requested_by, v_request.chama_id, 'transaction', 'Withdrawal failed',
      format('KES %s could not be paid and is back in the chama: %s',
             to_char(v_request.amount / 100.0, 'FM999,999,999,990.00'), coalesce(p_result, 'failed')),
      jsonb_build_object('disbursement_request_id', p_request_id));
  end if;
  -- The payout job is no longer needed.
  update internal.outbox set status = 'done', done_at = now()
   where dedupe_key = 'payout:' || p_request_id and status = 'pending';
  return internal.disbursement_json(p_request_id);
end
$$;

-- The treasurer paid an approved withdrawal in cash (until M-Pesa B2C pays it).
create function public.mark_disbursement_paid(p_request_id uuid, p_reference text) returns jsonb
  language plpgsql
  security definer
  set search_path = ''
  as $$
declare
  v_chama uuid;
begin
  select chama_id into v_chama from public.disbursement_requests where id = p_request_id;
  if v_chama is null or not public.is_chama_member(v_chama) then
    raise exception 'withdrawal request not found' using errcode = 'PX404';
  end if;
  if not public.has_chama_role(v_chama, array['treasurer']) then
    raise exception 'only the treasurer marks a withdrawal paid' using errcode = '42501';
  end if;
  if p_reference is null or char_length(btrim(p_reference)) not between 2 and 100 then
    raise exception 'reference must be 2 to 100 characters (a receipt number)' using errcode = 'PX422';
  end if;
  return internal.settle_disbursement(p_request_id, true, btrim(p_reference), 'paid in cash', auth.uid());
end
$$;

-- Pending requests past their expiry; run by the worker.
create function internal.expire_disbursements() returns integer
  language sql
  set search_path = ''
  as $$
  with expired as (
    update public.disbursement_requests set status = 'expired', decided_at = now()
     where status = 'pending' and expires_at <= now()
     returning id)
  select count(*)::integer from expired
$$;

revoke all on function public.request_disbursement(uuid, bigint, text, uuid, text, text),
  public.decide_disbursement(uuid, text, text), public.cancel_disbursement(uuid),
  public.mark_disbursement_paid(uuid, text) from public, anon;
grant execute on function public.request_disbursement(uuid, bigint, text, uuid, text, text),
  public.decide_disbursement(uuid, text, text), public.cancel_disbursement(uuid),
  public.mark_disbursement_paid(uuid, text) to authenticated, service_role;
revoke all on function internal.disbursement_json(uuid), internal.eligible_approvers(uuid, uuid),
  internal.notify(uuid, uuid, text, text, text, jsonb),
  internal.settle_disbursement(uuid, boolean, text, text, uuid), internal.expire_disbursements()
  from public;
grant execute on function internal.settle_disbursement(uuid, boolean, text, text, uuid),
  internal.expire_disbursements() to service_role;
