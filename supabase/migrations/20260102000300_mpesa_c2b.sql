-- Paybill payments (C2B): the account number (BillRefNumber) names the chama by its
-- `paybill_account`; the paying phone names the member. A confirmation whose chama or member
-- cannot be found is held for review, never credited to a guess.

-- Validation: is this an account number we know? (Answered to Daraja before it takes the money.)
create function internal.c2b_account_known(p_bill_ref text) returns boolean
  language sql stable
  set search_path = ''
  as $$
  select exists (select from public.chamas
                  where paybill_account = upper(btrim(p_bill_ref)) and status = 'active')
$$;

create function internal.apply_c2b_confirmation(
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
                                           p_phone, 'M-Pesa paybill contribution', null, coalesce(p_paid_at, now()));
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

revoke all on function internal.c2b_account_known(text),
  internal.apply_c2b_confirmation(bigint, text, bigint, text, text, timestamptz) from public;
grant execute on function internal.c2b_account_known(text),
  internal.apply_c2b_confirmation(bigint, text, bigint, text, text, timestamptz) to service_role;
