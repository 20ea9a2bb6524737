//! A local Daraja: the endpoints the client calls, answering as Daraja answers (and refusing
//! what Daraja refuses: a wrong password, a stale token, an AccountReference over 12
//! characters, a SecurityCredential not made with its certificate), then delivering the real
//! callback shapes to the URLs it was given after a configurable delay.
//!
//! What happens to a payment is a [`Scenario`], chosen per phone number or amount
//! ([`Simulator::set_phone`], [`Simulator::set_amount`]); some amounts have a scenario built in
//! so it can be driven by hand (see [`Scenarios::builtin`]).

mod daraja;
mod deliver;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use tokio::sync::oneshot;

use crate::credential::local::LocalCertificate;

/// What the simulated M-Pesa does with a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Paid; one callback.
    Success,
    /// Not paid: the callback (or B2C result) carries this ResultCode (1032, 1037, 2001, 1, ...).
    Fail(i64),
    /// Paid, and the same callback is delivered this many times at once.
    Duplicate(usize),
    /// Paid, but the callback never comes (a query still tells the truth).
    Lost,
    /// Paid, with a callback naming one shilling more than was asked.
    WrongAmount,
    /// Paid; the callback is delivered before the push is even answered.
    CallbackFirst,
    /// B2C: a queue timeout callback and no result (a status query delivers the result).
    Timeout,
    /// The request is refused at once with a 400.
    Refuse,
}

/// Scenarios by phone (MSISDN, `2547...`) and by amount (whole shillings).
#[derive(Debug, Clone, Default)]
pub struct Scenarios {
    pub by_phone: HashMap<String, Scenario>,
    pub by_amount: HashMap<i64, Scenario>,
}

impl Scenarios {
    /// Amounts that choose a scenario when nothing else is set: KES 1032, 1037, 2001, 1001 and
    /// 1019 fail with that ResultCode, 1111 fails for insufficient funds (code 1), 4040 is
    /// lost, 2222 is delivered three times, 3333 comes back with another amount, 5050 times
    /// out (B2C). Everything else succeeds.
    pub fn builtin() -> Self {
        let mut by_amount = HashMap::new();
        for code in [1032, 1037, 2001, 1001, 1019] {
            by_amount.insert(code, Scenario::Fail(code));
        }
        by_amount.insert(1111, Scenario::Fail(1));
        by_amount.insert(4040, Scenario::Lost);
        by_amount.insert(2222, Scenario::Duplicate(3));
        by_amount.insert(3333, Scenario::WrongAmount);
        by_amount.insert(5050, Scenario::Timeout);
        Self {
            by_phone: HashMap::new(),
            by_amount,
        }
    }

    fn pick(&self, msisdn: &str, amount: i64) -> Scenario {
        self.by_phone
            .get(msisdn)
            .or_else(|| self.by_amount.get(&amount))
            .copied()
            .unwrap_or(Scenario::Success)
    }
}

#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    pub consumer_key: String,
    pub consumer_secret: String,
    pub shortcode: String,
    pub passkey: String,
    pub initiator_name: String,
    pub initiator_password: String,
    /// How long after a request its callback is delivered.
    pub delay: Duration,
}

/// Fresh credentials every time: a simulator's key, secret, passkey and initiator password are
/// never the same twice, so no process that merely finds its port can get a token and pay
/// itself a paybill credit. Whoever needs them reads them from the config (`client_config`).
impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            consumer_key: random_secret(),
            consumer_secret: random_secret(),
            shortcode: crate::SANDBOX_SHORTCODE.into(),
            passkey: random_secret(),
            initiator_name: "testapi".into(),
            initiator_password: random_secret(),
            delay: Duration::from_millis(200),
        }
    }
}

