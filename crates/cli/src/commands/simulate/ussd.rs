//! `pesachama simulate ussd`: a USSD session in the terminal, sent to `POST /ussd/<token>` exactly as
//! Africa's Talking sends it (form fields, the whole `*`-joined text each hop), against a
//! running server or an app started in this process on a port of its own.

#![allow(clippy::print_stdout)]

use std::io::{BufRead, Write};
use std::process::ExitCode;

use anyhow::Context as _;
use pesachama_api::{AppState, ServerConfig};

use crate::cli::{Global, UssdSimArgs};
use crate::database::Database;

pub async fn run(global: &Global, args: &UssdSimArgs) -> anyhow::Result<ExitCode> {
    let phone = phone_arg(&args.phone)?;
    if let Some(url) = &args.url {
        let callback = Callback::of(url.trim_end_matches('/'), args.token.as_deref());
        return session(&callback, &phone, &args.service_code).await;
    }
    // In-process: the real app on the configured database, on a loopback port of its own.
    let database = Database::open(global).await?;
    let result = async {
        let pool = pesachama_store::connect(&database.url, 4)
            .await
            .with_context(|| format!("cannot connect to {}", database.describe()))?;
        pesachama_store::migrations::migrate(&pool).await?;
        if args.demo {
            pesachama_store::seed_demo(&pool)
                .await
                .context("loading the demo data")?;
        }
        // Closed as in production: a token made for this run, and loopback only.
        let token = hex::encode(rand::random::<[u8; 24]>());
        let mut config = ServerConfig::with_secret(crate::commands::keys::jwt_secret(global)?);
        config.ussd = Some(pesachama_api::routes::ussd::UssdGate {
            callback_token: Some(token.clone()),
            allowed_sources: pesachama_api::gate::AllowList::parse(
                "USSD_ALLOWED_IPS",
                &["127.0.0.1/32"],
            )
            .map_err(anyhow::Error::msg)?,
            open: false,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(pesachama_api::serve(
            listener,
            pesachama_api::app(AppState::new(pool, config)),
            async {
                let _ = stopped.await;
            },
        ));
        let code = session(
            &Callback::of(&url, Some(&token)),
            &phone,
            &args.service_code,
        )
        .await;
        let _ = stop.send(());
        let _ = server.await;
        code
    }
    .await;
    database.close().await;
    result
}

/// The number in E.164, or a usage error naming it.
fn phone_arg(input: &str) -> anyhow::Result<String> {
    // The server answers any number (a foreign one gets its END screen); only nonsense stops here.
    if input.trim().is_empty() {
        anyhow::bail!("--phone: a phone number is required (e.g. +254712345001)");
    }
    Ok(input.trim().to_owned())
}

/// The USSD callback URL, and how to name it in messages (without the token).
struct Callback {
    url: String,
    shown: String,
}

impl Callback {
    fn of(base: &str, token: Option<&str>) -> Self {
        match token {
            Some(token) => Self {
                url: format!("{base}/ussd/{token}"),
                shown: format!("{base}/ussd/***"),
            },
            None => Self {
                url: format!("{base}/ussd"),
                shown: format!("{base}/ussd"),
            },
        }
    }
}

/// Dials, then sends each line typed as the next input until the server answers END (or the
/// input ends). Lines are read from standard input, screens written to standard output.
async fn session(callback: &Callback, phone: &str, service_code: &str) -> anyhow::Result<ExitCode> {
    let shown = &callback.shown;
    let client = reqwest::Client::new();
    let session_id = format!("SIM_{}", uuid::Uuid::new_v4().simple());
    let mut text = String::new();
    let mut first = true;
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        let answer = client
            .post(&callback.url)
            .form(&[
                ("sessionId", session_id.as_str()),
                ("serviceCode", service_code),
                ("phoneNumber", phone),
                ("networkCode", "63902"),
                ("text", text.as_str()),
            ])
            .send()
            .await
            .with_context(|| format!("cannot reach {shown}"))?;
        let status = answer.status();
        let body = answer.text().await.context("reading the answer")?;
        if !status.is_success() {
            anyhow::bail!("{shown} answered HTTP {status}: {body}");
        }
        let (end, screen) = match body.split_once(' ') {
            Some(("END", screen)) => (true, screen),
            Some(("CON", screen)) => (false, screen),
            _ => anyhow::bail!("{shown} answered neither CON nor END: {body:?}"),
        };
        println!("{screen}");
        if end {
            println!("[session ended]");
            return Ok(ExitCode::SUCCESS);
        }
        print!("> ");
        std::io::stdout().flush()?;
        let Some(line) = lines.next() else {
            println!("\n[input closed; the session times out at the telco]");
            return Ok(ExitCode::SUCCESS);
        };
        let line = line?;
        if !first {
            text.push('*');
        }
        first = false;
        text.push_str(line.trim());
    }
}
