-- Triggers that have nothing to do stay uncalled.
--
-- Every contribution updates its chama's `balance` and its member's `contributed_total`. The
-- audit trigger on those tables then built both rows as JSON only to find that nothing but a
-- ledger-maintained column had changed, and the membership guard started only to return at
-- once for the server's own writes: two PL/pgSQL calls per row, each with its `search_path`
-- set and reset, for nothing. A trigger's WHEN condition is evaluated without calling the
-- function, so the same decisions move there:
--
-- * `audit_row` fires on INSERT and DELETE as before; UPDATEs go to `audit_row_update`, whose
--   WHEN asks whether anything but the ignored columns (and `updated_at`) changed. The function
--   is unchanged and still checks the same thing.
-- * `chama_members_guard` fires only for requests as `authenticated`, the one role it checks
--   (for every other role the function returned the row untouched).

do $$
declare
  spec record;
  v_ignored text;
begin
  for spec in
    select * from (values
      ('users', array[]::text[]),
      ('chamas', array['balance']),
      ('chama_members', array['contributed_total']),
      ('chama_invitations', array[]::text[]),
      ('transactions', array[]::text[]),
      ('disbursement_requests', array[]::text[]),
      ('disbursement_approvals', array[]::text[]),
      ('meetings', array[]::text[]),
      ('meeting_attendance', array[]::text[]),
      ('payment_requests', array[]::text[])
    ) as t(name, ignored)
  loop
    v_ignored := (select coalesce(string_agg(quote_literal(c), ', '), '') from unnest(spec.ignored) as c);
    execute format('drop trigger audit_row on public.%I', spec.name);
    execute format(
      'create trigger audit_row after insert or delete on public.%I
         for each row execute function internal.audit_row(%s)',
      spec.name, v_ignored);
    execute format(
      'create trigger audit_row_update after update on public.%I
         for each row
         when ((to_jsonb(old.*) - %L::text[]) is distinct from (to_jsonb(new.*) - %L::text[]))
         execute function internal.audit_row(%s)',
      spec.name, spec.ignored || array['updated_at'], spec.ignored || array['updated_at'], v_ignored);
  end loop;
end
$$;

drop trigger chama_members_guard on public.chama_members;
create trigger chama_members_guard before insert or update on public.chama_members
  for each row when (current_user = 'authenticated')
  execute function internal.guard_membership();
