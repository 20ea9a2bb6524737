//! `pesachama mpesa register-c2b` against a Daraja simulator over HTTP: it registers this
//! server's C2B URLs (token and all), asks first, and says what is missing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{pesachama, stderr};
use pesachama_mpesa::simulator::{Simulator, SimulatorConfig};

const TOKEN: &str = "c2b-registration-token-0123456789abcdef";

async fn run(
    config: &SimulatorConfig,
    base_url: String,
    extra: &'static [&'static str],
) -> std::process::Output {
    let (key, secret, shortcode, passkey) = (
        config.consumer_key.clone(),
        config.consumer_secret.clone(),
        config.shortcode.clone(),
        config.passkey.clone(),
    );
    tokio::task::spawn_blocking(move || {
        pesachama()
            .args(["mpesa", "register-c2b"])
            .args(extra)
            .env("MPESA_BASE_URL", base_url)
            .env("MPESA_CONSUMER_KEY", key)
            .env("MPESA_CONSUMER_SECRET", secret)
            .env("MPESA_SHORTCODE", shortcode)
            .env("MPESA_PASSKEY", passkey)
            .env("MPESA_CALLBACK_URL", "https://pesachama.example.co.ke/")
            .env("MPESA_CALLBACK_TOKEN", TOKEN)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn register_c2b_tells_daraja_the_servers_urls_after_asking() {
    // Every simulator has credentials of its own: the server is given this one's.
    let config = SimulatorConfig::default();
    let simulator = Simulator::new(config.clone())
        .unwrap()
        .start()
        .await
        .unwrap();

    // No terminal and no --yes: refused, nothing registered.
    let refused = run(&config, simulator.base_url(), &[]).await;
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("pass --yes"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(simulator.simulator.c2b_urls(), None);

    let done = run(&config, simulator.base_url(), &["--yes"]).await;
    assert!(done.status.success(), "{}", stderr(&done));
    let said = stderr(&done);
    assert!(said.contains("<MPESA_CALLBACK_TOKEN>"), "{said}");
    assert!(!said.contains(TOKEN), "the token is never printed: {said}");
    assert_eq!(
        simulator.simulator.c2b_urls(),
        Some((
            format!("https://pesachama.example.co.ke/mpesa/callbacks/{TOKEN}/c2b/validation"),
            format!("https://pesachama.example.co.ke/mpesa/callbacks/{TOKEN}/c2b/confirmation"),
        ))
    );

    // A wrong shortcode is Daraja's to refuse, and the command says so.
    let other_shortcode = SimulatorConfig {
        shortcode: "999999".into(),
        ..config.clone()
    };
    let wrong = run(&other_shortcode, simulator.base_url(), &["--yes"]).await;
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains("refused the C2B registration"),
        "{}",
        stderr(&wrong)
    );
}

#[tokio::test]
async fn register_c2b_without_daraja_settings_says_what_is_missing() {
    let output = tokio::task::spawn_blocking(|| {
        pesachama()
            .args(["mpesa", "register-c2b", "--yes"])
            .env_remove("MPESA_CONSUMER_KEY")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("MPESA_CONSUMER_KEY"),
        "{}",
        stderr(&output)
    );
}
