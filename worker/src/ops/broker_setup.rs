//! `mmt-worker broker-setup`: the least-privilege RabbitMQ users,
//! permissions and topic permissions of a deployment (docs/security.md),
//! as `rabbitmqctl` commands to print or apply. [`plan`] is pure; [`apply`]
//! runs `rabbitmqctl` and is idempotent.
//!
//! - the worker: configure, write and read on `NS.*` (and write on the
//!   default exchange, for replies);
//! - one publisher per broker user of the clients file: write on `NS.in`
//!   with the four message routing keys only, read on its own reply queues
//!   (`amq.gen-*`, `amq.rabbitmq.reply-to`);
//! - the console: read on `NS.events` (a queue of its own bound to it), write
//!   on `NS.in` with `console.*` routing keys only, its reply queues.
//!
//! Nobody but the worker may configure anything of the namespace, read its
//! queues or publish events; the guest user is not used.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use mmt_shared::config::Namespace;
use mmt_shared::wire::MessageKind;

use crate::rules::identity::Clients;

/// One `rabbitmqctl` invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ctl(pub Vec<String>);

impl fmt::Display for Ctl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("rabbitmqctl")?;
        for arg in &self.0 {
            let plain = arg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:@%".contains(c));
            if plain {
                write!(f, " {arg}")?;
            } else {
                write!(f, " '{}'", arg.replace('\'', r"'\''"))?;
            }
        }
        Ok(())
    }
}

/// Who gets which rights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Every user the deployment needs.
    pub users: Vec<String>,
    /// The permission and topic permission commands.
    pub grants: Vec<Ctl>,
}

/// The names of a deployment's broker users.
#[derive(Clone, Debug)]
pub struct Roles<'a> {
    /// The virtual host.
    pub vhost: &'a str,
    /// The worker's user.
    pub worker: &'a str,
    /// The console's user.
    pub console: &'a str,
}

fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        if !c.is_ascii_alphanumeric() && c != '_' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn any_of(items: &[String]) -> String {
    format!("^({})$", items.join("|"))
}

/// The reply queues any client may have: server-named queues and direct
/// reply-to.
const REPLY_QUEUES: &str = r"amq\.gen-.*|amq\.rabbitmq\.reply-to";

/// The plan for `namespace`, the broker users of `clients` and `roles`.
pub fn plan(clients: &Clients, namespace: &Namespace, roles: &Roles<'_>) -> Plan {
    let ns = quote(namespace.as_str());
    let inbound = quote(&namespace.inbound_exchange());
    let events = quote(&namespace.events_exchange());
    let vhost = roles.vhost.to_owned();
    let permissions = |user: &str, configure: String, write: String, read: String| {
        Ctl(vec![
            "set_permissions".into(),
            "-p".into(),
            vhost.clone(),
            user.to_owned(),
            configure,
            write,
            read,
        ])
    };
    let topic = |user: &str, exchange: &str, write: String, read: String| {
        Ctl(vec![
            "set_topic_permissions".into(),
            "-p".into(),
            vhost.clone(),
            user.to_owned(),
            exchange.to_owned(),
            write,
            read,
        ])
    };
    let mut grants = vec![permissions(
        roles.worker,
        format!(r"^{ns}\..*"),
        format!(r"^({ns}\..*|amq\.default)$"),
        format!(r"^{ns}\..*"),
    )];
    let message_keys: Vec<String> = MessageKind::ALL
        .iter()
        .map(|k| quote(k.routing_key()))
        .collect();
    let publishers: BTreeSet<&str> = clients
        .iter()
        .flat_map(|(_, c)| c.broker_users.iter().map(String::as_str))
        .filter(|u| *u != roles.worker && *u != roles.console)
        .collect();
    for user in &publishers {
        grants.push(permissions(
            user,
            r"^amq\.gen-.*".into(),
            format!("^{inbound}$"),
            format!("^({REPLY_QUEUES})$"),
        ));
        grants.push(topic(
            user,
            &namespace.inbound_exchange(),
            any_of(&message_keys),
            "^$".into(),
        ));
    }
    grants.push(permissions(
        roles.console,
        r"^amq\.gen-.*".into(),
        // amq.default: the console's capped events queue dead-letters its
        // overflow through the default exchange, which RabbitMQ checks at
        // declare time (docs/security.md says what that grants).
        format!(r"^({inbound}|amq\.gen-.*|amq\.default)$"),
        format!("^({events}|{REPLY_QUEUES})$"),
    ));
    grants.push(topic(
        roles.console,
        &namespace.inbound_exchange(),
        r"^console\..*".into(),
        "^$".into(),
    ));
    grants.push(topic(
        roles.console,
        &namespace.events_exchange(),
        "^$".into(),
        ".*".into(),
    ));
    let mut users = vec![roles.worker.to_owned(), roles.console.to_owned()];
    users.extend(publishers.iter().map(|u| (*u).to_owned()));
    Plan { users, grants }
}

