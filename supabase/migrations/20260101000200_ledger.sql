-- The ledger's rules, in the database so that no code path can get around them.
--
-- * A journal balances (its postings sum to zero) and has at least two postings: checked by a
--   deferred constraint trigger, i.e. at commit, whoever wrote the rows.
-- * Balances move only through internal.post_journal, by relative updates, in one lock order:
--   the chama row first, then its accounts, then its member rows. Two journals of one chama
--   therefore queue on the chama row instead of deadlocking, and journals of different chamas
--   never touch a common row (no global hot spot).
-- * chamas.balance mirrors the chama's cash account; chama_members.contributed_total mirrors
--   the member's equity account (credit-normal, so it is the negated balance).

-- SECURITY DEFINER: being deferred, it runs at COMMIT under whatever role the transaction
-- has by then (`authenticated`, for a request), which may not read `internal`.
create function internal.check_journal_balanced() returns trigger
  language plpgsql
  security definer
  set search_path = ''
  as $$
declare
  v_journal uuid := coalesce(new.journal_id, old.journal_id);
  v_sum numeric;
  v_count integer;
begin
  select coalesce(sum(amount), 0), count(*) into v_sum, v_count
    from internal.postings where journal_id = v_journal;
  if v_count = 0 then
    return null; -- nothing left of it (deleted in the same transaction)
  end if;
  if v_count < 2 or v_sum <> 0 then
    raise exception 'journal % does not balance (% postings, sum %)', v_journal, v_count, v_sum
      using errcode = '23514', constraint = 'journals_balanced';
  end if;
  return null;
end
$$;

create constraint trigger journals_balanced
  after insert or update or delete on internal.postings
  deferrable initially deferred
  for each row execute function internal.check_journal_balanced();

-- Postings and journals are history: corrections are new, opposite journals.
create function internal.refuse_change() returns trigger
  language plpgsql
  set search_path = ''
  as $$
begin
  raise exception '% is append-only: % refused', tg_table_schema || '.' || tg_table_name, lower(tg_op)
    using errcode = '42501';
end
$$;

create trigger postings_append_only before update or delete on internal.postings
  for each row execute function internal.refuse_change();
create trigger journals_append_only before update or delete on internal.journals
  for each row execute function internal.refuse_change();
-- TRUNCATE skips row triggers, and service_role holds every privilege in `internal`.
create trigger postings_no_truncate before truncate on internal.postings
  for each statement execute function internal.refuse_change();
create trigger journals_no_truncate before truncate on internal.journals
  for each statement execute function internal.refuse_change();

