-- Row-level security: who may see and change what, for every table in `public`.
--
-- When the app talks to Supabase directly (PostgREST, Realtime, Storage), these policies are
-- the only guard; the PesaChama API runs every request under the caller's role and claims too
-- (CONTRACTS §2), so both paths see exactly the same rows.
--
-- Roles: anon sees nothing; authenticated sees what membership allows; service_role (system
-- paths: callbacks, USSD, workers) bypasses RLS on Supabase and has explicit policies here too.
-- Privileges are revoked first and granted back per table, per command and, for UPDATE, per
-- column: a policy says which rows, the grant says which columns.

-- Membership helpers ------------------------------------------------------------------------
-- SECURITY DEFINER so they read chama_members without recursing into its own policies;
-- `(select auth.uid())` is evaluated once per statement.

create function public.is_chama_member(p_chama_id uuid) returns boolean
  language sql stable security definer
  set search_path = ''
  as $$
  select exists (
    select from public.chama_members m
     where m.chama_id = p_chama_id
       and m.user_id = (select auth.uid())
       and m.status = 'active')
$$;

create function public.has_chama_role(p_chama_id uuid, p_roles text[]) returns boolean
  language sql stable security definer
  set search_path = ''
  as $$
  select exists (
    select from public.chama_members m
     where m.chama_id = p_chama_id
       and m.user_id = (select auth.uid())
       and m.status = 'active'
       and m.role = any (p_roles))
$$;

create function public.is_chama_official(p_chama_id uuid) returns boolean
  language sql stable
  set search_path = ''
  as $$
  select public.has_chama_role(p_chama_id, array['chairperson', 'treasurer', 'secretary'])
$$;

-- Platform administrators are marked in app_metadata, which only the server can write
-- (user_metadata is user-editable and never trusted).
create function public.is_platform_admin() returns boolean
  language sql stable
  set search_path = ''
  as $$
  select coalesce((select auth.jwt()) -> 'app_metadata' ->> 'platform_role', '') = 'admin'
$$;

-- Users who share an active chama with the caller. A pending member asked to join (and so
-- shows themselves); an invited one has not agreed to anything yet, so an invitation reveals
-- nothing of the invitee (anyone may create a chama and invite any user id).
create function public.shares_chama_with(p_user_id uuid) returns boolean
  language sql stable security definer
  set search_path = ''
  as $$
  select exists (
    select from public.chama_members mine
      join public.chama_members theirs on theirs.chama_id = mine.chama_id
     where mine.user_id = (select auth.uid()) and mine.status = 'active'
       and theirs.user_id = p_user_id and theirs.status in ('active', 'pending'))
$$;

-- The caller's phone in E.164 (GoTrue keeps it without '+').
create function public.caller_phone() returns text
  language sql stable
  set search_path = ''
  as $$
  select case when coalesce((select auth.jwt()) ->> 'phone', '') = '' then null
              else '+' || ltrim((select auth.jwt()) ->> 'phone', '+') end
$$;

-- The chama a storage path belongs to (its first folder), or null when it is not a chama id.
create function public.storage_chama_id(p_name text) returns uuid
  language sql immutable
  set search_path = ''
  as $$
  select case when split_part(p_name, '/', 1) ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
              then split_part(p_name, '/', 1)::uuid end
$$;

revoke all on function public.is_chama_member(uuid), public.has_chama_role(uuid, text[]),
  public.is_chama_official(uuid), public.is_platform_admin(), public.shares_chama_with(uuid),
  public.caller_phone(), public.storage_chama_id(text) from public, anon;
grant execute on function public.is_chama_member(uuid), public.has_chama_role(uuid, text[]),
  public.is_chama_official(uuid), public.is_platform_admin(), public.shares_chama_with(uuid),
  public.caller_phone(), public.storage_chama_id(text) to authenticated, service_role;

-- Rules RLS cannot express: what a member may change about their own membership -------------

-- Runs with the caller's rights (not SECURITY DEFINER), so current_user tells a request
-- (authenticated) from the server's own functions and the service role.
create function internal.guard_membership() returns trigger
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

create trigger chama_members_guard before insert or update on public.chama_members
  for each row execute function internal.guard_membership();
-- Trigger functions need no EXECUTE grant; nothing else in `internal` is for request roles.
revoke all on all functions in schema internal from public;

-- Enable RLS everywhere in public ---------------------------------------------------------------

do $$
declare
  t text;
begin
  for t in select tablename from pg_tables where schemaname = 'public' loop
    execute format('alter table public.%I enable row level security', t);
    execute format('revoke all on public.%I from public, anon, authenticated', t);
    -- Not `all`: TRUNCATE would skip the audit triggers and TRIGGER could disable them.
    execute format('grant select, insert, update, delete on public.%I to service_role', t);
    -- anon: explicitly nothing, for every table.
    execute format('create policy anon_none on public.%I as restrictive for all to anon using (false) with check (false)', t);
    execute format('create policy service_all on public.%I for all to service_role using (true) with check (true)', t);
  end loop;
