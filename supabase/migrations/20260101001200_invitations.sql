-- Joining a chama: an official invites a phone number (whoever has or later signs up with that
-- number sees the invitation and answers it), or a user asks to join with the chama's code and
-- an official admits them. Same conventions as the other API functions.

create function internal.chama_name(p_chama_id uuid) returns text
  language sql stable
  set search_path = ''
  as $$ select name from public.chamas where id = p_chama_id $$;

-- Invites a phone (E.164) as member, treasurer or secretary. The invitee is told in the app when
-- they have an account, and by SMS (through the outbox) either way.
create function public.invite_member(p_chama_id uuid, p_phone text, p_role text) returns jsonb
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
  select id into v_user from public.users where phone = p_phone and deleted_at is null;
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

-- The invitee (by the phone in their token) accepts or declines.
create function public.respond_to_invitation(p_invitation_id uuid, p_accept boolean) returns jsonb
  language plpgsql
  security definer
  set search_path = ''
  as $$
declare
  v_invitation public.chama_invitations;
  v_me uuid := auth.uid();
begin
  select * into v_invitation from public.chama_invitations where id = p_invitation_id for update;
  if not found or v_invitation.phone is distinct from public.caller_phone() then
    raise exception 'invitation not found' using errcode = 'PX404';
  end if;
  if v_invitation.status <> 'pending' then
    raise exception 'this invitation is already %', v_invitation.status using errcode = 'P0001';
  end if;
  if v_invitation.expires_at <= now() then
    update public.chama_invitations set status = 'expired' where id = p_invitation_id;
    return jsonb_build_object('id', p_invitation_id, 'status', 'expired');
  end if;
  if not exists (select from public.users where id = v_me) then
    raise exception 'complete your profile first' using errcode = 'P0001';
  end if;
  update public.chama_invitations
     set status = case when p_accept then 'accepted' else 'declined' end,
         responded_at = now(), user_id = v_me
   where id = p_invitation_id;
  if p_accept then
    insert into public.chama_members (chama_id, user_id, role, status, invited_by, joined_at)
      values (v_invitation.chama_id, v_me, v_invitation.role, 'active', v_invitation.invited_by, now())
      on conflict (chama_id, user_id) do update
        set status = 'active', role = excluded.role, joined_at = now(), left_at = null;
    insert into public.notifications (user_id, chama_id, type, title, body, data)
    select m.user_id, v_invitation.chama_id, 'membership', 'New member',
           format('%s joined %s.', coalesce((select first_name from public.users where id = v_me), 'A new member'),
                  internal.chama_name(v_invitation.chama_id)),
           jsonb_build_object('user_id', v_me)
      from public.chama_members m
     where m.chama_id = v_invitation.chama_id and m.status = 'active'
       and m.role in ('chairperson', 'treasurer', 'secretary');
  end if;
  return jsonb_build_object('id', p_invitation_id, 'chama_id', v_invitation.chama_id,
                            'status', case when p_accept then 'accepted' else 'declined' end);
end
$$;

-- Asking to join with the chama's code: a pending membership until an official admits it.
create function public.join_chama(p_join_code text) returns jsonb
  language plpgsql
  security definer
  set search_path = ''
  as $$
declare
  v_chama public.chamas;
  v_me uuid := auth.uid();
  v_existing text;
