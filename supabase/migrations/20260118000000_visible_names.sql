-- Names that other members read hold nothing that hides or reorders text (issue 29 #14).
--
-- A right-to-left override makes a name read backwards; a zero-width space makes two chamas
-- that look the same. The rule is `pesachama_domain::text::hidden_character`'s: control
-- characters, direction marks, embeddings, overrides and isolates, and characters that draw
-- nothing are refused; zero-width joiners and non-joiners only between two non-ASCII characters
-- (emoji sequences, scripts that need them). The API answers 422 naming the field; these
-- constraints make the Data API refuse the same writes. NOT VALID: rows written before the rule
-- stay as they are (the legacy import cleans what it moves).

alter table public.users
  add constraint users_first_name_visible check (first_name !~ '[\u0001-\u001f\u007f-\u009f\u00ad\u034f\u061c\u115f\u1160\u180e\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\u3164\ufeff\uffa0]|(^|[\u0001-\u007f])[\u200c\u200d]|[\u200c\u200d]([\u0001-\u007f]|$)') not valid,
  add constraint users_last_name_visible check (last_name !~ '[\u0001-\u001f\u007f-\u009f\u00ad\u034f\u061c\u115f\u1160\u180e\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\u3164\ufeff\uffa0]|(^|[\u0001-\u007f])[\u200c\u200d]|[\u200c\u200d]([\u0001-\u007f]|$)') not valid;

alter table public.chamas
  add constraint chamas_name_visible check (name !~ '[\u0001-\u001f\u007f-\u009f\u00ad\u034f\u061c\u115f\u1160\u180e\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\u3164\ufeff\uffa0]|(^|[\u0001-\u007f])[\u200c\u200d]|[\u200c\u200d]([\u0001-\u007f]|$)') not valid;

-- The profile made on a user's first request leaves such a name out rather than failing.
create or replace function internal.ensure_profile(p_user_id uuid)
  returns void
  language plpgsql
  security definer
  set search_path = ''
  as $$
declare
  v_phone text;
  v_email text;
  v_meta jsonb;
  v_first text;
  v_last text;
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
  v_first := nullif(left(btrim(v_meta ->> 'first_name'), 100), '');
  v_last := nullif(left(btrim(v_meta ->> 'last_name'), 100), '');
  begin
    insert into public.users (id, email, phone, first_name, last_name, language)
    values (p_user_id, v_email, v_phone, v_first, v_last,
            case when v_meta ->> 'language' in ('en', 'sw') then v_meta ->> 'language' else 'en' end)
    on conflict (id) do nothing;
  exception when check_violation then
    -- A name the profile's rules refuse (one that hides or reorders text) is left out, as a
    -- contact that does not fit is.
    insert into public.users (id, email, phone, language)
    values (p_user_id, v_email, v_phone,
            case when v_meta ->> 'language' in ('en', 'sw') then v_meta ->> 'language' else 'en' end)
    on conflict (id) do nothing;
  end;
end
$$;
