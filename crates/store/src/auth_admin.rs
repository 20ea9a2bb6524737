//! What Supabase Auth's admin API (`/auth/v1/admin/*`, service role only) writes into
//! `auth.users` and `auth.identities`, the way GoTrue writes it: every token column `''`, never
//! NULL; `instance_id` nil; `aud` `authenticated`; metadata merged key by key, a `null` value
//! removing its key.

use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::StoreError;
use crate::auth::{AuthUser, Contact, Identity, USER_COLUMNS};

/// One page of live users, newest first, and how many there are in all.
pub async fn list_users(
    conn: &mut PgConnection,
    page: i64,
    per_page: i64,
) -> Result<(Vec<AuthUser>, i64), StoreError> {
    let total: i64 = sqlx::query_scalar("select count(*) from auth.users where deleted_at is null")
        .fetch_one(&mut *conn)
        .await?;
    let sql = format!(
        "select {USER_COLUMNS} from auth.users where deleted_at is null \
         order by created_at desc, id desc limit $1 offset $2"
    );
    let users = sqlx::query_as(&sql)
        .bind(per_page)
        .bind(page.saturating_sub(1).saturating_mul(per_page))
        .fetch_all(&mut *conn)
        .await?;
    Ok((users, total))
}

/// The identities of several users at once.
pub async fn identities_of(
    executor: impl PgExecutor<'_>,
    users: &[Uuid],
) -> Result<Vec<Identity>, StoreError> {
    Ok(sqlx::query_as(
        "select id, user_id, provider, provider_id, identity_data, last_sign_in_at, created_at, updated_at
         from auth.identities where user_id = any($1) order by created_at",
    )
    .bind(users)
    .fetch_all(executor)
    .await?)
}

/// A user as the service role creates one.
#[derive(Debug, Clone)]
pub struct AdminNewUser<'a> {
    pub id: Uuid,
    pub email: Option<&'a str>,
    /// Digits only, GoTrue's form.
    pub phone: Option<&'a str>,
    pub password_hash: &'a str,
    pub user_metadata: &'a Value,
    /// `{provider, providers}` as GoTrue sets them.
    pub app_metadata: &'a Value,
}

pub async fn insert_user(
    conn: &mut PgConnection,
    user: &AdminNewUser<'_>,
) -> Result<(), StoreError> {
    sqlx::query(
        "insert into auth.users (instance_id, id, aud, role, email, phone, encrypted_password,
             raw_app_meta_data, raw_user_meta_data, confirmation_token, recovery_token,
             email_change_token_new, email_change, created_at, updated_at)
         values ('00000000-0000-0000-0000-000000000000', $1, 'authenticated', 'authenticated',
             $2, $3, $4, $5, $6, '', '', '', '', now(), now())",
    )
    .bind(user.id)
    .bind(user.email)
    .bind(user.phone)
    .bind(user.password_hash)
    .bind(user.app_metadata)
    .bind(user.user_metadata)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Merges `patch` into the user's `raw_app_meta_data` or `raw_user_meta_data`, as GoTrue's
