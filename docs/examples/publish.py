"""Connect a user's exchange account, then resolve its tokenId (pika >= 1.3)."""
import json
import uuid

import pika

NS = "mmt"
connection = pika.BlockingConnection(pika.URLParameters("amqp://guest:guest@127.0.0.1:5672/%2f"))
channel = connection.channel()
channel.confirm_delivery()
replies = {}
channel.basic_consume(
    "amq.rabbitmq.reply-to",
    lambda ch, method, props, body: replies.__setitem__(props.correlation_id, json.loads(body)),
    auto_ack=True,
)


def call(routing_key, body, message_id=None):
    correlation_id = str(uuid.uuid4())
    channel.basic_publish(
        exchange=f"{NS}.in",
        routing_key=routing_key,
        body=json.dumps(body),
        properties=pika.BasicProperties(
            content_type="application/json",
            delivery_mode=2,
            message_id=message_id or str(uuid.uuid4()),
            reply_to="amq.rabbitmq.reply-to",
            correlation_id=correlation_id,
        ),
        mandatory=True,
    )
    while correlation_id not in replies:
        connection.process_data_events(time_limit=1)
    return replies.pop(correlation_id)


connected = call("integration.connected", {
    "clientId": "acme",
    "endUserId": "user-42",
    "scope": "read",
    "accessToken": {
        "brokerType": "coinbase",
        "brokerName": "Coinbase",
        "accountTokens": [{
            "account": {"accountId": "cb-1", "accountName": "Main"},
            "accessToken": "raw-exchange-access-token",
            "refreshToken": "raw-exchange-refresh-token",
        }],
    },
})
token_id = connected["tokens"][0]["tokenId"]
print("tokenId:", token_id)
resolved = call("token.resolve", {"clientId": "acme", "tokenId": token_id, "operation": "write"})
print("write with a read token:", resolved["error"]["code"])
connection.close()
