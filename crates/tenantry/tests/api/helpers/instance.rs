//! A second application on the same database.

use std::net::SocketAddr;

use tenantry::config::Config;
use tenantry::startup::Application;

/// A second instance of the same deployment (same database and Redis).
/// A second application on the same database (no worker).
pub struct Instance {
    pub base: String,
    shutdown: tokio_util::sync::CancellationToken,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Instance {
    pub async fn start(vars: &std::collections::HashMap<String, String>) -> Self {
        let config = Config::from_vars(vars).unwrap();
        let app = Application::build(config).await.unwrap();
        let addr: SocketAddr = app.local_addr().unwrap();
        let shutdown = app.shutdown_token();
        let server = tokio::spawn(app.without_worker().run());
        Self {
            base: format!("http://{addr}"),
            shutdown,
            server,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.server.await.unwrap().unwrap();
    }
}
