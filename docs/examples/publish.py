"""Connect a user's exchange account, then resolve its tokenId (pika >= 1.3).

Every message names the broker user it is published as (`user_id`, the
login of MMT_AMQP_URL): the broker checks it, and a worker in strict mode
serves only publishers that give it. Each call waits TIMEOUT seconds at
most, and its message expires in the queue after as long: when no worker
answers, the call says so and the message is never applied by a worker that
starts later. Retrying with the same message_id is safe (it is the
idempotency key). An error reply is printed with its code and message, and
the script exits 1.
"""
import json
import os
import sys
import time
import uuid

import pika

URL = os.environ.get("MMT_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
NS = os.environ.get("MMT_NAMESPACE", "mmt")
TIMEOUT = 5  # seconds
PARAMETERS = pika.URLParameters(URL)
USER = PARAMETERS.credentials.username  # the broker refuses any other user_id


class Failed(Exception):
    """The call did not get the answer it needs; the message says why."""


def call(channel, connection, replies, routing_key, body, message_id=None):
    correlation_id = str(uuid.uuid4())
    channel.basic_publish(
        exchange=f"{NS}.in",
        routing_key=routing_key,
        body=json.dumps(body),
        properties=pika.BasicProperties(
            content_type="application/json",
            delivery_mode=2,
            message_id=message_id or str(uuid.uuid4()),
            user_id=USER,
            reply_to="amq.rabbitmq.reply-to",
            correlation_id=correlation_id,
            expiration=str(TIMEOUT * 1000),  # ms: not left queued for a later worker
        ),
        mandatory=True,
    )
    deadline = time.monotonic() + TIMEOUT
    while correlation_id not in replies:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Failed(f"no answer to {routing_key} within {TIMEOUT} s: is mmt-worker running?")
        connection.process_data_events(time_limit=min(left, 1))
    return replies.pop(correlation_id)


def refused(routing_key, reply):
    error = reply.get("error") or {}
    return Failed(f"{routing_key} refused: {error.get('code')}: {error.get('message')}")


def main():
    connection = pika.BlockingConnection(PARAMETERS)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        replies = {}
        channel.basic_consume(
            "amq.rabbitmq.reply-to",
            lambda ch, method, props, body: replies.__setitem__(props.correlation_id, json.loads(body)),
            auto_ack=True,
        )
        connected = call(channel, connection, replies, "integration.connected", {
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
        if not connected.get("ok"):
            raise refused("integration.connected", connected)
        token_id = connected["tokens"][0]["tokenId"]
        print("tokenId:", token_id)
        resolved = call(channel, connection, replies, "token.resolve",
                        {"clientId": "acme", "tokenId": token_id, "operation": "write"})
        if resolved.get("ok"):
            raise Failed("token.resolve: a write with a read token was allowed")
        code = (resolved.get("error") or {}).get("code")
        if code != "scope_mismatch":
            raise refused("token.resolve", resolved)
        print("write with a read token:", code)
    finally:
        if connection.is_open:
            connection.close()


try:
    main()
except Failed as error:
    sys.exit(f"publish.py: {error}")
except pika.exceptions.AMQPError as error:
    sys.exit(f"publish.py: the broker refused: {error!r}")
