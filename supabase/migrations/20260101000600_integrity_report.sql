-- `pesachama check`: the founding plan's data-integrity tests plus the ledger's own, one row per
-- check. The constraints already refuse most of these; the checks exist for data that came in
-- around them (a legacy import with constraints dropped, a hand-written UPDATE, a restore).

create function internal.integrity_report()
  returns table (check_name text, description text, violations bigint, sample text[])
  language plpgsql stable
  set search_path = ''
  as $$
begin
  -- Founding plan: data quality -------------------------------------------------------------
  return query
  select 'valid_emails', 'live users have a lowercase, well-formed email (or none)',
         count(*), (array_agg(u.id::text order by u.id))[1:5]
    from public.users u
   where u.deleted_at is null and u.email is not null
     and not (u.email = lower(u.email)
              and u.email ~ '^[a-z0-9._%+''-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$');

  return query
  select 'valid_phones', 'live users have an E.164 Kenyan phone (or none)',
         count(*), (array_agg(u.id::text order by u.id))[1:5]
    from public.users u
   where u.deleted_at is null and u.phone is not null
     and u.phone::text !~ '^\+254[17][0-9]{8}$';

  return query
  select 'unique_live_emails', 'no two live users share an email',
         count(*), (array_agg(d.email order by d.email))[1:5]
    from (select lower(u.email) as email from public.users u
           where u.deleted_at is null and u.email is not null
           group by lower(u.email) having count(*) > 1) d;

  return query
  select 'unique_live_phones', 'no two live users share a phone',
         count(*), (array_agg(d.phone order by d.phone))[1:5]
    from (select u.phone::text as phone from public.users u
           where u.deleted_at is null and u.phone is not null
           group by u.phone having count(*) > 1) d;

  return query
  select 'positive_amounts', 'every transaction, withdrawal and payment request moves a positive amount',
         count(*), (array_agg(x.id order by x.id))[1:5]
    from (select t.id::text as id from public.transactions t where t.amount <= 0
          union all select d.id::text from public.disbursement_requests d where d.amount <= 0
          union all select p.id::text from public.payment_requests p where p.amount <= 0) x;

  return query
  select 'updated_after_created', 'no row was updated before it was created',
         count(*), (array_agg(x.id order by x.id))[1:5]
    from (select 'users/' || u.id as id from public.users u where u.updated_at < u.created_at
          union all select 'chamas/' || c.id from public.chamas c where c.updated_at < c.created_at
          union all select 'chama_members/' || m.id from public.chama_members m where m.updated_at < m.created_at
          union all select 'transactions/' || t.id from public.transactions t where t.updated_at < t.created_at
          union all select 'disbursement_requests/' || d.id from public.disbursement_requests d where d.updated_at < d.created_at
          union all select 'meetings/' || m.id from public.meetings m where m.updated_at < m.created_at) x;

  return query
  select 'members_have_chama_and_user', 'every membership points at an existing chama and user',
         count(*), (array_agg(m.id::text order by m.id))[1:5]
    from public.chama_members m
    left join public.chamas c on c.id = m.chama_id
    left join public.users u on u.id = m.user_id
   where c.id is null or u.id is null;

  return query
  select 'transactions_have_chama_and_user', 'every transaction points at an existing chama (and user, when it names one)',
         count(*), (array_agg(t.id::text order by t.id))[1:5]
    from public.transactions t
    left join public.chamas c on c.id = t.chama_id
    left join public.users u on u.id = t.user_id
   where c.id is null or (t.user_id is not null and u.id is null);

  return query
  select 'one_chairperson', 'every active chama has exactly one active chairperson',
         count(*), (array_agg(c.id::text order by c.id))[1:5]
    from public.chamas c
   where c.status = 'active'
     and (select count(*) from public.chama_members m
           where m.chama_id = c.id and m.role = 'chairperson' and m.status = 'active') <> 1;

  -- The ledger ----------------------------------------------------------------------------------
  return query
  select 'journals_balance', 'every journal has two or more postings that sum to zero',
         count(*), (array_agg(j.id::text order by j.id))[1:5]
    from internal.journals j
    left join lateral (select count(*) as n, coalesce(sum(p.amount), 0) as total
                         from internal.postings p where p.journal_id = j.id) s on true
   where s.n < 2 or s.total <> 0;

  return query
  select 'account_totals_match_postings', 'every ledger account''s stored total equals the sum of its postings',
         count(*), (array_agg(a.id::text order by a.id))[1:5]
    from internal.ledger_accounts a
   where a.balance <> coalesce((select sum(p.amount) from internal.postings p where p.account_id = a.id), 0);

  return query
  select 'chama_balance_matches_ledger', 'every chama''s balance equals its cash account in the ledger',
         count(*), (array_agg(c.id::text order by c.id))[1:5]
    from public.chamas c
    left join internal.ledger_accounts a on a.chama_id = c.id and a.kind = 'cash' and a.user_id is null
   where c.balance <> coalesce(a.balance, 0);

  return query
  select 'member_totals_match_ledger', 'every member''s contributed total equals their equity account in the ledger',
         count(*), (array_agg(m.id::text order by m.id))[1:5]
    from public.chama_members m
    left join internal.ledger_accounts a on a.chama_id = m.chama_id and a.user_id = m.user_id
   where m.contributed_total <> -coalesce(a.balance, 0);

  return query
  select 'completed_transactions_posted', 'every completed transaction is backed by a journal of its chama',
         count(*), (array_agg(t.id::text order by t.id))[1:5]
    from public.transactions t
    left join internal.journals j on j.id = t.journal_id
   where t.status in ('completed', 'reversed') and (j.id is null or j.chama_id <> t.chama_id);

  return query
  select 'unique_mpesa_receipts', 'no M-Pesa receipt is counted twice',
         count(*), (array_agg(d.receipt order by d.receipt))[1:5]
    from (select t.mpesa_receipt as receipt from public.transactions t
           where t.mpesa_receipt is not null
           group by t.mpesa_receipt having count(*) > 1) d;

  -- Access ----------------------------------------------------------------------------------------
  return query
  select 'rls_on_every_public_table', 'every table in public has row-level security enabled and policies',
         count(*), (array_agg(c.relname::text order by c.relname))[1:5]
    from pg_catalog.pg_class c
    join pg_catalog.pg_namespace n on n.oid = c.relnamespace
   where n.nspname = 'public' and c.relkind in ('r', 'p')
     and (not c.relrowsecurity
          or not exists (select from pg_catalog.pg_policy p where p.polrelid = c.oid));

  -- Audit ---------------------------------------------------------------------------------------
  return query
  select 'audit_chain_intact', 'the audit log''s hash chains are unbroken (nothing edited or removed)',
         count(*), (array_agg(v.chain_key || '#' || v.chain_seq || ': ' || v.problem order by v.chain_key, v.chain_seq))[1:5]
    from internal.verify_audit_chain() v;
end
$$;

revoke all on function internal.integrity_report() from public;
grant execute on function internal.integrity_report() to service_role;
