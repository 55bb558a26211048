//! The roles a process can run, each a module of its own that says what it needs and what it
//! provides, registered in [`ALL`]; `myevents serve` starts those the configuration names and
//! puts what they provide together (as Grafana Loki registers its modules). The code path is the
//! same whether a process runs one role or all of them.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::bail;
use async_trait::async_trait;
use axum::Router;
use futures_util::future::BoxFuture;
use platform::Config;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::stores::Tables;

mod bookings;
mod events;
mod notifications;
pub(crate) mod users;
mod web;

/// Every role of this binary, in the order a process starts them whatever the order of `--role`,
/// so that the readiness reasons and the OpenAPI document always come in this order. Adding a
/// service is a module beside these and a line here (its settings go in `platform::Config`).
pub(crate) const ALL: &[&dyn Role] = &[
    &events::Events,
    &bookings::Bookings,
    &users::Users,
    &notifications::Notifications,
    &web::Web,
];

/// A role `myevents serve --role` can name: a service, or the web UI.
#[async_trait]
pub(crate) trait Role: Sync {
    /// Its name in `--role`, in `storage.<name>_url`, in the logs and in the metrics.
    fn name(&self) -> &'static str;

    /// Whether it keeps state: it then needs a store (locked, on SQLite, against a second server
    /// or a replay) and the bus. A process whose roles keep none opens neither.
    fn has_state(&self) -> bool {
        true
    }

    /// The consumer group it reads the bus with. Every process declares every role's group
    /// before relaying, whichever roles it runs (see `serve::services::start_relays`).
    fn subscription(&self) -> Option<bus::Subscription> {
        None
    }

    /// The OpenAPI description of its routes (`myevents openapi` prints every role's).
    fn openapi(&self) -> Option<utoipa::openapi::OpenApi> {
        None
    }

    /// Opens what it needs of its own, its store, with its tables created as `tables` asks:
    /// all that `myevents migrate` does with it, and what `serve` starts it from.
    async fn open(&self, config: &Config, tables: Tables) -> anyhow::Result<Box<dyn OpenRole>>;
}

/// A role with its store open. Dropping it closes the store: on SQLite, its writer commits what
/// it has queued first.
#[async_trait]
pub(crate) trait OpenRole: Send + Sync {
    /// What it provides the process. Everything that can refuse the start (a bad setting, a
    /// replay holding the database) happens here, before any role's consumer or relay runs.
    async fn start(&self, shared: &Shared<'_>) -> anyhow::Result<Provides>;
}

/// What a process lends every role it starts.
pub(crate) struct Shared<'a> {
    pub config: &'a Config,
    /// Signs guest booking links (bookings answers them, notifications mails them).
    pub links: &'a platform::LinkSigner,
    /// Cancelled once the HTTP servers have drained: background work stops then, and shutdown
    /// waits for it.
    pub background: &'a CancellationToken,
}

/// What a started role gives the process; `serve` puts each part where it belongs.
#[derive(Default)]
pub(crate) struct Provides {
    /// Its HTTP routes, merged into the process's one router.
    pub routes: Option<Router>,
    /// Its outbox, which the process relays to the bus.
    pub outbox: Option<Arc<dyn bus::Outbox>>,
    /// What it reads from the bus, and with which group.
    pub consumer: Option<(bus::Subscription, Arc<dyn bus::Handler>)>,
    /// What `/health/ready` asks about it.
    pub check: Option<Check>,
    /// Work of its own it has started (the notifications sender, the gRPC server), which
    /// shutdown waits for once background work is cancelled.
    pub tasks: Vec<JoinHandle<()>>,
    /// The address of its gRPC server, for the ports file.
    pub grpc: Option<SocketAddr>,
    /// Ends, with the reason, if the process must stop serving because of it (a replay took its
    /// database).
    pub stop: Option<Stop>,
}

/// See [`Provides::stop`].
pub(crate) type Stop = Pin<Box<dyn Future<Output = String> + Send>>;

/// A readiness check: what it asks (to name it when it stays silent) and the asking.
#[derive(Clone)]
pub(crate) struct Check {
    pub what: &'static str,
    ask: Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>,
}

impl Check {
    /// Asks `of` with `check`, its own check, which says why it is not ready.
    pub fn new<T: ?Sized + Send + Sync + 'static>(
        what: &'static str,
        of: Arc<T>,
        check: for<'a> fn(&'a T) -> BoxFuture<'a, Result<(), String>>,
    ) -> Self {
        let ask = move || -> BoxFuture<'static, Result<(), String>> {
            let of = of.clone();
            Box::pin(async move { check(&of).await })
        };
        Check {
            what,
            ask: Arc::new(ask),
        }
    }

    pub fn run(&self) -> BoxFuture<'static, Result<(), String>> {
        (self.ask)()
    }
}

/// Parses `events,bookings` style lists; duplicates are ignored, unknown names refused.
pub(crate) fn parse_list(names: &[String]) -> anyhow::Result<Vec<&'static dyn Role>> {
    let mut roles: Vec<&'static dyn Role> = Vec::new();
    for name in names.iter().map(|n| n.trim().to_lowercase()) {
        let Some(role) = ALL.iter().copied().find(|r| r.name() == name) else {
            bail!("unknown role {name:?}: expected {}", choices());
        };
        if !roles.iter().any(|r| r.name() == role.name()) {
            roles.push(role);
        }
    }
    if roles.is_empty() {
        let all: Vec<&str> = ALL.iter().map(|r| r.name()).collect();
        bail!(
            "no role to run: give --role {} (or some of them)",
            all.join(",")
        );
    }
    Ok(roles)
}

/// `events, bookings, users, notifications or web`.
fn choices() -> String {
    let names: Vec<&str> = ALL.iter().map(|r| r.name()).collect();
    match names.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, first)) => format!("{} or {last}", first.join(", ")),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::{ALL, parse_list};

    /// A role added to [`ALL`] is named in `--role`'s help too.
    #[test]
    fn the_role_flag_names_every_role() {
        use clap::CommandFactory;
        let cli = crate::cli::Cli::command();
        let serve = cli.find_subcommand("serve").expect("a serve command");
        let flag = serve.get_arguments().find(|a| a.get_long() == Some("role"));
        let help = flag
            .and_then(|f| f.get_help())
            .expect("--role has help")
            .to_string();
        for role in ALL {
            assert!(
                help.contains(role.name()),
                "--role's help names {}",
                role.name()
            );
        }
    }

    #[test]
    fn role_lists_parse_and_unknown_roles_are_named() {
        let names = |s: &str| s.split(',').map(str::to_owned).collect::<Vec<_>>();
        let parsed = |names: &[String]| -> Result<Vec<&str>, String> {
            parse_list(names)
                .map(|roles| roles.iter().map(|r| r.name()).collect())
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            parsed(&names("bookings, events,bookings")).unwrap(),
            ["bookings", "events"]
        );
        let err = parsed(&names("events,tickets")).unwrap_err();
        assert!(
            err.contains("\"tickets\": expected events, bookings, users, notifications or web"),
            "{err}"
        );
        let err = parsed(&[]).unwrap_err();
        assert!(
            err.contains("--role events,bookings,users,notifications,web (or"),
            "{err}"
        );
        assert_eq!(parsed(&names("web")).unwrap(), ["web"]);
        let stateless: Vec<&str> = ALL
            .iter()
            .filter(|r| !r.has_state())
            .map(|r| r.name())
            .collect();
        assert_eq!(stateless, ["web"]);
    }
}
