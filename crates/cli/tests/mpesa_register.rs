//! `pesachama mpesa register-c2b` against a Daraja simulator over HTTP: it registers this
//! server's C2B URLs (token and all), asks first, and says what is missing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{pesachama, stderr};
use pesachama_mpesa::simulator::{Simulator, SimulatorConfig};

const TOKEN: &str = "c2b-registration-token-0123456789abcdef";

async fn run(
    base_url: String,
    shortcode: String,
    extra: &'static [&'static str],
) -> std::process::Output {
    let config = SimulatorConfig::default();
    let (key, secret, passkey) = (config.consumer_key, config.consumer_secret, config.passkey);
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
    let simulator = Simulator::new(SimulatorConfig::default())
        .unwrap()
        .start()
        .await
        .unwrap();
    let shortcode = SimulatorConfig::default().shortcode;

    // No terminal and no --yes: refused, nothing registered.
    let refused = run(simulator.base_url(), shortcode.clone(), &[]).await;
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("pass --yes"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(simulator.simulator.c2b_urls(), None);

    let done = run(simulator.base_url(), shortcode, &["--yes"]).await;
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
    let wrong = run(simulator.base_url(), "999999".into(), &["--yes"]).await;
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