/// `UpdateAppMetaData` / `UpdateUserMetaData` do: each key of `patch` replaces the stored one,
/// and a key whose value is `null` is removed.
pub async fn merge_metadata(
    conn: &mut PgConnection,
    user_id: Uuid,
    app: bool,
    patch: &Value,
) -> Result<(), StoreError> {
    let column = if app {
        "raw_app_meta_data"
    } else {
        "raw_user_meta_data"
    };
    let sql = format!(
        "update auth.users
            set {column} = (coalesce({column}, '{{}}'::jsonb) || jsonb_strip_nulls($2))
                           - coalesce((select array_agg(key) from jsonb_each($2) where value = 'null'::jsonb), '{{}}'),
                updated_at = now()
          where id = $1"
    );
    sqlx::query(&sql)
        .bind(user_id)
        .bind(patch)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Sets the email or phone of an account, confirmed now or not confirmed at all: an address
/// the service role did not vouch for proves nothing, whatever the account's old one did. Any
/// pending change of that contact is dropped.
pub async fn set_contact(
    conn: &mut PgConnection,
    user_id: Uuid,
    contact: Contact,
    value: &str,
    confirmed: bool,
) -> Result<(), StoreError> {
    let sql = match contact {
        Contact::Email => {
            "update auth.users set email = $2,
                    email_confirmed_at = case when $3 then now() end,
                    email_change = '', email_change_token_new = '', email_change_token_current = '',
                    email_change_sent_at = null, updated_at = now()
              where id = $1"
        }
        Contact::Phone => {
            "update auth.users set phone = $2,
                    phone_confirmed_at = case when $3 then now() end,
                    phone_change = '', phone_change_token = '', phone_change_sent_at = null,
                    updated_at = now()
              where id = $1"
        }
    };
    sqlx::query(sql)
        .bind(user_id)
        .bind(value)
        .bind(confirmed)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Marks the account's email or phone confirmed now (`email_confirm` / `phone_confirm`), as
/// GoTrue's `Confirm` / `ConfirmPhone` do: the pending confirmation code is spent.
pub async fn confirm_contact(
    conn: &mut PgConnection,
    user_id: Uuid,
    contact: Contact,
) -> Result<(), StoreError> {
    let sql = match contact {
        Contact::Email => {
            "update auth.users set email_confirmed_at = coalesce(email_confirmed_at, now()),
                    confirmation_token = '', updated_at = now()
              where id = $1 and coalesce(email, '') <> ''"
        }
        Contact::Phone => {
            "update auth.users set phone_confirmed_at = coalesce(phone_confirmed_at, now()),
                    confirmation_token = '', updated_at = now()
              where id = $1 and coalesce(phone, '') <> ''"
        }
    };
    sqlx::query(sql).bind(user_id).execute(&mut *conn).await?;
    Ok(())
}

/// The identity of `provider` (`email` or `phone`) of a user, made or updated with the
/// address, as GoTrue keeps one per way of signing in.
pub async fn upsert_contact_identity(
    conn: &mut PgConnection,
    user_id: Uuid,
    contact: Contact,
    value: &str,
    verified: bool,
) -> Result<(), StoreError> {
    let (provider, key, flag) = match contact {
        Contact::Email => ("email", "email", "email_verified"),
        Contact::Phone => ("phone", "phone", "phone_verified"),
    };
    let patch = serde_json::json!({ key: value, flag: verified });
    let updated = sqlx::query(
        "update auth.identities set identity_data = coalesce(identity_data, '{}'::jsonb) || $3,
                updated_at = now()
          where user_id = $1 and provider = $2",
    )
    .bind(user_id)
    .bind(provider)
    .bind(&patch)
    .execute(&mut *conn)
    .await?;
    if updated.rows_affected() == 0 {
        let mut data = serde_json::json!({
            "sub": user_id.to_string(),
            "email_verified": false,
            "phone_verified": false,
        });
        if let (Value::Object(data), Value::Object(patch)) = (&mut data, patch) {
            data.extend(patch);
        }
        crate::auth::insert_identity(conn, user_id, provider, &user_id.to_string(), &data).await?;
    }
    Ok(())
}

/// Bans the user for `seconds` from now, or lifts the ban (`seconds <= 0`), as GoTrue's `Ban`.
pub async fn set_banned(
    conn: &mut PgConnection,
    user_id: Uuid,
    seconds: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "update auth.users
            set banned_until = case when $2 > 0 then now() + $2 * interval '1 second' end,
                updated_at = now()
          where id = $1",
    )
    .bind(user_id)
    .bind(seconds)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The profile (`public.users`) shows the account's confirmed email and phone, and nothing
/// that is not confirmed; made first if the user has none.
pub async fn sync_profile_contacts(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<(), StoreError> {
    crate::auth::ensure_profile(&mut *conn, user_id).await?;
    sqlx::query(
        "update public.users p
            set email = case when u.email_confirmed_at is not null then lower(u.email) end,
                phone = case when u.phone_confirmed_at is not null and coalesce(u.phone, '') <> ''
                             then '+' || ltrim(u.phone, '+') end,
                updated_at = now()
           from auth.users u
          where p.id = u.id and u.id = $1
            and (p.email is distinct from case when u.email_confirmed_at is not null then lower(u.email) end
                 or p.phone is distinct from case when u.phone_confirmed_at is not null and coalesce(u.phone, '') <> ''
                                                  then '+' || ltrim(u.phone, '+') end)",
    )
    .bind(user_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Why a user may not be deleted now, if anything stands in the way: a chama they are still in
/// (an official, a member's share of the chama's money, a pending request to join) or a
/// withdrawal of theirs in progress. They leave or are removed through the chama's own rules
/// first, which keep every chama with its chairperson and enough officials to approve.
pub async fn delete_blocker(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<Option<String>, StoreError> {
    let (chamas, offices, share, withdrawals): (i64, i64, i64, i64) = sqlx::query_as(
        "select count(*) filter (where m.status in ('active', 'suspended', 'pending')),
                count(*) filter (where m.status in ('active', 'suspended') and m.role <> 'member'),
                coalesce(sum(m.contributed_total) filter (where m.status in ('active', 'suspended', 'pending')), 0)::bigint,
                (select count(*) from public.disbursement_requests d
                  where (d.requested_by = $1 or d.recipient_user_id = $1)
                    and d.status in ('pending', 'approved', 'processing'))
           from public.chama_members m where m.user_id = $1",
    )
    .bind(user_id)
    .fetch_one(&mut *conn)
    .await?;
    if chamas == 0 && withdrawals == 0 {
        return Ok(None);
    }
    let mut why = format!("User is still in {chamas} chama(s)");
    if offices > 0 {
        why.push_str(&format!(", an official in {offices}"));
    }
    if share != 0 {
        why.push_str(&format!(
            ", with a share of KES {}.{:02} in their money",
            share / 100,
            (share % 100).abs()
        ));
    }
    if withdrawals > 0 {
        why.push_str(&format!(", with {withdrawals} withdrawal(s) in progress"));
    }
    why.push_str(
        ": they must leave (or be removed by the chama's officials) before the account is deleted",
    );
    Ok(Some(why))
}

/// GoTrue's soft delete: the account stays (its id keeps the ledger's and the chamas' history
/// whole) but can never sign in again, and its email and phone are freed: they are replaced by
/// a hash, the password, codes and metadata are cleared, the identities are made unfindable,
/// every session ends. The profile is marked deleted and loses its contacts.
pub async fn soft_delete(conn: &mut PgConnection, user_id: Uuid) -> Result<(), StoreError> {
    let (email, phone) = (obfuscate("email"), obfuscate("phone"));
    let (email_change, phone_change) = (obfuscate("email_change"), obfuscate("phone_change"));
    let sql = format!(
        "update auth.users
            set email = {email},
                phone = left({phone}, 15),
                email_change = case when coalesce(email_change, '') = '' then '' else {email_change} end,
                phone_change = case when coalesce(phone_change, '') = '' then '' else left({phone_change}, 15) end,
                encrypted_password = null, confirmation_token = '', recovery_token = '',
                email_change_token_current = '', email_change_token_new = '',
                phone_change_token = '', reauthentication_token = '',
                raw_user_meta_data = '{{}}'::jsonb, raw_app_meta_data = '{{}}'::jsonb,
                deleted_at = now(), updated_at = now()
          where id = $1"
    );
    sqlx::query(&sql).bind(user_id).execute(&mut *conn).await?;
    sqlx::query(
        "update auth.identities
            set identity_data = '{}'::jsonb,
                provider_id = translate(encode(sha256(convert_to(user_id::text || provider || ':' || provider_id, 'UTF8')), 'base64'), '+/=', '-_'),
                updated_at = now()
          where user_id = $1",
    )
    .bind(user_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query("delete from auth.sessions where user_id = $1")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "update public.users set email = null, phone = null, deleted_at = now(), updated_at = now()
          where id = $1 and deleted_at is null",
    )
    .bind(user_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// GoTrue's `obfuscateValue` of a column (NULL stays NULL): base64url, unpadded, of SHA-256 of
/// the user id and the value.
fn obfuscate(column: &str) -> String {
    format!(
        "translate(encode(sha256(convert_to($1::text || {column}, 'UTF8')), 'base64'), '+/=', '-_')"
    )
}

/// Removes the account and what hangs on it (profile, sessions, identities, devices,
/// notifications). The caller has made sure nothing of a chama's refers to it; a foreign key
/// that still does refuses the delete ([`StoreError::RuleViolated`] naming it).
pub async fn hard_delete(conn: &mut PgConnection, user_id: Uuid) -> Result<(), StoreError> {
    sqlx::query("delete from auth.users where id = $1")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Spends every pending code of the user (a new password: whatever was asked before it is no
/// longer trusted), as GoTrue's `UpdatePassword` does.
pub async fn clear_codes(conn: &mut PgConnection, user_id: Uuid) -> Result<(), StoreError> {
    sqlx::query(
        "update auth.users
            set confirmation_token = '', confirmation_sent_at = null, recovery_token = '',
                recovery_sent_at = null, email_change_token_current = '', email_change_token_new = '',
                email_change_sent_at = null, phone_change_token = '', phone_change_sent_at = null,
                reauthentication_token = '', reauthentication_sent_at = null, updated_at = now()
          where id = $1",
    )
    .bind(user_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
