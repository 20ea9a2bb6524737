-- Money-moving calls that a signed-in user may make, as functions: the rule of who may move
-- money lives next to the money, so it holds for the PesaChama API and for a client calling
-- Supabase's RPC endpoint alike. Each runs with its owner's rights (to reach the ledger in
-- `internal`), checks the caller from the JWT claims itself, and is idempotent.
--
-- Errors carry SQLSTATEs the server maps to HTTP: PX404 (not found, so ids cannot be probed),
-- PX409 (the same Idempotency-Key is still in flight), PX422 (bad input, or the key was used
-- with another request), 42501 (not allowed), P0001 (a rule of the chama refused it).

-- Idempotency: the key row is written in the same transaction as the effect, so a request is
-- applied exactly once or not at all; a transaction-scoped advisory lock on the key tells a
-- concurrent duplicate that the first is still in flight.
create function internal.idempotency_claim(p_scope text, p_key text, p_request_hash text)
  returns jsonb
  language plpgsql
  set search_path = ''
  as $$
declare
  v_stored internal.idempotency_keys;
begin
  if p_key is null or char_length(p_key) not between 1 and 255 then
    raise exception 'the Idempotency-Key must be 1 to 255 characters' using errcode = 'PX422';
  end if;
  if not pg_try_advisory_xact_lock(hashtextextended(p_scope || chr(31) || p_key, 0)) then
    raise exception 'a request with this Idempotency-Key is still in progress; retry later'
      using errcode = 'PX409';
  end if;
  select * into v_stored from internal.idempotency_keys where scope = p_scope and key = p_key;
  if not found then
    return null;
  end if;
  if v_stored.request_hash <> p_request_hash then
    raise exception 'this Idempotency-Key was already used with a different request'
      using errcode = 'PX422';
  end if;
  return v_stored.response_body;
end
$$;

create function internal.idempotency_store(
  p_scope text, p_key text, p_request_hash text, p_status integer, p_response jsonb
) returns void
  language sql
  set search_path = ''
  as $$
  insert into internal.idempotency_keys (scope, key, request_hash, status, response_status,
                                         response_body, completed_at)
  values (p_scope, p_key, p_request_hash, 'completed', p_status, p_response, now())
$$;

-- The user-facing shape of a transactions row.
create function internal.transaction_json(p_id uuid) returns jsonb
  language sql stable
  set search_path = ''
  as $$
  select jsonb_build_object(
    'id', t.id, 'chama_id', t.chama_id, 'member_id', t.user_id, 'type', t.type,
    'amount', t.amount, 'currency', t.currency, 'status', t.status,
    'payment_method', t.payment_method, 'reference', t.reference,
    'mpesa_receipt', t.mpesa_receipt, 'description', t.description,
    'reverses_id', t.reverses_id, 'reason', t.reason, 'recorded_by', t.created_by,
    'created_at', t.created_at)
  from public.transactions t where t.id = p_id
$$;

-- A manual (cash or bank) contribution, recorded by the chama's treasurer or chairperson.
create function public.record_manual_contribution(
  p_chama_id uuid,
  p_member_id uuid,
  p_amount bigint,
  p_method text,
  p_reference text,
  p_description text,
  p_idempotency_key text,
  p_request_hash text
) returns jsonb
  language plpgsql
  security definer
  set search_path = ''
  as $$
declare
  v_me uuid := auth.uid();
  v_scope text := 'contribution:' || coalesce(auth.uid()::text, '');
  v_stored jsonb;
  v_tx uuid;
  v_row jsonb;
  v_chama text;
begin
  if v_me is null then
    raise exception 'sign in to record a contribution' using errcode = '42501';
  end if;
  if not public.is_chama_member(p_chama_id) then
    raise exception 'chama not found' using errcode = 'PX404';
  end if;
  if not public.has_chama_role(p_chama_id, array['treasurer', 'chairperson']) then
    raise exception 'only the treasurer or the chairperson records contributions'
      using errcode = '42501';
  end if;
  v_stored := internal.idempotency_claim(v_scope, p_idempotency_key, p_request_hash);
  if v_stored is not null then
    return jsonb_build_object('replayed', true, 'transaction', v_stored);
  end if;

  if p_method is null or p_method not in ('cash', 'bank') then
    raise exception 'payment_method must be "cash" or "bank" (M-Pesa contributions arrive through M-Pesa)'
      using errcode = 'PX422';
  end if;
  if (select status from public.chamas where id = p_chama_id) <> 'active' then
    raise exception 'this chama is not active' using errcode = 'P0001';
  end if;
  if not exists (select from public.chama_members
                  where chama_id = p_chama_id and user_id = p_member_id and status = 'active') then
    raise exception 'member_id is not an active member of this chama' using errcode = 'PX422';
  end if;

  v_tx := internal.record_contribution(p_chama_id, p_member_id, p_amount, p_method,
                                       p_reference, null, null, p_description, v_me);
  v_row := internal.transaction_json(v_tx);
  select name into v_chama from public.chamas where id = p_chama_id;
  insert into public.notifications (user_id, chama_id, type, title, body, data)
    values (p_member_id, p_chama_id, 'transaction', 'Contribution received',
            format('KES %s recorded to %s', to_char(p_amount / 100.0, 'FM999,999,999,990.00'), v_chama),
            jsonb_build_object('transaction_id', v_tx));
  perform internal.idempotency_store(v_scope, p_idempotency_key, p_request_hash, 201, v_row);
  return jsonb_build_object('replayed', false, 'transaction', v_row);
