-- Realtime: who a change can possibly concern, asked once per batch before RLS is.
--
-- `internal.realtime_visible` sets each listening identity's claims and asks RLS, which costs
-- about a tenth of a millisecond per identity and table. With thousands of users subscribed to
-- a whole table, checking every identity for every change falls behind. But a published row
-- can only ever be seen by the users its scope names, so the server first asks this function
-- for that audience and sends RLS only the identities in it. RLS stays the judge: the audience
-- only saves asking it about users who cannot be admitted.
--
-- The scope of a published table (`internal.realtime_publication.delete_scope`, which also
-- decides who hears of a DELETE) therefore promises something of its policies:
--   'user'  — only the user the row's user_id names may SELECT it;
--   'chama' — only users with a membership row (of any status) in the row's chama, or the
--             user the row's user_id names, may SELECT it.
-- `crates/store/tests/realtime.rs` checks the promise against RLS for every row and user of the
-- demo data; a table whose policies admit anyone else must not be published with these scopes.

comment on column internal.realtime_publication.delete_scope is
  'Who a row can concern: ''user'' (its user_id) or ''chama'' (members of its chama_id, any status, and its user_id). Decides who hears of a DELETE and who is asked about a change; the table''s SELECT policies must admit no one else.';

-- The audience of each change of a batch: (change index, user) for every user the change's
-- scope names. p_changes: [{"s", "t", "c", "u"}, ...] with the row's chama_id and user_id (the
-- server has read the row, or the DELETE notification carried them). Unpublished tables have
-- no audience.
create function internal.realtime_audience(p_changes jsonb)
  returns table (change_index integer, user_id uuid)
  language sql
  stable
  set search_path = ''
  as $$
  with batch as (
    select (c.ordinality - 1)::integer as i, p.delete_scope as scope,
           (c.value ->> 'c')::uuid as chama_id, (c.value ->> 'u')::uuid as user_id
      from jsonb_array_elements(p_changes) with ordinality c(value, ordinality)
      join internal.realtime_publication p
        on p.schema_name = c.value ->> 's' and p.table_name = c.value ->> 't'
  )
  select b.i, b.user_id from batch b where b.user_id is not null
  union
  select b.i, m.user_id
    from batch b
    join public.chama_members m on m.chama_id = b.chama_id
   where b.scope = 'chama'
$$;

revoke all on function internal.realtime_audience(jsonb) from public;
