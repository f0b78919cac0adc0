//! A TCP forwarder to the test PostgreSQL server, to simulate outages.

use std::collections::HashMap;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A TCP forwarder to the test PostgreSQL server that can be cut (connections closed,
/// new ones refused), frozen (connections kept open but silent, as after a failover or a
/// lost NAT entry) and restored.
pub struct Proxy {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    freeze: std::sync::Arc<std::sync::Mutex<CancellationToken>>,
    pipes: std::sync::Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    /// Starts forwarding to the server of `TENANTRY_TEST_POSTGRES_URL`.
    pub async fn to_postgres() -> Self {
        use std::sync::atomic::Ordering;
        let url = url::Url::parse(&tenantry::testing::postgres_admin_url()).unwrap();
        let target = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Self {
            port,
            up: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
            freeze: Default::default(),
            pipes: Default::default(),
        };
        let (up, freeze, pipes) = (proxy.up.clone(), proxy.freeze.clone(), proxy.pipes.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let target = target.clone();
                let frozen = freeze.lock().unwrap().clone();
                let pipe = tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        biased;
                        // Frozen: both sockets stay open, nothing more crosses.
                        () = frozen.cancelled() => std::future::pending::<()>().await,
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
                pipes.lock().unwrap().push(pipe);
            }
        });
        proxy
    }

    /// Points `DATABASE_URL` in `vars` at this proxy.
    pub fn route(&self, vars: &mut HashMap<String, String>) {
        let mut db_url = url::Url::parse(&vars["DATABASE_URL"]).unwrap();
        db_url.set_port(Some(self.port)).unwrap();
        vars.insert("DATABASE_URL".into(), db_url.to_string());
    }

    /// Closes every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for pipe in self.pipes.lock().unwrap().drain(..) {
            pipe.abort();
        }
    }

    /// Makes every connection, open or new, silent until [`Proxy::thaw`].
    pub fn freeze(&self) {
        self.freeze.lock().unwrap().cancel();
    }

    /// New connections forward again; the ones frozen stay frozen (their peer is gone).
    pub fn thaw(&self) {
        *self.freeze.lock().unwrap() = CancellationToken::new();
    }

    /// Accepts connections again after [`Proxy::cut`].
    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for pipe in self.pipes.lock().unwrap().drain(..) {
            pipe.abort();
        }
    }
}