-- The account of a kind for a chama (or a member's equity account), created on first use.
create function internal.ensure_account(p_chama_id uuid, p_kind text, p_user_id uuid default null)
  returns uuid
  language plpgsql
  set search_path = ''
  as $$
declare
  v_id uuid;
begin
  if p_user_id is null then
    select id into v_id from internal.ledger_accounts
      where chama_id = p_chama_id and kind = p_kind and user_id is null;
  else
    select id into v_id from internal.ledger_accounts
      where chama_id = p_chama_id and user_id = p_user_id;
  end if;
  if v_id is not null then
    return v_id;
  end if;
  insert into internal.ledger_accounts (chama_id, kind, user_id)
    values (p_chama_id, p_kind, p_user_id)
    on conflict do nothing
    returning id into v_id;
  if v_id is null then -- a concurrent transaction created it first
    return internal.ensure_account(p_chama_id, p_kind, p_user_id);
  end if;
  return v_id;
end
$$;

-- Posts one balanced journal and moves every balance it touches, atomically.
-- p_postings: [{"account_id": uuid, "amount": bigint (debit > 0, credit < 0)}, ...]
create function internal.post_journal(
  p_chama_id uuid,
  p_kind text,
  p_memo text,
  p_postings jsonb,
  p_actor_id uuid default null,
  p_reverses_id uuid default null
) returns uuid
  language plpgsql
  set search_path = ''
  as $$
declare
  v_journal uuid;
  v_accounts uuid[];
  v_amounts bigint[];
  v_sum numeric;
  v_count integer;
  v_bad integer;
  v_foreign integer;
  v_cash_delta bigint;
begin
  if jsonb_typeof(p_postings) <> 'array' then
    raise exception 'postings must be a JSON array' using errcode = '22023';
  end if;
  -- Parsed once, in account order (the lock order of step 2).
  select array_agg(l.account_id order by l.account_id), array_agg(l.amount order by l.account_id),
         coalesce(sum(l.amount), 0), count(*),
         count(*) filter (where l.amount is null or l.amount = 0 or l.account_id is null)
    into v_accounts, v_amounts, v_sum, v_count, v_bad
    from jsonb_to_recordset(p_postings) as l(account_id uuid, amount bigint);
  if v_count < 2 or v_sum <> 0 then
    raise exception 'journal does not balance (% postings, sum %)', v_count, v_sum
      using errcode = '23514', constraint = 'journals_balanced';
  end if;
  if v_bad > 0 then
    raise exception 'every posting needs an account and a non-zero amount' using errcode = '23514';
  end if;
  select count(*) filter (where a.id is null),
         coalesce(sum(l.amount) filter (where a.kind = 'cash'), 0)
    into v_foreign, v_cash_delta
    from unnest(v_accounts, v_amounts) as l(account_id, amount)
    left join internal.ledger_accounts a on a.id = l.account_id and a.chama_id = p_chama_id;
  if v_foreign > 0 then
    raise exception 'posting to an account that is not this chama''s' using errcode = '23503';
  end if;

  -- 1. The chama row (always, even when cash does not move: it is the chama's queue).
  update public.chamas set balance = balance + v_cash_delta where id = p_chama_id;
  if not found then
    raise exception 'chama % does not exist', p_chama_id using errcode = '23503';
  end if;

  insert into internal.journals (chama_id, kind, memo, reverses_id, created_by)
    values (p_chama_id, p_kind, p_memo, p_reverses_id, p_actor_id)
    returning id into v_journal;
  insert into internal.postings (journal_id, account_id, amount)
    select v_journal, l.account_id, l.amount from unnest(v_accounts, v_amounts) as l(account_id, amount);

  -- 2. The accounts. Every account of a journal belongs to its chama, whose row this
  -- transaction now holds, so no other journal can be updating them: one statement will do.
  update internal.ledger_accounts a set balance = a.balance + d.delta
    from (select l.account_id, sum(l.amount) as delta
            from unnest(v_accounts, v_amounts) as l(account_id, amount)
           group by l.account_id) d
   where a.id = d.account_id;

  -- 3. The members' totals (credit-normal equity: a credit raises the total).
  update public.chama_members m set contributed_total = m.contributed_total - d.delta
    from (select a.user_id, sum(l.amount) as delta
            from unnest(v_accounts, v_amounts) as l(account_id, amount)
            join internal.ledger_accounts a on a.id = l.account_id
           where a.kind = 'member_equity'
           group by a.user_id) d
   where m.chama_id = p_chama_id and m.user_id = d.user_id;

  return v_journal;
end
$$;

-- A contribution: money into the chama's cash, credited to the member's equity, and the
-- user-facing transactions row, in one go. Returns the transactions row id.
create function internal.record_contribution(
  p_chama_id uuid,
  p_user_id uuid,
  p_amount bigint,
  p_method text,
  p_reference text default null,
  p_mpesa_receipt text default null,
  p_phone text default null,
  p_description text default null,
  p_actor_id uuid default null,
  p_at timestamptz default now()
) returns uuid
  language plpgsql
  set search_path = ''
  as $$
declare
  v_journal uuid;
  v_tx uuid;
begin
  if p_amount is null or p_amount <= 0 then
    raise exception 'a contribution must be a positive amount' using errcode = '23514',
      constraint = 'transactions_amount_positive';
  end if;
  if not exists (select from public.chama_members
                  where chama_id = p_chama_id and user_id = p_user_id and status = 'active') then
    raise exception 'user % is not an active member of chama %', p_user_id, p_chama_id
      using errcode = 'P0001';
  end if;
  v_journal := internal.post_journal(
    p_chama_id, 'contribution', coalesce(p_description, 'contribution'),
    jsonb_build_array(
      jsonb_build_object('account_id', internal.ensure_account(p_chama_id, 'cash'), 'amount', p_amount),
      jsonb_build_object('account_id', internal.ensure_account(p_chama_id, 'member_equity', p_user_id), 'amount', -p_amount)
    ),
    p_actor_id);
  insert into public.transactions (chama_id, user_id, type, amount, status, payment_method, reference,
                                   mpesa_receipt, phone, description, journal_id, created_by,
                                   created_at, updated_at)
    values (p_chama_id, p_user_id, 'contribution', p_amount, 'completed', p_method, p_reference,
            p_mpesa_receipt, p_phone, p_description, v_journal, p_actor_id, p_at, greatest(p_at, now()))
    returning id into v_tx;
  return v_tx;
end
$$;

-- Every chama has its cash account from the start (so "balance equals the ledger" is checkable).
create function internal.on_chama_created() returns trigger
  language plpgsql
  security definer
  set search_path = ''
  as $$
begin
  perform internal.ensure_account(new.id, 'cash');
  -- The creator is the chairperson. Imports that bring their own members pass created_by null.
  if new.created_by is not null then
    insert into public.chama_members (chama_id, user_id, role, status, joined_at)
      values (new.id, new.created_by, 'chairperson', 'active', now())
      on conflict (chama_id, user_id) do nothing;
  end if;
  return null;
end
$$;

create trigger chamas_bootstrap after insert on public.chamas
  for each row execute function internal.on_chama_created();

-- Every member has an equity account from the moment they join.
create function internal.on_member_added() returns trigger
  language plpgsql
  security definer
  set search_path = ''
  as $$
begin
  perform internal.ensure_account(new.chama_id, 'member_equity', new.user_id);
  return null;
end
$$;

create trigger chama_members_equity_account after insert on public.chama_members
  for each row execute function internal.on_member_added();

revoke all on function internal.post_journal(uuid, text, text, jsonb, uuid, uuid) from public;
revoke all on function internal.record_contribution(uuid, uuid, bigint, text, text, text, text, text, uuid, timestamptz) from public;
revoke all on function internal.ensure_account(uuid, text, uuid) from public;
grant execute on all functions in schema internal to service_role;
