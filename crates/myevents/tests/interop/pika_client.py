"""A plain AMQP client, as the reference's Go services or any other would be, for the
interoperability test (crates/myevents/tests/api/interop.rs).

    pika_client.py listen URL EXCHANGE   prints the first eventCreated it receives, as JSON
    pika_client.py publish URL EXCHANGE BODY [NAME]
                                         publishes BODY as event NAME (default eventCreated),
                                         the reference's way (no message id, no headers beyond
                                         x-event-name)
"""
import json
import sys

import pika


def listen(url, exchange):
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.exchange_declare(exchange=exchange, exchange_type="topic", durable=True)
    queue = channel.queue_declare(queue="", exclusive=True).method.queue
    channel.queue_bind(queue=queue, exchange=exchange, routing_key="eventCreated")
    print("ready", flush=True)
    for method, properties, body in channel.consume(queue, inactivity_timeout=30):
        if method is None:
            print(json.dumps({"error": "no eventCreated within 30 s"}), flush=True)
            return 1
        print(json.dumps({
            "routing_key": method.routing_key,
            "content_type": properties.content_type,
            "headers": {k: v.decode() if isinstance(v, bytes) else v
                        for k, v in (properties.headers or {}).items()},
            "body": json.loads(body),
        }), flush=True)
        channel.basic_ack(method.delivery_tag)
        return 0


def publish(url, exchange, body, name="eventCreated"):
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.exchange_declare(exchange=exchange, exchange_type="topic", durable=True)
    channel.basic_publish(
        exchange=exchange,
        routing_key=name,
        body=body.encode(),
        properties=pika.BasicProperties(
            content_type="application/json",
            headers={"x-event-name": name},
        ),
    )
    connection.close()
    return 0


if __name__ == "__main__":
    mode, url, exchange = sys.argv[1:4]
    sys.exit(listen(url, exchange) if mode == "listen" else publish(url, exchange, *sys.argv[4:6]))
