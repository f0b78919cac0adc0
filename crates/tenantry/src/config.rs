//! Configuration: read once at start from environment variables (and a `.env` file when
//! present), validated with one message per problem, then passed down. Never global.
//!
//! Every variable is documented on the field it fills and in the README's table.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::rbac::Plan;
use crate::secrets;
pub use crate::secrets::Secret;

/// Whether the process runs as a developer convenience or as a production service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Zero-config: secrets are generated once into the data directory.
    Development,
    /// Missing or weak secrets refuse start; cookies are `Secure`.
    Production,
}

/// Output format of log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The validated configuration of one process.
#[derive(Clone, Debug)]
pub struct Config {
    /// `TENANTRY_ENV`: `development` (default) or `production`.
    pub mode: Mode,
    /// `DATABASE_URL`: `sqlite://path` (default `sqlite://data/tenantry.db`) or `postgres://…`.
    pub database_url: DatabaseUrl,
    /// `DATABASE_MIGRATION_URL`: PostgreSQL connection that owns the schema and runs
    /// migrations; defaults to `DATABASE_URL`.
    pub database_migration_url: Option<DatabaseUrl>,
    /// `DATABASE_APP_ROLE`: PostgreSQL role the service switches to on every connection
    /// (`SET ROLE`), so row-level security applies. Default `tenantry_app`; empty to connect
    /// as the login role itself (which must then be neither superuser nor table owner).
    /// Behind PgBouncer it must be empty (the default there).
    pub database_app_role: Option<String>,
    /// `DATABASE_POOLER`: `none` (default) or `pgbouncer` when `DATABASE_URL` goes through
    /// PgBouncer in transaction mode (see [`Pooler`]).
    pub database_pooler: Pooler,
    /// `DATABASE_DIRECT_URL`: a direct PostgreSQL connection, past any pooler, for what
    /// needs a session of its own (`LISTEN`). Default `DATABASE_URL`, or
    /// `DATABASE_MIGRATION_URL` with `DATABASE_POOLER=pgbouncer`.
    pub database_direct_url: Option<DatabaseUrl>,
    /// `DATABASE_MAX_CONNECTIONS`: pool size (default 10).
    pub database_max_connections: u32,
    /// `DATABASE_ACQUIRE_TIMEOUT_SEC`: how long a request waits for a connection before it
    /// fails with 503 (default 5).
    pub database_acquire_timeout: Duration,
    /// `DATABASE_CONNECT_RETRY_SEC`: how long `serve` keeps retrying an unreachable
    /// database at start, with exponential backoff (default 60).
    pub database_connect_retry: Duration,
    /// `DATABASE_STATEMENT_TIMEOUT_SEC`: on PostgreSQL, the server ends a statement running
    /// longer and a session idle inside a transaction longer (`statement_timeout`,
    /// `idle_in_transaction_session_timeout`); default 30, 0 turns both off.
    pub database_statement_timeout: Duration,
    /// `REDIS_URL`: optional; when set, `/ready` checks it and shared features (rate
    /// limits) use it.
    pub redis_url: Option<String>,
    /// `REDIS_KEY_PREFIX`: prepended to every Redis key (default `tenantry:`), so several
    /// deployments can share one Redis.
    pub redis_key_prefix: String,
    /// `TRUSTED_PROXIES`: comma-separated addresses or CIDR ranges of reverse proxies whose
    /// `X-Forwarded-For` is believed (default none: the peer address is the client).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `HOST`: bind address (default `0.0.0.0`).
    pub host: String,
    /// `PORT` (or `API_PORT`): listen port (default 4000; 0 picks a free one).
    pub port: u16,
    /// `DATA_DIR`: where dev secrets and the default SQLite file live (default `data`).
    pub data_dir: PathBuf,
    /// `LOG_LEVEL`: a tracing filter such as `info` or `tenantry=debug,info` (default `info`).
    pub log_level: String,
    /// `LOG_FORMAT`: `text` (default) or `json`.
    pub log_format: LogFormat,
    /// `REQUEST_TIMEOUT_SEC`: a request running longer is answered 503 (default 30).
    pub request_timeout: Duration,
    /// `BODY_LIMIT_BYTES`: largest accepted request body (default 1 MiB).
    pub body_limit_bytes: usize,
    /// `SHUTDOWN_TIMEOUT_SEC`: how long in-flight work may take to finish after SIGTERM
    /// (default 30).
    pub shutdown_timeout: Duration,
    /// `SESSION_SECRET`: >= 32 characters; signs session cookies and CSRF tokens.
    pub session_secret: Secret,
    /// `INTERNAL_ADMIN_TOKEN`: >= 32 characters; bearer token of the operator API.
    pub internal_admin_token: Secret,
    /// `METRICS_TOKEN`: when set, `/metrics` needs `Authorization: Bearer <it>`; in
    /// production without it, `/metrics` needs the operator token.
    pub metrics_token: Option<Secret>,
    /// `SCIM_BEARER_TOKEN`: when set (>= 32 characters), a deployment-wide SCIM credential:
    /// `Authorization: Bearer <it>` with `X-Org-Id: <org id>` provisions that organization
    /// (as the original product did). Per-organization SCIM tokens need no configuration.
    pub scim_bearer_token: Option<Secret>,
    /// Identity settings.
    pub auth: AuthConfig,
    /// Background job worker settings.
    pub worker: WorkerConfig,
    /// Rate limits, quotas and metering.
    pub limits: LimitsConfig,
    /// Billing.
    pub billing: BillingConfig,
    /// Broadcasts and live event streams.
    pub realtime: RealtimeConfig,
    /// `DEMO_MODE`: a public demo (default false). Destructive actions answer 403
    /// `demo_mode` (deleting organizations, removing or demoting owners, revoking an
    /// organization's last API key, changing billing or the plan), and the defaults of the
    /// rate limits, quotas and broadcast limit are a tenth of the usual (variables set
    /// explicitly still win).
    pub demo_mode: bool,
}

