-- Every signed-in user has a profile, however they signed up.
--
-- A user whom Supabase Auth created (the app signing up through Supabase, a dashboard invite)
-- never passes through our sign-in, which is where profiles used to be made, and their first
-- request (creating a chama, accepting an invitation) broke on `public.users` foreign keys. The
-- server now makes the profile on a user's first request, from `auth.users`, with this one
-- function; our own sign-up and sign-in use it too. We cannot put a trigger on Supabase's
-- `auth.users`, so it is called, not triggered.
--
-- Only a confirmed email or phone goes into the profile (they identify a person to a chama's
-- officials); one that does not fit the profile's rules (a non-Kenyan number) is left out, and
-- so is one another live profile already has.

create function internal.ensure_profile(p_user_id uuid)
  returns void
  language plpgsql
  security definer
  set search_path = ''
  as $$
declare
  v_phone text;
  v_email text;
  v_meta jsonb;
begin
  if exists (select from public.users where id = p_user_id) then
    return;
  end if;
  select case when u.phone_confirmed_at is not null then '+' || ltrim(u.phone, '+') end,
         case when u.email_confirmed_at is not null then lower(u.email) end,
         coalesce(u.raw_user_meta_data, '{}'::jsonb)
    into v_phone, v_email, v_meta
    from auth.users u
   where u.id = p_user_id and u.deleted_at is null;
  if not found then
    return;
  end if;
  if v_phone !~ '^\+254[17][0-9]{8}$'
     or exists (select from public.users where phone = v_phone and deleted_at is null) then
    v_phone := null;
  end if;
  if v_email !~ '^[a-z0-9._%+''-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$'
     or exists (select from public.users where email = v_email and deleted_at is null) then
    v_email := null;
  end if;
  insert into public.users (id, email, phone, first_name, last_name, language)
  values (p_user_id, v_email, v_phone,
          nullif(left(btrim(v_meta ->> 'first_name'), 100), ''),
          nullif(left(btrim(v_meta ->> 'last_name'), 100), ''),
          case when v_meta ->> 'language' in ('en', 'sw') then v_meta ->> 'language' else 'en' end)
  on conflict (id) do nothing;
end
$$;
revoke all on function internal.ensure_profile(uuid) from public;
grant execute on function internal.ensure_profile(uuid) to service_role;
