//! Legacy's access state, recorded before `cutover` changes it, and put back exactly.
//!
//! Cut-over freezes legacy (CONNECT revoked, sessions ended, read-only by default). What it
//! takes away is recorded first, in `pesachama_migrate.cutover` on the target, in a row of its
//! own committed before anything on legacy changes: which roles held CONNECT on the database
//! (each explicit grant, and PUBLIC's), the database's own `default_transaction_read_only`
//! setting, and its ACL as PostgreSQL printed it. [`reopen`] grants back exactly those and puts
//! the setting back as it was, whatever step the cut-over reached, so a stopped (or killed)
//! cut-over never leaves legacy frozen for good. The row also says how far the cut-over got
//! (`step`), which is how `rollback` knows whether the target may have taken writes.

use anyhow::Context as _;
use sqlx::PgConnection;

const SCHEMA: &str = "
create schema if not exists pesachama_migrate;
revoke all on schema pesachama_migrate from public;
create table if not exists pesachama_migrate.cutover (
  id bigserial primary key,
  at timestamptz not null default now(),
  legacy_roles text[] not null,
  legacy_public_connect boolean not null,
  rolled_back_at timestamptz
);
alter table pesachama_migrate.cutover
  add column if not exists legacy_database text,
  add column if not exists legacy_grantees text[] not null default '{}',
  add column if not exists legacy_read_only text,
  add column if not exists legacy_acl text,
  add column if not exists step text not null default 'live',
  add column if not exists stopped text,
  add column if not exists reopened_at timestamptz;
";

/// How far a cut-over got. Before `Live` the target has taken no writes of its own (its
/// capture is not started), so reopening legacy is all an undo needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum Step {
    /// Legacy's access state is recorded; nothing changed yet.
    Recorded,
    /// CONNECT revoked, the database read-only by default.
    Frozen,
    /// Every other session on legacy ended.
    SessionsEnded,
    /// The change capture drained into the target.
    Drained,
    /// `verify` found no difference.
    Verified,
    /// Sequences set and capture started on the target: it may take writes.
    Live,
}

