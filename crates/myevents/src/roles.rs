use anyhow::bail;

/// A service this process can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Events,
    Bookings,
    Users,
    Notifications,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Events,
        Role::Bookings,
        Role::Users,
        Role::Notifications,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Events => "events",
            Role::Bookings => "bookings",
            Role::Users => "users",
            Role::Notifications => "notifications",
        }
    }

    /// Parses `events,bookings` style lists; duplicates are ignored, unknown names refused.
    pub fn parse_list(names: &[String]) -> anyhow::Result<Vec<Role>> {
        let mut roles = Vec::new();
        for name in names.iter().map(|n| n.trim().to_lowercase()) {
            let Some(role) = Role::ALL.into_iter().find(|r| r.name() == name) else {
                bail!("unknown role {name:?}: expected events, bookings, users or notifications");
            };
            if !roles.contains(&role) {
                roles.push(role);
            }
        }
        if roles.is_empty() {
            bail!(
                "no role to run: give --role events,bookings,users,notifications (or some of them)"
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
    }
}
