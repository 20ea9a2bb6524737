//! Local stand-ins for external HTTP services, speaking their wire format on a loopback port.

use std::net::SocketAddr;

use axum::Router;
use tokio::sync::oneshot;

/// A fake service: the router given, served until this value is dropped.
#[derive(Debug)]
pub struct FakeService {
    pub address: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

impl FakeService {
    pub async fn start(router: Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a port for a fake service");
        let address = listener.local_addr().expect("local address");
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Self {
            address,
            shutdown: Some(tx),
        }
    }

    /// Serves one JSON document at `path` (a JWKS, for instance).
    pub async fn json(path: &str, body: serde_json::Value) -> Self {
        let router = Router::new().route(
            path,
            axum::routing::get(move || {
                let body = body.clone();
                async move { axum::Json(body) }
            }),
        );
        Self::start(router).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }
}

impl Drop for FakeService {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
