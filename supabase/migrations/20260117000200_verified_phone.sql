-- A phone number identifies a person only once a code sent to it has come back.
--
-- Invitations are addressed to a phone. Until now the invitee was whoever's token carried that
-- number in its `phone` claim, and the claim is whatever the account's phone is, confirmed or
-- not: signing up with somebody's number (or changing one's number to it) was enough to take an
-- invitation meant for them, as treasurer if that was the role. Both functions below now read
-- the phone from `auth.users` and only when `phone_confirmed_at` is set, which both PesaChama's
-- auth and Supabase Auth do only after the owner of the number entered the code sent to it.

-- The caller's confirmed phone in E.164, or null. SECURITY DEFINER: the Data API's roles cannot
-- read `auth.users` (nor should they).
create or replace function public.caller_phone()
  returns text
  language plpgsql
  stable
  security definer
  set search_path = ''
  as $$
declare
  v_phone text;
begin
  select u.phone into v_phone
    from auth.users u
   where u.id = (select auth.uid())
     and u.phone_confirmed_at is not null
     and u.deleted_at is null;
  return case when coalesce(v_phone, '') = '' then null else '+' || ltrim(v_phone, '+') end;
end
$$;

-- The account whose confirmed phone is `p_phone` (E.164), if any. `auth.users` keeps GoTrue's
-- digits without `+`; rows made by other tools may have it.
create function internal.user_with_confirmed_phone(p_phone text)
  returns uuid
  language sql
  stable
  set search_path = ''
  as $$
  select u.id from auth.users u
   where u.phone in (ltrim(p_phone, '+'), '+' || ltrim(p_phone, '+'))
     and u.phone_confirmed_at is not null and u.deleted_at is null
   order by u.created_at
   limit 1
$$;
revoke all on function internal.user_with_confirmed_phone(text) from public;
grant execute on function internal.user_with_confirmed_phone(text) to service_role;

-- Invites a phone (E.164) as member, treasurer or secretary. The invitee is told in the app
-- when an account has confirmed that number, and by SMS either way. Unchanged but for who counts
-- as the number's owner: the profile's phone is not proof of anything.
create or replace function public.invite_member(p_chama_id uuid, p_phone text, p_role text) returns jsonb
  language plpgsql
  security definer
  set search_path = ''
  as $$
declare
  v_id uuid;
  v_user uuid;
begin
  if not public.is_chama_member(p_chama_id) then
    raise exception 'chama not found' using errcode = 'PX404';
  end if;
  if not public.is_chama_official(p_chama_id) then
    raise exception 'only officials invite' using errcode = '42501';
  end if;
  if p_phone is null or p_phone !~ '^\+254[17][0-9]{8}$' then
    raise exception 'phone must be a Kenyan mobile number' using errcode = 'PX422';
  end if;
  if p_role not in ('member', 'treasurer', 'secretary') then
    raise exception 'role must be member, treasurer or secretary (the chair is handed over, not invited)'
      using errcode = 'PX422';
  end if;
  select u.id into v_user from public.users u
   where u.id = internal.user_with_confirmed_phone(p_phone) and u.deleted_at is null;
  if v_user is not null and exists (select from public.chama_members
                                     where chama_id = p_chama_id and user_id = v_user
                                       and status in ('active', 'suspended', 'pending')) then
    raise exception 'that number already belongs to a member of this chama' using errcode = 'PX409';
  end if;
  begin
    insert into public.chama_invitations (chama_id, phone, role, invited_by, user_id)
      values (p_chama_id, p_phone, p_role, auth.uid(), v_user)
      returning id into v_id;
  exception when unique_violation then
    raise exception 'that number already has a pending invitation to this chama' using errcode = 'PX409';
  end;
  if v_user is not null then
    insert into public.notifications (user_id, chama_id, type, title, body, data)
      values (v_user, p_chama_id, 'membership', 'Invitation to join a chama',
              format('You are invited to join %s as %s.', internal.chama_name(p_chama_id), p_role),
              jsonb_build_object('invitation_id', v_id));
  end if;
  insert into internal.outbox (topic, payload, dedupe_key)
    values ('sms', jsonb_build_object('to', p_phone, 'message',
              format('You are invited to join %s on PesaChama. Open the app or dial the PesaChama code to accept.',
                     internal.chama_name(p_chama_id))),
            'invitation:' || v_id);
  return (select to_jsonb(i) from public.chama_invitations i where i.id = v_id);
end
$$;
