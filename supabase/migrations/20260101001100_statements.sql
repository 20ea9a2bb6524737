-- Statements, read straight from the ledger so they agree with it to the cent: a member's
-- statement is their equity account (contributions, reversals), a chama's is its cash account
-- (everything that moved money in or out, withdrawals reserved included). Each gives the
-- opening balance before the range, the entries with a running balance, and the closing one.

create function internal.account_statement(p_account uuid, p_sign integer, p_from timestamptz,
                                           p_to timestamptz) returns jsonb
  language sql stable
  set search_path = ''
  as $$
  with entries as (
    -- When the money event happened: the transaction's time (an import or a back-dated
    -- cash entry), else the journal's.
    select j.id as journal_id, coalesce(t.created_at, j.created_at) as created_at, j.kind, j.memo,
           p_sign * p.amount as amount,
           t.id as transaction_id, t.reference, t.payment_method, t.mpesa_receipt
      from internal.postings p
      join internal.journals j on j.id = p.journal_id
      left join public.transactions t on t.journal_id = j.id
     where p.account_id = p_account
  ),
  opening as (
    select coalesce(sum(amount), 0)::bigint as balance from entries where created_at < p_from
  ),
  ranged as (
    select e.*, (select balance from opening)
                + sum(e.amount) over (order by e.created_at, e.journal_id) as running
      from entries e
     where e.created_at >= p_from and e.created_at < p_to
  )
  select jsonb_build_object(
    'from', p_from, 'to', p_to,
    'opening_balance', (select balance from opening),
    'closing_balance', coalesce((select running from ranged order by created_at desc, journal_id desc limit 1),
                                (select balance from opening)),
    'entries', coalesce((select jsonb_agg(jsonb_build_object(
        'at', r.created_at, 'kind', r.kind, 'description', r.memo, 'amount', r.amount,
        'balance', r.running, 'transaction_id', r.transaction_id, 'reference', r.reference,
        'payment_method', r.payment_method, 'mpesa_receipt', r.mpesa_receipt)
        order by r.created_at, r.journal_id) from ranged r), '[]'::jsonb))
$$;

-- A member's statement: the member themselves, or an official of the chama.
create function public.member_statement(p_chama_id uuid, p_user_id uuid, p_from timestamptz,
                                        p_to timestamptz) returns jsonb
  language plpgsql
  stable
  security definer
  set search_path = ''
  as $$
declare
  v_account uuid;
begin
  if not public.is_chama_member(p_chama_id) then
    raise exception 'chama not found' using errcode = 'PX404';
  end if;
  if p_user_id is distinct from auth.uid() and not public.is_chama_official(p_chama_id) then
    raise exception 'only officials read another member''s statement' using errcode = '42501';
  end if;
  if p_from >= p_to then
    raise exception 'from must be before to' using errcode = 'PX422';
  end if;
  select id into v_account from internal.ledger_accounts
   where chama_id = p_chama_id and user_id = p_user_id;
  if v_account is null then
    raise exception 'that user has never been a member of this chama' using errcode = 'PX404';
  end if;
  -- Equity is credit-normal: a contribution is a negative posting, shown as money in.
  return internal.account_statement(v_account, -1, p_from, p_to)
         || jsonb_build_object('chama_id', p_chama_id, 'member_id', p_user_id, 'currency', 'KES');
end
$$;

-- The chama's cash statement: officials only.
create function public.chama_statement(p_chama_id uuid, p_from timestamptz, p_to timestamptz)
  returns jsonb
  language plpgsql
  stable
  security definer
  set search_path = ''
  as $$
begin
  if not public.is_chama_member(p_chama_id) then
    raise exception 'chama not found' using errcode = 'PX404';
  end if;
  if not public.is_chama_official(p_chama_id) then
    raise exception 'only officials read the chama''s statement' using errcode = '42501';
  end if;
  if p_from >= p_to then
    raise exception 'from must be before to' using errcode = 'PX422';
  end if;
  return internal.account_statement(
           (select id from internal.ledger_accounts
             where chama_id = p_chama_id and kind = 'cash' and user_id is null), 1, p_from, p_to)
         || jsonb_build_object('chama_id', p_chama_id, 'currency', 'KES');
end
$$;

revoke all on function public.member_statement(uuid, uuid, timestamptz, timestamptz),
  public.chama_statement(uuid, timestamptz, timestamptz) from public, anon;
grant execute on function public.member_statement(uuid, uuid, timestamptz, timestamptz),
  public.chama_statement(uuid, timestamptz, timestamptz) to authenticated, service_role;
revoke all on function internal.account_statement(uuid, integer, timestamptz, timestamptz) from public;
