-- A withdrawal that M-Pesa is paying (B2C sent: `processing`) cannot also be marked paid in
-- cash: the money would leave twice in the real world while the ledger records it once. The
-- treasurer settles in cash only an approved withdrawal that no payout has started for; the
-- B2C worker starts only on an `approved` one (internal.b2c_payout_starting), under the same
-- row lock, so exactly one of the two wins.

create or replace function public.mark_disbursement_paid(p_request_id uuid, p_reference text) returns jsonb
  language plpgsql
  security definer
  set search_path = ''
  as $$
declare
  v_chama uuid;
  v_status text;
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
  perform 1 from public.chamas where id = v_chama for update;
  select status into v_status from public.disbursement_requests where id = p_request_id for update;
  if v_status = 'processing' then
    raise exception 'M-Pesa is already paying this withdrawal; wait for its result (it is returned to the chama if it fails)'
      using errcode = 'P0001';
  end if;
  return internal.settle_disbursement(p_request_id, true, btrim(p_reference), 'paid in cash', auth.uid());
end
$$;
