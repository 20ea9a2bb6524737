//! Arguments and configuration. Every setting can come from a flag or from the environment
//! variable named beside it (the founding plan's names where it has them); a flag wins.

use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "pesachama",
    version,
    about = "PesaChama: the backend of a chama (savings group) platform on Supabase/PostgreSQL.",
    long_about = "PesaChama: the backend of a chama (savings group) platform on Supabase/PostgreSQL.\n\n\
        With no DATABASE_URL, every command uses an embedded PostgreSQL cluster that pesachama creates \
        and starts itself from the PostgreSQL binaries on this machine, in the data folder (--data-dir, \
        default .pesachama). With DATABASE_URL, it uses that database (a Supabase project or any \
        PostgreSQL 15+)."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// PostgreSQL URL of the database to use; without it, the embedded cluster is used.
    #[arg(long, env = "DATABASE_URL", global = true, value_parser = parse_database_url, hide_env_values = true)]
    pub database_url: Option<String>,

    /// Folder of the embedded cluster and local secrets (used when DATABASE_URL is not set).
    #[arg(
        long,
        env = "PESACHAMA_DATA_DIR",
        global = true,
        default_value = ".pesachama"
    )]
    pub data_dir: PathBuf,

    /// Log filter: error, warn, info, debug, trace, or directives such as `pesachama=debug,sqlx=warn`.
    /// Defaults to `info` for `serve` and `warn` for the other commands.
    #[arg(long, env = "LOG_LEVEL", global = true)]
    pub log_level: Option<String>,

    /// Log line format on standard error.
    #[arg(long, env = "LOG_FORMAT", global = true, value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// The Supabase project URL (https://<ref>.supabase.co), when Supabase is the production home.
    #[arg(long, env = "SUPABASE_URL", global = true, value_parser = parse_http_url)]
    pub supabase_url: Option<String>,

    /// The project's JWT secret (HS256). The embedded default makes one and keeps it in the data folder.
    #[arg(
        long,
        env = "SUPABASE_JWT_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object a line, with the request id of the request being served.
    Json,
    /// Human-readable lines.
    Pretty,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (migrating the database first).
    Serve(Box<ServeArgs>),
    /// Database tools: apply migrations, list them, print the connection URL.
    #[command(subcommand_required = true)]
    Db(DbArgs),
    /// Run the data-integrity checks; exits 1 when any is violated.
    Check(CheckArgs),
    /// Print the anon and service-role API keys for the configured JWT secret.
    Keys(KeysArgs),
    /// Deliver the outbox (push, SMS, email; M-Pesa pushes and payouts when MPESA_* is set) and
    /// run the sweeper, without serving HTTP; any number of workers can share a database (no
    /// message is delivered twice).
    Worker(Box<WorkerArgs>),
    /// Platform administrators: grant or revoke the role (kept in the user's app_metadata).
    #[command(subcommand_required = true)]
    Admin(AdminArgs),
    /// The migration toolkit: legacy PesaChama v1 to this schema (plan, copy, verify, status).
    #[command(subcommand_required = true)]
    Migrate(crate::commands::migrate::MigrateArgs),
    /// M-Pesa tools: reconcile with Daraja.
    #[command(subcommand_required = true)]
    Mpesa(crate::commands::mpesa_commands::MpesaCommandArgs),
    /// Simulators of the outside world, for walking the system without a phone.
    #[command(subcommand_required = true)]
    Simulate(SimulateArgs),
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    #[command(subcommand)]
    pub command: SimulateCommand,
}

#[derive(Debug, Subcommand)]
pub enum SimulateCommand {
    /// An interactive USSD session, as Africa's Talking would run it: each line you type is one
    /// input, sent with the session's whole `*`-joined text to POST /ussd/<token>.
    Ussd(UssdSimArgs),
    /// Serve a local Daraja (OAuth, STK push and query, C2B, B2C, transaction status) that
    /// delivers callbacks in Daraja's shapes; amounts choose what happens (docs/mpesa.md).
    Daraja(crate::commands::mpesa_commands::DarajaArgs),
}

#[derive(Debug, Args)]
pub struct UssdSimArgs {
    /// The phone dialling (any Kenyan spelling: 07..., +2547...).
    #[arg(long)]
    pub phone: String,
    /// A running server (http://127.0.0.1:3000); without it, the app runs in this process on
    /// the configured database (embedded by default).
    #[arg(long, value_parser = parse_http_url)]
    pub url: Option<String>,
    /// With --url: the server's USSD_CALLBACK_TOKEN (without it, the open `POST /ussd` of a
    /// `serve --demo`).
    #[arg(long, env = "USSD_CALLBACK_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The service code dialled.
    #[arg(long, default_value = "*384*21#")]
    pub service_code: String,
    /// In-process only: load the demo data first (idempotent).
    #[arg(long)]
    pub demo: bool,
}