/// Broadcasts and the live event streams (`/v1/ws`, `/v1/events`).
#[derive(Clone, Debug)]
pub struct RealtimeConfig {
    /// `BROADCAST_RATE_LIMIT` per `BROADCAST_RATE_LIMIT_WINDOW_SEC`: broadcasts per
    /// organization (default 10 per 60 s).
    pub broadcast: Rate,
    /// `REALTIME_SEND_BUFFER`: events waiting for one slow connection before it is closed
    /// (default 256).
    pub send_buffer: usize,
    /// `REALTIME_RECHECK_SEC`: how often a connection's credential and membership are
    /// checked again (default 10); a removal or revocation in the organization is acted on
    /// at once.
    pub recheck: Duration,
    /// `REALTIME_PING_SEC`: keep-alive ping interval (default 30); a connection silent for
    /// two intervals is closed.
    pub ping: Duration,
}

/// Billing: Stripe when configured, plans changed by hand otherwise.
#[derive(Clone, Debug)]
pub struct BillingConfig {
    /// The Stripe settings, when any `STRIPE_*` variable is set.
    pub stripe: Option<StripeConfig>,
    /// `BILLING_PAST_DUE_GRACE_DAYS`: a `past_due` subscription keeps its plan this long
    /// after the first failed payment, then the organization drops to FREE (default 7).
    pub past_due_grace: Duration,
}

/// Stripe (names as the original product documents them).
#[derive(Clone, Debug)]
pub struct StripeConfig {
    /// `STRIPE_SECRET_KEY`: `sk_…` or a restricted `rk_…` key; checkout, the portal,
    /// subscription reads and usage reports need it.
    pub secret_key: Option<Secret>,
    /// `STRIPE_WEBHOOK_SECRET`: the endpoint's `whsec_…` signing secret; a comma-separated
    /// list accepts events signed with any of them (while a secret is rotated).
    pub webhook_secrets: Vec<Secret>,
    /// `STRIPE_PRICE_PRO` (or `STRIPE_PRICE_ID`, the original product's single price): the
    /// price of the PRO plan.
    pub price_pro: Option<String>,
    /// `STRIPE_PRICE_ENTERPRISE`: the price of the ENTERPRISE plan.
    pub price_enterprise: Option<String>,
    /// `STRIPE_SUCCESS_URL`: where Checkout returns after payment; `{ORG_ID}` is replaced
    /// (default `<PUBLIC_BASE_URL>/app/orgs/{ORG_ID}/billing?checkout=success`).
    pub success_url: String,
    /// `STRIPE_CANCEL_URL`: where Checkout returns when abandoned (default the billing
    /// page with `?checkout=cancelled`).
    pub cancel_url: String,
    /// `STRIPE_PORTAL_RETURN_URL`: where the Customer Portal returns (default the billing
    /// page).
    pub portal_return_url: String,
    /// `STRIPE_WEBHOOK_TOLERANCE`: largest age (and clock skew) of a signed webhook, in
    /// seconds (default 300).
    pub webhook_tolerance: Duration,
    /// `STRIPE_API_BASE`: Stripe's API (default `https://api.stripe.com`).
    pub api_base: String,
    /// `STRIPE_METER_EVENT_NAME`: the Billing Meter that metered API calls are reported
    /// to (default `api_calls`).
    pub meter_event_name: String,
}

impl StripeConfig {
    /// What a complete setup has and this one lacks (development starts anyway and says so).
    pub fn missing(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if self.secret_key.is_none() {
            missing.push("STRIPE_SECRET_KEY");
        }
        if self.webhook_secrets.is_empty() {
            missing.push("STRIPE_WEBHOOK_SECRET");
        }
        if self.price_pro.is_none() && self.price_enterprise.is_none() {
            missing.push("STRIPE_PRICE_PRO (or STRIPE_PRICE_ID) or STRIPE_PRICE_ENTERPRISE");
        }
        missing
    }
}

/// Rate limits (requests per window; 0 turns a limit off), plan quotas and metering.
#[derive(Clone, Debug)]
pub struct LimitsConfig {
    /// `IP_RATE_LIMIT` per `IP_RATE_LIMIT_WINDOW_SEC`: every request, per client address
    /// (default 6000 per 60 s).
    pub ip: Rate,
    /// `API_KEY_RATE_LIMIT` per `API_KEY_RATE_LIMIT_WINDOW_SEC`: requests per API key,
    /// unless the key has its own limit (default 600 per 60 s).
    pub api_key: Rate,
    /// `ORG_RATE_LIMIT_FREE`, `_PRO`, `_ENTERPRISE` per `ORG_RATE_LIMIT_WINDOW_SEC`:
    /// requests per organization by plan, users and keys together (default 1200, 12000,
    /// 120000 per 60 s).
    pub org: [Rate; 3],
    /// `QUOTA_API_CALLS_FREE`, `_PRO`, `_ENTERPRISE`: metered API calls per calendar month
    /// (UTC) by plan; 0 is unlimited (default 10000, 1000000, 0).
    pub api_calls_quota: [u64; 3],
    /// `USAGE_FLUSH_INTERVAL_MS`: how often metered calls are written (default 1000); a
    /// crash loses at most this much metering.
    pub usage_flush: Duration,
    /// `USAGE_QUOTA_REFRESH_MS`: how old an organization's stored monthly total may get
    /// before a request re-reads it (default 2000); the flusher re-reads busy organizations'
    /// totals once they are half this old.
    pub quota_refresh: Duration,
    /// `API_KEY_CACHE_SEC`: how long a verified key is trusted without a database read
    /// (default 5). Revocation is immediate on the instance that revoked the key and takes
    /// at most this long on other instances; 0 reads the database on every request.
    pub api_key_cache: Duration,
}