end
$$;

revoke all on function public.record_manual_contribution(uuid, uuid, bigint, text, text, text, text, text) from public, anon;
grant execute on function public.record_manual_contribution(uuid, uuid, bigint, text, text, text, text, text) to authenticated, service_role;
revoke all on function internal.idempotency_claim(text, text, text), internal.idempotency_store(text, text, text, integer, jsonb),
  internal.transaction_json(uuid) from public;

-- Reverses a wrong entry: a new journal with every posting of the original negated, a
-- `reversal` transactions row with the reason, the original marked `reversed`. By an official.
-- Money already spent cannot be reversed away: the cash account's no-overdraft rule refuses it.
create function public.reverse_transaction(
  p_transaction_id uuid,
  p_reason text,
  p_idempotency_key text,
  p_request_hash text
) returns jsonb
  language plpgsql
  security definer
  set search_path = ''
  as $$
declare
  v_me uuid := auth.uid();
  v_scope text := 'reversal:' || coalesce(auth.uid()::text, '');
  v_original public.transactions;
  v_stored jsonb;
  v_postings jsonb;
  v_journal uuid;
  v_tx uuid;
  v_row jsonb;
begin
  if v_me is null then
    raise exception 'sign in to reverse a transaction' using errcode = '42501';
  end if;
  select * into v_original from public.transactions where id = p_transaction_id;
  if not found or not public.is_chama_member(v_original.chama_id) then
    raise exception 'transaction not found' using errcode = 'PX404';
  end if;
  if not public.is_chama_official(v_original.chama_id) then
    raise exception 'only an official (chairperson, treasurer, secretary) reverses a transaction'
      using errcode = '42501';
  end if;
  v_stored := internal.idempotency_claim(v_scope, p_idempotency_key, p_request_hash);
  if v_stored is not null then
    return jsonb_build_object('replayed', true, 'transaction', v_stored);
  end if;
  if p_reason is null or char_length(btrim(p_reason)) not between 3 and 500 then
    raise exception 'reason must be 3 to 500 characters' using errcode = 'PX422';
  end if;
  if v_original.type <> 'contribution' then
    raise exception 'only contributions can be reversed here; this is a %', v_original.type
      using errcode = 'PX422';
  end if;
  -- Lock the original, then check its state: two officials reversing at once get one reversal.
  select * into v_original from public.transactions where id = p_transaction_id for update;
  if v_original.status <> 'completed' then
    raise exception 'this transaction is % and cannot be reversed', v_original.status
      using errcode = 'P0001';
  end if;

  select jsonb_agg(jsonb_build_object('account_id', p.account_id, 'amount', -p.amount))
    into v_postings
    from internal.postings p where p.journal_id = v_original.journal_id;
  v_journal := internal.post_journal(v_original.chama_id, 'reversal', btrim(p_reason), v_postings,
                                     v_me, v_original.journal_id);
  insert into public.transactions (chama_id, user_id, type, amount, status, payment_method,
                                   description, journal_id, reverses_id, reason, created_by)
    values (v_original.chama_id, v_original.user_id, 'reversal', v_original.amount, 'completed',
            'internal', 'Reversal of ' || coalesce(v_original.reference, v_original.id::text),
            v_journal, v_original.id, btrim(p_reason), v_me)
    returning id into v_tx;
  update public.transactions set status = 'reversed' where id = v_original.id;
  if v_original.user_id is not null then
    insert into public.notifications (user_id, chama_id, type, title, body, data)
      values (v_original.user_id, v_original.chama_id, 'transaction', 'Contribution reversed',
              format('KES %s was reversed: %s',
                     to_char(v_original.amount / 100.0, 'FM999,999,999,990.00'), btrim(p_reason)),
              jsonb_build_object('transaction_id', v_tx, 'reverses_id', v_original.id));
  end if;
  v_row := internal.transaction_json(v_tx);
  perform internal.idempotency_store(v_scope, p_idempotency_key, p_request_hash, 201, v_row);
  return jsonb_build_object('replayed', false, 'transaction', v_row);
end
$$;

revoke all on function public.reverse_transaction(uuid, text, text, text) from public, anon;
grant execute on function public.reverse_transaction(uuid, text, text, text) to authenticated, service_role;
