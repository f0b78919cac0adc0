//! The Redis connection shared by the rate limiter and readiness checks: connected on
//! first use, reconnecting by itself, every command bounded.

use std::time::Duration;

use tokio::sync::OnceCell;

/// A lazily connected, self-reconnecting Redis connection.
pub struct RedisHandle {
    client: redis::Client,
    manager: OnceCell<redis::aio::ConnectionManager>,
}

impl RedisHandle {
    /// A handle that connects on first use.
    pub fn new(url: &str) -> redis::RedisResult<Self> {
        Ok(Self {
            client: redis::Client::open(url)?,
            manager: OnceCell::new(),
        })
    }

    /// The shared connection, connecting first if needed.
    pub async fn connection(&self) -> redis::RedisResult<redis::aio::ConnectionManager> {
        self.manager
            .get_or_try_init(|| async {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Duration::from_secs(2))
                    .set_response_timeout(Duration::from_secs(2))
                    .set_number_of_retries(1);
                redis::aio::ConnectionManager::new_with_config(self.client.clone(), config).await
            })
            .await
            .cloned()
    }

    /// Checks Redis answers `PING` within `timeout`.
    pub async fn ping(&self, timeout: Duration) -> Result<(), String> {
        let probe = async {
            let mut conn = self.connection().await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await
        };
        match tokio::time::timeout(timeout, probe).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_owned()),
        }
    }
}
