-- The compatibility layer's `auth` and `storage` tables, where we created them, made exactly
-- GoTrue's and storage-api's.
--
-- Our imitation was kinder than the real thing: `auth.users.id` had a default, as did `aud`,
-- `role`, the metadata and the timestamps. Code that left them out worked in every test on plain
-- PostgreSQL and failed on Supabase with "null value in column id". Without the defaults, the
-- plain-PostgreSQL tests fail exactly where Supabase would. The columns and unique indexes
-- GoTrue has and we lacked are added too (its token indexes are why two users holding the same
-- unsalted code collide).
--
-- Storage: the API roles hold every grant on the tables and RLS alone decides, as storage-api
-- sets them up; buckets are under RLS with no policy for the API roles, as on a Supabase project
-- (listing them shows a signed-in user nothing unless the project adds a policy), and deleting
-- from `storage.objects` or `storage.buckets` needs `storage.allow_delete_query` set in the
-- transaction, as storage-api's trigger demands.
--
-- On a Supabase project `auth` and `storage` belong to `supabase_auth_admin` and
-- `supabase_storage_admin` and this does nothing: each schema's tables are changed only when
-- the role running the migrations owns them.

do $mirror$
declare
  v_ours boolean := exists (
    select from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where n.nspname = 'auth' and c.relname = 'users'
       and c.relowner = (select oid from pg_roles where rolname = current_user));
begin
  if not v_ours then
    return;
  end if;

  alter table auth.users
    alter column id drop default,
    alter column aud drop default,
    alter column role drop default,
    alter column raw_app_meta_data drop default,
    alter column raw_user_meta_data drop default,
    alter column created_at drop default,
    alter column updated_at drop default,
    add column if not exists email_change_token_current varchar(255) default '',
    add column if not exists email_change_confirm_status smallint default 0
      constraint users_email_change_confirm_status_check
        check (email_change_confirm_status >= 0 and email_change_confirm_status <= 2);

  create unique index if not exists confirmation_token_idx on auth.users (confirmation_token)
    where confirmation_token::text !~ '^[0-9 ]*$';
  create unique index if not exists recovery_token_idx on auth.users (recovery_token)
    where recovery_token::text !~ '^[0-9 ]*$';
  create unique index if not exists email_change_token_current_idx on auth.users (email_change_token_current)
    where email_change_token_current::text !~ '^[0-9 ]*$';
  create unique index if not exists email_change_token_new_idx on auth.users (email_change_token_new)
    where email_change_token_new::text !~ '^[0-9 ]*$';
  create unique index if not exists reauthentication_token_idx on auth.users (reauthentication_token)
    where reauthentication_token::text !~ '^[0-9 ]*$';
  create index if not exists users_instance_id_idx on auth.users (instance_id);

  alter table auth.identities
    alter column created_at drop default,
    alter column updated_at drop default;

  alter table auth.sessions
    add column if not exists oauth_client_id uuid,
    add column if not exists refresh_token_counter bigint,
    add column if not exists refresh_token_hmac_key text,
    add column if not exists scopes text;
end
$mirror$;

do $mirror$
declare
  v_ours boolean := exists (
    select from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where n.nspname = 'storage' and c.relname = 'objects'
       and c.relowner = (select oid from pg_roles where rolname = current_user));
begin
  if not v_ours then
    return;
  end if;

  drop policy if exists buckets_readable on storage.buckets;
  -- storage-api grants its tables whole to the API roles and lets RLS decide.
  grant all on storage.objects, storage.buckets to anon, authenticated, service_role;

  create or replace function storage.protect_delete() returns trigger
    language plpgsql
    as $fn$
  begin
    if coalesce(current_setting('storage.allow_delete_query', true), 'false') <> 'true' then
      raise exception 'Direct deletion from storage tables is not allowed. Use the Storage API instead.'
        using hint = 'This prevents accidental data loss from orphaned objects.', errcode = '42501';
    end if;
    return null;
  end
  $fn$;
  create trigger protect_objects_delete before delete on storage.objects
    for each statement execute function storage.protect_delete();
  create trigger protect_buckets_delete before delete on storage.buckets
    for each statement execute function storage.protect_delete();
end
$mirror$;