#[derive(Debug, Args)]
pub struct AdminArgs {
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Make a user a platform administrator (by email, phone or id).
    Grant { user: String },
    /// Take the role away.
    Revoke { user: String },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Port to listen on.
    #[arg(long, short, env = "API_PORT", default_value_t = 3000)]
    pub port: u16,

    /// Address to listen on (0.0.0.0 to accept connections from other machines).
    #[arg(long, env = "API_HOST", default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,

    /// Load the demo data (a few chamas with members and contributions); safe to repeat.
    /// Demo mode also runs the M-Pesa simulator (without Daraja settings) and serves an open
    /// `POST /ussd`: never on a server the internet reaches.
    #[arg(long)]
    pub demo: bool,

    /// Run an in-process Daraja simulator that pays every prompt, with random credentials
    /// made at each start (only without Daraja credentials; `--demo` implies it).
    #[arg(long, env = "MPESA_SIMULATOR")]
    pub mpesa_simulator: bool,

    /// Largest database pool.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 20)]
    pub pool_size: u32,

    /// Connections that record manual contributions in batches (the requests that arrive
    /// together share one transaction); 0 records each request in a transaction of its own.
    /// They come out of the pool.
    #[arg(long, env = "CONTRIBUTION_WRITERS", default_value_t = 2)]
    pub contribution_writers: usize,

    /// JWKS URL whose public keys also verify access tokens (a Supabase project's
    /// `https://<ref>.supabase.co/auth/v1/.well-known/jwks.json`); fetched at start.
    #[arg(long, env = "SUPABASE_JWKS_URL", value_parser = parse_http_url)]
    pub jwks_url: Option<String>,

