-- Writes through the Data API meet the API's rules, or are not allowed at all.
--
-- A client signed in to Supabase writes through PostgREST as `authenticated`, past the API.
-- Every such write now passes the checks, notifications and audit the API applies to it, in
-- the database where both meet; where that cannot be said of a plain INSERT or UPDATE (it
-- would skip a notification, a count, a join code or the recipient's verified phone), the
-- grant is revoked and the `rpc` the API calls is the only way. Also here: the approval
-- threshold is the chairperson's to change and is not lowered while it protects money, and
-- the suspension rules hold for whoever writes `chama_members`.

-- Rpc only: withdrawals, decisions, memberships, invitations --------------------------------
-- request_disbursement, decide_disbursement, join_chama, admit_member, change_member_role,
-- set_member_suspended, leave_chama, invite_member and respond_to_invitation do these writes
-- with their checks, counts and notifications. A table-level revoke takes the column grants
-- with it; the policies that only served those grants go too.

revoke insert on public.disbursement_requests from authenticated;
revoke insert on public.disbursement_approvals from authenticated;
revoke insert, update on public.chama_members from authenticated;
revoke insert, update on public.chama_invitations from authenticated;

drop policy disbursement_requests_insert on public.disbursement_requests;
drop policy disbursement_approvals_insert on public.disbursement_approvals;
drop policy chama_members_insert on public.chama_members;
drop policy chama_members_update on public.chama_members;
drop policy chama_invitations_insert on public.chama_invitations;
drop policy chama_invitations_update on public.chama_invitations;

-- A profile's phone and email are the verified ones of the sign-in --------------------------
-- They identify a person (invitations, payouts, SMS), so the caller never sets them: a
-- profile created through the Data API takes them from auth.users, confirmed ones only, as
-- the server does when it creates a profile at sign-in; a change goes through the auth
-- service, which verifies the new number or address with a code.

revoke insert (email, phone) on public.users from authenticated;
revoke update (phone) on public.users from authenticated;

create function internal.profile_identity() returns trigger
  language plpgsql
  security definer
  set search_path = ''
  as $$
begin
  select case when u.phone_confirmed_at is not null and coalesce(u.phone, '') <> ''
              then '+' || ltrim(u.phone, '+') end,
         case when u.email_confirmed_at is not null then lower(u.email) end
    into new.phone, new.email
    from auth.users u
   where u.id = new.id;
  return new;
end
$$;

-- `when (current_user = ...)` is evaluated as the caller, before the SECURITY DEFINER function
-- runs: request roles only (the server, the service role and imports bring their own values).
create trigger users_profile_identity before insert on public.users
  for each row when (current_user = 'authenticated')
  execute function internal.profile_identity();

-- The approval threshold: the chairperson's, and not lowered while it protects money --------
-- Maker-checker is only as strong as k. A new chama has one official, so k starts at 1 (as
-- the API says). Afterwards only the chairperson changes k. Raising it is always allowed
-- (within reach of the officials: chamas_reachable_threshold). Lowering it is refused while
-- the chama holds money (balance, cash or a payout in transit) or has a withdrawal pending,
-- approved or being paid: the k officials who guard that money would otherwise be bypassed
-- by one person. A chama that must lower k while it holds money pays it out first (a rule
-- change approved by the current k officials would lift this; it is not built).

create function internal.guard_approval_rule() returns trigger
  language plpgsql
  security definer
  set search_path = ''
  as $$
begin
  if tg_op = 'INSERT' then
    if new.required_approvals <> 1 then
      raise exception 'a new chama has one official (its chairperson): required_approvals must be 1 until treasurer and secretary are named'
        using errcode = 'PX422';
    end if;
    return new;
  end if;
  if new.required_approvals = old.required_approvals then
    return new;
  end if;
  if not public.has_chama_role(new.id, array['chairperson']) then
    raise exception 'only the chairperson changes required_approvals' using errcode = '42501';
  end if;
  if new.required_approvals < old.required_approvals and (
       old.balance <> 0
       or exists (select from internal.ledger_accounts a
                   where a.chama_id = new.id and a.kind in ('cash', 'payouts_in_transit')
                     and a.balance <> 0)
       or exists (select from public.disbursement_requests r
                   where r.chama_id = new.id and r.status in ('pending', 'approved', 'processing'))) then
    raise exception 'required_approvals cannot be lowered while the chama holds money or a withdrawal is in progress'
      using errcode = 'P0001';
  end if;
  return new;
end
$$;

create trigger chamas_approval_rule before insert or update of required_approvals on public.chamas
  for each row when (current_user = 'authenticated')
  execute function internal.guard_approval_rule();

-- A chama created without saying k gets the k it can reach, as through the API.
alter table public.chamas alter column required_approvals set default 1;

-- Suspension rules, for every writer of chama_members ---------------------------------------
-- The chairperson is never suspended (the chair is handed over first), nobody suspends or
-- reinstates themselves, and the officials left active must still reach the chama's
-- threshold. set_member_suspended checks the same first, to answer in words; this trigger is
-- what makes them hold for any other path. The chama is locked first, as the rpc does, so two
-- suspensions at once count each other.

create function internal.guard_suspension() returns trigger
  language plpgsql
  security definer
  set search_path = ''
  as $$
declare
  v_required integer;
begin
  if old.user_id = auth.uid() then
    raise exception 'you cannot suspend or reinstate yourself' using errcode = '42501';
  end if;
  if new.status <> 'suspended' then
    return new; -- reinstatement
  end if;
  if old.role = 'chairperson' then
    raise exception 'the chairperson cannot be suspended: the chair must be handed over first'
      using errcode = '42501';
  end if;
  select required_approvals into v_required from public.chamas where id = old.chama_id for update;
  if old.status = 'active' and old.role in ('treasurer', 'secretary')
     and internal.active_officials(old.chama_id) - 1 < v_required then
    raise exception 'the chama needs % officials to approve withdrawals and would have only %; lower the threshold or name another official first',
      v_required, internal.active_officials(old.chama_id) - 1 using errcode = 'P0001';
  end if;
  return new;
end
$$;

create trigger chama_members_suspension before update of status on public.chama_members
  for each row when (new.status is distinct from old.status
                     and 'suspended' in (new.status, old.status))
  execute function internal.guard_suspension();

-- Meetings and the register: the API's checks, where a direct write meets them ---------------
-- Officials still write these tables through the Data API (the API does so too, under the
-- caller's role); notifications and audit come from triggers already. What the API checked in
-- Rust is checked here as well: no meeting scheduled in the past, a cancelled meeting stays as
-- it was (only its files may still be linked), only a scheduled meeting is cancelled; the
-- register lists members of the chama, recorded by the caller at the time of the write.

create function internal.guard_meeting_write() returns trigger
  language plpgsql
  set search_path = ''
  as $$
begin
  if tg_op = 'INSERT' then
    if new.scheduled_for < now() then
      raise exception 'scheduled_for must be in the future' using errcode = 'PX422';
    end if;
    return new;
  end if;
  if old.status = 'cancelled'
     and (new.title, new.agenda, new.scheduled_for, new.duration_minutes, new.venue,
          new.meeting_type, new.minutes, new.status)
         is distinct from
         (old.title, old.agenda, old.scheduled_for, old.duration_minutes, old.venue,
          old.meeting_type, old.minutes, old.status) then
    raise exception 'this meeting was cancelled' using errcode = 'P0001';
  end if;
  if new.status = 'cancelled' and old.status <> 'cancelled' and old.status <> 'scheduled' then
    raise exception 'a meeting that is % cannot be cancelled', old.status using errcode = 'P0001';
  end if;
  return new;
end
$$;

create trigger meetings_guard before insert or update on public.meetings
  for each row when (current_user = 'authenticated')
  execute function internal.guard_meeting_write();

-- Runs with the caller's rights: an official sees the chama's roll. Anyone else is left to
-- the policy, which refuses them without saying who is a member.
create function internal.guard_attendance_write() returns trigger
  language plpgsql
  set search_path = ''
  as $$
begin
  if not public.is_chama_official(new.chama_id) then
    return new;
  end if;
  if not exists (select from public.chama_members m
                  where m.chama_id = new.chama_id and m.user_id = new.user_id
                    and m.status in ('active', 'suspended')) then
    raise exception '% is not a member of this chama', new.user_id using errcode = 'PX422';
  end if;
  new.recorded_by := auth.uid();
  new.checked_in_at := case when new.status in ('present', 'late') then now() end;
  return new;
end
$$;

create trigger meeting_attendance_guard before insert or update on public.meeting_attendance
  for each row when (current_user = 'authenticated')
  execute function internal.guard_attendance_write();

revoke all on function internal.profile_identity(), internal.guard_approval_rule(),
  internal.guard_suspension(), internal.guard_meeting_write(), internal.guard_attendance_write()
  from public;
