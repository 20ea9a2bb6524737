-- Suspending a member, and closing a chama. Same conventions as the other API functions:
-- PX404 not found (or not visible), 42501 not allowed, PX422 bad input, P0001 a rule refuses.

-- An official suspends a member (who then cannot contribute, request, approve or see the
-- chama) or reinstates one. The chairperson is never suspended (the chair is handed over
-- first), nobody suspends themselves, and the officials left must still reach the chama's
-- approval threshold. The reason goes into the audit trail and the member is told.
create function public.set_member_suspended(
  p_chama_id uuid,
  p_user_id uuid,
  p_suspend boolean,
  p_reason text
) returns jsonb
  language plpgsql
  security definer
  set search_path = ''
  as $$
declare
  v_me uuid := auth.uid();
  v_target public.chama_members;
  v_required integer;
  v_reason text := nullif(btrim(coalesce(p_reason, '')), '');
begin
  if not public.is_chama_member(p_chama_id) then
    raise exception 'chama not found' using errcode = 'PX404';
  end if;
  if not public.is_chama_official(p_chama_id) then
    raise exception 'only officials suspend or reinstate members' using errcode = '42501';
  end if;
  if p_suspend and (v_reason is null or char_length(v_reason) not between 3 and 500) then
    raise exception 'say why the member is suspended (a reason of 3 to 500 characters)'
      using errcode = 'PX422';
  end if;
  if p_user_id = v_me then
    raise exception 'you cannot suspend or reinstate yourself' using errcode = 'P0001';
  end if;
  select required_approvals into v_required from public.chamas where id = p_chama_id for update;
  select * into v_target from public.chama_members
   where chama_id = p_chama_id and user_id = p_user_id for update;
  if not found or v_target.status not in ('active', 'suspended') then
    raise exception 'that user is not a member of this chama' using errcode = 'PX422';
  end if;
  if p_suspend then
    if v_target.status = 'suspended' then
      raise exception 'this member is already suspended' using errcode = 'P0001';
    end if;
    if v_target.role = 'chairperson' then
      raise exception 'the chairperson cannot be suspended: the chair must be handed over first'
        using errcode = 'P0001';
    end if;
    update public.chama_members set status = 'suspended'
     where chama_id = p_chama_id and user_id = p_user_id;
    if internal.active_officials(p_chama_id) < v_required then
      raise exception 'the chama needs % officials to approve withdrawals and would have only %; lower the threshold or name another official first',
        v_required, internal.active_officials(p_chama_id) using errcode = 'P0001';
    end if;
    perform internal.notify(p_user_id, p_chama_id, 'membership', 'Membership suspended',
      format('Your membership of %s was suspended: %s', internal.chama_name(p_chama_id), v_reason),
      jsonb_build_object('chama_id', p_chama_id));
  else
    if v_target.status <> 'suspended' then
      raise exception 'this member is not suspended' using errcode = 'P0001';
    end if;
    update public.chama_members set status = 'active'
     where chama_id = p_chama_id and user_id = p_user_id;
    perform internal.notify(p_user_id, p_chama_id, 'membership', 'Membership reinstated',
      format('Your membership of %s is active again.', internal.chama_name(p_chama_id)),
      jsonb_build_object('chama_id', p_chama_id));
  end if;
  perform internal.audit_log(
    case when p_suspend then 'member.suspended' else 'member.reinstated' end,
    'chama_members', v_target.id::text, p_chama_id,
    jsonb_build_object('user_id', p_user_id, 'reason', v_reason));
  return jsonb_build_object('chama_id', p_chama_id, 'user_id', p_user_id,
                            'status', case when p_suspend then 'suspended' else 'active' end);
end
$$;

-- The chairperson closes the chama once nothing is left in it: no cash, no withdrawal in
-- progress, no payout in transit, no M-Pesa payment on its way or under review. (Members'
-- equity accounts keep their history: what was paid out sits in `disbursements`.) A closed chama takes no contributions (record_manual_contribution and the
-- M-Pesa path check the chama's status) and keeps its history.
create function public.close_chama(p_chama_id uuid, p_reason text) returns jsonb
  language plpgsql
  security definer
  set search_path = ''
  as $$
declare
  v_me uuid := auth.uid();
  v_chama public.chamas;
  v_reason text := nullif(btrim(coalesce(p_reason, '')), '');
  v_open integer;
begin
  if not public.is_chama_member(p_chama_id) then
    raise exception 'chama not found' using errcode = 'PX404';
  end if;
  if not public.has_chama_role(p_chama_id, array['chairperson']) then
    raise exception 'only the chairperson closes the chama' using errcode = '42501';
  end if;
  if v_reason is null or char_length(v_reason) not between 3 and 500 then
    raise exception 'say why the chama is closed (a reason of 3 to 500 characters)'
      using errcode = 'PX422';
  end if;
  select * into v_chama from public.chamas where id = p_chama_id for update;
  if v_chama.status <> 'active' then
    raise exception 'this chama is % and cannot be closed', v_chama.status using errcode = 'P0001';
  end if;
  if v_chama.balance <> 0 then
    raise exception 'the chama still holds KES %; pay it out to the members before closing',
      to_char(v_chama.balance / 100.0, 'FM999,999,999,990.00') using errcode = 'P0001';
  end if;
  select count(*) into v_open from public.disbursement_requests
   where chama_id = p_chama_id and status in ('pending', 'approved', 'processing');
  if v_open > 0 then
    raise exception '% withdrawal request(s) are still in progress; finish or cancel them first', v_open
      using errcode = 'P0001';
  end if;
  select count(*) into v_open from public.payment_requests
   where chama_id = p_chama_id and status in ('queued', 'sent', 'review');
  if v_open > 0 then
    raise exception '% M-Pesa payment(s) are still on their way or under review', v_open
      using errcode = 'P0001';
  end if;
  if exists (select from internal.ledger_accounts
              where chama_id = p_chama_id and kind in ('cash', 'payouts_in_transit') and balance <> 0) then
    raise exception 'money is still held in the chama''s cash or in transit to a member'
      using errcode = 'P0001';
  end if;
  update public.chamas set status = 'closed', closed_at = now() where id = p_chama_id;
  update public.chama_invitations set status = 'expired'
   where chama_id = p_chama_id and status = 'pending';
  perform internal.notify(m.user_id, p_chama_id, 'membership', 'Chama closed',
      format('%s was closed by the chairperson: %s', v_chama.name, v_reason),
      jsonb_build_object('chama_id', p_chama_id))
    from public.chama_members m
   where m.chama_id = p_chama_id and m.status = 'active' and m.user_id <> v_me;
  perform internal.audit_log('chama.closed', 'chamas', p_chama_id::text, p_chama_id,
                             jsonb_build_object('reason', v_reason));
  return jsonb_build_object('chama_id', p_chama_id, 'status', 'closed');
end
$$;

revoke all on function public.set_member_suspended(uuid, uuid, boolean, text),
  public.close_chama(uuid, text) from public, anon;
grant execute on function public.set_member_suspended(uuid, uuid, boolean, text),
  public.close_chama(uuid, text) to authenticated, service_role;