begin
  select * into v_chama from public.chamas
   where join_code = upper(btrim(p_join_code)) and status = 'active' and deleted_at is null;
  if not found then
    raise exception 'no active chama has that code' using errcode = 'PX404';
  end if;
  if not exists (select from public.users where id = v_me) then
    raise exception 'complete your profile first' using errcode = 'P0001';
  end if;
  select status into v_existing from public.chama_members where chama_id = v_chama.id and user_id = v_me;
  if v_existing in ('active', 'pending', 'suspended') then
    raise exception 'you are already % in this chama', v_existing using errcode = 'PX409';
  end if;
  insert into public.chama_members (chama_id, user_id, role, status)
    values (v_chama.id, v_me, 'member', 'pending')
    on conflict (chama_id, user_id) do update set status = 'pending', role = 'member', left_at = null;
  insert into public.notifications (user_id, chama_id, type, title, body, data)
  select m.user_id, v_chama.id, 'membership', 'Request to join',
         format('%s asked to join %s.', coalesce((select first_name from public.users where id = v_me), 'Someone'), v_chama.name),
         jsonb_build_object('user_id', v_me)
    from public.chama_members m
   where m.chama_id = v_chama.id and m.status = 'active'
     and m.role in ('chairperson', 'treasurer', 'secretary');
  return jsonb_build_object('chama_id', v_chama.id, 'name', v_chama.name, 'status', 'pending');
end
$$;

-- An official admits (or turns away) a pending request to join.
create function public.admit_member(p_chama_id uuid, p_user_id uuid, p_admit boolean) returns jsonb
  language plpgsql
  security definer
  set search_path = ''
  as $$
begin
  if not public.is_chama_member(p_chama_id) then
    raise exception 'chama not found' using errcode = 'PX404';
  end if;
  if not public.is_chama_official(p_chama_id) then
    raise exception 'only officials admit members' using errcode = '42501';
  end if;
  update public.chama_members
     set status = case when p_admit then 'active' else 'declined' end,
         joined_at = case when p_admit then now() end
   where chama_id = p_chama_id and user_id = p_user_id and status = 'pending';
  if not found then
    raise exception 'there is no pending request from that user' using errcode = 'PX404';
  end if;
  insert into public.notifications (user_id, chama_id, type, title, body, data)
    values (p_user_id, p_chama_id, 'membership',
            case when p_admit then 'Welcome' else 'Request to join declined' end,
            format(case when p_admit then 'You are now a member of %s.' else 'Your request to join %s was declined.' end,
                   internal.chama_name(p_chama_id)),
            jsonb_build_object('chama_id', p_chama_id));
  return jsonb_build_object('chama_id', p_chama_id, 'user_id', p_user_id,
                            'status', case when p_admit then 'active' else 'declined' end);
end
$$;

revoke all on function public.invite_member(uuid, text, text), public.respond_to_invitation(uuid, boolean),
  public.join_chama(text), public.admit_member(uuid, uuid, boolean) from public, anon;
grant execute on function public.invite_member(uuid, text, text), public.respond_to_invitation(uuid, boolean),
  public.join_chama(text), public.admit_member(uuid, uuid, boolean) to authenticated, service_role;
revoke all on function internal.chama_name(uuid) from public;

-- The caller's pending invitations, with the chama's name (which RLS would otherwise hide from
-- someone who is not a member yet).
create function public.my_invitations() returns jsonb
  language sql stable
  security definer
  set search_path = ''
  as $$
  select coalesce(jsonb_agg(jsonb_build_object(
           'id', i.id, 'chama_id', i.chama_id, 'chama_name', c.name, 'role', i.role,
           'invited_by', i.invited_by, 'expires_at', i.expires_at, 'created_at', i.created_at)
           order by i.created_at desc), '[]'::jsonb)
    from public.chama_invitations i join public.chamas c on c.id = i.chama_id
   where i.phone = public.caller_phone() and i.status = 'pending' and i.expires_at > now()
$$;
revoke all on function public.my_invitations() from public, anon;
grant execute on function public.my_invitations() to authenticated, service_role;

-- Pending invitations past their expiry; run by the server's sweeper.
create function internal.expire_invitations() returns integer
  language sql
  set search_path = ''
  as $$
  with expired as (
    update public.chama_invitations set status = 'expired'
     where status = 'pending' and expires_at <= now()
     returning id)
  select count(*)::integer from expired
$$;
revoke all on function internal.expire_invitations() from public;
grant execute on function internal.expire_invitations() to service_role;
