use anyhow::bail;

/// A service this process can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Events,
    Bookings,
    Users,
    Notifications,
    /// The web UI alone: no state and no bus, for a deployment that serves the UI from a process
    /// of its own behind the same gateway as the services. Every role serves the UI when
    /// `web_dir` is set; this one serves nothing else.
    Web,
}

impl Role {
    /// The services, which `myevents serve` runs when no role is named.
    pub const ALL: [Role; 4] = [
        Role::Events,
        Role::Bookings,
        Role::Users,
        Role::Notifications,
    ];

    /// Whether the role keeps state, and so has a store and uses the bus.
    pub fn has_state(self) -> bool {
        self != Role::Web
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Events => "events",
            Role::Bookings => "bookings",
            Role::Users => "users",
            Role::Notifications => "notifications",
            Role::Web => "web",
        }
    }

    /// Parses `events,bookings` style lists; duplicates are ignored, unknown names refused.
    pub fn parse_list(names: &[String]) -> anyhow::Result<Vec<Role>> {
        let mut roles = Vec::new();
        for name in names.iter().map(|n| n.trim().to_lowercase()) {
            let Some(role) = Role::ALL
                .into_iter()
                .chain([Role::Web])
                .find(|r| r.name() == name)
            else {
                bail!(
                    "unknown role {name:?}: expected events, bookings, users, notifications or web"
                );
            };
            if !roles.contains(&role) {
                roles.push(role);
            }
        }
        if roles.is_empty() {
            bail!(
                "no role to run: give --role events,bookings,users,notifications,web (or some of \
                 them)"
            );
        }
        Ok(roles)
    }
}

#[cfg(test)]
mod tests {
    use super::Role;

    #[test]
    fn role_lists_parse_and_unknown_roles_are_named() {
        let names = |s: &str| s.split(',').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            Role::parse_list(&names("bookings, events,bookings")).unwrap(),
            [Role::Bookings, Role::Events]
        );
        let err = Role::parse_list(&names("events,tickets"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("tickets"), "{err}");
        assert_eq!(Role::parse_list(&names("web")).unwrap(), [Role::Web]);
        assert!(!Role::Web.has_state() && Role::ALL.iter().all(|r| r.has_state()));
    }
}
