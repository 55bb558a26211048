# Shows moto (5.2 here) losing committed writes when TransactWriteItems run concurrently and
# some fail: moto undoes a failed transaction by putting back a copy of the table taken when it
# started, which drops what other requests committed meanwhile. Why crates/dynamo makes its
# writes one at a time against a local endpoint (docs/ARCHITECTURE.md, "Storage: DynamoDB").
# Run against the local moto: python3 crates/dynamo/moto_isolation.py
# Prints "N transactions committed, M of them lost afterwards"; M > 0 shows the loss.
import boto3, threading, uuid
c = boto3.client("dynamodb", endpoint_url="http://127.0.0.1:5000", region_name="us-east-1",
                 aws_access_key_id="test", aws_secret_access_key="test")
t = "demo-" + uuid.uuid4().hex[:8]
c.create_table(TableName=t, KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
               AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
for i in range(300):
    c.put_item(TableName=t, Item={"k": {"S": f"filler{i}"}, "pad": {"S": "x" * 200}})
ok = []
def committer(n):
    for i in range(20):
        k = f"w{n}-{i}"
        c.transact_write_items(TransactItems=[{"Put": {"TableName": t, "Item": {"k": {"S": k}}}}])
        ok.append(k)
def failer():
    for i in range(40):
        try:
            c.transact_write_items(TransactItems=[{"Put": {"TableName": t, "Item": {"k": {"S": "filler0"}},
                                                   "ConditionExpression": "attribute_not_exists(k)"}}])
        except c.exceptions.TransactionCanceledException:
            pass
th = [threading.Thread(target=committer, args=(n,)) for n in range(4)] + [threading.Thread(target=failer) for _ in range(4)]
[x.start() for x in th]; [x.join() for x in th]
lost = [k for k in ok if "Item" not in c.get_item(TableName=t, Key={"k": {"S": k}}, ConsistentRead=True)]
print(f"{len(ok)} transactions committed, {len(lost)} of them lost afterwards")
c.delete_table(TableName=t)