impl Plan {
    /// The plan as a shell script a person can read and run.
    pub fn script(&self, namespace: &Namespace, vhost: &str) -> String {
        let mut out = format!(
            "# mmt broker setup for namespace {namespace} on vhost {vhost} (docs/security.md)\n\
             # Users: create the missing ones first, each with its own password\n\
             # (or use `mmt-worker broker-setup --apply --passwords-dir DIR`):\n"
        );
        for user in &self.users {
            out.push_str(&format!(
                "#   {}\n",
                Ctl(vec!["add_user".into(), user.clone(), "<password>".into()])
            ));
        }
        out.push_str(
            "# The guest user is not used by any of them; on a broker of your own:\n\
             #   rabbitmqctl delete_user guest\n",
        );
        for grant in &self.grants {
            out.push_str(&format!("{grant}\n"));
        }
        out
    }
}

/// Why applying the plan failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// `rabbitmqctl` could not be run.
    #[error("cannot run rabbitmqctl")]
    Spawn(#[source] std::io::Error),
    /// `rabbitmqctl` failed.
    #[error("rabbitmqctl {command} failed (exit {code:?})")]
    Failed {
        /// Its first argument.
        command: String,
        /// Its exit code.
        code: Option<i32>,
    },
    /// Users are missing and no directory was given for new passwords.
    #[error("missing broker users {0}: create them, or pass --passwords-dir to have them created")]
    MissingUsers(String),
    /// A new password could not be written.
    #[error("cannot write the password of a new user to {0}")]
    Password(String, #[source] std::io::Error),
}

fn ctl(args: &[String]) -> Result<String, SetupError> {
    let out = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .map_err(SetupError::Spawn)?;
    if !out.status.success() {
        return Err(SetupError::Failed {
            command: args.first().cloned().unwrap_or_default(),
            code: out.status.code(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Applies `plan` with `rabbitmqctl`: creates the missing users (each with a
/// fresh random password written to `passwords_dir/<user>`, mode 0600, and
/// never printed), then sets every permission. Running it again changes
/// nothing. Returns the users it created.
pub fn apply(plan: &Plan, passwords_dir: Option<&Path>) -> Result<Vec<String>, SetupError> {
    let listed = ctl(&["-q".into(), "list_users".into()])?;
    let existing: BTreeSet<&str> = listed
        .lines()
        .filter_map(|line| line.split('\t').next())
        .collect();
    let missing: Vec<String> = plan
        .users
        .iter()
        .filter(|u| !existing.contains(u.as_str()))
        .cloned()
        .collect();
    if !missing.is_empty() {
        let Some(dir) = passwords_dir else {
            return Err(SetupError::MissingUsers(missing.join(", ")));
        };
        for user in &missing {
            let password = zeroize::Zeroizing::new(uuid::Uuid::new_v4().simple().to_string());
            let path = dir.join(user);
            write_private(&path, password.as_bytes())
                .map_err(|e| SetupError::Password(path.display().to_string(), e))?;
            ctl(&["add_user".into(), user.clone(), password.to_string()])?;
        }
    }
    for grant in &plan.grants {
        ctl(&grant.0)?;
    }
    Ok(missing)
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(data)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::identity::Client;

    fn clients() -> Clients {
        let client = |users: &[&str]| Client {
            broker_users: users.iter().map(|u| (*u).to_owned()).collect(),
            webhook: None,
        };
        Clients::new([
            ("acme".to_owned(), client(&["acme-app", "shared-gw"])),
            ("globex".to_owned(), client(&["globex-app", "shared-gw"])),
        ])
    }

    fn the_plan() -> Plan {
        plan(
            &clients(),
            &Namespace::new("prod.mmt").expect("valid"),
            &Roles {
                vhost: "/",
                worker: "mmt-worker",
                console: "mmt-console",
            },
        )
    }

    fn grant<'a>(plan: &'a Plan, verb: &str, user: &str, exchange: Option<&str>) -> &'a [String] {
        plan.grants
            .iter()
            .find(|g| g.0[0] == verb && g.0[3] == user && exchange.is_none_or(|e| g.0[4] == e))
            .map(|g| &g.0[if exchange.is_some() { 5 } else { 4 }..])
            .unwrap_or_else(|| panic!("no {verb} for {user}"))
    }

    #[test]
    fn the_worker_alone_may_configure_and_read_the_namespace() {
        let plan = the_plan();
        assert_eq!(
            grant(&plan, "set_permissions", "mmt-worker", None),
            [
                r"^prod\.mmt\..*",
                r"^(prod\.mmt\..*|amq\.default)$",
                r"^prod\.mmt\..*"
            ]
        );
        for user in ["acme-app", "globex-app", "shared-gw", "mmt-console"] {
            let rights = grant(&plan, "set_permissions", user, None);
            assert_eq!(
                rights[0], r"^amq\.gen-.*",
                "{user} configures only its own queues"
            );
            assert!(
                !rights[2].contains(r"mmt\.integration"),
                "{user}: {rights:?}"
            );
        }
    }

    #[test]
    fn a_publisher_writes_the_four_messages_to_ns_in_only() {
        let plan = the_plan();
        assert_eq!(
            grant(&plan, "set_permissions", "acme-app", None)[1],
            r"^prod\.mmt\.in$"
        );
        assert_eq!(
            grant(
                &plan,
                "set_topic_permissions",
                "acme-app",
                Some("prod.mmt.in")
            ),
            [
                r"^(integration\.connected|connection\.removed|token\.resolve|link\.access_tokens)$",
                "^$"
            ]
        );
    }

    #[test]
    fn a_broker_user_of_two_clients_is_granted_once() {
        let plan = the_plan();
        let count = plan
            .grants
            .iter()
            .filter(|g| g.0[0] == "set_permissions" && g.0[3] == "shared-gw")
            .count();
        assert_eq!(count, 1);
        assert_eq!(
            plan.users,
            [
                "mmt-worker",
                "mmt-console",
                "acme-app",
                "globex-app",
                "shared-gw"
            ]
        );
    }

    #[test]
    fn the_console_reads_events_and_asks_console_requests_only() {
        let plan = the_plan();
        assert_eq!(
            grant(
                &plan,
                "set_topic_permissions",
                "mmt-console",
                Some("prod.mmt.in")
            ),
            [r"^console\..*", "^$"]
        );
        assert_eq!(
            grant(
                &plan,
                "set_topic_permissions",
                "mmt-console",
                Some("prod.mmt.events")
            ),
            ["^$", ".*"]
        );
    }

    #[test]
    fn the_script_quotes_what_the_shell_would_expand() {
        let script = the_plan().script(&Namespace::new("prod.mmt").expect("valid"), "/");
        assert!(
            script.contains(r"rabbitmqctl set_permissions -p / mmt-worker '^prod\.mmt\..*'"),
            "{script}"
        );
        assert!(
            !script
                .lines()
                .any(|l| !l.starts_with('#') && l.contains("guest")),
            "{script}"
        );
    }
}
