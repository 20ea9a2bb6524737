-- Supabase compatibility layer.
--
-- On a Supabase project the roles, the `auth`, `storage` and `extensions` schemas, and the
-- helpers below already exist and belong to Supabase: every block here checks first and creates
-- only what is missing, so this migration is a no-op there. On a plain PostgreSQL 15+ it creates
-- the subset PesaChama relies on (see ../shared/reference/CONTRACTS.md §1-§4), with the same
-- names, types and defaults, so the same policies and the same server code run on both.

-- Roles (cluster-wide; several databases of one cluster may migrate at once, hence the handlers).
do $compat$
declare
  spec record;
begin
  for spec in
    select * from (values
      ('anon', 'nologin noinherit'),
      ('authenticated', 'nologin noinherit'),
      ('service_role', 'nologin noinherit bypassrls'),
      ('authenticator', 'login noinherit')
    ) as r(name, options)
  loop
    if not exists (select from pg_roles where rolname = spec.name) then
      begin
        execute format('create role %I %s', spec.name, spec.options);
      exception when duplicate_object or unique_violation then
        null; -- another database of this cluster created it a moment ago
      end;
    end if;
  end loop;
  -- The migrating role (and the login role) may switch to the request roles, as PostgREST does.
  -- On Supabase this is already so and the migrating role may not hold ADMIN on them.
  if not exists (select from pg_namespace where nspname = 'auth') then
    execute format('grant anon, authenticated, service_role to %I', current_user);
    grant anon, authenticated, service_role to authenticator;
  end if;
end
$compat$;

-- Extensions live in `extensions`, as on Supabase. pgcrypto is required (bcrypt for the demo
-- users, sha256 for the audit chain); uuid-ossp and pg_trgm are used where the server has them.
create schema if not exists extensions;
grant usage on schema extensions to anon, authenticated, service_role;
create extension if not exists pgcrypto with schema extensions;
do $compat$
declare
  wanted text;
begin
  foreach wanted in array array['uuid-ossp', 'pg_trgm'] loop
    if exists (select from pg_available_extensions where name = wanted) then
      execute format('create extension if not exists %I with schema extensions', wanted);
    else
      raise notice 'extension % is not available on this server; skipped', wanted;
    end if;
  end loop;
end
$compat$;

