//! The `myevents` binary: configuration, roles and wiring. Every service runs through the same
//! code whether the process runs one of them or all: routes merged into one router, each
//! service with its own store, all connected only through the bus.

mod broker;
pub mod cli;
mod features;
mod lock;
mod replay;
mod roles;
mod serve;
mod stores;

use std::path::Path;

use anyhow::Context;
use platform::Config;

use cli::{AdminCommand, Cli, Command, DataArgs, ServeArgs};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::GenCert { hosts, out } => {
            let (cert, key) = platform::tls::write_self_signed(&hosts, &out)?;
            println!("wrote {} and {}", cert.display(), key.display());
            Ok(())
        }
        Command::Openapi => {
            println!("{}", serde_json::to_string_pretty(&openapi())?);
            Ok(())
        }
        Command::Serve(args) => {
            let config = load_config(cli.config.as_deref(), Some(&args), None)?;
            let telemetry = platform::telemetry::init(config.log_format == "json")?;
            let result = serve::serve(config).await;
            telemetry.shutdown();
            result
        }
        Command::Migrate(args) => {
            let config = load_config(cli.config.as_deref(), Some(&args), None)?;
            let telemetry = platform::telemetry::init(config.log_format == "json")?;
            let result = serve::migrate(&config).await;
            telemetry.shutdown();
            result
        }
        Command::Replay(args) => {
            let config = load_config(cli.config.as_deref(), Some(&args), None)?;
            let telemetry = platform::telemetry::init(config.log_format == "json")?;
            let result = replay::replay(&config).await;
            telemetry.shutdown();
            result
        }
        Command::Admin {
            command:
                AdminCommand::Create {
                    email,
                    password,
                    paths,
                },
        } => {
            let config = load_config(cli.config.as_deref(), None, Some(&paths))?;
            let store = roles::users::open_store(&config, stores::Tables::Required).await?;
            let user = users::make_admin(&store, &email, &password).await?;
            println!("{} is an admin (user {})", user.email, user.id);
            Ok(())
        }
    }
}

/// The OpenAPI document of every service, as one process running them all serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    serve::openapi_document(roles::ALL.iter().filter_map(|r| r.openapi()).collect())
}

/// Defaults < config file < environment < flags.
pub fn load_config(
    file: Option<&Path>,
    serve: Option<&ServeArgs>,
    data: Option<&DataArgs>,
) -> anyhow::Result<Config> {
    let mut config = Config::from_file(file)?;
    config.apply_env(|name| std::env::var(name).ok())?;
    if let Some(args) = serve {
        if !args.roles.is_empty() {
            config.roles = args.roles.clone();
        }
        if let Some(listen) = &args.listen {
            config.listen = listen.clone();
        }
        if let Some(listen) = &args.metrics_listen {
            config.metrics_listen = listen.clone();
        }
        if let Some(dir) = &args.web_dir {
            config.web_dir = Some(dir.clone());
        }
    }
    if let Some(dir) = serve
        .map(|s| &s.paths)
        .or(data)
        .and_then(|d| d.data_dir.as_ref())
    {
        config.data_dir = dir.clone();
    }
    config.validate().context("invalid configuration")?;
    Ok(config)
}
