-- Issue 29, items 5 and 6.
--
-- 1. A platform administrator is one the database says is, now: a token keeps its claims for
--    up to an hour, so the `app_metadata.platform_role` claim alone would outlive a revoked
--    right, a suspension, a deletion or a logout. The claim is still required (a cheap first
--    test that spares every other caller the lookup); `auth.users` and `auth.sessions` decide.
--    The API rewrites the claim from the database on every request; this covers the Data API,
--    where PostgREST hands RLS the token's claims as signed.
--
-- 2. Password guessing is throttled per account (and per account and address) by failures
--    only, with a doubling wait; devices that signed in to an account before are remembered so
--    their owner's correct password is not refused during that wait.

create or replace function public.is_platform_admin()
  returns boolean
  language plpgsql
  stable
  security definer
  set search_path = ''
  as $$
declare
  v_claims jsonb := (select auth.jwt());
begin
  if coalesce(v_claims -> 'app_metadata' ->> 'platform_role', '') <> 'admin' then
    return false;
  end if;
  return exists (
    select from auth.users u
      join auth.sessions s on s.user_id = u.id
     where u.id = (select auth.uid())
       and s.id::text = v_claims ->> 'session_id'
       and (s.not_after is null or s.not_after > now())
       and u.deleted_at is null
       and (u.banned_until is null or u.banned_until <= now())
       and coalesce(u.raw_app_meta_data ->> 'platform_role', '') = 'admin');
end
$$;

-- Failed password attempts, by bucket: `account:<identifier>` counts every failure for the
-- account, `account_ip:<identifier>:<address>` those from one address. Successes clear the
-- account's rows. `locked_until` is when the next attempt (without a known device) is heard.
create table internal.login_failures (
  bucket text not null,
  failures integer not null,
  last_failure_at timestamptz not null,
  locked_until timestamptz,
  constraint login_failures_pkey primary key (bucket)
);
create index login_failures_last_failure_idx on internal.login_failures (last_failure_at);

-- Devices (a random identifier the app keeps, sent as `X-Device-Id`; only its SHA-256 is
-- stored) that signed in to an account with its password.
create table internal.known_devices (
  user_id uuid not null references auth.users (id) on delete cascade,
  device_hash text not null,
  last_sign_in_at timestamptz not null,
  constraint known_devices_pkey primary key (user_id, device_hash)
);

alter table internal.login_failures enable row level security;
alter table internal.known_devices enable row level security;
revoke all on internal.login_failures, internal.known_devices from public, anon, authenticated;
