-- Officials may suspend or remove members through the Data API (PostgREST) as well as through
-- `set_member_suspended`; through either, the chairperson is out of their reach. Same function
-- as in 000400, with that rule added.

create or replace function internal.guard_membership() returns trigger
  language plpgsql
  set search_path = ''
  as $$
declare
  v_me uuid := auth.uid();
  v_official boolean;
  v_chair boolean;
begin
  if current_user::text <> 'authenticated' then
    return new; -- server, service role, migrations: the application layer owns these rules
  end if;
  v_official := public.is_chama_official(new.chama_id);
  v_chair := public.has_chama_role(new.chama_id, array['chairperson']);
  if tg_op = 'INSERT' then
    if new.user_id = v_me and not v_official then
      -- joining by code: a pending request, as a plain member
      if new.role <> 'member' or new.status <> 'pending' then
        raise exception 'a join request is a pending membership with role member'
          using errcode = '42501';
      end if;
    elsif not v_official or new.status <> 'invited' or new.role = 'chairperson' then
      raise exception 'only officials invite, and an invitation is for a member, treasurer or secretary'
        using errcode = '42501';
    end if;
    new.contributed_total := 0;
    return new;
  end if;
  -- UPDATE
  if new.role is distinct from old.role and not v_chair then
    raise exception 'only the chairperson changes roles' using errcode = '42501';
  end if;
  -- Nobody is made a member on someone else's say-so: only the user accepts an invitation or
  -- asks to join; officials approve a join request or reinstate a suspended member.
  if new.status in ('active', 'pending') and new.status is distinct from old.status
     and old.user_id is distinct from v_me and old.status not in ('pending', 'suspended') then
    raise exception 'only the user themselves accepts an invitation or asks to join'
      using errcode = '42501';
  end if;
  -- The chair is handed over, never taken: the chairperson is not suspended or removed by
  -- someone else (the unique index would then allow a chama with no chairperson).
  if new.status is distinct from old.status and old.role = 'chairperson'
     and old.user_id is distinct from v_me then
    raise exception 'the chairperson cannot be suspended or removed: the chair must be handed over first'
      using errcode = '42501';
  end if;
  if new.status is distinct from old.status and not v_official then
    if not (old.user_id = v_me and (
              (old.status = 'invited' and new.status in ('active', 'declined'))
           or (old.status in ('active', 'pending') and new.status = 'left'))) then
      raise exception 'a member may only accept or decline an invitation, or leave'
        using errcode = '42501';
    end if;
  end if;
  if new.status = 'active' and old.status <> 'active' and new.joined_at is null then
    new.joined_at := now();
  end if;
  if new.status = 'left' and old.status <> 'left' then
    new.left_at := now();
  end if;
  return new;
end
$$;
