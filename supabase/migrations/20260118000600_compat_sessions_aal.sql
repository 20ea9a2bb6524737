-- The compatibility layer's `auth.sessions.aal`, where we created it, is GoTrue's enum
-- `auth.aal_level`, not text: a value GoTrue cannot read ('AAL1', '') is refused here as there.
-- On a Supabase project `auth` belongs to `supabase_auth_admin` and this does nothing.

do $aal$
begin
  if not exists (
    select from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where n.nspname = 'auth' and c.relname = 'sessions'
       and c.relowner = (select oid from pg_roles where rolname = current_user)) then
    return;
  end if;
  if not exists (
    select from pg_type t join pg_namespace n on n.oid = t.typnamespace
     where n.nspname = 'auth' and t.typname = 'aal_level') then
    create type auth.aal_level as enum ('aal1', 'aal2', 'aal3');
    comment on type auth.aal_level is 'GoTrue''s authenticator assurance level.';
  end if;
  if exists (
    select from information_schema.columns
     where table_schema = 'auth' and table_name = 'sessions' and column_name = 'aal'
       and data_type = 'text') then
    alter table auth.sessions alter column aal type auth.aal_level using aal::auth.aal_level;
  end if;
end
$aal$;
