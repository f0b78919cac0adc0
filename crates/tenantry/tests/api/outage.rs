//! A database outage while running: 503s, then recovery without restart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::helpers::{assert_problem, Backend, TestApp};

/// A TCP forwarder to PostgreSQL that can be cut and restored.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    pipes: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let pipes: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (up2, pipes2) = (up.clone(), pipes.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let target = target.clone();
                let pipe = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                pipes2.lock().unwrap().push(pipe);
            }
        });
        Self { port, up, pipes }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for pipe in self.pipes.lock().unwrap().drain(..) {
            pipe.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_is_503_and_recovers() {
    let Some(probe) = tenantry::testing::TestDatabase::create(Backend::Postgres).await else {
        return;
    };
    drop(probe);
    let url = url::Url::parse(&tenantry::testing::postgres_admin_url()).unwrap();
    let target = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
    let proxy = Proxy::start(target).await;
    let port = proxy.port;
    let Some(app) = TestApp::spawn_with(Backend::Postgres, move |v| {
        let mut db_url = url::Url::parse(&v["DATABASE_URL"]).unwrap();
        db_url.set_port(Some(port)).unwrap();
        v.insert("DATABASE_URL".into(), db_url.to_string());
        v.insert("DATABASE_ACQUIRE_TIMEOUT_SEC".into(), "1".into());
    })
    .await
    else {
        return;
    };
    app.create_org("before-outage").await;

    proxy.cut();
    let res = app.client.get(app.url("/ready")).send().await.unwrap();
    let body = assert_problem(res, 503, "not_ready").await;
    assert!(
        body["checks"]["database"]
            .as_str()
            .unwrap()
            .starts_with("error"),
        "{body}"
    );
    let res = app.admin_get("/v1/admin/orgs").await;
    assert_problem(res, 503, "service_unavailable").await;

    proxy.restore();
    let mut recovered = false;
    for _ in 0..50 {
        if app
            .client
            .get(app.url("/ready"))
            .send()
            .await
            .unwrap()
            .status()
            == 200
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(recovered, "ready again without restart");
    let orgs: Vec<serde_json::Value> = app.admin_get("/v1/admin/orgs").await.json().await.unwrap();
    assert_eq!(orgs.len(), 1, "data intact");
}
