// Connect a user's exchange account, then resolve its tokenId (amqplib >= 0.10).
const amqp = require("amqplib");
const { randomUUID } = require("crypto");

const NS = "mmt";

async function main() {
  const connection = await amqp.connect("amqp://guest:guest@127.0.0.1:5672/%2f");
  const channel = await connection.createConfirmChannel();
  const pending = new Map();
  await channel.consume("amq.rabbitmq.reply-to", (msg) => {
    const resolve = pending.get(msg.properties.correlationId);
    if (resolve) resolve(JSON.parse(msg.content.toString()));
  }, { noAck: true });

  const call = (routingKey, body, messageId = randomUUID()) => new Promise((resolve, reject) => {
    const correlationId = randomUUID();
    pending.set(correlationId, resolve);
    channel.publish(`${NS}.in`, routingKey, Buffer.from(JSON.stringify(body)), {
      contentType: "application/json",
      persistent: true,
      messageId,
      replyTo: "amq.rabbitmq.reply-to",
      correlationId,
      mandatory: true,
    }, (err) => { if (err) reject(err); });
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
  const tokenId = connected.tokens[0].tokenId;
  console.log("tokenId:", tokenId);
  const resolved = await call("token.resolve", { clientId: "acme", tokenId, operation: "write" });
  console.log("write with a read token:", resolved.error.code);
  await connection.close();
}

main().catch((err) => { console.error(err); process.exit(1); });