end
$$;

-- users: yourself, people you share a chama with, and platform admins -----------------------------
grant select on public.users to authenticated;
-- legacy_id, deleted_at and the timestamps are the server's to set.
grant insert (id, email, phone, first_name, last_name, id_number, avatar_url, language) on public.users to authenticated;
grant update (first_name, last_name, id_number, avatar_url, language, phone) on public.users to authenticated;
create policy users_select on public.users for select to authenticated
  using (id = (select auth.uid()) or public.shares_chama_with(id) or public.is_platform_admin());
create policy users_insert_self on public.users for insert to authenticated
  with check (id = (select auth.uid()));
create policy users_update_self on public.users for update to authenticated
  using (id = (select auth.uid())) with check (id = (select auth.uid()));

-- chamas: members read; anyone signed in creates (and becomes chairperson); officials edit -----
grant select on public.chamas to authenticated;
grant insert (name, description, chama_type, registration_number, contribution_amount,
              contribution_frequency, required_approvals, created_by) on public.chamas to authenticated;
grant update (name, description, chama_type, registration_number, contribution_amount,
              contribution_frequency, required_approvals) on public.chamas to authenticated;
create policy chamas_select on public.chamas for select to authenticated
  using (public.is_chama_member(id) or public.is_platform_admin()
         or created_by = (select auth.uid()));
create policy chamas_insert on public.chamas for insert to authenticated
  with check (created_by = (select auth.uid()));
create policy chamas_update_officials on public.chamas for update to authenticated
  using (public.is_chama_official(id)) with check (public.is_chama_official(id));

-- chama_members: members see the roll; officials invite and manage; a member answers an
-- invitation, asks to join, or leaves (internal.guard_membership checks the transitions) -------
grant select on public.chama_members to authenticated;
grant insert (chama_id, user_id, role, status, invited_by) on public.chama_members to authenticated;
grant update (role, status) on public.chama_members to authenticated;
create policy chama_members_select on public.chama_members for select to authenticated
  using (user_id = (select auth.uid()) or public.is_chama_member(chama_id));
create policy chama_members_insert on public.chama_members for insert to authenticated
  with check (public.is_chama_official(chama_id) or user_id = (select auth.uid()));
create policy chama_members_update on public.chama_members for update to authenticated
  using (public.is_chama_official(chama_id) or user_id = (select auth.uid()))
  with check (public.is_chama_official(chama_id) or user_id = (select auth.uid()));

-- chama_invitations: officials issue and revoke; the invited phone sees and answers -------------
grant select on public.chama_invitations to authenticated;
grant insert (chama_id, phone, role, invited_by) on public.chama_invitations to authenticated;
grant update (status, responded_at, user_id) on public.chama_invitations to authenticated;
create policy chama_invitations_select on public.chama_invitations for select to authenticated
  using (public.is_chama_official(chama_id) or phone = public.caller_phone());
create policy chama_invitations_insert on public.chama_invitations for insert to authenticated
  with check (public.is_chama_official(chama_id) and invited_by = (select auth.uid()) and status = 'pending');
-- The invitee answers a pending, unexpired invitation, for themselves only.
create policy chama_invitations_update on public.chama_invitations for update to authenticated
  using (public.is_chama_official(chama_id)
         or (phone = public.caller_phone() and status = 'pending' and expires_at > now()))
  with check (public.is_chama_official(chama_id)
              or (phone = public.caller_phone() and status in ('accepted', 'declined')
                  and (user_id is null or user_id = (select auth.uid()))));

-- transactions: a member sees their own and the chama's own entries, officials see all;
-- money is written only by the ledger functions (server side) ------------------------------------
grant select on public.transactions to authenticated;
create policy transactions_select on public.transactions for select to authenticated
  using ((user_id = (select auth.uid()) and public.is_chama_member(chama_id))
         or (user_id is null and public.is_chama_member(chama_id))
         or public.is_chama_official(chama_id));

-- disbursement_requests: members see their chama's requests and ask for withdrawals;
-- approvals and payment are server-side ------------------------------------------------------------
grant select on public.disbursement_requests to authenticated;
grant insert (chama_id, requested_by, recipient_user_id, recipient_phone, amount, reason, required_approvals)
  on public.disbursement_requests to authenticated;
create policy disbursement_requests_select on public.disbursement_requests for select to authenticated
  using (public.is_chama_member(chama_id));