/// A rate: `limit` requests per `window` (0 = no limit).
pub use crate::ratelimit::Rate;

/// The job worker.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// `WORKER_CONCURRENCY`: jobs run at once per worker process (default 8).
    pub concurrency: usize,
    /// `JOB_LEASE_SEC`: a running job is reclaimed this long after its worker stopped
    /// renewing the lease (default 30; renewed every third of it).
    pub lease: Duration,
    /// `JOB_POLL_INTERVAL_MS`: longest wait between queue checks when no wake-up arrives
    /// (default 1000).
    pub poll_interval: Duration,
    /// `JOB_RETRY_BASE_MS`: first retry delay; doubles per attempt, with jitter (default 1000).
    pub retry_base: Duration,
    /// `USAGE_ROLLUP_INTERVAL_SEC`: how often the periodic `usage.rollup` job adds usage
    /// events to the daily totals (default 60).
    pub usage_rollup: Duration,
    /// `BILLING_SYNC_INTERVAL_SEC`: how often the periodic `billing.sync` job (when Stripe
    /// is configured) reports completed days of metered usage to Stripe and ends expired
    /// grace periods (default 3600).
    pub billing_sync: Duration,
    /// `AUDIT_LOG_RETENTION_DAYS`: audit records older than this are removed by the
    /// periodic `audit.retention` job behind a signed checkpoint (default 365; 0 keeps
    /// them forever).
    pub audit_retention: Option<Duration>,
    /// `AUDIT_RETENTION_INTERVAL_SEC`: how often that job runs (default 3600).
    pub audit_retention_interval: Duration,
}

/// Accounts, tokens, sessions and their limits.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// `JWT_SIGNING_SECRET`: >= 32 characters; access-token signing keys are derived from
    /// it and each key id, so no private key is ever stored.
    pub jwt_signing_secret: Secret,
    /// `JWT_ISSUER` (default `tenantry`).
    pub jwt_issuer: String,
    /// `JWT_AUDIENCE` (default `tenantry-api`).
    pub jwt_audience: String,
    /// `ACCESS_TOKEN_TTL_SEC` (default 900).
    pub access_token_ttl: Duration,
    /// `REFRESH_TOKEN_TTL_DAYS` (default 30).
    pub refresh_token_ttl: Duration,
    /// `SESSION_TTL_DAYS`: absolute session lifetime (default 7).
    pub session_ttl: Duration,
    /// `SESSION_IDLE_TIMEOUT_HOURS`: a session unused this long ends (default 24).
    pub session_idle_timeout: Duration,
    /// `SESSION_SLIDING_ENABLED`: activity pushes the idle expiry forward (default true).
    pub session_sliding: bool,
    /// `SESSION_MAX_PER_USER`: the oldest sessions beyond this are revoked (default 10).
    pub session_max_per_user: u32,
    /// `COOKIE_SECURE`: `Secure` cookies (default: true in production).
    pub cookie_secure: bool,
    /// `COOKIE_DOMAIN`: optional cookie domain.
    pub cookie_domain: Option<String>,
    /// `PUBLIC_BASE_URL` (or `API_BASE_URL`): base of links in emails
    /// (default `http://localhost:<PORT>`).
    pub public_base_url: String,
    /// Whether `PUBLIC_BASE_URL` (or `API_BASE_URL`) was set; without it, SCIM resource
    /// locations follow the request's `Host`.
    pub public_base_url_set: bool,
    /// `SMTP_URL`: `smtp://[user:pass@]host[:port]` (plain or STARTTLS when offered is not
    /// attempted) or `smtps://…` (TLS). Unset: emails stay in the outbox and are logged.
    pub smtp_url: Option<Secret>,
    /// `SMTP_FROM` (default `Tenantry <no-reply@localhost>`).
    pub smtp_from: String,
    /// `AUTH_RATE_LIMIT_WINDOW_SEC` (default 60).
    pub rate_window: Duration,
    /// `AUTH_LOGIN_IP_RATE_LIMIT`: login attempts per IP per window (default 20).
    pub login_ip_limit: u32,
    /// `AUTH_LOGIN_IDENTIFIER_RATE_LIMIT`: login attempts per email per window (default 5).
    pub login_identifier_limit: u32,
    /// `AUTH_REGISTER_IP_RATE_LIMIT`: registrations per IP per window (default 10).
    pub register_ip_limit: u32,
    /// `PASSWORD_HASH_CONCURRENCY`: password hashes computed at once (default: half the
    /// cores, at least 1), so a login storm leaves cores for other requests.
    pub password_hash_concurrency: usize,
}

/// What stands between the service and PostgreSQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooler {
    /// Nothing, or a pooler in session mode: every connection is a session of its own.
    None,
    /// PgBouncer (1.21 or later, `max_prepared_statements` above 0) in transaction mode: a
    /// server session is lent for one transaction only, so the service sets no session
    /// state (no `SET ROLE`, no startup options; tenant scope and other settings are
    /// transaction-local anyway), and `LISTEN` and migrations connect directly.
    PgBouncer,
}

/// A database URL whose backend is known.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// An SQLite file (or `sqlite::memory:`).
    Sqlite(String),
    /// A PostgreSQL server.
    Postgres(String),
}

impl DatabaseUrl {
    /// Parses a URL by its scheme.
    pub fn parse(url: &str) -> Result<Self, String> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite(url.to_owned()))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            url::Url::parse(url).map_err(|e| format!("not a valid URL ({e})"))?;
            Ok(Self::Postgres(url.to_owned()))
        } else {
            Err("must start with sqlite:// or postgres://".to_owned())
        }
    }

    /// The URL as given.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Sqlite(u) | Self::Postgres(u) => u,
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    /// Shows the URL without its password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(u) => write!(f, "{u}"),
            Self::Postgres(u) => match url::Url::parse(u) {
                Ok(mut parsed) => {
                    if parsed.password().is_some() {
                        // Redaction only; a failure leaves the URL unprintable, not leaked.
                        if parsed.set_password(Some("***")).is_err() {
                            return f.write_str("postgres://<redacted>");
                        }
                    }
                    write!(f, "{parsed}")
                }
                Err(_) => f.write_str("postgres://<unparsable>"),
            },
        }
    }
}

