use std::time::{SystemTime, UNIX_EPOCH};

use pesachama_pgcluster::{Cluster, Durability, Options};
use pesachama_store::PgPool;
use sqlx::{Connection, PgConnection};
use tokio::sync::OnceCell;

/// Serialises template creation across test processes.
const TEMPLATE_LOCK: i64 = 0x7465_7374_7470_6c00; // "testtpl"

/// Test databases older than this are someone's leftovers (a killed run) and are dropped.
const STALE_AFTER_SECONDS: u64 = 3600;

static ADMIN_URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
static TEMPLATE: OnceCell<String> = OnceCell::const_new();

/// Where the tests run on a database prepared with Supabase's own SQL (`scripts/test-supabase`
/// makes one with `../shared/supabase-shape`): the URL of its prepared database as the
/// bootstrap superuser, `postgres://supabase_admin@HOST:PORT/supa`. Each test database is then
/// a copy of that one (Supabase's `auth`, `storage`, roles and grants), owned by `postgres`,
/// migrated and used as `postgres`, the role a Supabase project gives its owner.
const SUPABASE_ENV: &str = "PESACHAMA_TEST_SUPABASE";

/// The Supabase-shaped database tests copy, when they run in Supabase mode.
fn supabase_source() -> Option<&'static str> {
    static SOURCE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    SOURCE
        .get_or_init(|| {
            std::env::var(SUPABASE_ENV)
                .ok()
                .filter(|url| !url.is_empty())
        })
        .as_deref()
}

/// Whether this run is against the Supabase-shaped database (for the few assertions that
/// differ on purpose, e.g. tables only the compatibility layer creates).
pub fn supabase_mode() -> bool {
    supabase_source().is_some()
}

/// `url` with another user name (no password: the test clusters trust loopback).
fn with_user(url: &str, user: &str) -> String {
    match url.split_once("://").and_then(|(scheme, rest)| {
        rest.split_once('@')
            .map(|(_, host)| format!("{scheme}://{user}@{host}"))
    }) {
        Some(url) => url,
        None => url.to_owned(),
    }
}

/// The admin URL (database `postgres`) of the server tests use, starting the shared test
/// cluster on first use.
pub fn admin_url() -> &'static str {
    ADMIN_URL.get_or_init(|| {
        if let Some(source) = supabase_source() {
            let (base, _) = source.rsplit_once('/').unwrap_or((source, ""));
            return format!("{base}/postgres");
        }
        if let Ok(url) = std::env::var("TEST_DATABASE_URL") {
            return url;
        }
        let euid = nix_free_euid();
        let dir = std::env::temp_dir().join(format!("pesachama-test-cluster-{euid}"));
        let mut options = Options::new(&dir);
        options.durability = Durability::Throwaway;
        options.max_connections = 400;
        let cluster = Cluster::ensure_running(&options).unwrap_or_else(|err| {
            panic!("cannot start the test cluster in {}: {err}", dir.display())
        });
        cluster.url("postgres")
    })
}

/// The effective uid, read from /proc so the test kit needs no extra dependency for it.
fn nix_free_euid() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("Uid:"))
                .and_then(|line| line.split_whitespace().nth(2).map(str::to_owned))
        })
        .unwrap_or_else(|| "user".to_owned())
}

/// The URL tests (and the migrations) use for `database`: as the admin, or in Supabase mode as
/// `postgres`, which on Supabase is not a superuser.
fn url_for(database: &str) -> String {
    let admin = admin_url();
    let (base, _) = admin.rsplit_once('/').unwrap_or((admin, ""));
    let url = format!("{base}/{database}");
    if supabase_mode() {
        with_user(&url, "postgres")
    } else {
        url
    }
}

/// A database of its own for one test, dropped when the test ends (set
/// `PESACHAMA_KEEP_TEST_DBS=1` to keep them for a look after a failure).
#[derive(Debug)]
pub struct TestDb {
    pub pool: PgPool,
    pub url: String,
    pub name: String,
}

impl TestDb {
    /// A fresh database with every migration applied.
    pub async fn new() -> Self {
        let template = TEMPLATE.get_or_init(build_template).await;
        Self::create(Some(template)).await
    }

    /// A fresh, empty database (no schema), for tests of migrating itself.
    pub async fn empty() -> Self {
        Self::create(None).await
    }

