use std::net::SocketAddr;

use pesachama_api::{AppState, ServerConfig};
use tokio::sync::oneshot;

use crate::TestDb;

/// The whole HTTP app on a fresh database, listening on a port of its own.
#[derive(Debug)]
pub struct TestApp {
    pub db: TestDb,
    pub address: SocketAddr,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(TestDb::new().await, ServerConfig::default()).await
    }

    pub async fn spawn_with(db: TestDb, config: ServerConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a port");
        let address = listener.local_addr().expect("local address");
        let app = pesachama_api::app(AppState::new(db.pool.clone(), config));
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(pesachama_api::serve(listener, app, async {
            let _ = rx.await;
        }));
        Self {
            db,
            address,
            client: reqwest::Client::new(),
            shutdown: Some(tx),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("send the request")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