/// Every problem found in the configuration, one per line.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError(pub Vec<String>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for problem in &self.0 {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

/// Reads the variables of this process, with `.env` (if present) filling in the ones the
/// process does not set. The process environment is never modified.
pub fn read_environment() -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = HashMap::new();
    if let Ok(iter) = dotenvy::from_path_iter(Path::new(".env")) {
        for (key, value) in iter.flatten() {
            vars.insert(key, value);
        }
    }
    vars.extend(std::env::vars());
    vars
}

struct Reader<'a> {
    vars: &'a HashMap<String, String>,
    problems: Vec<String>,
}

impl<'a> Reader<'a> {
    fn get(&self, key: &str) -> Option<&'a str> {
        self.vars
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    fn parse<T: std::str::FromStr>(&mut self, key: &str, default: T, what: &str) -> T {
        match self.get(key) {
            None => default,
            Some(raw) => raw.parse().unwrap_or_else(|_| {
                self.problems.push(format!("{key}: `{raw}` is not {what}"));
                default
            }),
        }
    }

    fn seconds(&mut self, key: &str, default: u64) -> Duration {
        Duration::from_secs(self.parse(key, default, "a whole number of seconds"))
    }
}

impl Config {
    /// Builds and validates the configuration from a variable map. In development mode,
    /// secrets that are not set are generated once and kept in the data directory.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let mut r = Reader {
            vars,
            problems: Vec::new(),
        };
        let mode = match r.get("TENANTRY_ENV").unwrap_or("development") {
            "development" | "dev" => Mode::Development,
            "production" | "prod" => Mode::Production,
            other => {
                r.problems.push(format!(
                    "TENANTRY_ENV: `{other}` is not `development` or `production`"
                ));
                Mode::Development
            }
        };
        let data_dir = PathBuf::from(r.get("DATA_DIR").unwrap_or("data"));
        let default_db = format!("sqlite://{}/tenantry.db", data_dir.display());
        let database_url = parse_db_url(&mut r, "DATABASE_URL", Some(&default_db));
        let database_migration_url = r
            .get("DATABASE_MIGRATION_URL")
            .is_some()
            .then(|| parse_db_url(&mut r, "DATABASE_MIGRATION_URL", None));
        let database_pooler = match r.get("DATABASE_POOLER").unwrap_or("none") {
            "none" => Pooler::None,
            "pgbouncer" => Pooler::PgBouncer,
            other => {
                r.problems.push(format!(
                    "DATABASE_POOLER: `{other}` is not `none` or `pgbouncer`"
                ));
                Pooler::None
            }
        };
        let database_direct_url = r
            .get("DATABASE_DIRECT_URL")
            .is_some()
            .then(|| parse_db_url(&mut r, "DATABASE_DIRECT_URL", None))
            .flatten();
        let database_app_role = match r.vars.get("DATABASE_APP_ROLE").map(|v| v.trim()) {
            None if database_pooler == Pooler::PgBouncer => None,
            None => Some("tenantry_app".to_owned()),
            Some("") => None,
            Some(role) if role.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
                Some(role.to_owned())
            }
            Some(role) => {
                r.problems.push(format!(
                    "DATABASE_APP_ROLE: `{role}` may contain only letters, digits and `_`"
                ));
                None
            }
        };
        let port = match r.get("PORT").or(r.get("API_PORT")) {
            None => 4000,
            Some(raw) => raw.parse().unwrap_or_else(|_| {
                r.problems
                    .push(format!("PORT: `{raw}` is not a port number (0-65535)"));
                4000
            }),
        };
        let log_format = match r.get("LOG_FORMAT").unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                r.problems
                    .push(format!("LOG_FORMAT: `{other}` is not `text` or `json`"));
                LogFormat::Text
            }
        };
        let max_conn = r.parse("DATABASE_MAX_CONNECTIONS", 10u32, "a positive number");
        if max_conn == 0 {
            r.problems
                .push("DATABASE_MAX_CONNECTIONS: must be at least 1".to_owned());
        }
        let body_limit_bytes = r.parse("BODY_LIMIT_BYTES", 1024 * 1024usize, "a byte count");
        let demo_mode = r.parse("DEMO_MODE", false, "`true` or `false`");
        // Demo-safe defaults: a tenth of the usual limits.
        let scale = if demo_mode { 10 } else { 1 };
        let auth = read_auth(&mut r, mode, port);
        let worker = WorkerConfig {
            concurrency: r
                .parse("WORKER_CONCURRENCY", 8usize, "a positive number")
                .max(1),
            lease: r.seconds("JOB_LEASE_SEC", 30).max(Duration::from_secs(1)),
            poll_interval: Duration::from_millis(
                r.parse("JOB_POLL_INTERVAL_MS", 1000u64, "a number of milliseconds")
                    .max(10),
            ),
            retry_base: Duration::from_millis(r.parse(
                "JOB_RETRY_BASE_MS",
                1000u64,
                "a number of milliseconds",
            )),
            usage_rollup: r
                .seconds("USAGE_ROLLUP_INTERVAL_SEC", 60)
                .max(Duration::from_secs(1)),
            billing_sync: r
                .seconds("BILLING_SYNC_INTERVAL_SEC", 3600)
                .max(Duration::from_secs(1)),
            audit_retention: Some(r.parse(
                "AUDIT_LOG_RETENTION_DAYS",
                365u64,
                "a whole number of days (0 = keep forever)",
            ))
            .filter(|days| *days > 0)
            .map(|days| Duration::from_secs(86_400 * days)),
            audit_retention_interval: r
                .seconds("AUDIT_RETENTION_INTERVAL_SEC", 3600)
                .max(Duration::from_secs(1)),
        };
        let realtime = RealtimeConfig {
            broadcast: Rate {
                limit: r.parse(
                    "BROADCAST_RATE_LIMIT",
                    10 / scale,
                    "a number of broadcasts (0 = no limit)",
                ),
                window: r
                    .seconds("BROADCAST_RATE_LIMIT_WINDOW_SEC", 60)
                    .max(Duration::from_secs(1)),
            },
            send_buffer: r
                .parse("REALTIME_SEND_BUFFER", 256usize, "a number of events")
                .max(1),
            recheck: r
                .seconds("REALTIME_RECHECK_SEC", 10)
                .max(Duration::from_secs(1)),
            ping: r
                .seconds("REALTIME_PING_SEC", 30)
                .max(Duration::from_secs(1)),
        };
        let config = Config {
            mode,
            database_url: database_url.unwrap_or(DatabaseUrl::Sqlite(default_db)),
            database_migration_url: database_migration_url.flatten(),
            database_app_role,
            database_pooler,
            database_direct_url,
            database_max_connections: max_conn.max(1),
            database_acquire_timeout: r.seconds("DATABASE_ACQUIRE_TIMEOUT_SEC", 5),
            database_connect_retry: r.seconds("DATABASE_CONNECT_RETRY_SEC", 60),
            database_statement_timeout: r.seconds("DATABASE_STATEMENT_TIMEOUT_SEC", 30),
            redis_url: r.get("REDIS_URL").map(str::to_owned),
            redis_key_prefix: r.get("REDIS_KEY_PREFIX").unwrap_or("tenantry:").to_owned(),
            trusted_proxies: read_proxies(&mut r),
            host: r.get("HOST").unwrap_or("0.0.0.0").to_owned(),
            port,
            log_level: r.get("LOG_LEVEL").unwrap_or("info").to_owned(),
            log_format,
            request_timeout: r.seconds("REQUEST_TIMEOUT_SEC", 30),
            body_limit_bytes,
            shutdown_timeout: r.seconds("SHUTDOWN_TIMEOUT_SEC", 30),
            session_secret: Secret::new(String::new()),
            internal_admin_token: Secret::new(String::new()),
            metrics_token: r
                .get("METRICS_TOKEN")
                .filter(|t| !t.is_empty())
                .map(Secret::new),
            scim_bearer_token: read_scim_token(&mut r),
            data_dir,
            auth,
            worker,
            realtime,
            demo_mode,
            limits: read_limits(&mut r, scale),
            billing: BillingConfig {
                stripe: None,
                past_due_grace: Duration::from_secs(
                    86_400
                        * r.parse(
                            "BILLING_PAST_DUE_GRACE_DAYS",
                            7u64,
                            "a whole number of days",
                        ),
                ),
            },
        };
        let mut config = config;
        config.billing.stripe = read_stripe(&mut r, mode, &config.auth.public_base_url);
        if let Some(url) = &config.redis_url {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                r.problems
                    .push("REDIS_URL: must start with redis:// or rediss://".to_owned());
            }
        }
        check_pooler(&config, &mut r.problems);
        let mut problems = r.problems;
        let config = resolve_secrets(config, vars, &mut problems);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError(problems))
        }
    }
}

