-- Platform administration: who is an administrator (app_metadata.platform_role, which only the
-- server or the service role writes), suspending users and chamas, and what operators look at.

-- Grants or revokes the administrator role; the user's next token carries it.
create function internal.set_platform_admin(p_user_id uuid, p_admin boolean, p_actor_id uuid)
  returns void
  language plpgsql
  security definer
  set search_path = ''
  as $$
begin
  update auth.users
     set raw_app_meta_data = case when p_admin
           then coalesce(raw_app_meta_data, '{}'::jsonb) || '{"platform_role": "admin"}'::jsonb
           else coalesce(raw_app_meta_data, '{}'::jsonb) - 'platform_role' end,
         updated_at = now()
   where id = p_user_id;
  if not found then
    raise exception 'no such user' using errcode = 'PX404';
  end if;
  perform internal.audit_log(case when p_admin then 'admin.granted' else 'admin.revoked' end,
                             'auth.users', p_user_id::text, null, '{}'::jsonb, p_actor_id);
end
$$;

-- Suspends (bans, ending every session) or reinstates a user.
create function internal.set_user_suspended(p_user_id uuid, p_suspended boolean, p_reason text,
                                            p_actor_id uuid) returns void
  language plpgsql
  security definer
  set search_path = ''
  as $$
begin
  -- A hundred years, as GoTrue bans; readers also cope with 'infinity' (see store::auth).
  update auth.users set banned_until = case when p_suspended then now() + interval '100 years' end,
                        updated_at = now()
   where id = p_user_id and deleted_at is null;
  if not found then
    raise exception 'no such user' using errcode = 'PX404';
  end if;
  if p_suspended then
    delete from auth.sessions where user_id = p_user_id;
  end if;
  perform internal.audit_log(case when p_suspended then 'admin.user_suspended' else 'admin.user_reinstated' end,
                             'auth.users', p_user_id::text, null,
                             jsonb_build_object('reason', p_reason), p_actor_id);
end
$$;

revoke all on function internal.set_platform_admin(uuid, boolean, uuid),
  internal.set_user_suspended(uuid, boolean, text, uuid) from public;
grant execute on function internal.set_platform_admin(uuid, boolean, uuid),
  internal.set_user_suspended(uuid, boolean, text, uuid) to service_role;
