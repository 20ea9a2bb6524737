-- Realtime: the tables whose changes reach websocket subscribers, the trigger that announces
-- each change with NOTIFY, and the visibility check that asks RLS, per subscriber identity,
-- which changed rows that identity may SELECT.
--
-- NOTIFY payloads are capped at 8000 bytes, so a notification carries the table, the operation
-- and the primary key, never the row: every server process LISTENs on `pesachama_realtime`,
-- reads the rows once and asks `internal.realtime_visible` who may see them. Notifications are
-- sent at commit, in commit order, and never for a transaction that rolls back.

-- The publication: which tables are published, and who may learn that a row was deleted.
-- A deleted row cannot be checked against RLS any more, so `delete_scope` says whose it was:
-- 'chama' (anyone who can SELECT the row's chama in public.chamas) or 'user' (only the user the
-- row's user_id names).
create table internal.realtime_publication (
  schema_name text not null,
  table_name text not null,
  delete_scope text not null,
  constraint realtime_publication_pkey primary key (schema_name, table_name),
  constraint realtime_publication_delete_scope_known check (delete_scope in ('chama', 'user'))
);

-- Announces one row change. The payload is small JSON: schema, table, op, the key, the time of
-- the change (`clock_timestamp`, the closest a row trigger gets to the commit time), and for a
-- DELETE the chama and user the row belonged to (to decide who may hear of it; never sent on).
create function internal.realtime_announce() returns trigger
  language plpgsql
  set search_path = ''
  as $$
declare
  v_old jsonb;
begin
  if tg_op = 'DELETE' then
    v_old := to_jsonb(old);
    perform pg_notify('pesachama_realtime', jsonb_build_object(
      's', tg_table_schema, 't', tg_table_name, 'op', tg_op, 'id', old.id,
      'ts', clock_timestamp(), 'c', v_old -> 'chama_id', 'u', v_old -> 'user_id')::text);
  else
    perform pg_notify('pesachama_realtime', jsonb_build_object(
      's', tg_table_schema, 't', tg_table_name, 'op', tg_op, 'id', new.id,
      'ts', clock_timestamp())::text);
  end if;
  return null;
end
$$;

-- Publishes a table: records it and installs the trigger. Tables published this way must have
-- a uuid primary key named `id` (every PesaChama table does).
create function internal.realtime_publish(p_schema text, p_table text, p_delete_scope text)
  returns void
  language plpgsql
  set search_path = ''
  as $$
begin
  insert into internal.realtime_publication (schema_name, table_name, delete_scope)
  values (p_schema, p_table, p_delete_scope)
  on conflict (schema_name, table_name) do update set delete_scope = excluded.delete_scope;
  execute format('drop trigger if exists realtime_announce on %I.%I', p_schema, p_table);
  execute format('create trigger realtime_announce after insert or update or delete on %I.%I
                    for each row execute function internal.realtime_announce()', p_schema, p_table);
end
$$;

select internal.realtime_publish('public', 'transactions', 'chama');
select internal.realtime_publish('public', 'chama_members', 'chama');
select internal.realtime_publish('public', 'meetings', 'chama');
select internal.realtime_publish('public', 'notifications', 'user');
select internal.realtime_publish('public', 'disbursement_requests', 'chama');

-- Which of the changes each identity may see, in one round trip for a whole batch.
--
-- p_identities: [{"role": "authenticated"|"anon", "claims": {...}, "w": [change indexes]}, ...]
-- (service_role never comes here: it bypasses RLS); `w` lists the changes the identity's
-- subscriptions want, so an identity is checked only against those. p_changes: [{"s", "t",
-- "op", "id", "c", "u"}, ...]. Answers (identity index, change index) for every visible pair,
-- indexes from 0.
--
-- For each identity it takes the identity's role and claims transaction-locally, exactly as a
-- request does, and asks each table for the wanted keys by primary key (an index scan: RLS runs
-- its policy on those rows only). A DELETE is checked against its delete scope instead (the row
-- is gone). Everything that needs the owner's rights is done before the first identity; the
-- role is set back to the session user at the end.
create function internal.realtime_visible(p_identities jsonb, p_changes jsonb)
  returns table (identity_index integer, change_index integer)
  language plpgsql
  set search_path = ''
  as $$
declare
  v_identity jsonb;
  v_index integer := 0;
  v_role text;
  v_group record;
  v_owner text := session_user;
  v_current text := '';
  v_rows jsonb;
  v_deletes jsonb;
begin
  -- The batch's published changes by index, read as the owner (request roles cannot read
  -- `internal`): inserts and updates with their quoted relation, deletes with their scope.
  select coalesce(jsonb_object_agg((c.ordinality - 1)::text,
                    jsonb_build_object('r', format('%I.%I', p.schema_name, p.table_name),
                                       'id', c.value -> 'id')), '{}')
    into v_rows
    from jsonb_array_elements(p_changes) with ordinality c(value, ordinality)
    join internal.realtime_publication p
      on p.schema_name = c.value ->> 's' and p.table_name = c.value ->> 't'
   where c.value ->> 'op' <> 'DELETE';
  select coalesce(jsonb_object_agg((c.ordinality - 1)::text,
                    jsonb_build_object('scope', p.delete_scope, 'c', c.value -> 'c', 'u', c.value -> 'u')), '{}')
    into v_deletes
    from jsonb_array_elements(p_changes) with ordinality c(value, ordinality)
    join internal.realtime_publication p
      on p.schema_name = c.value ->> 's' and p.table_name = c.value ->> 't'
   where c.value ->> 'op' = 'DELETE';
  for v_identity in select value from jsonb_array_elements(p_identities) loop
    v_role := v_identity ->> 'role';
    if v_role not in ('anon', 'authenticated') then
      raise exception 'realtime_visible: role % is not checked here', v_role using errcode = 'PX422';
    end if;
    perform set_config('request.jwt.claims', (v_identity -> 'claims')::text, true);
    -- Switching role costs a quarter of a check: only when the next identity's role differs.
    if v_role <> v_current then
      perform set_config('role', v_role, true);
      v_current := v_role;
    end if;
    for v_group in
      select v_rows -> w ->> 'r' as rel,
             array_agg((v_rows -> w ->> 'id')::uuid) as ids,
             array_agg(w::integer) as idxs
        from jsonb_array_elements_text(coalesce(v_identity -> 'w', '[]')) w
       where v_rows ? w
       group by 1
    loop
      if has_table_privilege(v_role, v_group.rel, 'SELECT') then
        -- rel is a quoted name from the publication, never from a client.
        return query execute format(
          'select $1, c.i from unnest($2::uuid[], $3::integer[]) c(id, i)
            where c.id in (select r.id from %s r where r.id = any($2))', v_group.rel)
          using v_index, v_group.ids, v_group.idxs;
      end if;
    end loop;
    if v_role = 'authenticated' and v_deletes <> '{}' then
      return query
        select v_index, w::integer
          from jsonb_array_elements_text(coalesce(v_identity -> 'w', '[]')) w
         where v_deletes ? w
           and case v_deletes -> w ->> 'scope'
                 when 'user' then (v_deletes -> w ->> 'u')::uuid = (select auth.uid())
                 else exists (select from public.chamas ch where ch.id = (v_deletes -> w ->> 'c')::uuid)
               end;
    end if;
    v_index := v_index + 1;
  end loop;
  perform set_config('role', v_owner, true);
  perform set_config('request.jwt.claims', '', true);
end
$$;

revoke all on function internal.realtime_visible(jsonb, jsonb) from public;
revoke all on function internal.realtime_publish(text, text, text) from public;
revoke all on table internal.realtime_publication from public, anon, authenticated;