fn read_stripe(r: &mut Reader<'_>, mode: Mode, base: &str) -> Option<StripeConfig> {
    let any = r
        .vars
        .iter()
        .any(|(k, v)| k.starts_with("STRIPE_") && !v.trim().is_empty());
    if !any {
        return None;
    }
    let secret_key = r.get("STRIPE_SECRET_KEY").map(|key| {
        if !(key.starts_with("sk_") || key.starts_with("rk_")) {
            r.problems.push(
                "STRIPE_SECRET_KEY: must be a Stripe secret key (`sk_…`) or restricted key (`rk_…`)"
                    .to_owned(),
            );
        }
        Secret::new(key)
    });
    let mut webhook_secrets = Vec::new();
    for secret in r
        .get("STRIPE_WEBHOOK_SECRET")
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if !secret.starts_with("whsec_") {
            r.problems.push(
                "STRIPE_WEBHOOK_SECRET: each secret must be an endpoint signing secret (`whsec_…`)"
                    .to_owned(),
            );
        }
        webhook_secrets.push(Secret::new(secret));
    }
    let price = |r: &mut Reader<'_>, keys: &[&'static str]| {
        let (key, value) = keys
            .iter()
            .find_map(|k| r.get(k).map(|v| (*k, v.to_owned())))?;
        if !value.starts_with("price_") {
            r.problems
                .push(format!("{key}: must be a Stripe price id (`price_…`)"));
        }
        Some(value)
    };
    let price_pro = price(r, &["STRIPE_PRICE_PRO", "STRIPE_PRICE_ID"]);
    let price_enterprise = price(r, &["STRIPE_PRICE_ENTERPRISE"]);
    if price_pro.is_some() && price_pro == price_enterprise {
        r.problems.push(
            "STRIPE_PRICE_ENTERPRISE: must differ from the PRO price, or a payment could not name its plan"
                .to_owned(),
        );
    }
    let url = |r: &mut Reader<'_>, key: &str, default: String| {
        let value = r.get(key).map_or(default, str::to_owned);
        if url::Url::parse(&value.replace("{ORG_ID}", "org"))
            .map_or(true, |u| !matches!(u.scheme(), "http" | "https"))
        {
            r.problems
                .push(format!("{key}: `{value}` is not an http(s) URL"));
        }
        value
    };
    let page = format!("{base}/app/orgs/{{ORG_ID}}/billing");
    let config = StripeConfig {
        secret_key,
        webhook_secrets,
        price_pro,
        price_enterprise,
        success_url: url(r, "STRIPE_SUCCESS_URL", format!("{page}?checkout=success")),
        cancel_url: url(r, "STRIPE_CANCEL_URL", format!("{page}?checkout=cancelled")),
        portal_return_url: url(r, "STRIPE_PORTAL_RETURN_URL", page.clone()),
        webhook_tolerance: r.seconds("STRIPE_WEBHOOK_TOLERANCE", 300),
        api_base: url(r, "STRIPE_API_BASE", "https://api.stripe.com".to_owned())
            .trim_end_matches('/')
            .to_owned(),
        meter_event_name: r
            .get("STRIPE_METER_EVENT_NAME")
            .unwrap_or("api_calls")
            .to_owned(),
    };
    if mode == Mode::Production {
        for missing in config.missing() {
            r.problems.push(format!(
                "{missing}: Stripe is half-configured (set every STRIPE_* variable it needs, or none)"
            ));
        }
    }
    Some(config)
}

