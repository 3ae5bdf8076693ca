//! Real RabbitMQ users for the identity tests, created with `rabbitmqctl`
//! under names unique to the test and deleted when dropped.

use std::process::Command;

use lapin::options::{BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use mmt_shared::config::Namespace;

use crate::util::{PATIENCE, amqp_url};

/// Runs `rabbitmqctl` with `args`; panics with its output when it fails.
pub fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs (the identity tests need it)");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A broker user that lives as long as the value.
pub struct BrokerUser {
    pub name: String,
    password: String,
}

impl BrokerUser {
    /// A new user `mmt-t-<label>-<random>` with configure/write/read on
    /// everything of the default vhost.
    pub fn create(label: &str) -> Self {
        Self::create_with(label, [".*", ".*", ".*"])
    }

    /// A new user with the given configure, write and read patterns on `/`.
    pub fn create_with(label: &str, rights: [&str; 3]) -> Self {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
        Self::create_named(format!("mmt-t-{label}-{suffix}"), rights)
    }

    /// A new user named exactly `name` (the caller makes it unique), with
    /// the given configure, write and read patterns on `/`.
    pub fn create_named(name: String, [configure, write, read]: [&str; 3]) -> Self {
        let password = uuid::Uuid::new_v4().simple().to_string();
        rabbitmqctl(&["add_user", &name, &password]);
        let user = Self { name, password };
        rabbitmqctl(&[
            "set_permissions",
            "-p",
            "/",
            &user.name,
            configure,
            write,
            read,
        ]);
        user
    }

    /// The test broker's URL with this user's login.
    pub fn url(&self) -> String {
        let base = amqp_url();
        let (scheme, rest) = base.split_once("://").expect("URL has a scheme");
        let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        format!("{scheme}://{}:{}@{host}", self.name, self.password)
    }

    /// A connection logged in as this user.
    pub async fn connect(&self) -> Connection {
        Connection::connect(&self.url(), ConnectionProperties::default())
            .await
            .unwrap_or_else(|e| panic!("{} cannot connect: {e}", self.name))
    }
}

impl Drop for BrokerUser {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_user", &self.name])
            .output();
    }
}

/// Publishes `body` on `routing_key` of `NS.in` with `user_id` (when given)
/// and returns the reply's bytes exactly as the worker sent them.
pub async fn raw_call(
    connection: &Connection,
    ns: &Namespace,
    routing_key: &str,
    body: &[u8],
    user_id: Option<&str>,
) -> Vec<u8> {
    use futures::StreamExt;
    let channel = connection.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let mut replies = channel
        .basic_consume(
            "amq.rabbitmq.reply-to".into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("direct reply-to");
    let mut properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_message_id(uuid::Uuid::new_v4().to_string().into())
        .with_reply_to("amq.rabbitmq.reply-to".into())
        .with_correlation_id("raw-call".into());
    if let Some(user) = user_id {
        properties = properties.with_user_id(user.into());
    }
    channel
        .basic_publish(
            ns.inbound_exchange().as_str().into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
        .expect("publish")
        .await
        .expect("confirmed");
    let reply = tokio::time::timeout(PATIENCE, replies.next())
        .await
        .expect("a reply in time")
        .expect("reply stream open")
        .expect("reply delivery");
    let _ = channel.close(200, "done".into()).await;
    reply.data
}