    /// OAuth client ids whose Google ID tokens sign users in (comma-separated); without
    /// them Google sign-in is off.
    #[arg(
        long = "google-client-id",
        env = "GOOGLE_CLIENT_IDS",
        value_delimiter = ','
    )]
    pub google_client_ids: Vec<String>,

    /// Where Google's signing keys are published.
    #[arg(long, env = "GOOGLE_JWKS_URL", default_value = "https://www.googleapis.com/oauth2/v3/certs", value_parser = parse_http_url)]
    pub google_jwks_url: String,

    /// Client secret of the Google web client (the first GOOGLE_CLIENT_IDS entry): turns on the
    /// browser OAuth flow (`/auth/v1/authorize?provider=google`). Never logged.
    #[arg(long, env = "GOOGLE_CLIENT_SECRET", hide_env_values = true)]
    pub google_client_secret: Option<String>,

    /// Google's authorization endpoint, where browsers are sent to sign in.
    #[arg(long, env = "GOOGLE_AUTHORIZATION_URL", default_value = "https://accounts.google.com/o/oauth2/v2/auth", value_parser = parse_http_url)]
    pub google_authorization_url: String,

    /// Google's token endpoint, where the callback trades the code.
    #[arg(long, env = "GOOGLE_TOKEN_URL", default_value = "https://oauth2.googleapis.com/token", value_parser = parse_http_url)]
    pub google_token_url: String,

    /// The redirect URI registered with the Google client; `<SUPABASE_URL or this server>/auth/v1/callback`
    /// unless set (it must reach this server's `/auth/v1/callback`).
    #[arg(long, env = "GOOGLE_REDIRECT_URI", value_parser = parse_http_url)]
    pub google_redirect_uri: Option<String>,

    /// The app's address (GoTrue's SITE_URL): where sign-in redirects land when `redirect_to`
    /// is missing or not allowed; any path on it is allowed. Defaults to this server's URL.
    #[arg(long, env = "SITE_URL", value_parser = parse_http_url)]
    pub site_url: Option<String>,

    /// Further addresses `redirect_to` may name (GoTrue's URI_ALLOW_LIST, comma-separated globs:
    /// `*` within a host label or path segment, `**` across them).
    #[arg(long = "uri-allow-list", env = "URI_ALLOW_LIST", value_delimiter = ',')]
    pub uri_allow_list: Vec<String>,

    /// Header in which a trusted reverse proxy passes the client address (e.g.
    /// X-Forwarded-For); without it the peer address is the client (rate limits use it).
    #[arg(long, env = "TRUSTED_PROXY_HEADER")]
    pub trusted_proxy_header: Option<String>,

    /// Agora app id for video meetings (32 hexadecimal characters); with the certificate,
    /// `POST /meetings/{id}/token` hands out RTC tokens.
    #[arg(long, env = "AGORA_APP_ID", value_parser = parse_hex32, requires = "agora_app_certificate")]
    pub agora_app_id: Option<String>,

    /// Agora app certificate (32 hexadecimal characters).
    #[arg(long, env = "AGORA_APP_CERTIFICATE", value_parser = parse_hex32, hide_env_values = true, requires = "agora_app_id")]
    pub agora_app_certificate: Option<String>,

    /// The project's anon key, when it is an opaque `sb_publishable_...` key (JWT keys signed
    /// with the secret are accepted without being listed).
    #[arg(long, env = "SUPABASE_ANON_KEY", hide_env_values = true)]
    pub anon_key: Option<String>,

    /// The project's service key, when it is an opaque `sb_secret_...` key.
    #[arg(long, env = "SUPABASE_SERVICE_KEY", hide_env_values = true)]
    pub service_key: Option<String>,

    /// With --demo, require sign-ups to confirm their email or phone with a code before they
    /// can sign in (always required without --demo).
    #[arg(long, env = "AUTH_REQUIRE_CONFIRMATION")]
    pub require_confirmation: bool,

    /// Bearer token that `/metrics` requires (Prometheus: `authorization: {credentials: ...}`).
    /// Without it `/metrics` is served only with --demo.
    #[arg(long, env = "METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,

    /// Refuse new sign-ups (existing users still sign in).
    #[arg(long, env = "AUTH_DISABLE_SIGNUP")]
    pub disable_signup: bool,

    /// A password change from a session older than 24 hours needs the nonce sent by
    /// `GET /auth/v1/reauthenticate` (Supabase Auth's "Secure password change"; set it as the
    /// project sets it).
    #[arg(long, env = "AUTH_UPDATE_PASSWORD_REQUIRE_REAUTHENTICATION")]
    pub update_password_require_reauthentication: bool,

    /// Secret path segment of the USSD callback (32+ letters, digits, '-' or '_'): Africa's
    /// Talking is given `https://<host>/ussd/<token>`. Needs USSD_ALLOWED_IPS outside --demo.
    #[arg(long, env = "USSD_CALLBACK_TOKEN", hide_env_values = true)]
    pub ussd_callback_token: Option<String>,

    /// Africa's Talking gateway addresses the USSD callback is accepted from (comma-separated
    /// CIDRs), read through TRUSTED_PROXY_HEADER when set. Needs USSD_CALLBACK_TOKEN.
    #[arg(
        long = "ussd-allowed-ip",
        env = "USSD_ALLOWED_IPS",
        value_delimiter = ','
    )]
    pub ussd_allowed_ips: Vec<String>,

    /// Do not run the outbox worker and the sweeper in this process (run `pesachama worker`
    /// processes instead).
    #[arg(long, env = "PESACHAMA_NO_WORKER")]
    pub no_worker: bool,

    #[command(flatten)]
    pub delivery: DeliveryArgs,

    #[command(flatten)]
    pub storage: crate::storage_config::StorageArgs,

    #[command(flatten)]
    pub mpesa: crate::commands::mpesa::MpesaArgs,
}

/// The channels the outbox worker delivers through (`serve` and `worker`).
#[derive(Debug, Args)]
pub struct DeliveryArgs {
    /// Deliver messages with no provider configured (codes, invitations, notifications) to this JSON-lines file and
    /// the log instead of sending them. Default with the embedded database:
    /// `<data dir>/mailbox.jsonl`; with DATABASE_URL none (messages wait in the outbox for a
    /// real sender).
    #[arg(long, env = "PESACHAMA_MAILBOX")]
    pub mailbox: Option<std::path::PathBuf>,

    /// Africa's Talking username ("sandbox" for the sandbox); with AT_API_KEY, SMS are sent.
    #[arg(long, env = "AT_USERNAME", requires = "at_api_key")]
    pub at_username: Option<String>,

