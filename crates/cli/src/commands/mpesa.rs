//! M-Pesa settings of `serve`: Daraja (sandbox or production) when its credentials are set;
//! with `--demo` or `--mpesa-simulator` a Daraja simulator in the same process (fresh random
//! credentials and callback token each start), so a contribution started locally gets its
//! callback like a real one; otherwise nothing: M-Pesa fails closed, its routes answer 503
//! `mpesa_not_configured` and nothing is queued or credited.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use pesachama_api::gate::AllowList;
use pesachama_api::mpesa_worker::Mpesa;
use pesachama_mpesa::simulator::{RunningSimulator, Simulator, SimulatorConfig};
use pesachama_mpesa::{DarajaClient, DarajaConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MpesaEnvironment {
    Sandbox,
    Production,
}

#[derive(Debug, Args)]
pub struct MpesaArgs {
    /// Daraja app consumer key; with the secret, shortcode and passkey, M-Pesa is real.
    /// Without any, M-Pesa is off (503) unless `serve --demo` or `--mpesa-simulator`.
    #[arg(long, env = "MPESA_CONSUMER_KEY", hide_env_values = true)]
    pub mpesa_consumer_key: Option<String>,

    /// Daraja app consumer secret.
    #[arg(long, env = "MPESA_CONSUMER_SECRET", hide_env_values = true)]
    pub mpesa_consumer_secret: Option<String>,

    /// Paybill or till number of STK pushes and C2B, PartyA of B2C (sandbox: 174379).
    #[arg(long, env = "MPESA_SHORTCODE")]
    pub mpesa_shortcode: Option<String>,

    /// Lipa na M-Pesa Online passkey.
    #[arg(long, env = "MPESA_PASSKEY", hide_env_values = true)]
    pub mpesa_passkey: Option<String>,

    /// B2C initiator (API operator) name.
    #[arg(long, env = "MPESA_INITIATOR_NAME")]
    pub mpesa_initiator_name: Option<String>,

    /// B2C initiator password (encrypted with the certificate into the SecurityCredential).
    #[arg(long, env = "MPESA_INITIATOR_PASSWORD", hide_env_values = true)]
    pub mpesa_initiator_password: Option<String>,

    /// Safaricom's public certificate (PEM) for the SecurityCredential.
    #[arg(long, env = "MPESA_CERTIFICATE")]
    pub mpesa_certificate: Option<std::path::PathBuf>,

    /// Which Daraja: sandbox or production.
    #[arg(long, env = "MPESA_ENVIRONMENT", value_enum, default_value_t = MpesaEnvironment::Sandbox)]
    pub mpesa_environment: MpesaEnvironment,

    /// Daraja's base URL, overriding MPESA_ENVIRONMENT (a simulator started with
    /// `pesachama simulate daraja`, say).
    #[arg(long, env = "MPESA_BASE_URL")]
    pub mpesa_base_url: Option<String>,

    /// Public base URL at which Daraja reaches this server (https://api.example.com).
    #[arg(long, env = "MPESA_CALLBACK_URL")]
    pub mpesa_callback_url: Option<String>,

    /// Secret path segment of every callback URL (32+ characters).
    #[arg(long, env = "MPESA_CALLBACK_TOKEN", hide_env_values = true)]
    pub mpesa_callback_token: Option<String>,

    /// Source ranges callbacks are accepted from (comma-separated CIDRs, e.g.
    /// 196.201.212.0/24,196.201.213.0/24); the client address is read through
    /// TRUSTED_PROXY_HEADER when set. Empty: any source.
    #[arg(
        long = "mpesa-allowed-ip",
        env = "MPESA_ALLOWED_IPS",
        value_delimiter = ','
    )]
    pub mpesa_allowed_ips: Vec<String>,
}

fn random_token() -> String {
    use rand::Rng as _;
    let bytes: [u8; 24] = rand::rng().random();
    hex::encode(bytes)
}

/// The address Daraja (here, a local simulator) can reach the server at.
fn local_base(server: SocketAddr) -> String {
    let host = match server.ip() {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(host, server.port()))
}

/// What the M-Pesa settings make of `serve`.
#[derive(Debug)]
pub enum MpesaSetup {
    /// Daraja (Safaricom's, or one named by MPESA_BASE_URL).
    Daraja(Arc<Mpesa>),
    /// The in-process simulator (`--demo`, `--mpesa-simulator`); it runs while this is kept.
    Simulator {
        mpesa: Arc<Mpesa>,
        _running: RunningSimulator,
    },
    /// No Daraja and no simulator: M-Pesa routes answer 503, the M-Pesa worker does not run.
    Off,
}

impl MpesaSetup {
    pub fn mpesa(&self) -> Option<Arc<Mpesa>> {
        match self {
            Self::Daraja(mpesa) | Self::Simulator { mpesa, .. } => Some(Arc::clone(mpesa)),
            Self::Off => None,
        }
    }

    /// Daraja, or an error saying what to set (for the commands that need the real one).
    pub fn daraja(self, missing: &str) -> anyhow::Result<Arc<Mpesa>> {
        match self {
            Self::Daraja(mpesa) => Ok(mpesa),
            _ => bail!("{missing}"),
        }
    }
}

