//! The command line: `serve`, `worker`, `migrate`, `seed`, `backup`, `openapi`,
//! `healthcheck`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::{read_environment, Config};
use crate::startup::{api_parts, connect_and_migrate, Application};

/// Tenantry: the multi-tenant SaaS backend in one binary.
#[derive(Debug, Parser)]
#[command(name = "tenantry", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Sub-commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API and its docs (with the embedded job worker).
    Serve {
        /// Do not run the embedded job worker (run `tenantry worker` processes instead).
        #[arg(long)]
        no_worker: bool,
    },
    /// Run the background job worker only.
    Worker,
    /// Apply database migrations and exit.
    Migrate,
    /// Create demo data (refused in production mode).
    Seed,
    /// Write a consistent copy of the SQLite database to PATH while the service runs
    /// (PostgreSQL: use `pg_dump` or continuous archiving, see docs/operations.md).
    Backup {
        /// Where to write the copy; must not exist yet.
        path: std::path::PathBuf,
    },
    /// Print the OpenAPI document as JSON.
    Openapi,
    /// Probe a running instance: exit 0 when `/health` (or URL) answers 200. Reads only
    /// `PORT`; for container health checks.
    Healthcheck {
        /// What to probe (default `http://127.0.0.1:$PORT/health`).
        url: Option<String>,
    },
}

/// Parses arguments, loads configuration and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Openapi => return print_openapi(),
        Command::Healthcheck { url } => return healthcheck(url.as_deref()),
        _ => {}
    }
    let config = match Config::from_vars(&read_environment()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("tenantry: {err}");
            return ExitCode::from(2);
        }
    };
    let _log_writer = crate::telemetry::init(&config.log_level, config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("tenantry: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(cli.command, config));
    // Work still blocked (a hash, a write to a stalled socket) does not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %format!("{err:#}"), "exiting");
            eprintln!("tenantry: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve { no_worker } => serve(config, no_worker).await,
        Command::Worker => worker(config).await,
        Command::Migrate => {
            crate::db::migrate(&config).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Seed => crate::seed::run(&config).await,
        Command::Backup { path } => {
            let db = crate::db::connect(&config).await?;
            let bytes = crate::db::backup::sqlite(&db, &path).await?;
            db.close().await;
            tracing::info!(path = %path.display(), bytes, "backup written");
            println!("backup written to {} ({bytes} bytes)", path.display());
            Ok(())
        }
        Command::Openapi | Command::Healthcheck { .. } => Ok(()),
    }
}

async fn serve(config: Config, no_worker: bool) -> anyhow::Result<()> {
    tracing::info!(
        mode = ?config.mode,
        database = ?config.database_url,
        worker = !no_worker,
        "starting"
    );
    let mut app = Application::build(config).await?;
    if no_worker {
        app = app.without_worker();
    }
    let addr = app.local_addr()?;
    let base = if addr.ip().is_unspecified() {
        format!("http://localhost:{}", addr.port())
    } else {
        format!("http://{addr}")
    };
    tracing::info!(
        address = %addr,
        console = %format!("{base}/app"),
        api = %format!("{base}/v1"),
        docs = %format!("{base}/docs"),
        openapi = %format!("{base}/openapi.json"),
        "listening"
    );
    if app.state().config.mode == crate::config::Mode::Development {
        let secrets = app
            .state()
            .config
            .data_dir
            .join(crate::secrets::DEV_SECRETS_FILE);
        tracing::info!(
            "development secrets (INTERNAL_ADMIN_TOKEN for {base}/v1/admin/… and the operator console {base}/app/operator) are in {}",
            secrets.display()
        );
        if app.state().config.auth.smtp_url.is_none() {
            tracing::info!(
                "SMTP_URL is not set: emails (verification, invitations, resets) are shown at {base}/app/dev/mail"
            );
        }
    }
    cancel_on_signal(app.shutdown_token());
    app.run().await
}

/// The standalone worker process: runs jobs until a signal, then drains.
async fn worker(config: Config) -> anyhow::Result<()> {
    let db = connect_and_migrate(&config).await?;
    let store = crate::store::Store::new(db)
        .listening_through(crate::db::direct_options(&config)?)
        .bounding_background_work(config.database_statement_timeout)
        .signing_audit_checkpoints_with(crate::store::audit_retention::CheckpointKey::derive(
            config.session_secret.expose(),
        ));
    let mailer = crate::mail::mailer(&config.auth)?;
    let billing = crate::billing::Billing::from_config(&config.billing)?;
    let token = CancellationToken::new();
    cancel_on_signal(token.clone());
    let worker = crate::jobs::Worker::new(
        store.clone(),
        crate::jobs::Registry::builtin(),
        crate::jobs::JobServices { mailer, billing },
        config.worker.clone(),
        std::sync::Arc::new(tokio::sync::Notify::new()),
    );
    tracing::info!(worker = %worker.id(), "worker process started");
    // Other instances' live events hear of what this process seals through Redis, when
    // configured (through PostgreSQL NOTIFY otherwise).
    let announcements = match &config.redis_url {
        Some(url) => Some(crate::realtime::fanout::publish_to_redis(
            store.clone(),
            std::sync::Arc::new(crate::db::cache::RedisHandle::new(url)?),
            config.redis_key_prefix.clone(),
            token.clone(),
        )),
        None => None,
    };
    worker.spawn(token, config.shutdown_timeout).join().await;
    if let Some(task) = announcements {
        let _ = task.await;
    }
    store.close().await;
    Ok(())
}

fn print_openapi() -> ExitCode {
    let (_, spec) = api_parts();
    match spec.to_pretty_json() {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("tenantry: cannot render the OpenAPI document: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Probes `url`, or this machine's `/health` at `PORT`; exit 0 on 200, 1 otherwise.
fn healthcheck(url: Option<&str>) -> ExitCode {
    let target = match url {
        Some(url) => crate::healthcheck::Target::parse(url),
        None => crate::healthcheck::Target::local(&read_environment()),
    };
    match target.and_then(|t| crate::healthcheck::probe(&t)) {
        Ok(200) => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("tenantry healthcheck: answered {status}");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("tenantry healthcheck: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Cancels `token` on SIGINT (Ctrl-C) or SIGTERM.
fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = ctrl_c => {}
                        _ = term.recv() => {}
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                }
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown signal received");
        token.cancel();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_cli() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