/// `SCIM_BEARER_TOKEN`, refused when too weak to resist guessing, or shaped like a
/// per-organization token (which it could never be taken for).
fn read_scim_token(r: &mut Reader<'_>) -> Option<Secret> {
    let token = r.get("SCIM_BEARER_TOKEN").filter(|t| !t.is_empty())?;
    if let Some(why) = secrets::weakness(token) {
        r.problems.push(format!("SCIM_BEARER_TOKEN: {why}"));
        return None;
    }
    if token.starts_with(crate::auth::scim::SECRET_START) {
        r.problems.push(format!(
            "SCIM_BEARER_TOKEN: must not start with `{}`, the prefix of per-organization tokens",
            crate::auth::scim::SECRET_START
        ));
        return None;
    }
    Some(Secret::new(token))
}

fn read_proxies(r: &mut Reader<'_>) -> Vec<ipnet::IpNet> {
    let Some(raw) = r.get("TRUSTED_PROXIES") else {
        return Vec::new();
    };
    let mut nets = Vec::new();
    for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let parsed = entry
            .parse::<ipnet::IpNet>()
            .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match parsed {
            Ok(net) => nets.push(net),
            Err(_) => r.problems.push(format!(
                "TRUSTED_PROXIES: `{entry}` is not an IP address or CIDR range"
            )),
        }
    }
    nets
}

fn read_limits(r: &mut Reader<'_>, scale: u32) -> LimitsConfig {
    let rate = |r: &mut Reader<'_>, key: &str, default: u32, window: Duration| Rate {
        limit: r.parse(key, default / scale, "a number of requests (0 = no limit)"),
        window,
    };
    let window = |r: &mut Reader<'_>, key: &str| r.seconds(key, 60).max(Duration::from_secs(1));
    let ip_window = window(r, "IP_RATE_LIMIT_WINDOW_SEC");
    let key_window = window(r, "API_KEY_RATE_LIMIT_WINDOW_SEC");
    let org_window = window(r, "ORG_RATE_LIMIT_WINDOW_SEC");
    let quota = |r: &mut Reader<'_>, key: &str, default: u64| {
        r.parse(
            key,
            default / u64::from(scale),
            "a number of calls (0 = unlimited)",
        )
    };
    LimitsConfig {
        ip: rate(r, "IP_RATE_LIMIT", 6000, ip_window),
        api_key: rate(r, "API_KEY_RATE_LIMIT", 600, key_window),
        org: [
            rate(r, "ORG_RATE_LIMIT_FREE", 1200, org_window),
            rate(r, "ORG_RATE_LIMIT_PRO", 12_000, org_window),
            rate(r, "ORG_RATE_LIMIT_ENTERPRISE", 120_000, org_window),
        ],
        api_calls_quota: [
            quota(r, "QUOTA_API_CALLS_FREE", 10_000),
            quota(r, "QUOTA_API_CALLS_PRO", 1_000_000),
            quota(r, "QUOTA_API_CALLS_ENTERPRISE", 0),
        ],
        usage_flush: Duration::from_millis(
            r.parse(
                "USAGE_FLUSH_INTERVAL_MS",
                1000u64,
                "a number of milliseconds",
            )
            .max(10),
        ),
        quota_refresh: Duration::from_millis(
            r.parse(
                "USAGE_QUOTA_REFRESH_MS",
                u64::try_from(crate::usage::QUOTA_REFRESH.as_millis()).unwrap_or(2000),
                "a number of milliseconds",
            )
            .max(10),
        ),
        api_key_cache: r.seconds("API_KEY_CACHE_SEC", 5),
    }
}

impl LimitsConfig {
    /// The organization rate of `plan`.
    pub fn org_rate(&self, plan: Plan) -> Rate {
        self.org[plan.index()]
    }

    /// Monthly API calls allowed on `plan` (`None` = unlimited).
    pub fn api_calls_quota(&self, plan: Plan) -> Option<u64> {
        Some(self.api_calls_quota[plan.index()]).filter(|q| *q > 0)
    }
}

