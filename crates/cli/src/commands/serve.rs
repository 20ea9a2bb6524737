//! `pesachama serve`

use std::process::ExitCode;

use anyhow::Context as _;
use pesachama_api::{AppState, ServerConfig};
use tokio::net::TcpListener;

use crate::cli::{Global, ServeArgs};
use crate::database::Database;

pub async fn run(global: &Global, args: &ServeArgs) -> anyhow::Result<ExitCode> {
    // Unsafe settings stop the start before anything is bound, created or started.
    let ussd = super::ussd_access::gate(args)?;
    if args
        .google_client_secret
        .as_deref()
        .is_some_and(|s| !s.trim().is_empty())
        && args.google_client_ids.iter().all(|id| id.trim().is_empty())
    {
        anyhow::bail!(
            "GOOGLE_CLIENT_SECRET without GOOGLE_CLIENT_IDS: set the web client's id (first) too"
        );
    }
    // Bind first: a port in use is reported before anything is started or created.
    let listener = TcpListener::bind((args.host, args.port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}:{} (choose another port with --port or API_PORT)",
                args.host, args.port
            )
        })?;
    let database = Database::open(global).await?;
    let result = serve(global, &database, listener, args, ussd).await;
    database.close().await;
    result.map(|()| ExitCode::SUCCESS)
}

async fn serve(
    global: &Global,
    database: &Database,
    listener: TcpListener,
    args: &ServeArgs,
    ussd: Option<pesachama_api::routes::ussd::UssdGate>,
) -> anyhow::Result<()> {
    let pool = pesachama_store::connect(&database.url, args.pool_size)
        .await
        .with_context(|| format!("cannot connect to {}", database.describe()))?;
    let applied = pesachama_store::migrations::migrate(&pool).await?;
    tracing::info!(applied = applied.len(), database = %database.describe(), "schema is current");
    if args.demo {
        pesachama_store::seed_demo(&pool)
            .await
            .context("loading the demo data")?;
        tracing::info!("demo data loaded");
    }

    let address = listener.local_addr()?;
    let mut config = ServerConfig::with_secret(crate::commands::keys::jwt_secret(global)?);
    config.auth.site_url = global
        .supabase_url
        .clone()
        .unwrap_or_else(|| format!("http://{address}"));
    config.auth.google_client_ids = args
        .google_client_ids
        .iter()
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty())
        .collect();
    config.auth.google_jwks_url = args.google_jwks_url.clone();
    config.auth.google_oauth = pesachama_api::gotrue::GoogleOAuth {
        client_secret: args
            .google_client_secret
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        authorization_url: args.google_authorization_url.clone(),
        token_url: args.google_token_url.clone(),
        redirect_uri: args.google_redirect_uri.clone(),
        ..pesachama_api::gotrue::GoogleOAuth::default()
    };
    config.auth.redirects = pesachama_api::gotrue::RedirectRules {
        site_url: args
            .site_url
            .clone()
            .unwrap_or_else(|| config.auth.site_url.clone()),
        allow_list: args
            .uri_allow_list
            .iter()
            .map(|uri| uri.trim().to_owned())
            .filter(|uri| !uri.is_empty())
            .collect(),
    };
    if config.auth.google_oauth.client_secret.is_some() {
        tracing::info!(
            redirect_uri = %config.auth.google_redirect_uri(),
            "Google sign-in in the browser is on"
        );
    }
    config.contribution_writers = args.contribution_writers;
    super::ussd_access::log(ussd.as_ref());
    config.ussd = ussd;
    config.auth.trusted_proxy_header = args.trusted_proxy_header.clone();
    // Confirmation is off only in the demo, and only unless asked for there too.
    config.auth.autoconfirm = args.demo && !args.require_confirmation;
    config.auth.disable_signup = args.disable_signup;
    config.auth.update_password_require_reauthentication =
        args.update_password_require_reauthentication;
    config.metrics = match args.metrics_token.as_deref().map(str::trim) {
        Some(token) if token.len() >= 16 => pesachama_api::MetricsAccess::Token(token.to_owned()),
        Some(_) => anyhow::bail!("METRICS_TOKEN must be at least 16 characters"),
        None if args.demo => pesachama_api::MetricsAccess::Public,
        None => {
            tracing::info!("/metrics is not served: set METRICS_TOKEN to let Prometheus read it");
            pesachama_api::MetricsAccess::Off
        }
    };
    config.auth.jwks_url = args.jwks_url.clone();
    config.agora = match (&args.agora_app_id, &args.agora_app_certificate) {
        (Some(app_id), Some(app_certificate)) => Some(pesachama_api::AgoraConfig {
            app_id: app_id.clone(),
            app_certificate: app_certificate.clone(),
        }),
        _ => None,
    };
    config.auth.opaque_api_keys = [&args.anon_key, &args.service_key]
        .into_iter()
        .flatten()
        .filter(|key| !key.trim().is_empty())
        .cloned()
        .collect();
    config.storage = Some(args.storage.settings(&global.data_dir)?);
    let jwks = match &args.jwks_url {
        Some(url) => {
            let jwks = pesachama_api::keys::fetch_jwks(url)
                .await
                .map_err(|err| anyhow::anyhow!("SUPABASE_JWKS_URL: {err}"))?;
            tracing::info!(
                url,
                keys = jwks.len(),
                "access tokens signed with these keys are accepted"
            );
            jwks
        }
        None => pesachama_auth::Jwks::default(),
    };
    let mpesa_setup =
        crate::commands::mpesa::configure(&args.mpesa, args.demo || args.mpesa_simulator, address)
            .await?;
    config.mpesa = mpesa_setup.mpesa();
    let config_mpesa = config.mpesa.clone();
    let app = pesachama_api::app(AppState::with_jwks(pool.clone(), config, jwks));

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let tasks = if args.no_worker {
        tracing::info!("the outbox worker and the sweeper run elsewhere (--no-worker)");
        Vec::new()
    } else {
        let worker = super::delivery::worker(global, database, &args.delivery, &pool)?;
        super::delivery::spawn(worker, &pool, &stopped)
    };

    let mpesa_worker = config_mpesa.filter(|_| !args.no_worker).map(|mpesa| {
        let mut stopped = stopped.clone();
        let worker = pesachama_api::mpesa_worker::MpesaWorker::new(pool.clone(), mpesa);
        tokio::spawn(worker.run(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }))
    });

    tracing::info!(%address, "PesaChama is listening on http://{address}");
    pesachama_api::serve(listener, app, shutdown_signal()).await?;
    tracing::info!("shutting down");
    let _ = stop.send(true);
    for task in tasks {
        let _ = task.await;
    }
    if let Some(mpesa_worker) = mpesa_worker {
        let _ = mpesa_worker.await;
    }
    drop(mpesa_setup);
    pool.close().await;
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
