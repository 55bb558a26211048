"""How fast the local moto moves messages through SNS FIFO -> SQS FIFO for a plain boto3 client,
with none of MyEvents in the way: the ceiling for `myevents-bench propagation --broker sqs://…`.

    python3 bench/sqs_moto_baseline.py [--endpoint http://127.0.0.1:5000] [--messages 300]
"""
import argparse
import json
import time
import uuid

import boto3


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", default="http://127.0.0.1:5000")
    parser.add_argument("--messages", type=int, default=300)
    args = parser.parse_args()
    client = dict(endpoint_url=args.endpoint, region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
    sns, sqs = boto3.client("sns", **client), boto3.client("sqs", **client)
    name = f"baseline-{uuid.uuid4().hex[:8]}"
    topic = sns.create_topic(Name=f"{name}.fifo", Attributes={"FifoTopic": "true"})["TopicArn"]
    queue = sqs.create_queue(QueueName=f"{name}.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})

    started = time.time()
    for batch in range(args.messages // 10):
        sns.publish_batch(TopicArn=topic, PublishBatchRequestEntries=[{
            "Id": str(i), "Message": json.dumps({"n": batch * 10 + i}),
            "MessageGroupId": uuid.uuid4().hex, "MessageDeduplicationId": uuid.uuid4().hex,
            "MessageAttributes": {"event_name": {"DataType": "String", "StringValue": "eventCreated"}},
        } for i in range(10)])
    published = time.time() - started

    started, received = time.time(), 0
    while received < args.messages:
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        received += len(messages)
        if messages:
            sqs.delete_message_batch(QueueUrl=queue, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
    drained = time.time() - started
    print(f"moto {args.endpoint}: published {args.messages} in {published:.1f} s "
          f"({args.messages / published:.0f}/s), received and deleted them in {drained:.1f} s "
          f"({args.messages / drained:.0f}/s)")


if __name__ == "__main__":
    main()