fn read_auth(r: &mut Reader<'_>, mode: Mode, port: u16) -> AuthConfig {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let positive = |r: &mut Reader<'_>, key: &str, default: u32| {
        let value = r.parse(key, default, "a positive number");
        if value == 0 {
            r.problems.push(format!("{key}: must be at least 1"));
        }
        value.max(1)
    };
    let hours = |r: &mut Reader<'_>, key: &str, default: u64| {
        Duration::from_secs(3600 * r.parse(key, default, "a whole number of hours"))
    };
    let days = |r: &mut Reader<'_>, key: &str, default: u64| {
        Duration::from_secs(86_400 * r.parse(key, default, "a whole number of days"))
    };
    let smtp_url = r.get("SMTP_URL").map(|url| {
        if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
            r.problems
                .push("SMTP_URL: must start with smtp:// or smtps://".to_owned());
        }
        Secret::new(url)
    });
    AuthConfig {
        jwt_signing_secret: Secret::new(String::new()),
        jwt_issuer: r.get("JWT_ISSUER").unwrap_or("tenantry").to_owned(),
        jwt_audience: r.get("JWT_AUDIENCE").unwrap_or("tenantry-api").to_owned(),
        access_token_ttl: r.seconds("ACCESS_TOKEN_TTL_SEC", 900),
        refresh_token_ttl: days(r, "REFRESH_TOKEN_TTL_DAYS", 30),
        session_ttl: days(r, "SESSION_TTL_DAYS", 7),
        session_idle_timeout: hours(r, "SESSION_IDLE_TIMEOUT_HOURS", 24),
        session_sliding: r.parse("SESSION_SLIDING_ENABLED", true, "`true` or `false`"),
        session_max_per_user: positive(r, "SESSION_MAX_PER_USER", 10),
        cookie_secure: r.parse(
            "COOKIE_SECURE",
            mode == Mode::Production,
            "`true` or `false`",
        ),
        cookie_domain: r.get("COOKIE_DOMAIN").map(str::to_owned),
        public_base_url_set: r.get("PUBLIC_BASE_URL").or(r.get("API_BASE_URL")).is_some(),
        public_base_url: r
            .get("PUBLIC_BASE_URL")
            .or(r.get("API_BASE_URL"))
            .map_or_else(
                || format!("http://localhost:{port}"),
                |u| u.trim_end_matches('/').to_owned(),
            ),
        smtp_url,
        smtp_from: r
            .get("SMTP_FROM")
            .unwrap_or("Tenantry <no-reply@localhost>")
            .to_owned(),
        rate_window: r.seconds("AUTH_RATE_LIMIT_WINDOW_SEC", 60),
        login_ip_limit: positive(r, "AUTH_LOGIN_IP_RATE_LIMIT", 20),
        login_identifier_limit: positive(r, "AUTH_LOGIN_IDENTIFIER_RATE_LIMIT", 5),
        register_ip_limit: positive(r, "AUTH_REGISTER_IP_RATE_LIMIT", 10),
        password_hash_concurrency: r
            .parse(
                "PASSWORD_HASH_CONCURRENCY",
                (cores / 2).max(1),
                "a positive number",
            )
            .max(1),
    }
}

/// What transaction pooling rules out: a URL other than PostgreSQL, migrations through the
/// pooler (they hold a session-level advisory lock) and a role switched per session.
fn check_pooler(config: &Config, problems: &mut Vec<String>) {
    let postgres = |url: &DatabaseUrl| matches!(url, DatabaseUrl::Postgres(_));
    if config
        .database_direct_url
        .as_ref()
        .is_some_and(|url| !postgres(url))
    {
        problems.push("DATABASE_DIRECT_URL: must be a postgres:// URL".to_owned());
    }
    if config.database_pooler != Pooler::PgBouncer {
        return;
    }
    if !postgres(&config.database_url) {
        problems.push("DATABASE_POOLER: `pgbouncer` needs a postgres:// DATABASE_URL".to_owned());
    }
    if !config.database_migration_url.as_ref().is_some_and(postgres) {
        problems.push(
            "DATABASE_MIGRATION_URL: required with DATABASE_POOLER=pgbouncer: a direct \
             postgres:// connection as the schema owner (migrations hold a session lock)"
                .to_owned(),
        );
    }
    if let Some(role) = &config.database_app_role {
        problems.push(format!(
            "DATABASE_APP_ROLE: `SET ROLE {role}` would not survive PgBouncer's transaction \
             pooling; log in through PgBouncer as the service role itself and leave this empty"
        ));
    }
}

fn parse_db_url(r: &mut Reader<'_>, key: &str, default: Option<&str>) -> Option<DatabaseUrl> {
    let raw = r.get(key).or(default)?.to_owned();
    match DatabaseUrl::parse(&raw) {
        Ok(url) => Some(url),
        Err(why) => {
            r.problems.push(format!("{key}: {why}"));
            None
        }
    }
}