    async fn create(template: Option<&str>) -> Self {
        let name = format!("test_{}_{}", now_seconds(), uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(admin_url())
            .await
            .expect("connect to the test server");
        let owner = if supabase_mode() {
            " owner postgres"
        } else {
            ""
        };
        let statement = match template {
            Some(template) => {
                format!("create database {name} template {template}{owner} strategy file_copy")
            }
            None => match supabase_source() {
                // "Empty" on Supabase is a project's database before our migrations.
                Some(source) => format!(
                    "create database {name} template {}{owner} strategy file_copy",
                    source.rsplit('/').next().unwrap_or("supa")
                ),
                None => format!("create database {name}"),
            },
        };
        sqlx::raw_sql(&statement)
            .execute(&mut admin)
            .await
            .expect("create the test database");
        let _ = admin.close().await;
        let url = url_for(&name);
        let pool = pesachama_store::connect(&url, 5)
            .await
            .expect("connect to the test database");
        Self { pool, url, name }
    }
}

impl TestDb {
    /// Every check of the integrity report passes: journals balance, every stored balance and
    /// total equals the ledger, the audit chain is whole. Tests that move money end with this.
    pub async fn assert_ledger_balanced(&self) {
        let failing: Vec<(String, i64)> = sqlx::query_as(
            "select check_name, violations from internal.integrity_report() where violations > 0",
        )
        .fetch_all(&self.pool)
        .await
        .expect("run the integrity report");
        assert!(failing.is_empty(), "integrity report: {failing:?}");
    }
}

/// The columns of `auth.*` that Supabase Auth (GoTrue) reads into Go values that cannot hold
/// NULL (a `string`, a `uuid.UUID`, a `time.Time`, a `bool`, an `int`): one NULL there and
/// GoTrue answers 500 for every query that loads the row. The list is the stand-in's
/// `gotrue-rowcheck.sql`, from GoTrue's models.
const GOTRUE_NOT_NULL: &[(&str, &str)] = &[
    ("users", "id"),
    ("users", "instance_id"),
    ("users", "aud"),
    ("users", "role"),
    ("users", "confirmation_token"),
    ("users", "recovery_token"),
    ("users", "email_change_token_current"),
    ("users", "email_change_token_new"),
    ("users", "email_change"),
    ("users", "phone_change_token"),
    ("users", "phone_change"),
    ("users", "reauthentication_token"),
    ("users", "email_change_confirm_status"),
    ("users", "created_at"),
    ("users", "updated_at"),
    ("users", "is_sso_user"),
    ("users", "is_anonymous"),
    ("identities", "id"),
    ("identities", "provider_id"),
    ("identities", "user_id"),
    ("identities", "provider"),
    ("identities", "created_at"),
    ("identities", "updated_at"),
    ("sessions", "id"),
    ("sessions", "user_id"),
    ("sessions", "created_at"),
    ("sessions", "updated_at"),
    ("refresh_tokens", "id"),
    ("refresh_tokens", "token"),
    ("refresh_tokens", "user_id"),
    ("refresh_tokens", "revoked"),
    ("refresh_tokens", "created_at"),
    ("refresh_tokens", "updated_at"),
    ("refresh_tokens", "instance_id"),
    ("flow_state", "id"),
    ("flow_state", "provider_type"),
    ("flow_state", "provider_access_token"),
    ("flow_state", "provider_refresh_token"),
    ("flow_state", "authentication_method"),
    ("flow_state", "email_optional"),
    ("flow_state", "created_at"),
    ("flow_state", "updated_at"),
];

impl TestDb {
    /// Every row in `auth.*` is one Supabase Auth can read (see [`GOTRUE_NOT_NULL`]), and every
    /// user is one it can find by email or phone (`instance_id` nil, `aud` authenticated).
    pub async fn assert_gotrue_can_read(&self) {
        let mut unreadable = Vec::new();
        for (table, column) in GOTRUE_NOT_NULL {
            let sql = format!("select count(*) from auth.{table} where {column} is null");
            let nulls: i64 = sqlx::query_scalar(&sql)
                .fetch_one(&self.pool)
                .await
                .unwrap_or_else(|err| panic!("auth.{table}.{column}: {err}"));
            if nulls > 0 {
                unreadable.push(format!("auth.{table}.{column}: {nulls} NULL"));
            }
        }
        let unfindable: i64 = sqlx::query_scalar(
            "select count(*) from auth.users
              where instance_id is distinct from '00000000-0000-0000-0000-000000000000'
                 or aud is distinct from 'authenticated'",
        )
        .fetch_one(&self.pool)
        .await
        .expect("count users GoTrue cannot find");
        if unfindable > 0 {
            unreadable.push(format!(
                "{unfindable} users outside GoTrue's instance or audience"
            ));
        }
        assert!(
            unreadable.is_empty(),
            "Supabase Auth could not read: {unreadable:?}"
        );
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::env::var_os("PESACHAMA_KEEP_TEST_DBS").is_some() {
            return;
        }
        // Drop runs inside the test's runtime, which we must not block on; a thread of its own
        // with a small runtime does the work. FORCE ends the pool's connections server-side.
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok(mut admin) = PgConnection::connect(admin_url()).await {
                    let _ = sqlx::raw_sql(&format!("drop database if exists {name} with (force)"))
                        .execute(&mut admin)
                        .await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Creates (once per server and schema version) the migrated template databases are cloned from.
async fn build_template() -> String {
    let fingerprint = {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        for migration in pesachama_store::migrations::EMBEDDED {
            hasher.update(migration.version.as_bytes());
            hasher.update(migration.sql.as_bytes());
        }
        hex::encode(hasher.finalize())
    };
    let mode = if supabase_mode() { "supa" } else { "plain" };
    let template = format!("pesachama_template_{mode}_{}", &fingerprint[..16]);

    let mut admin = PgConnection::connect(admin_url())
        .await
        .expect("connect to the test server");
    sqlx::query("select pg_advisory_lock($1)")
        .bind(TEMPLATE_LOCK)
        .execute(&mut admin)
        .await
        .expect("take the template lock");
    drop_stale_databases(&mut admin).await;

    let exists: bool =
        sqlx::query_scalar("select exists (select from pg_database where datname = $1)")
            .bind(&template)
            .fetch_one(&mut admin)
            .await
            .expect("look for the template");
    if !exists {
        let building = format!("{template}_building");
        let create = match supabase_source() {
            Some(source) => format!(
                "create database {building} template {} owner postgres strategy file_copy",
                source.rsplit('/').next().unwrap_or("supa")
            ),
            None => format!("create database {building}"),
        };
        // One statement per query: several in one string run as one transaction, which
        // CREATE and DROP DATABASE refuse.
        for statement in [
            format!("drop database if exists {building} with (force)"),
            create,
        ] {
            sqlx::raw_sql(&statement)
                .execute(&mut admin)
                .await
                .expect("create the template database");
        }
        let pool = pesachama_store::connect(&url_for(&building), 2)
            .await
            .expect("connect to the template");
        pesachama_store::migrations::migrate(&pool)
            .await
            .unwrap_or_else(|err| panic!("migrating the template failed: {err}"));
        pool.close().await;
        // Renaming needs the database to itself: the closed pool's server processes may still
        // be on their way out, and autovacuum likes a freshly migrated database. Ask them to
        // leave, and try again until the rename goes through.
        for attempt in 0.. {
            let _ = sqlx::query(
                "select pg_terminate_backend(pid) from pg_stat_activity
                  where datname = $1 and pid <> pg_backend_pid()",
            )
            .bind(&building)
            .execute(&mut admin)
            .await;
            match sqlx::raw_sql(&format!("alter database {building} rename to {template}"))
                .execute(&mut admin)
                .await
            {
                Ok(_) => break,
                Err(err)
                    if attempt < 200
                        && err
                            .as_database_error()
                            .and_then(|db| db.code())
                            .is_some_and(|code| code == "55006") =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(err) => panic!("publish the template: {err}"),
            }
        }
        for statement in [format!("alter database {template} is_template true")] {
            sqlx::raw_sql(&statement)
                .execute(&mut admin)
                .await
                .expect("publish the template");
        }
    }
    let _ = sqlx::query("select pg_advisory_unlock($1)")
        .bind(TEMPLATE_LOCK)
        .execute(&mut admin)
        .await;
    let _ = admin.close().await;
    template
}

async fn drop_stale_databases(admin: &mut PgConnection) {
    let names: Vec<String> =
        sqlx::query_scalar("select datname from pg_database where datname like 'test\\_%'")
            .fetch_all(&mut *admin)
            .await
            .unwrap_or_default();
    let cutoff = now_seconds().saturating_sub(STALE_AFTER_SECONDS);
    for name in names {
        let created = name.split('_').nth(1).and_then(|ts| ts.parse::<u64>().ok());
        if created.is_some_and(|created| created < cutoff) {
            let _ = sqlx::raw_sql(&format!("drop database if exists {name} with (force)"))
                .execute(&mut *admin)
                .await;
        }
    }
}