/// 32 random bytes as hex.
fn random_secret() -> String {
    use rand::Rng as _;
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Counters tests read to check what reached "M-Pesa".
#[derive(Debug, Default)]
pub struct Counters {
    pub tokens_issued: AtomicU64,
    pub stk_pushes: AtomicU64,
    pub stk_queries: AtomicU64,
    pub b2c_payments: AtomicU64,
    pub status_queries: AtomicU64,
    pub callbacks_delivered: AtomicU64,
}

#[derive(Debug, Clone)]
struct StkRecord {
    merchant_request_id: String,
    msisdn: String,
    amount: i64,
    /// Set when M-Pesa has decided: (ResultCode, ResultDesc, receipt).
    outcome: Option<(i64, String, Option<String>)>,
}

#[derive(Debug, Clone)]
struct B2cRecord {
    conversation_id: String,
    originator_conversation_id: String,
    msisdn: String,
    amount: i64,
    outcome: Option<(i64, String, Option<String>)>,
}

#[derive(Debug)]
struct Inner {
    config: SimulatorConfig,
    certificate: LocalCertificate,
    tokens: Mutex<HashSet<String>>,
    scenarios: Mutex<Scenarios>,
    stk: Mutex<HashMap<String, StkRecord>>,
    b2c: Mutex<HashMap<String, B2cRecord>>,
    c2b_urls: Mutex<Option<(String, String)>>,
    counters: Counters,
    /// 5xx answers still to give before behaving (to exercise the client's retries).
    outages: AtomicU64,
    lost_answers: AtomicU64,
    http: reqwest::Client,
}

/// A simulated Daraja; clones share their state.
#[derive(Debug, Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a simulator lock leaves plain data behind; keep going.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Simulator {
    pub fn new(config: SimulatorConfig) -> Result<Self, crate::credential::CredentialError> {
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                certificate: LocalCertificate::generate()?,
                tokens: Mutex::new(HashSet::new()),
                scenarios: Mutex::new(Scenarios::builtin()),
                stk: Mutex::new(HashMap::new()),
                b2c: Mutex::new(HashMap::new()),
                c2b_urls: Mutex::new(None),
                counters: Counters::default(),
                outages: AtomicU64::new(0),
                lost_answers: AtomicU64::new(0),
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap_or_default(),
            }),
        })
    }

    pub fn config(&self) -> &SimulatorConfig {
        &self.inner.config
    }

    /// The certificate whose key B2C credentials must be encrypted with.
    pub fn certificate_pem(&self) -> &str {
        &self.inner.certificate.certificate_pem
    }

    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// The C2B URLs last registered (validation, confirmation).
    pub fn c2b_urls(&self) -> Option<(String, String)> {
        self.inner
            .c2b_urls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn count(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::SeqCst)
    }

    /// Payments from or to this MSISDN (`2547...`) get `scenario`.
    pub fn set_phone(&self, msisdn: &str, scenario: Scenario) {
        lock(&self.inner.scenarios)
            .by_phone
            .insert(msisdn.to_owned(), scenario);
    }

    /// Payments of this many shillings get `scenario`.
    pub fn set_amount(&self, shillings: i64, scenario: Scenario) {
        lock(&self.inner.scenarios)
            .by_amount
            .insert(shillings, scenario);
    }

    /// The next `n` API calls answer 503.
    pub fn fail_next(&self, n: u64) {
        self.inner.outages.store(n, Ordering::SeqCst);
    }

    /// The next `n` STK pushes are carried out (the phone is prompted, the callback comes) but
    /// answered with a 500, as when Daraja's answer is lost on the way.
    pub fn lose_next_answers(&self, n: u64) {
        self.inner.lost_answers.store(n, Ordering::SeqCst);
    }

    /// The router serving Daraja's endpoints.
    pub fn router(&self) -> Router {
        daraja::router(self.clone())
    }

    /// Serves on a loopback port of its own until the answer is dropped.
    pub async fn start(self) -> std::io::Result<RunningSimulator> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        self.serve(listener).await
    }

    /// Serves on `listener` until the answer is dropped.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
    ) -> std::io::Result<RunningSimulator> {
        let address = listener.local_addr()?;
        let router = self.router();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(RunningSimulator {
            simulator: self,
            address,
            shutdown: Some(tx),
        })
    }
}

/// A simulator serving on a port; stops when dropped.
#[derive(Debug)]
pub struct RunningSimulator {
    pub simulator: Simulator,
    pub address: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

impl RunningSimulator {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A client configuration that talks to this simulator with the right credentials.
    pub fn client_config(&self) -> crate::DarajaConfig {
        let c = &self.simulator.inner.config;
        let mut config = crate::DarajaConfig::new(
            self.base_url(),
            &c.consumer_key,
            &c.consumer_secret,
            &c.shortcode,
            &c.passkey,
        );
        config.initiator_name = c.initiator_name.clone();
        config.security_credential = crate::credential::security_credential(
            &c.initiator_password,
            self.simulator.certificate_pem(),
        )
        .unwrap_or_default();
        config.backoff = Duration::from_millis(20);
        config.timeout = Duration::from_secs(10);
        config
    }
}

impl Drop for RunningSimulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
