// Connect a user's exchange account, then resolve its tokenId (amqplib >= 0.10).
//
// Every message names the broker user it is published as (userId, the login
// of MMT_AMQP_URL): the broker checks it, and a worker in strict mode serves
// only publishers that give it. Each call waits TIMEOUT_MS at most, and its
// message expires in the queue after as long: when no worker answers, the
// call says so and the message is never applied by a worker that starts
// later. Retrying with the same messageId is safe (it is the idempotency
// key). An error reply is printed with its code and message, and the script
// exits 1.
const amqp = require("amqplib");
const { randomUUID } = require("crypto");

const URL = process.env.MMT_AMQP_URL || "amqp://guest:guest@127.0.0.1:5672/%2f";
const NS = process.env.MMT_NAMESPACE || "mmt";
const TIMEOUT_MS = 5000;
const USER = decodeURIComponent(new globalThis.URL(URL).username); // the broker refuses any other userId

const refused = (routingKey, reply) => {
  const error = reply.error || {};
  return new Error(`${routingKey} refused: ${error.code}: ${error.message}`);
};

async function main() {
  const connection = await amqp.connect(URL);
  // A channel or connection the broker closes rejects the call in progress.
  let broken = null;
  const pending = new Map();
  const fail = (err) => {
    broken = broken || err;
    for (const settle of pending.values()) settle(null);
  };
  connection.on("error", fail);
  try {
    const channel = await connection.createConfirmChannel();
    channel.on("error", fail);
    await channel.consume("amq.rabbitmq.reply-to", (msg) => {
      const answer = pending.get(msg.properties.correlationId);
      if (answer) answer(JSON.parse(msg.content.toString()));
    }, { noAck: true });

    const call = (routingKey, body, messageId = randomUUID()) => new Promise((resolve, reject) => {
      const correlationId = randomUUID();
      const timer = setTimeout(() => {
        pending.delete(correlationId);
        reject(new Error(`no answer to ${routingKey} within ${TIMEOUT_MS / 1000} s: is mmt-worker running?`));
      }, TIMEOUT_MS);
      pending.set(correlationId, (reply) => {
        clearTimeout(timer);
        pending.delete(correlationId);
        if (reply === null) reject(new Error(`the broker refused: ${broken.message}`));
        else resolve(reply);
      });
      channel.publish(`${NS}.in`, routingKey, Buffer.from(JSON.stringify(body)), {
        contentType: "application/json",
        persistent: true,
        messageId,
        userId: USER,
        replyTo: "amq.rabbitmq.reply-to",
        correlationId,
        mandatory: true,
        expiration: String(TIMEOUT_MS), // not left queued for a later worker
      }, (err) => {
        if (err) {
          clearTimeout(timer);
          pending.delete(correlationId);
          reject(new Error(`the broker refused: ${(broken || err).message}`));
        }
      });
    });

    const connected = await call("integration.connected", {
      clientId: "acme",
      endUserId: "user-42",
      scope: "read",
      accessToken: {
        brokerType: "coinbase",
        brokerName: "Coinbase",
        accountTokens: [{
          account: { accountId: "cb-1", accountName: "Main" },
          accessToken: "raw-exchange-access-token",
          refreshToken: "raw-exchange-refresh-token",
        }],
      },
    });
    if (!connected.ok) throw refused("integration.connected", connected);
    const tokenId = connected.tokens[0].tokenId;
    console.log("tokenId:", tokenId);
    const resolved = await call("token.resolve", { clientId: "acme", tokenId, operation: "write" });
    if (resolved.ok) throw new Error("token.resolve: a write with a read token was allowed");
    if ((resolved.error || {}).code !== "scope_mismatch") throw refused("token.resolve", resolved);
    console.log("write with a read token:", resolved.error.code);
  } finally {
    await connection.close().catch(() => {});
  }
}

main().catch((err) => {
  console.error(`publish.js: ${err.message}`);
  process.exit(1);
});