/// Fills the config's secrets from `vars`, generating missing ones in development mode.
/// Problems are appended to `problems`, one per variable.
fn resolve_secrets(
    mut config: Config,
    vars: &HashMap<String, String>,
    problems: &mut Vec<String>,
) -> Config {
    let mut stored = HashMap::new();
    if config.mode == Mode::Development
        && secrets::REQUIRED
            .iter()
            .any(|k| vars.get(*k).is_none_or(|v| v.trim().is_empty()))
    {
        match secrets::load_or_create(&config.data_dir) {
            Ok(values) => stored = values,
            Err(e) => problems.push(format!(
                "DATA_DIR: cannot keep generated secrets in {}: {e}",
                config.data_dir.display()
            )),
        }
    }
    let mut pick = |key: &str| -> Secret {
        let value = vars
            .get(key)
            .filter(|v| !v.trim().is_empty())
            .or_else(|| stored.get(key))
            .cloned()
            .unwrap_or_default();
        if let Some(why) = secrets::weakness(&value) {
            problems.push(format!("{key}: {why}"));
        }
        Secret::new(value)
    };
    config.session_secret = pick("SESSION_SECRET");
    config.internal_admin_token = pick("INTERNAL_ADMIN_TOKEN");
    config.auth.jwt_signing_secret = pick("JWT_SIGNING_SECRET");
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_generates_once_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let vars: HashMap<String, String> = [(
            "DATA_DIR".to_owned(),
            dir.path().to_str().unwrap().to_owned(),
        )]
        .into();
        let first = Config::from_vars(&vars).unwrap();
        let second = Config::from_vars(&vars).unwrap();
        assert_eq!(first.session_secret, second.session_secret);
        assert_ne!(first.session_secret, first.internal_admin_token);
        assert_eq!(first.session_secret.expose().len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(secrets::DEV_SECRETS_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn pgbouncer_needs_direct_migrations_and_no_role_switch() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap();
        let pooled = "postgres://svc@127.0.0.1:6432/tenantry";
        let err = Config::from_vars(&vars(&[
            ("DATA_DIR", data),
            ("DATABASE_URL", pooled),
            ("DATABASE_POOLER", "pgbouncer"),
            ("DATABASE_APP_ROLE", "tenantry_app"),
            ("DATABASE_DIRECT_URL", "sqlite://x.db"),
        ]))
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("DATABASE_MIGRATION_URL: required"), "{text}");
        assert!(text.contains("DATABASE_APP_ROLE: `SET ROLE"), "{text}");
        assert!(text.contains("DATABASE_DIRECT_URL: must be"), "{text}");
        assert_eq!(err.0.len(), 3, "{text}");

        let direct = "postgres://owner@127.0.0.1:5432/tenantry";
        let config = Config::from_vars(&vars(&[
            ("DATA_DIR", data),
            ("DATABASE_URL", pooled),
            ("DATABASE_POOLER", "pgbouncer"),
            ("DATABASE_MIGRATION_URL", direct),
        ]))
        .unwrap();
        assert_eq!(config.database_pooler, Pooler::PgBouncer);
        assert_eq!(
            config.database_app_role, None,
            "no SET ROLE behind the pooler"
        );
        let listen = crate::db::direct_options(&config).unwrap().unwrap();
        assert_eq!(listen.get_port(), 5432, "LISTEN goes past the pooler");
        let unpooled =
            Config::from_vars(&vars(&[("DATA_DIR", data), ("DATABASE_URL", direct)])).unwrap();
        assert_eq!(unpooled.database_app_role.as_deref(), Some("tenantry_app"));
        assert!(crate::db::direct_options(&unpooled).unwrap().is_none());
        let bad = Config::from_vars(&vars(&[("DATA_DIR", data), ("DATABASE_POOLER", "pgcat")]))
            .unwrap_err();
        assert!(
            bad.to_string().contains("DATABASE_POOLER: `pgcat`"),
            "{bad}"
        );
    }

    #[test]
    fn names_every_bad_variable() {
        let dir = tempfile::tempdir().unwrap();
        let err = Config::from_vars(&vars(&[
            ("DATA_DIR", dir.path().to_str().unwrap()),
            ("DATABASE_URL", "mysql://x"),
            ("PORT", "70000"),
            ("LOG_FORMAT", "xml"),
        ]))
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("DATABASE_URL"), "{text}");
        assert!(text.contains("PORT"), "{text}");
        assert!(text.contains("LOG_FORMAT"), "{text}");
        assert_eq!(err.0.len(), 3);
    }

    #[test]
    fn production_refuses_missing_and_weak_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let err = Config::from_vars(&vars(&[
            ("DATA_DIR", dir.path().to_str().unwrap()),
            ("TENANTRY_ENV", "production"),
            ("SESSION_SECRET", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        ]))
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("SESSION_SECRET"), "{text}");
        assert!(text.contains("INTERNAL_ADMIN_TOKEN"), "{text}");
        // Production never writes generated secrets.
        assert!(!dir.path().join("secrets.env").exists());
    }

    #[test]
    fn production_refuses_a_half_configured_stripe() {
        let dir = tempfile::tempdir().unwrap();
        let base = [
            ("DATA_DIR", dir.path().to_str().unwrap()),
            ("TENANTRY_ENV", "production"),
            ("SESSION_SECRET", "Zx4Cv7Bn1Mq9Wp3Er6Ty8Ui2Op5As0Df"),
            ("INTERNAL_ADMIN_TOKEN", "t9Vq2LmX8rZp4Wn6Yb3Kc7Hd1Jf5Gs0Ae"),
            ("JWT_SIGNING_SECRET", "Qw8Er7Ty6Ui5Op4As3Df2Gh1Jk0LzXcVb"),
        ];
        let with = |extra: &[(&str, &str)]| {
            let mut all: Vec<(&str, &str)> = base.to_vec();
            all.extend_from_slice(extra);
            Config::from_vars(&vars(&all))
        };
        let err = with(&[("STRIPE_SECRET_KEY", "sk_test_123")]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("STRIPE_WEBHOOK_SECRET"), "{text}");
        assert!(text.contains("STRIPE_PRICE_PRO"), "{text}");
        let err = with(&[
            ("STRIPE_SECRET_KEY", "pk_live_oops"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_a, nope"),
            ("STRIPE_PRICE_ID", "prod_123"),
            ("STRIPE_SUCCESS_URL", "not a url"),
            ("STRIPE_WEBHOOK_TOLERANCE", "soon"),
        ])
        .unwrap_err();
        for key in [
            "STRIPE_SECRET_KEY",
            "STRIPE_WEBHOOK_SECRET",
            "STRIPE_PRICE_ID",
            "STRIPE_SUCCESS_URL",
            "STRIPE_WEBHOOK_TOLERANCE",
        ] {
            assert!(err.0.iter().any(|p| p.starts_with(key)), "{key}: {err}");
        }
        let ok = with(&[
            ("STRIPE_SECRET_KEY", "sk_test_123"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_a,whsec_b"),
            ("STRIPE_PRICE_ID", "price_pro"),
        ])
        .unwrap();
        let stripe = ok.billing.stripe.unwrap();
        assert_eq!(stripe.webhook_secrets.len(), 2);
        assert_eq!(stripe.price_pro.as_deref(), Some("price_pro"));
        assert!(stripe
            .success_url
            .ends_with("/app/orgs/{ORG_ID}/billing?checkout=success"));
        assert!(Config::from_vars(&vars(&base))
            .unwrap()
            .billing
            .stripe
            .is_none());
    }

    #[test]
    fn redacts_database_password_in_debug() {
        let url = DatabaseUrl::parse("postgres://app:hunter2@db/x").unwrap();
        let shown = format!("{url:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