-- The auth schema: GoTrue's tables (the columns PesaChama and the Supabase clients use) and the
-- request helpers of CONTRACTS §2.
do $compat$
begin
  if to_regnamespace('auth') is null then
    create schema auth;
    grant usage on schema auth to anon, authenticated, service_role;
    -- Plain PostgreSQL: let unqualified names find the extensions, as Supabase does.
    execute format('alter database %I set search_path = "$user", public, extensions',
                   current_database());
  end if;

  if to_regclass('auth.users') is null then
    create table auth.users (
      instance_id uuid,
      id uuid not null default gen_random_uuid() primary key,
      aud varchar(255) default 'authenticated',
      role varchar(255) default 'authenticated',
      email varchar(255),
      encrypted_password varchar(255),
      email_confirmed_at timestamptz,
      invited_at timestamptz,
      confirmation_token varchar(255),
      confirmation_sent_at timestamptz,
      recovery_token varchar(255),
      recovery_sent_at timestamptz,
      email_change_token_new varchar(255),
      email_change varchar(255),
      email_change_sent_at timestamptz,
      last_sign_in_at timestamptz,
      raw_app_meta_data jsonb default '{"provider": "email", "providers": ["email"]}'::jsonb,
      raw_user_meta_data jsonb default '{}'::jsonb,
      is_super_admin boolean,
      created_at timestamptz default now(),
      updated_at timestamptz default now(),
      phone text unique default null,
      phone_confirmed_at timestamptz,
      phone_change text default '',
      phone_change_token varchar(255) default '',
      phone_change_sent_at timestamptz,
      confirmed_at timestamptz generated always as (least(email_confirmed_at, phone_confirmed_at)) stored,
      banned_until timestamptz,
      reauthentication_token varchar(255) default '',
      reauthentication_sent_at timestamptz,
      is_sso_user boolean not null default false,
      deleted_at timestamptz,
      is_anonymous boolean not null default false
    );
    create unique index users_email_partial_key on auth.users (email) where is_sso_user = false;
    create index users_instance_id_email_idx on auth.users (instance_id, lower(email));
    create index users_is_anonymous_idx on auth.users (is_anonymous);
  end if;

  if to_regclass('auth.identities') is null then
    create table auth.identities (
      provider_id text not null,
      user_id uuid not null references auth.users (id) on delete cascade,
      identity_data jsonb not null,
      provider text not null,
      last_sign_in_at timestamptz,
      created_at timestamptz default now(),
      updated_at timestamptz default now(),
      email text generated always as (lower(identity_data ->> 'email')) stored,
      id uuid not null default gen_random_uuid() primary key,
      constraint identities_provider_id_provider_unique unique (provider_id, provider)
    );
    create index identities_user_id_idx on auth.identities (user_id);
    create index identities_email_idx on auth.identities (email text_pattern_ops);
  end if;

  if to_regclass('auth.sessions') is null then
    create table auth.sessions (
      id uuid not null primary key,
      user_id uuid not null references auth.users (id) on delete cascade,
      created_at timestamptz,
      updated_at timestamptz,
      factor_id uuid,
      aal text,
      not_after timestamptz,
      refreshed_at timestamp,
      user_agent text,
      ip inet,
      tag text
    );
    create index sessions_user_id_idx on auth.sessions (user_id);
    create index user_id_created_at_idx on auth.sessions (user_id, created_at);
    create index sessions_not_after_idx on auth.sessions (not_after desc);
  end if;

  if to_regclass('auth.refresh_tokens') is null then
    create table auth.refresh_tokens (
      instance_id uuid,
      id bigserial primary key,
      token varchar(255),
      user_id varchar(255),
      revoked boolean,
      created_at timestamptz,
      updated_at timestamptz,
      parent varchar(255),
      session_id uuid references auth.sessions (id) on delete cascade,
      constraint refresh_tokens_token_unique unique (token)
    );
    create index refresh_tokens_instance_id_user_id_idx on auth.refresh_tokens (instance_id, user_id);
    create index refresh_tokens_parent_idx on auth.refresh_tokens (parent);
    create index refresh_tokens_session_id_revoked_idx on auth.refresh_tokens (session_id, revoked);
    create index refresh_tokens_updated_at_idx on auth.refresh_tokens (updated_at desc);
  end if;

  -- Helpers exactly as CONTRACTS §2: the claims are transaction-local settings, and outside a
  -- request `current_setting(x, true)` is '' (hence nullif).
  if to_regprocedure('auth.jwt()') is null then
    create function auth.jwt() returns jsonb
      language sql stable
      as $fn$
        select coalesce(
          nullif(current_setting('request.jwt.claim', true), ''),
          nullif(current_setting('request.jwt.claims', true), '')
        )::jsonb
      $fn$;
    grant execute on function auth.jwt() to anon, authenticated, service_role;
  end if;
  if to_regprocedure('auth.uid()') is null then
    create function auth.uid() returns uuid
      language sql stable
      as $fn$
        select coalesce(
          nullif(current_setting('request.jwt.claim.sub', true), ''),
          (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
        )::uuid
      $fn$;
    grant execute on function auth.uid() to anon, authenticated, service_role;
  end if;
  if to_regprocedure('auth.role()') is null then
    create function auth.role() returns text
      language sql stable
      as $fn$
        select coalesce(
          nullif(current_setting('request.jwt.claim.role', true), ''),
          (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
        )::text
      $fn$;
    grant execute on function auth.role() to anon, authenticated, service_role;
  end if;
  if to_regprocedure('auth.email()') is null then
    create function auth.email() returns text
      language sql stable
      as $fn$
        select coalesce(
          nullif(current_setting('request.jwt.claim.email', true), ''),
          (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
        )::text
      $fn$;
    grant execute on function auth.email() to anon, authenticated, service_role;
  end if;
end
$compat$;

-- The storage schema: buckets, objects and the path helpers policies use (CONTRACTS §4).
do $compat$
begin
  if to_regnamespace('storage') is null then
    create schema storage;
    grant usage on schema storage to anon, authenticated, service_role;
  end if;

  if to_regclass('storage.buckets') is null then
    create table storage.buckets (
      id text not null primary key,
      name text not null,
      owner uuid,
      created_at timestamptz default now(),
      updated_at timestamptz default now(),
      public boolean default false,
      avif_autodetection boolean default false,
      file_size_limit bigint,
      allowed_mime_types text[],
      owner_id text
    );
    create unique index bname on storage.buckets (name);
  end if;

  if to_regclass('storage.objects') is null then
    create table storage.objects (
      id uuid not null default gen_random_uuid() primary key,
      bucket_id text references storage.buckets (id),
      name text,
      owner uuid,
      created_at timestamptz default now(),
      updated_at timestamptz default now(),
      last_accessed_at timestamptz default now(),
      metadata jsonb,
      path_tokens text[] generated always as (string_to_array(name, '/')) stored,
      version text,
      owner_id text,
      user_metadata jsonb
    );
    create unique index bucketid_objname on storage.objects (bucket_id, name);
    create index name_prefix_search on storage.objects (name text_pattern_ops);
    alter table storage.objects enable row level security;
    alter table storage.buckets enable row level security;
    grant select, insert, update, delete on storage.objects to authenticated, service_role;
    grant select on storage.objects to anon;
    grant select on storage.buckets to anon, authenticated;
    grant all on storage.buckets to service_role;
    -- Supabase's storage service reads bucket settings itself; here the buckets are readable.
    create policy buckets_readable on storage.buckets for select to anon, authenticated using (true);
    create policy buckets_service on storage.buckets for all to service_role using (true) with check (true);
    create policy objects_service on storage.objects for all to service_role using (true) with check (true);
  end if;

  if to_regprocedure('storage.foldername(text)') is null then
    create function storage.foldername(name text) returns text[]
      language plpgsql immutable
      as $fn$
      declare
        _parts text[];
      begin
        select string_to_array(name, '/') into _parts;
        return _parts[1:array_length(_parts, 1) - 1];
      end
      $fn$;
    grant execute on function storage.foldername(text) to anon, authenticated, service_role;
  end if;
  if to_regprocedure('storage.filename(text)') is null then
    create function storage.filename(name text) returns text
      language plpgsql immutable
      as $fn$
      declare
        _parts text[];
      begin
        select string_to_array(name, '/') into _parts;
        return _parts[array_length(_parts, 1)];
      end
      $fn$;
    grant execute on function storage.filename(text) to anon, authenticated, service_role;
  end if;
  if to_regprocedure('storage.extension(text)') is null then
    create function storage.extension(name text) returns text
      language plpgsql immutable
      as $fn$
      declare
        _parts text[];
        _filename text;
      begin
        select string_to_array(name, '/') into _parts;
        select _parts[array_length(_parts, 1)] into _filename;
        return reverse(split_part(reverse(_filename), '.', 1));
      end
      $fn$;
    grant execute on function storage.extension(text) to anon, authenticated, service_role;
  end if;
end
$compat$;
