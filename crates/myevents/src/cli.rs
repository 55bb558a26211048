//! The command line. Flags override the config file and environment (SPEC §7).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// `myevents --version`: the release and the commit it was built from (see build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("MYEVENTS_COMMIT"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "myevents",
    version = VERSION,
    about = "MyEvents: an event-ticketing platform. `myevents serve` runs every service in one \
             process on embedded storage; `--role` runs a subset.",
    after_help = "Configuration: defaults < --config FILE (TOML) < MYEVENTS_* variables < flags. \
                  See the README for every setting."
)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run services: the HTTP API (default :8181) and Prometheus metrics (default :9100).
    Serve(ServeArgs),
    /// Write a self-signed certificate (cert.pem) and key (key.pem) for HTTPS.
    GenCert {
        /// Host name the certificate is for; repeat for several.
        #[arg(long = "host", required = true, value_name = "NAME")]
        hosts: Vec<String>,
        /// Folder to write the files into.
        #[arg(long, default_value = ".", value_name = "DIR")]
        out: PathBuf,
    },
    /// Manage organisers (admins).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Create or update the databases of the configured roles, then exit.
    Migrate(ServeArgs),
    /// Rebuild a stopped service's database from the history of the bus (Kafka or the
    /// embedded log): `myevents replay --role bookings`. The old database is kept beside it.
    Replay(ServeArgs),
    /// Print the OpenAPI document of every service (JSON), as `/openapi.json` of a process
    /// running them all answers it; the web UI's types are generated from it.
    Openapi,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an admin, or make an existing user an admin with this password.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, env = "MYEVENTS_ADMIN_PASSWORD", hide_env_values = true)]
        password: String,
        #[command(flatten)]
        paths: DataArgs,
    },
}

#[derive(Debug, Args, Default)]
pub struct DataArgs {
    /// Where the embedded databases live [default: ./data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// Services to run, comma-separated: events, bookings, users, notifications, web
    /// [default: all].
    #[arg(long = "role", value_delimiter = ',', value_name = "ROLES")]
    pub roles: Vec<String>,
    /// Address of the HTTP API [default: 0.0.0.0:8181].
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Address of the metrics endpoint [default: 0.0.0.0:9100].
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_listen: Option<String>,
    /// Built web UI to serve at / [default: web/dist when present].
    #[arg(long, value_name = "DIR")]
    pub web_dir: Option<PathBuf>,
    #[command(flatten)]
    pub paths: DataArgs,
}