    /// Africa's Talking API key.
    #[arg(
        long,
        env = "AT_API_KEY",
        hide_env_values = true,
        requires = "at_username"
    )]
    pub at_api_key: Option<String>,

    /// Registered sender id or short code for SMS.
    #[arg(long, env = "AT_SENDER_ID")]
    pub at_sender_id: Option<String>,

    /// Africa's Talking API base URL (default: production, or the sandbox for username
    /// "sandbox"); a local fake in tests.
    #[arg(long, env = "AT_BASE_URL", value_parser = parse_http_url)]
    pub at_base_url: Option<String>,

    /// A Google service-account key file (JSON, from the Firebase console) of the project whose
    /// app receives push notifications; without it pushes go to the local mailbox (embedded) or
    /// wait in the outbox.
    #[arg(long, env = "FCM_SERVICE_ACCOUNT")]
    pub fcm_service_account: Option<std::path::PathBuf>,

    /// FCM's API base URL (a local fake in tests).
    #[arg(long, env = "FCM_BASE_URL", default_value = "https://fcm.googleapis.com", value_parser = parse_http_url)]
    pub fcm_base_url: String,

    /// SMTP server for email: `smtps://user:pass@host:465`, `smtp://user:pass@host:587?tls=required`
    /// or `smtp://host:25` (plain, a local relay); with SMTP_FROM, emails are sent.
    #[arg(long, env = "SMTP_URL", hide_env_values = true, requires = "smtp_from")]
    pub smtp_url: Option<String>,

    /// The sender of emails, e.g. `PesaChama <no-reply@example.com>`.
    #[arg(long, env = "SMTP_FROM", requires = "smtp_url")]
    pub smtp_from: Option<String>,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub delivery: DeliveryArgs,

    #[command(flatten)]
    pub mpesa: crate::commands::mpesa::MpesaArgs,
}

#[derive(Debug, Args)]
pub struct DbArgs {
    #[command(subcommand)]
    pub command: DbCommand,
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Apply every migration not applied yet (a no-op when the schema is current).
    Migrate,
    /// List the migrations: applied (with when), pending, or present only in the database.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print the connection URL of the database in use. For the embedded default, that of the
    /// cluster of the data folder, which must be running (for example under `pesachama serve`).
    Url,
    /// Stop the embedded cluster of the data folder, whoever started it (for example one left
    /// running by a `serve` that was killed).
    Stop,
    /// Write the whole database to FILE in PostgreSQL's own dump format (`pg_dump -Fc`, the
    /// cluster's tools): schema, data, grants. For the embedded default; on a Supabase project
    /// its own backups and point-in-time recovery do this (docs/operations.md).
    Backup {
        /// The file to write (refused if it exists).
        file: std::path::PathBuf,
    },
    /// Load a backup made by `db backup` into the database (for the embedded default, an empty
    /// data folder gets its cluster first). A database that already holds PesaChama's schema is
    /// refused unless `--force`, which replaces what it holds with the backup.
    Restore {
        /// The backup to load.
        file: std::path::PathBuf,
        /// Replace a database that already holds data.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

fn parse_database_url(value: &str) -> Result<String, String> {
    if !(value.starts_with("postgres://") || value.starts_with("postgresql://")) {
        return Err("must start with postgres:// or postgresql://".to_owned());
    }
    sqlx::postgres::PgConnectOptions::from_str(value)
        .map(|_| value.to_owned())
        .map_err(|err| {
            format!("not a PostgreSQL URL (postgres://user:password@host:port/database): {err}")
        })
}

fn parse_hex32(value: &str) -> Result<String, String> {
    if value.len() == 32 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(value.to_owned())
    } else {
        Err(
            "must be 32 hexadecimal characters (Agora console > project > app id / certificate)"
                .to_owned(),
        )
    }
}

fn parse_http_url(value: &str) -> Result<String, String> {
    let url = url::Url::parse(value).map_err(|err| format!("not a URL: {err}"))?;
    match (url.scheme(), url.host_str()) {
        ("http" | "https", Some(_)) => Ok(value.trim_end_matches('/').to_owned()),
        _ => Err("must be an http:// or https:// URL with a host".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_are_checked_when_read() {
        assert!(parse_database_url("postgres://u:p@localhost:5432/db").is_ok());
        assert!(parse_database_url("postgresql://localhost/db?sslmode=require").is_ok());
        assert!(parse_database_url("mysql://localhost/db").is_err());
        assert!(parse_database_url("not a url").is_err());
    }

    #[test]
    fn supabase_urls_must_be_http_with_a_host() {
        assert_eq!(
            parse_http_url("https://abc.supabase.co/").unwrap(),
            "https://abc.supabase.co"
        );
        assert!(parse_http_url("abc.supabase.co").is_err());
        assert!(parse_http_url("ftp://abc").is_err());
        assert!(parse_http_url("https://").is_err());
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
