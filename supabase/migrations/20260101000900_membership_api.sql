-- Membership rules that span rows: exactly one chairperson, a threshold the officials can
-- reach, and leaving only when nothing is owed either way. Same conventions as the money
-- functions (PX404, PX422, 42501, P0001).

create function internal.active_officials(p_chama_id uuid) returns integer
  language sql stable
  set search_path = ''
  as $$
  select count(*)::integer from public.chama_members
   where chama_id = p_chama_id and status = 'active'
     and role in ('chairperson', 'treasurer', 'secretary')
$$;

-- The chairperson names roles. Naming another chairperson hands the chair over: the caller
-- becomes a plain member in the same transaction, so there is always exactly one.
create function public.change_member_role(p_chama_id uuid, p_user_id uuid, p_role text)
  returns jsonb
  language plpgsql
  security definer
  set search_path = ''
  as $$
declare
  v_me uuid := auth.uid();
  v_target public.chama_members;
  v_required integer;
begin
  if not public.is_chama_member(p_chama_id) then
    raise exception 'chama not found' using errcode = 'PX404';
  end if;
  if not public.has_chama_role(p_chama_id, array['chairperson']) then
    raise exception 'only the chairperson changes roles' using errcode = '42501';
  end if;
  if p_role is null or p_role not in ('chairperson', 'treasurer', 'secretary', 'member') then
    raise exception 'role must be chairperson, treasurer, secretary or member' using errcode = 'PX422';
  end if;
  select required_approvals into v_required from public.chamas where id = p_chama_id for update;
  select * into v_target from public.chama_members
   where chama_id = p_chama_id and user_id = p_user_id for update;
  if not found or v_target.status <> 'active' then
    raise exception 'that user is not an active member of this chama' using errcode = 'PX422';
  end if;
  if p_user_id = v_me and p_role <> 'chairperson' then
    raise exception 'hand the chair to another member first (name them chairperson)'
      using errcode = 'P0001';
  end if;
  if p_role = 'chairperson' and p_user_id <> v_me then
    update public.chama_members set role = 'member' where chama_id = p_chama_id and user_id = v_me;
  end if;
  update public.chama_members set role = p_role where chama_id = p_chama_id and user_id = p_user_id;
  if internal.active_officials(p_chama_id) < v_required then
    raise exception 'the chama needs % approvals for a withdrawal and would have only % officials; lower the threshold first',
      v_required, internal.active_officials(p_chama_id) using errcode = 'P0001';
  end if;
  return (select jsonb_agg(jsonb_build_object('user_id', m.user_id, 'role', m.role) order by m.role, m.user_id)
            from public.chama_members m
           where m.chama_id = p_chama_id and m.status = 'active' and m.role <> 'member');
end
$$;

-- A member leaves, unless something blocks it; the answer names what.
create function public.leave_chama(p_chama_id uuid) returns jsonb
  language plpgsql
  security definer
  set search_path = ''
  as $$
declare
  v_me uuid := auth.uid();
  v_member public.chama_members;
  v_required integer;
begin
  if not public.is_chama_member(p_chama_id) then
    raise exception 'chama not found' using errcode = 'PX404';
  end if;
  select required_approvals into v_required from public.chamas where id = p_chama_id for update;
  select * into v_member from public.chama_members
   where chama_id = p_chama_id and user_id = v_me for update;
  if v_member.role = 'chairperson' then
    raise exception 'the chairperson cannot leave: name another chairperson first' using errcode = 'P0001';
  end if;
  if exists (select from public.disbursement_requests
              where chama_id = p_chama_id and (requested_by = v_me or recipient_user_id = v_me)
                and status in ('pending', 'approved', 'processing')) then
    raise exception 'you have a withdrawal request in progress; cancel it or wait for it to finish'
      using errcode = 'P0001';
  end if;
  if v_member.contributed_total <> 0 then
    raise exception 'your share of KES % must be settled with the chama before you leave',
      to_char(v_member.contributed_total / 100.0, 'FM999,999,999,990.00') using errcode = 'P0001';
  end if;
  update public.chama_members set status = 'left' where chama_id = p_chama_id and user_id = v_me;
  if internal.active_officials(p_chama_id) < v_required then
    raise exception 'you are an official and the chama needs % to approve withdrawals; the chairperson must lower the threshold or name someone first',
      v_required using errcode = 'P0001';
  end if;
  return jsonb_build_object('chama_id', p_chama_id, 'status', 'left');
end
$$;

-- A threshold the officials can reach, whoever changes it.
create function internal.check_required_approvals() returns trigger
  language plpgsql
  security definer
  set search_path = ''
  as $$
begin
  if new.required_approvals > greatest(internal.active_officials(new.id), 1) then
    raise exception 'required_approvals (%) is more than the chama''s % officials',
      new.required_approvals, internal.active_officials(new.id)
      using errcode = 'PX422';
  end if;
  return new;
end
$$;

create trigger chamas_reachable_threshold
  before update of required_approvals on public.chamas
  for each row when (new.required_approvals > old.required_approvals)
  execute function internal.check_required_approvals();

revoke all on function public.change_member_role(uuid, uuid, text), public.leave_chama(uuid) from public, anon;
grant execute on function public.change_member_role(uuid, uuid, text), public.leave_chama(uuid) to authenticated, service_role;
revoke all on function internal.active_officials(uuid) from public;

-- A device belongs to whoever signed in on it last: registering a token another account held
-- moves it, so one phone never receives two people's notifications.
create function public.register_device(p_token text, p_platform text) returns void
  language plpgsql
  security definer
  set search_path = ''
  as $$
begin
  if auth.uid() is null then
    raise exception 'sign in to register a device' using errcode = '42501';
  end if;
  insert into public.device_tokens as d (user_id, token, platform)
    values (auth.uid(), p_token, p_platform)
    on conflict (token) do update
      set user_id = excluded.user_id, platform = excluded.platform, last_seen_at = now();
end
$$;

revoke all on function public.register_device(text, text) from public, anon;
grant execute on function public.register_device(text, text) to authenticated, service_role;
