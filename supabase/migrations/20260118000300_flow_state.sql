-- GoTrue's `auth.flow_state`, where the browser OAuth flow (`/auth/v1/authorize` →
-- Google → `/auth/v1/callback`) keeps what it must remember between the redirects: the
-- `redirect_to` the app asked for, the PKCE challenge, and, once the user is back, the one-time
-- auth code the app trades for a session (`POST /auth/v1/token?grant_type=pkce`). The row's id
-- is the OAuth `state`, as in GoTrue since its 20260115000000 migration.
--
-- Columns, types, nullability, indexes and comment are GoTrue's (its migrations up to
-- 20260115000000_add_flow_state_oauth_context), so a row we write is one Supabase Auth reads
-- and a database moves between the two unchanged. GoTrue enables RLS on the table and grants
-- the API roles nothing; so does this.
--
-- On a Supabase project `auth` belongs to `supabase_auth_admin` and GoTrue has made this table
-- already: nothing is done unless the role running the migrations owns `auth.users` (the
-- compatibility layer's) and the table is missing.

do $flow$
declare
  v_ours boolean := exists (
    select from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where n.nspname = 'auth' and c.relname = 'users'
       and c.relowner = (select oid from pg_roles where rolname = current_user));
begin
  if not v_ours or to_regclass('auth.flow_state') is not null then
    return;
  end if;

  if to_regtype('auth.code_challenge_method') is null then
    create type auth.code_challenge_method as enum ('s256', 'plain');
  end if;

  create table auth.flow_state (
    id uuid primary key,
    user_id uuid null,
    auth_code text null,
    code_challenge_method auth.code_challenge_method null,
    code_challenge text null,
    provider_type text not null,
    provider_access_token text null,
    provider_refresh_token text null,
    created_at timestamptz null,
    updated_at timestamptz null,
    authentication_method text not null,
    auth_code_issued_at timestamptz null,
    invite_token text null,
    referrer text null,
    oauth_client_state_id uuid null,
    linking_target_id uuid null,
    email_optional boolean not null default false
  );
  create index idx_auth_code on auth.flow_state (auth_code);
  create index idx_user_id_auth_method on auth.flow_state (user_id, authentication_method);
  create index flow_state_created_at_idx on auth.flow_state (created_at desc);
  comment on table auth.flow_state is 'Stores metadata for all OAuth/SSO login flows';
  alter table auth.flow_state enable row level security;
end
$flow$;