create policy disbursement_requests_insert on public.disbursement_requests for insert to authenticated
  with check (public.is_chama_member(chama_id) and requested_by = (select auth.uid())
              and status = 'pending' and approvals_count = 0 and rejections_count = 0
              -- k of n: a request cannot ask for fewer approvals than its chama requires
              and disbursement_requests.required_approvals >= (
                    select c.required_approvals from public.chamas c
                     where c.id = disbursement_requests.chama_id));

-- disbursement_approvals: members see them; an official decides once, never on their own request
grant select on public.disbursement_approvals to authenticated;
grant insert (request_id, chama_id, approver_id, decision, comment) on public.disbursement_approvals to authenticated;
create policy disbursement_approvals_select on public.disbursement_approvals for select to authenticated
  using (public.is_chama_member(chama_id));
create policy disbursement_approvals_insert on public.disbursement_approvals for insert to authenticated
  with check (approver_id = (select auth.uid())
              and public.is_chama_official(chama_id)
              and exists (select from public.disbursement_requests r
                           where r.id = request_id and r.chama_id = disbursement_approvals.chama_id
                             and r.status = 'pending' and r.requested_by <> (select auth.uid())));

-- meetings and attendance: members read, officials schedule, edit and take the register ----------
grant select on public.meetings to authenticated;
grant insert (chama_id, title, agenda, scheduled_for, duration_minutes, venue, meeting_type, created_by)
  on public.meetings to authenticated;
grant update (title, agenda, scheduled_for, duration_minutes, venue, meeting_type, minutes,
              minutes_object_id, recording_object_id, status) on public.meetings to authenticated;
create policy meetings_select on public.meetings for select to authenticated
  using (public.is_chama_member(chama_id));
create policy meetings_insert on public.meetings for insert to authenticated
  with check (public.is_chama_official(chama_id) and created_by = (select auth.uid()));
create policy meetings_update on public.meetings for update to authenticated
  using (public.is_chama_official(chama_id)) with check (public.is_chama_official(chama_id));

grant select on public.meeting_attendance to authenticated;
grant insert (meeting_id, chama_id, user_id, status, checked_in_at, recorded_by) on public.meeting_attendance to authenticated;
grant update (status, checked_in_at, recorded_by) on public.meeting_attendance to authenticated;
create policy meeting_attendance_select on public.meeting_attendance for select to authenticated
  using (public.is_chama_member(chama_id));
create policy meeting_attendance_insert on public.meeting_attendance for insert to authenticated
  with check (public.is_chama_official(chama_id)
              and exists (select from public.meetings m where m.id = meeting_id and m.chama_id = meeting_attendance.chama_id));
create policy meeting_attendance_update on public.meeting_attendance for update to authenticated
  using (public.is_chama_official(chama_id)) with check (public.is_chama_official(chama_id));

-- payment_requests: the payer and the officials see them; created by the server ------------------
grant select on public.payment_requests to authenticated;
create policy payment_requests_select on public.payment_requests for select to authenticated
  using ((user_id = (select auth.uid()) and public.is_chama_member(chama_id)) or public.is_chama_official(chama_id));

-- ussd_sessions: system only (service_role policy above), nothing for users ----------------------

-- notifications: your own; you mark them read and delete them -------------------------------------
grant select, delete on public.notifications to authenticated;
grant update (read_at) on public.notifications to authenticated;
create policy notifications_select on public.notifications for select to authenticated
  using (user_id = (select auth.uid()));
create policy notifications_update on public.notifications for update to authenticated
  using (user_id = (select auth.uid())) with check (user_id = (select auth.uid()));
create policy notifications_delete on public.notifications for delete to authenticated
  using (user_id = (select auth.uid()));

-- device_tokens: your own devices ----------------------------------------------------------------
grant select, delete on public.device_tokens to authenticated;
grant insert (user_id, token, platform) on public.device_tokens to authenticated;
grant update (platform, last_seen_at) on public.device_tokens to authenticated;
create policy device_tokens_select on public.device_tokens for select to authenticated
  using (user_id = (select auth.uid()));
create policy device_tokens_insert on public.device_tokens for insert to authenticated
  with check (user_id = (select auth.uid()));
create policy device_tokens_update on public.device_tokens for update to authenticated
  using (user_id = (select auth.uid())) with check (user_id = (select auth.uid()));
create policy device_tokens_delete on public.device_tokens for delete to authenticated
  using (user_id = (select auth.uid()));

-- audit_logs: officials read their chama's trail, users their own, admins all; nobody writes ----
grant select on public.audit_logs to authenticated;
revoke insert, update, delete, truncate on public.audit_logs from service_role;
grant select on public.audit_logs to service_role;
create policy audit_logs_select on public.audit_logs for select to authenticated
  using ((chama_id is not null and public.is_chama_official(chama_id))
         or (chama_id is null and actor_id = (select auth.uid()))
         or public.is_platform_admin());

-- Domains and sequences used by the columns above.
grant usage on domain public.e164_phone, public.currency_code to authenticated, service_role;
