//! The `ordo` binary: `serve`, `migrate`, `admin`, `backup`, `restore`, `migrate-to`, `bench`.

use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;
use tokio_util::sync::CancellationToken;

use ordo::auth::domain::{Email, NewPassword, Role, parse_name};
use ordo::config::{Config, DbArgs, LogFormat, Secret, ServeArgs};

// Many small short-lived allocations per request: mimalloc handles them far better than
// the system allocator on this workload.
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[derive(Parser)]
#[command(
    name = "ordo",
    version,
    about = "Order processing and order tracking service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (applies pending migrations first).
    Serve(Box<ServeArgs>),
    /// Apply pending database migrations and exit.
    Migrate(DbArgs),
    /// Administration.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Write a consistent copy of the embedded database while the server keeps serving.
    Backup {
        #[command(flatten)]
        db: DbArgs,
        /// The file to write (it must not exist).
        #[arg(long)]
        to: std::path::PathBuf,
    },
    /// Put a backup in place of the embedded database (refused while a server uses it).
    Restore {
        #[command(flatten)]
        db: DbArgs,
        /// A file written by `ordo backup`.
        #[arg(long)]
        from: std::path::PathBuf,
    },
    /// Copy the embedded database into a fresh PostgreSQL database (stop the server first).
    MigrateTo {
        #[command(flatten)]
        db: DbArgs,
        /// The target, `postgres://user@host/db`: an empty database.
        #[arg(value_name = "POSTGRES_URL", hide_env_values = true)]
        target: Secret,
    },
    /// Load generators: measure a running server.
    Bench(ordo::bench::BenchArgs),
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a user of any role.
    CreateUser {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        email: String,
        /// The password (or ORDO_NEW_USER_PASSWORD, to keep it out of the shell history).
        #[arg(long, env = "ORDO_NEW_USER_PASSWORD", hide_env_values = true)]
        password: Secret,
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = ["customer", "staff", "admin"], default_value = "staff")]
        role: String,
    },
}

fn main() -> anyhow::Result<()> {
    // One TLS crypto provider for the whole process (sqlx, reqwest, the HTTPS server).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(*args).await,
            Command::Migrate(db) => {
                ordo::telemetry::init_logging(LogFormat::Text);
                db.validate()?;
                ordo::storage::connect_with(db.database_url.expose(), 1, db.sqlite_synchronous, 0)
                    .await?;
                tracing::info!("migrations applied");
                Ok(())
            }
            Command::Admin(AdminCommand::CreateUser {
                db,
                email,
                password,
                name,
                role,
            }) => {
                ordo::telemetry::init_logging(LogFormat::Text);
                db.validate()?;
                let email = Email::parse("--email", &email)
                    .map_err(|e| anyhow::anyhow!("--email {}", e.message))?;
                let password = NewPassword::parse("--password", password.expose().to_owned())
                    .map_err(|e| anyhow::anyhow!("--password {}", e.message))?;
                let name = parse_name("--name", &name)
                    .map_err(|e| anyhow::anyhow!("--name {}", e.message))?;
                let role = Role::parse(&role)
                    .ok_or_else(|| anyhow::anyhow!("--role must be customer, staff or admin"))?;
                let store = ordo::storage::connect_with(
                    db.database_url.expose(),
                    2,
                    db.sqlite_synchronous,
                    0,
                )
                .await?;
                let clock: std::sync::Arc<dyn ordo::clock::Clock> =
                    std::sync::Arc::new(ordo::clock::SystemClock);
                let auth = ordo::auth::service::AuthService::new(
                    store,
                    clock,
                    None,
                    std::time::Duration::from_secs(60),
                )
                .await?;
                let user = auth
                    .create_user(
                        ordo::auth::service::NewUser {
                            email,
                            password,
                            name,
                            phone: None,
                            role,
                        },
                        Some("system:cli"),
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                println!(
                    "created {} user {} ({})",
                    user.role.as_str(),
                    user.email,
                    user.id
                );
                Ok(())
            }
            Command::Backup { db, to } => {
                ordo::telemetry::init_logging(LogFormat::Text);
                db.validate()?;
                let summary = ordo::storage::backup::backup(db.database_url.expose(), &to).await?;
                println!("backup written: {summary}");
                Ok(())
            }
            Command::Restore { db, from } => {
                ordo::telemetry::init_logging(LogFormat::Text);
                db.validate()?;
                let summary =
                    ordo::storage::backup::restore(db.database_url.expose(), &from).await?;
                println!("restored: {summary}");
                Ok(())
            }
            Command::MigrateTo { db, target } => {
                ordo::telemetry::init_logging(LogFormat::Text);
                db.validate()?;
                let copied =
                    ordo::storage::copy::migrate_to(db.database_url.expose(), target.expose())
                        .await?;
                for (table, rows) in &copied.tables {
                    println!("{table}: {rows} rows");
                }
                if !copied.skipped.is_empty() {
                    println!(
                        "not copied (the embedded database's own): {}",
                        copied.skipped.join(", ")
                    );
                }
                println!(
                    "copied {} tables into PostgreSQL; point DATABASE_URL at it",
                    copied.tables.len()
                );
                Ok(())
            }
            Command::Bench(args) => ordo::bench::run(args).await,
        }
    })
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    ordo::telemetry::init_logging(args.log_format);
    let config = Config::from_args(args)?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let files = ordo::server::raise_file_limit();
    tracing::info!(
        open_files = files,
        listen = %config.listen,
        tls = config.tls.is_some(),
        backend = if config.database_url.expose().starts_with("sqlite") { "sqlite" } else { "postgres" },
        bus = if config.nats_url.is_some() { "nats" } else { "in-process" },
        "starting ordo"
    );
    let state = ordo::app::AppState::build_default(config).await?;
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested; finishing in-flight requests");
        token.cancel();
    });
    ordo::server::run(listener, state, shutdown).await
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
