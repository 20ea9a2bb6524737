-- Wrong PINs typed on USSD, counted per (phone number, source address), apart from the app's
-- count in internal.user_pins.
--
-- Africa's Talking signs nothing, so a USSD request proves only who sent it. If USSD tries
-- counted against the app's PIN lock, anyone able to post for a number could lock its owner
-- out everywhere with three guesses. Here a source that keeps guessing only slows itself
-- down: after 3 wrong PINs from one source for one number, that pair waits 30 s, then twice as
-- long after each further wrong PIN (at most an hour); a right PIN clears the pair, and a day
-- without wrong PINs forgets it. The member, from any other source, and the app are untouched.
create table internal.ussd_pin_tries (
  phone text not null,
  source text not null,
  failures integer not null default 0,
  last_failed_at timestamptz,
  blocked_until timestamptz,
  constraint ussd_pin_tries_pkey primary key (phone, source),
  constraint ussd_pin_tries_failures_not_negative check (failures >= 0)
);
create index ussd_pin_tries_last_failed_idx on internal.ussd_pin_tries (last_failed_at);

-- Stale pairs are forgotten by the sweeper along with expired sessions.
create or replace function internal.expire_ussd_sessions() returns integer
  language plpgsql
  set search_path = ''
  as $$
declare
  v_count integer;
begin
  delete from internal.ussd_pending_pins where expires_at <= now();
  delete from internal.ussd_pin_tries
   where coalesce(last_failed_at, '-infinity') < now() - interval '1 day'
     and coalesce(blocked_until, '-infinity') < now();
  update public.ussd_sessions set status = 'timeout'
   where status = 'active' and expires_at <= now();
  get diagnostics v_count = row_count;
  return v_count;
end
$$;