/// Reads the M-Pesa settings. `simulator` (from `--demo` or `--mpesa-simulator`) starts the
/// in-process Daraja simulator when no Daraja credential is given; without either, M-Pesa is
/// [`MpesaSetup::Off`].
pub async fn configure(
    args: &MpesaArgs,
    simulator: bool,
    server: SocketAddr,
) -> anyhow::Result<MpesaSetup> {
    let credentials = [
        ("MPESA_CONSUMER_KEY", &args.mpesa_consumer_key),
        ("MPESA_CONSUMER_SECRET", &args.mpesa_consumer_secret),
        ("MPESA_SHORTCODE", &args.mpesa_shortcode),
        ("MPESA_PASSKEY", &args.mpesa_passkey),
    ];
    let given: Vec<&str> = credentials
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(n, _)| *n)
        .collect();
    let allowed = AllowList::parse("MPESA_ALLOWED_IPS", &args.mpesa_allowed_ips)
        .map_err(anyhow::Error::msg)?;

    if given.is_empty() {
        if !simulator {
            tracing::warn!(
                "M-Pesa is not configured (no MPESA_CONSUMER_KEY, MPESA_CONSUMER_SECRET, MPESA_SHORTCODE, MPESA_PASSKEY): M-Pesa routes answer 503 and no M-Pesa job runs; --mpesa-simulator (or --demo) runs a local simulator instead"
            );
            return Ok(MpesaSetup::Off);
        }
        // Fresh credentials each start (SimulatorConfig::default), so only this process can
        // get a token from its simulator, and a callback token nobody else knows.
        let simulator = Simulator::new(SimulatorConfig {
            delay: Duration::from_secs(2),
            ..SimulatorConfig::default()
        })
        .map_err(|err| anyhow::anyhow!("the Daraja simulator cannot start: {err}"))?
        .start()
        .await
        .context("the Daraja simulator cannot listen")?;
        let client = DarajaClient::new(simulator.client_config())?;
        let base = args
            .mpesa_callback_url
            .clone()
            .unwrap_or_else(|| local_base(server));
        let token = args
            .mpesa_callback_token
            .clone()
            .unwrap_or_else(random_token);
        let mut mpesa = Mpesa::new(client, &base, &token);
        mpesa.allowed_sources = allowed;
        // Paybill payments made on the simulator come here.
        mpesa
            .client
            .register_c2b_urls(
                &mpesa.callback_url("c2b/validation"),
                &mpesa.callback_url("c2b/confirmation"),
            )
            .await
            .context("registering the C2B URLs with the simulator")?;
        tracing::warn!(simulator = %simulator.base_url(), "M-Pesa: an in-process Daraja simulator pays every prompt (--demo or --mpesa-simulator; KES 1032, 1037, 2001 fail; see docs/mpesa.md)");
        return Ok(MpesaSetup::Simulator {
            mpesa: Arc::new(mpesa),
            _running: simulator,
        });
    }
    if simulator {
        bail!(
            "--mpesa-simulator (MPESA_SIMULATOR) and Daraja credentials ({}) together: choose one",
            given.join(", ")
        );
    }
    if given.len() < credentials.len() {
        let missing: Vec<&str> = credentials
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(n, _)| *n)
            .collect();
        bail!(
            "M-Pesa needs {} as well (given: {})",
            missing.join(", "),
            given.join(", ")
        );
    }
    let Some(callback_base) = &args.mpesa_callback_url else {
        bail!(
            "MPESA_CALLBACK_URL is required with Daraja credentials: the public URL Daraja posts results to"
        );
    };
    let token = args.mpesa_callback_token.clone().unwrap_or_default();
    pesachama_api::gate::check_token_setting("MPESA_CALLBACK_TOKEN", &token)
        .map_err(anyhow::Error::msg)?;
    let base_url = args.mpesa_base_url.clone().unwrap_or_else(|| {
        match args.mpesa_environment {
            MpesaEnvironment::Sandbox => pesachama_mpesa::SANDBOX_URL,
            MpesaEnvironment::Production => pesachama_mpesa::PRODUCTION_URL,
        }
        .to_owned()
    });
    let field = |v: &Option<String>| v.clone().unwrap_or_default();
    let mut config = DarajaConfig::new(
        &base_url,
        field(&args.mpesa_consumer_key),
        field(&args.mpesa_consumer_secret),
        field(&args.mpesa_shortcode),
        field(&args.mpesa_passkey),
    );
    match (
        &args.mpesa_initiator_name,
        &args.mpesa_initiator_password,
        &args.mpesa_certificate,
    ) {
        (Some(name), Some(password), Some(path)) => {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("MPESA_CERTIFICATE: cannot read {}", path.display()))?;
            config.initiator_name = name.clone();
            config.security_credential =
                pesachama_mpesa::credential::security_credential(password, &pem)
                    .map_err(|err| anyhow::anyhow!("MPESA_CERTIFICATE: {err}"))?;
        }
        (None, None, None) => {
            tracing::info!(
                "M-Pesa: no MPESA_INITIATOR_NAME, MPESA_INITIATOR_PASSWORD and MPESA_CERTIFICATE, so payouts by B2C are off"
            );
        }
        _ => bail!(
            "B2C needs MPESA_INITIATOR_NAME, MPESA_INITIATOR_PASSWORD and MPESA_CERTIFICATE together"
        ),
    }
    let client = DarajaClient::new(config)?;
    let mut mpesa = Mpesa::new(client, callback_base, &token);
    mpesa.allowed_sources = allowed;
    tracing::info!(base_url, "M-Pesa through Daraja");
    Ok(MpesaSetup::Daraja(Arc::new(mpesa)))
}