impl Step {
    pub const ALL: [Step; 6] = [
        Step::Recorded,
        Step::Frozen,
        Step::SessionsEnded,
        Step::Drained,
        Step::Verified,
        Step::Live,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::Recorded => "recorded",
            Step::Frozen => "frozen",
            Step::SessionsEnded => "sessions_ended",
            Step::Drained => "drained",
            Step::Verified => "verified",
            Step::Live => "live",
        }
    }

    pub fn parse(name: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Legacy's access state before a cut-over, and the row that records it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Recorded {
    pub id: i64,
    pub database: String,
    /// Login roles (not superusers) that could connect, directly or through PUBLIC.
    pub roles: Vec<String>,
    /// Roles named in the database's ACL with CONNECT (`PUBLIC` for the public grant).
    pub grantees: Vec<String>,
    pub public_connect: bool,
    /// The database's own `default_transaction_read_only` (`None`: not set for it).
    pub read_only: Option<String>,
    pub step: Step,
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub async fn ensure(dst: &mut PgConnection) -> anyhow::Result<()> {
    sqlx::raw_sql(SCHEMA)
        .execute(&mut *dst)
        .await
        .context("creating pesachama_migrate.cutover on the target")?;
    Ok(())
}

/// Reads legacy's access state and records it on the target (committed) before any change.
pub async fn record(src: &mut PgConnection, dst: &mut PgConnection) -> anyhow::Result<Recorded> {
    ensure(dst).await?;
    let (database, public_connect, acl): (String, bool, Option<String>) = sqlx::query_as(
        "select d.datname::text,
                exists (select from aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
                         where a.grantee = 0 and a.privilege_type = 'CONNECT'),
                d.datacl::text
           from pg_database d where d.datname = current_database()",
    )
    .fetch_one(&mut *src)
    .await
    .context("reading legacy's access state")?;
    let roles: Vec<String> = sqlx::query_scalar(
        "select rolname::text from pg_roles where rolcanlogin and not rolsuper and rolname <> current_user
            and has_database_privilege(oid, current_database(), 'CONNECT') order by 1",
    )
    .fetch_all(&mut *src)
    .await?;
    let grantees: Vec<String> = sqlx::query_scalar(
        "select distinct case when a.grantee = 0 then 'PUBLIC' else pg_get_userbyid(a.grantee)::text end
           from pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
          where d.datname = current_database() and a.privilege_type = 'CONNECT'
          order by 1",
    )
    .fetch_all(&mut *src)
    .await?;
    let read_only: Option<String> = sqlx::query_scalar(
        "select substr(s.cfg, length('default_transaction_read_only=') + 1)
           from pg_db_role_setting r, unnest(r.setconfig) s(cfg)
          where r.setdatabase = (select oid from pg_database where datname = current_database())
            and r.setrole = 0 and s.cfg like 'default\\_transaction\\_read\\_only=%'",
    )
    .fetch_optional(&mut *src)
    .await?;
    let id: i64 = sqlx::query_scalar(
        "insert into pesachama_migrate.cutover
           (legacy_roles, legacy_public_connect, legacy_database, legacy_grantees, legacy_read_only, legacy_acl, step)
         values ($1, $2, $3, $4, $5, $6, 'recorded') returning id",
    )
    .bind(&roles)
    .bind(public_connect)
    .bind(&database)
    .bind(&grantees)
    .bind(&read_only)
    .bind(&acl)
    .fetch_one(&mut *dst)
    .await
    .context("recording legacy's access state on the target")?;
    Ok(Recorded {
        id,
        database,
        roles,
        grantees,
        public_connect,
        read_only,
        step: Step::Recorded,
    })
}

/// The latest cut-over whose legacy has not been reopened (nor rolled back), if any.
pub async fn open_cutover(dst: &mut PgConnection) -> anyhow::Result<Option<Recorded>> {
    ensure(dst).await?;
    type Row = (
        i64,
        Option<String>,
        Vec<String>,
        Vec<String>,
        bool,
        Option<String>,
        String,
    );
    let row: Option<Row> =
        sqlx::query_as(
            "select id, legacy_database, legacy_roles, legacy_grantees, legacy_public_connect, legacy_read_only, step
               from pesachama_migrate.cutover
              where rolled_back_at is null and reopened_at is null
              order by id desc limit 1",
        )
        .fetch_optional(&mut *dst)
        .await?;
    let Some((id, database, roles, grantees, public_connect, read_only, step)) = row else {
        return Ok(None);
    };
    let step = Step::parse(&step)
        .with_context(|| format!("cut-over {id} records an unknown step {step:?}"))?;
    Ok(Some(Recorded {
        id,
        database: database.unwrap_or_default(),
        roles,
        grantees,
        public_connect,
        read_only,
        step,
    }))
}

pub async fn set_step(dst: &mut PgConnection, id: i64, step: Step) -> anyhow::Result<()> {
    sqlx::query("update pesachama_migrate.cutover set step = $2 where id = $1")
        .bind(id)
        .bind(step.name())
        .execute(&mut *dst)
        .await
        .context("recording the cut-over's progress on the target")?;
    Ok(())
}

/// Revokes CONNECT from PUBLIC and from every role that had it, and makes the database
/// read-only by default (sessions opened from now on; the caller's own stays writable).
pub async fn freeze(src: &mut PgConnection, state: &Recorded) -> anyhow::Result<()> {
    // Never the toolkit's own role: `verify` and the drain connect again as it (on Supabase it
    // is `postgres`, the database's owner, and no superuser).
    let me: String = sqlx::query_scalar("select current_user::text")
        .fetch_one(&mut *src)
        .await?;
    let db = quoted(&state.database);
    let mut freeze = format!("revoke connect on database {db} from public;");
    let mut explicit: Vec<&String> = state.roles.iter().collect();
    explicit.extend(
        state
            .grantees
            .iter()
            .filter(|g| *g != "PUBLIC" && **g != me),
    );
    explicit.sort();
    explicit.dedup();
    freeze.push_str(&format!(
        "alter database {db} set default_transaction_read_only = on;"
    ));
    sqlx::raw_sql(&freeze)
        .execute(&mut *src)
        .await
        .context("revoking access to legacy")?;
    // Role by role, skipping one dropped since it was recorded (it can connect no more).
    for role in explicit {
        let revoked = sqlx::query(&format!(
            "revoke connect on database {db} from {}",
            quoted(role)
        ))
        .execute(&mut *src)
        .await;
        if let Err(err) = revoked {
            let exists: bool =
                sqlx::query_scalar("select exists (select from pg_roles where rolname = $1)")
                    .bind(role)
                    .fetch_one(&mut *src)
                    .await?;
            if exists {
                return Err(err).with_context(|| format!("revoking CONNECT on legacy from {role}"));
            }
        }
    }
    Ok(())
}

/// Ends every other client session on legacy; answers how many.
pub async fn end_sessions(src: &mut PgConnection) -> anyhow::Result<i64> {
    sqlx::query_scalar(
        "select count(*) filter (where pg_terminate_backend(pid)) from pg_stat_activity
          where datname = current_database() and pid <> pg_backend_pid() and backend_type = 'client backend'",
    )
    .fetch_one(&mut *src)
    .await
    .context("ending the sessions on legacy")
}

/// Puts legacy's access back as `state` recorded it: CONNECT to each grantee (and PUBLIC if it
/// had it), the database's read-only setting as it was. Safe to run more than once.
pub async fn reopen(src: &mut PgConnection, state: &Recorded) -> anyhow::Result<()> {
    let database = if state.database.is_empty() {
        sqlx::query_scalar("select current_database()::text")
            .fetch_one(&mut *src)
            .await?
    } else {
        state.database.clone()
    };
    let db = quoted(&database);
    let mut sql = match &state.read_only {
        Some(value) => format!(
            "alter database {db} set default_transaction_read_only = '{}';",
            value.replace('\'', "''")
        ),
        None => format!("alter database {db} reset default_transaction_read_only;"),
    };
    if state.public_connect {
        sql.push_str(&format!("grant connect on database {db} to public;"));
    }
    // Rows recorded before grantees were (an older cut-over) name the roles that could connect.
    let grantees = if state.grantees.is_empty() && !state.public_connect {
        &state.roles
    } else {
        &state.grantees
    };
    for role in grantees.iter().filter(|g| *g != "PUBLIC") {
        sql.push_str(&format!(
            "grant connect on database {db} to {};",
            quoted(role)
        ));
    }
    sqlx::raw_sql(&sql)
        .execute(&mut *src)
        .await
        .context("reopening legacy (granting CONNECT back, resetting read-only)")?;
    Ok(())
}

/// Records that legacy was reopened after a cut-over that stopped (`reason`).
pub async fn mark_reopened(
    dst: &mut PgConnection,
    id: i64,
    reason: Option<&str>,
) -> anyhow::Result<()> {
    sqlx::query(
        "update pesachama_migrate.cutover set reopened_at = now(), stopped = coalesce($2, stopped)
          where id = $1",
    )
    .bind(id)
    .bind(reason)
    .execute(&mut *dst)
    .await?;
    Ok(())
}
