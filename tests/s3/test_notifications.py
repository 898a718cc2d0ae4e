"""Bucket event notifications against the real brokers of this machine, with boto3 and a real server.

Each target type (webhook, Redis, NATS core and JetStream, RabbitMQ, Mosquitto) receives the events of
PUT, multipart complete, copy and DELETE, read back with that broker's own client; filters,
validation, and a target that is down while the server restarts (every event arrives).
A broker that is not running skips its test here, and fails it in CI (CI=true).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from botocore.exceptions import ClientError

from tests.conftest import make_client
from tests.server import ACCESS_KEY, SECRET_KEY, Server, free_port

pytestmark = pytest.mark.skipif(bool(os.environ.get("COFFRE_TEST_ENDPOINT")),
                                reason="configures the notification targets of a local server")

REGION = "us-east-1"
BROKERS = {"redis": 6379, "amqp": 5672, "mqtt": 1883, "nats": 4222}
TOKEN = "webhook-token-not-for-logs-123"
AMQP_PASSWORD = "guest"
RUN = uuid.uuid4().hex[:10]  # names on the shared brokers: this run's own


def require_broker(kind: str) -> None:
    try:
        with socket.create_connection(("127.0.0.1", BROKERS[kind]), timeout=1):
            return
    except OSError:
        if os.environ.get("CI"):
            pytest.fail(f"the {kind} broker is not running on 127.0.0.1:{BROKERS[kind]} (CI runs them all)")
        pytest.skip(f"the {kind} broker is not running on 127.0.0.1:{BROKERS[kind]}")


def arn(target_id: str, kind: str) -> str:
    return f"arn:coffre:sqs:{REGION}:{target_id}:{kind}"


class Loop:
    """An asyncio loop in a thread: broker subscribers and the webhook receiver live there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 30) -> Any:
        fut: Future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class Webhook:
    """An HTTP receiver on 127.0.0.1 that records every JSON body (and the Authorization it got)."""

    def __init__(self, loop: Loop, port: int | None = None, tls: tuple[str, str] | None = None) -> None:
        self.loop = loop
        self.port = port or free_port()
        self.tls = tls  # (certificate, key): serve HTTPS
        self.bodies: list[dict] = []
        self.auth: list[tuple[str, str]] = []  # (bucket, Authorization)
        self.runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/events"

    async def _handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        self.auth.append((body["Records"][0]["s3"]["bucket"]["name"], request.headers.get("Authorization", "")))
        self.bodies.append(body)
        return web.Response(status=204)

    def start(self) -> Webhook:
        async def go() -> None:
            app = web.Application()
            app.router.add_post("/events", self._handle)
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            ssl_context = None
            if self.tls is not None:
                import ssl

                ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                ssl_context.load_cert_chain(*self.tls)
            await web.TCPSite(self.runner, "127.0.0.1", self.port, ssl_context=ssl_context).start()

        self.loop.run(go())
        return self

    def stop(self) -> None:
        if self.runner is not None:
            self.loop.run(self.runner.cleanup())

    def records(self) -> list[dict]:
        return [r for body in list(self.bodies) for r in body["Records"]]


def wait_for(get: Callable[[], list[dict]], want: int, timeout: float = 30) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        got = get()
        if len(got) >= want or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def of_bucket(records: list[dict], bucket: str) -> list[dict]:
    return [r for r in records if r["s3"]["bucket"]["name"] == bucket]


# -- broker readers (each broker's own client) --

class RedisReader:
    def __init__(self, key: str) -> None:
        import redis

        self.key = key
        self.client = redis.Redis(host="127.0.0.1", port=6379)
        self.client.delete(key)

    def records(self) -> list[dict]:
        return [r for m in self.client.lrange(self.key, 0, -1) for r in json.loads(m)["Records"]]

    def close(self) -> None:
        self.client.delete(self.key)
        self.client.close()


class NatsReader:
    """A JetStream stream holding the target's subject; read with a pull consumer."""

    def __init__(self, loop: Loop, subject: str) -> None:
        self.loop, self.subject, self.stream = loop, subject, f"coffre-test-{RUN}"
        self.got: list[dict] = []
        self.loop.run(self._setup())

    async def _setup(self) -> None:
        import nats

        self.nc = await nats.connect("nats://127.0.0.1:4222")
        self.js = self.nc.jetstream()
        await self.js.add_stream(name=self.stream, subjects=[self.subject])
        self.sub = await self.js.pull_subscribe(self.subject, durable=f"reader-{RUN}")

    async def _fetch(self) -> None:
        import nats.errors

        try:
            for m in await self.sub.fetch(100, timeout=0.5):
                await m.ack()
                self.got.extend(json.loads(m.data)["Records"])
        except nats.errors.TimeoutError:
            pass

    def records(self) -> list[dict]:
        self.loop.run(self._fetch())
        return list(self.got)

    def close(self) -> None:
        async def go() -> None:
            await self.js.delete_stream(self.stream)
            await self.nc.close()

        self.loop.run(go())


class NatsCoreReader:
    """A plain NATS subscription (no JetStream), open before the events are sent."""

    def __init__(self, loop: Loop, subject: str) -> None:
        self.loop, self.subject = loop, subject
        self.got: list[dict] = []
        self.loop.run(self._setup())

    async def _setup(self) -> None:
        import nats

        self.nc = await nats.connect("nats://127.0.0.1:4222")

        async def on_message(m) -> None:
            self.got.extend(json.loads(m.data)["Records"])

        await self.nc.subscribe(self.subject, cb=on_message)
        await self.nc.flush()

    def records(self) -> list[dict]:
        return list(self.got)

    def close(self) -> None:
        self.loop.run(self.nc.close())


class AmqpReader:
    """A queue on RabbitMQ's default exchange; the target's routing key is its name."""

    def __init__(self, loop: Loop, queue: str) -> None:
        self.loop, self.queue_name = loop, queue
        self.got: list[dict] = []
        self.loop.run(self._setup())

    async def _setup(self) -> None:
        import aio_pika

        self.conn = await aio_pika.connect(f"amqp://guest:{AMQP_PASSWORD}@127.0.0.1:5672/")
        self.channel = await self.conn.channel()
        self.queue = await self.channel.declare_queue(self.queue_name, durable=True)

    async def _fetch(self) -> None:
        while True:
            m = await self.queue.get(no_ack=True, fail=False)
            if m is None:
                return
            self.got.extend(json.loads(m.body)["Records"])

    def records(self) -> list[dict]:
        self.loop.run(self._fetch())
        return list(self.got)

    def close(self) -> None:
        async def go() -> None:
            await self.queue.delete(if_unused=False, if_empty=False)
            await self.conn.close()

        self.loop.run(go())


class MqttReader:
    """A QoS 1 subscription to the target's topic, open before the events are sent."""

    def __init__(self, loop: Loop, topic: str) -> None:
        self.loop, self.topic = loop, topic
        self.got: list[dict] = []
        self.ready = threading.Event()
        self.task = asyncio.run_coroutine_threadsafe(self._listen(), loop.loop)
        assert self.ready.wait(10), "could not subscribe to Mosquitto"

    async def _listen(self) -> None:
        import aiomqtt

        async with aiomqtt.Client("127.0.0.1", 1883, identifier=f"coffre-test-{RUN}") as client:
            await client.subscribe(self.topic, qos=1)
            self.ready.set()
            async for m in client.messages:
                self.got.extend(json.loads(m.payload)["Records"])

    def records(self) -> list[dict]:
        return list(self.got)

    def close(self) -> None:
        self.task.cancel()


# -- the server --

@pytest.fixture(scope="module")
def loop():
    lp = Loop()
    yield lp
    lp.close()


@pytest.fixture(scope="module")
def hook(loop):
    h = Webhook(loop).start()
    yield h
    h.stop()


def _targets(hook_url: str) -> list[dict]:
    return [
        {"id": "hook", "type": "webhook", "url": hook_url, "auth_token": TOKEN},
        {"id": "rds", "type": "redis", "url": "redis://127.0.0.1:6379/0", "key": f"coffre-events-{RUN}"},
        {"id": "nts", "type": "nats", "url": "nats://127.0.0.1:4222", "subject": f"coffre.events.{RUN}",
         "jetstream": True},
        {"id": "ntc", "type": "nats", "url": "nats://127.0.0.1:4222", "subject": f"coffre.core.{RUN}"},
        {"id": "amq", "type": "amqp", "url": f"amqp://guest:{AMQP_PASSWORD}@127.0.0.1:5672/",
         "routing_key": f"coffre-events-{RUN}"},
        {"id": "amq-late", "type": "amqp", "url": f"amqp://guest:{AMQP_PASSWORD}@127.0.0.1:5672/",
         "routing_key": f"coffre-late-{RUN}"},
        # Open to some tenants only: "test" is the tenant the server makes (tests/server.py).
        {"id": "ours", "type": "webhook", "url": hook_url, "tenants": ["test"]},
        {"id": "theirs", "type": "webhook", "url": hook_url, "tenants": ["another-tenant"]},
        {"id": "mq", "type": "mqtt", "url": "mqtt://127.0.0.1:1883", "topic": f"coffre/events/{RUN}"},
    ]


def _server(data_dir: str, targets: list[dict], **env: str) -> Server:
    return Server(data_dir, env={"COFFRE_NOTIFY_TARGETS": json.dumps(targets),
                                 "COFFRE_NOTIFY_RETRY_MAX_SECONDS": "0.5", **env})


@pytest.fixture(scope="module")
def srv(tmp_path_factory, hook):
    s = _server(str(tmp_path_factory.mktemp("notify") / "data"), _targets(hook.url)).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(srv):
    return make_client(srv.endpoint, (ACCESS_KEY, SECRET_KEY))  # the root of the tenant the server made


@pytest.fixture
def nbucket(client):
    name = "n-" + uuid.uuid4().hex[:16]
    client.create_bucket(Bucket=name)
    yield name
    for v in client.list_object_versions(Bucket=name).get("Versions", []) + \
            client.list_object_versions(Bucket=name).get("DeleteMarkers", []):
        client.delete_object(Bucket=name, Key=v["Key"], VersionId=v["VersionId"])
    client.delete_bucket(Bucket=name)


def queue_config(target: str, kind: str, events: list[str], prefix: str | None = None,
                 suffix: str | None = None, rid: str | None = None) -> dict:
    c: dict[str, Any] = {"QueueArn": arn(target, kind), "Events": events}
    if rid:
        c["Id"] = rid
    rules = [{"Name": n, "Value": v} for n, v in (("prefix", prefix), ("suffix", suffix)) if v is not None]
    if rules:
        c["Filter"] = {"Key": {"FilterRules": rules}}
    return c


# -- configuration --

def test_configuration_round_trip(client, nbucket):
    assert "QueueConfigurations" not in client.get_bucket_notification_configuration(Bucket=nbucket)
    client.put_bucket_notification_configuration(Bucket=nbucket, NotificationConfiguration={
        "QueueConfigurations": [queue_config("hook", "webhook", ["s3:ObjectCreated:*"], "in/", ".csv", "csv-in")],
        "TopicConfigurations": [{"Id": "removals", "TopicArn": arn("rds", "redis"),
                                 "Events": ["s3:ObjectRemoved:Delete", "s3:ObjectRemoved:DeleteMarkerCreated"]}],
        "LambdaFunctionConfigurations": [{"LambdaFunctionArn": arn("mq", "mqtt"),
                                          "Events": ["s3:ObjectTagging:*"]}],
    })
    got = client.get_bucket_notification_configuration(Bucket=nbucket)
    q = got["QueueConfigurations"]
    assert q == [{"Id": "csv-in", "QueueArn": arn("hook", "webhook"), "Events": ["s3:ObjectCreated:*"],
                  "Filter": {"Key": {"FilterRules": [{"Name": "Prefix", "Value": "in/"},
                                                     {"Name": "Suffix", "Value": ".csv"}]}}}]
    assert got["TopicConfigurations"] == [{"Id": "removals", "TopicArn": arn("rds", "redis"), "Events": [
        "s3:ObjectRemoved:Delete", "s3:ObjectRemoved:DeleteMarkerCreated"]}]
    lam = got["LambdaFunctionConfigurations"]
    assert lam[0]["LambdaFunctionArn"] == arn("mq", "mqtt") and lam[0]["Id"]  # an Id is generated
    # An empty configuration turns notifications off.
    client.put_bucket_notification_configuration(Bucket=nbucket, NotificationConfiguration={})
    got = client.get_bucket_notification_configuration(Bucket=nbucket)
    assert not any(k.endswith("Configurations") for k in got)


@pytest.mark.parametrize("config, message", [
    (queue_config("nope", "webhook", ["s3:ObjectCreated:*"]),
     "Unable to validate the following destination configurations"),
    (queue_config("hook", "redis", ["s3:ObjectCreated:*"]),  # the target exists with another type
     "Unable to validate the following destination configurations"),
    ({"QueueArn": "arn:aws:sqs:us-east-1:123456789012:queue", "Events": ["s3:ObjectCreated:*"]},
     "Unable to validate the following destination configurations"),
    ({"QueueArn": "arn:coffre:sqs:eu-west-3:hook:webhook", "Events": ["s3:ObjectCreated:*"]},
     "Unable to validate the following destination configurations"),
    (queue_config("hook", "webhook", ["s3:ObjectCreated:Nope"]), "The event is not supported for notifications"),
])
def test_invalid_configurations(client, nbucket, config, message):
    with pytest.raises(ClientError) as e:
        client.put_bucket_notification_configuration(Bucket=nbucket,
                                                     NotificationConfiguration={"QueueConfigurations": [config]})
    err = e.value.response
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert err["Error"]["Code"] == "InvalidArgument"
    assert err["Error"]["Message"] == message
    assert "QueueConfigurations" not in client.get_bucket_notification_configuration(Bucket=nbucket)


def test_targets_closed_to_the_tenant_do_not_exist_for_it(client, nbucket, hook):
    with pytest.raises(ClientError) as e:
        client.put_bucket_notification_configuration(Bucket=nbucket, NotificationConfiguration={
            "QueueConfigurations": [queue_config("theirs", "webhook", ["s3:ObjectCreated:*"])]})
    assert e.value.response["Error"]["Code"] == "InvalidArgument"
    assert e.value.response["Error"]["Message"] == "Unable to validate the following destination configurations"
    client.put_bucket_notification_configuration(Bucket=nbucket, NotificationConfiguration={
        "QueueConfigurations": [queue_config("ours", "webhook", ["s3:ObjectCreated:*"])]})
    client.put_object(Bucket=nbucket, Key="ours", Body=b"")
    records = wait_for(lambda: of_bucket(hook.records(), nbucket), 1)
    assert [r["s3"]["object"]["key"] for r in records] == ["ours"]


def test_overlapping_and_malformed_filters(client, nbucket):
    def put(*configs):
        client.put_bucket_notification_configuration(
            Bucket=nbucket, NotificationConfiguration={"QueueConfigurations": list(configs)})

    # Same event type, overlapping prefixes and suffixes: ambiguous, as on S3.
    for a, b in [(queue_config("hook", "webhook", ["s3:ObjectCreated:*"], "img/"),
                  queue_config("rds", "redis", ["s3:ObjectCreated:Put"], "img/raw/")),
                 (queue_config("hook", "webhook", ["s3:ObjectCreated:Put"], suffix=".jpg"),
                  queue_config("rds", "redis", ["s3:ObjectCreated:Put"], suffix="a.jpg"))]:
        with pytest.raises(ClientError) as e:
            put(a, b)
        assert e.value.response["Error"]["Code"] == "InvalidArgument"
        assert "overlapping" in e.value.response["Error"]["Message"]
    # Disjoint prefixes, or different event types: accepted.
    put(queue_config("hook", "webhook", ["s3:ObjectCreated:*"], "a/"),
        queue_config("rds", "redis", ["s3:ObjectCreated:*"], "b/"),
        queue_config("nts", "nats", ["s3:ObjectRemoved:*"], "a/"))
    put(queue_config("hook", "webhook", ["s3:ObjectCreated:Put"]),
        queue_config("rds", "redis", ["s3:ObjectCreated:Copy"]))
    with pytest.raises(ClientError) as e:
        put({"QueueArn": arn("hook", "webhook"), "Events": ["s3:ObjectCreated:*"],
             "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "a"}, {"Name": "prefix", "Value": "b"}]}}})
    assert e.value.response["Error"]["Message"] == "Cannot specify more than one prefix rule in a filter."
    with pytest.raises(ClientError) as e:
        put({"QueueArn": arn("hook", "webhook"), "Events": ["s3:ObjectCreated:*"],
             "Filter": {"Key": {"FilterRules": [{"Name": "middle", "Value": "a"}]}}})
    assert e.value.response["Error"]["Message"] == "filter rule name must be either prefix or suffix"


# -- delivery to each broker --

def _reader(kind: str, loop: Loop, hook: Webhook):
    if kind == "webhook":
        return hook
    require_broker(kind.split("-")[0])
    if kind == "redis":
        return RedisReader(f"coffre-events-{RUN}")
    if kind == "nats":
        return NatsReader(loop, f"coffre.events.{RUN}")
    if kind == "nats-core":
        return NatsCoreReader(loop, f"coffre.core.{RUN}")
    if kind == "amqp":
        return AmqpReader(loop, f"coffre-events-{RUN}")
    return MqttReader(loop, f"coffre/events/{RUN}")


@pytest.mark.parametrize("target, kind", [("hook", "webhook"), ("rds", "redis"), ("nts", "nats"),
                                          ("ntc", "nats-core"), ("amq", "amqp"), ("mq", "mqtt")])
def test_events_reach_the_broker(client, nbucket, loop, hook, target, kind):
    reader = _reader(kind, loop, hook)
    kind = kind.split("-")[0]  # the target type in the ARN
    try:
        client.put_bucket_versioning(Bucket=nbucket, VersioningConfiguration={"Status": "Enabled"})
        client.put_bucket_notification_configuration(Bucket=nbucket, NotificationConfiguration={
            "QueueConfigurations": [queue_config(target, kind, ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"])]})
        put = client.put_object(Bucket=nbucket, Key="dir/a b+c.txt", Body=b"hello")
        up = client.create_multipart_upload(Bucket=nbucket, Key="big.bin")
        part = client.upload_part(Bucket=nbucket, Key="big.bin", UploadId=up["UploadId"], PartNumber=1,
                                  Body=b"x" * 1000)
        mpu = client.complete_multipart_upload(Bucket=nbucket, Key="big.bin", UploadId=up["UploadId"],
                                               MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
        cp = client.copy_object(Bucket=nbucket, Key="copy.txt", CopySource={"Bucket": nbucket, "Key": "dir/a b+c.txt"})
        marker = client.delete_object(Bucket=nbucket, Key="copy.txt")
        gone = client.delete_object(Bucket=nbucket, Key="big.bin", VersionId=mpu["VersionId"])
        client.get_object(Bucket=nbucket, Key="dir/a b+c.txt")  # a read: no event

        records = of_bucket(wait_for(lambda: of_bucket(reader.records(), nbucket), 5), nbucket)
        by_name = {r["eventName"]: r for r in records}
        assert sorted(by_name) == ["ObjectCreated:CompleteMultipartUpload", "ObjectCreated:Copy",
                                   "ObjectCreated:Put", "ObjectRemoved:Delete",
                                   "ObjectRemoved:DeleteMarkerCreated"], records
        assert len(records) == 5  # nothing twice in a clean run

        r = by_name["ObjectCreated:Put"]
        assert (r["eventVersion"], r["eventSource"], r["awsRegion"]) == ("2.1", "aws:s3", REGION)
        assert r["responseElements"]["x-amz-request-id"] == put["ResponseMetadata"]["RequestId"]
        assert r["requestParameters"]["sourceIPAddress"] == "127.0.0.1"
        assert r["userIdentity"]["principalId"]
        assert r["s3"]["bucket"] == {"name": nbucket, "ownerIdentity": r["s3"]["bucket"]["ownerIdentity"],
                                     "arn": f"arn:aws:s3:::{nbucket}"}
        obj = r["s3"]["object"]
        assert obj["key"] == "dir/a+b%2Bc.txt"  # URL-encoded as S3 does
        assert (obj["size"], obj["eTag"], obj["versionId"]) == (5, put["ETag"].strip('"'), put["VersionId"])
        assert obj["sequencer"]

        obj = by_name["ObjectCreated:CompleteMultipartUpload"]["s3"]["object"]
        assert (obj["key"], obj["size"], obj["eTag"], obj["versionId"]) == \
            ("big.bin", 1000, mpu["ETag"].strip('"'), mpu["VersionId"])
        obj = by_name["ObjectCreated:Copy"]["s3"]["object"]
        assert (obj["key"], obj["size"], obj["eTag"], obj["versionId"]) == \
            ("copy.txt", 5, cp["CopyObjectResult"]["ETag"].strip('"'), cp["VersionId"])
        obj = by_name["ObjectRemoved:DeleteMarkerCreated"]["s3"]["object"]
        assert (obj["key"], obj["versionId"]) == ("copy.txt", marker["VersionId"]) and "size" not in obj
        obj = by_name["ObjectRemoved:Delete"]["s3"]["object"]
        assert (obj["key"], obj["versionId"]) == ("big.bin", gone["VersionId"])
        if kind == "webhook":
            assert {auth for b, auth in hook.auth if b == nbucket} == {f"Bearer {TOKEN}"}
    finally:
        # Off before the reader goes: the fixture's clean-up deletes would wait for it forever.
        client.put_bucket_notification_configuration(Bucket=nbucket, NotificationConfiguration={})
        if reader is not hook:
            reader.close()


def test_unroutable_amqp_messages_wait_for_a_queue(srv, client, nbucket, loop):
    """With mandatory (the default), a message no queue takes is not confirmed: it is retried."""
    import requests

    require_broker("amqp")
    client.put_bucket_notification_configuration(Bucket=nbucket, NotificationConfiguration={
        "QueueConfigurations": [queue_config("amq-late", "amqp", ["s3:ObjectCreated:*"])]})
    client.put_object(Bucket=nbucket, Key="early", Body=b"1")

    def failures() -> float:
        text = requests.get(srv.admin_endpoint + "/metrics", timeout=5).text
        line = [x for x in text.splitlines() if x.startswith('coffre_notify_failures_total{target="amq-late"}')]
        return float(line[0].split()[-1])

    deadline = time.monotonic() + 10
    while failures() < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert failures() >= 1  # returned by the broker: no queue is bound to the routing key yet
    reader = AmqpReader(loop, f"coffre-late-{RUN}")  # the queue appears
    try:
        records = wait_for(lambda: of_bucket(reader.records(), nbucket), 1)
        assert [r["s3"]["object"]["key"] for r in records] == ["early"]
    finally:
        client.put_bucket_notification_configuration(Bucket=nbucket, NotificationConfiguration={})
        reader.close()


def test_filters_and_other_events(client, nbucket, hook):
    client.put_bucket_notification_configuration(Bucket=nbucket, NotificationConfiguration={
        "QueueConfigurations": [
            queue_config("hook", "webhook", ["s3:ObjectCreated:Put"], prefix="in/", suffix=".csv"),
            queue_config("hook", "webhook", ["s3:ObjectRemoved:*"], prefix="in/"),
            queue_config("hook", "webhook", ["s3:ObjectTagging:*"], rid="tags")]})
    for key in ("in/a.csv", "in/a.txt", "out/a.csv", "in/sub/b.csv"):
        client.put_object(Bucket=nbucket, Key=key, Body=b"1,2")
    client.put_object_tagging(Bucket=nbucket, Key="out/a.csv", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
    client.delete_object_tagging(Bucket=nbucket, Key="out/a.csv")
    client.delete_objects(Bucket=nbucket, Delete={"Objects": [{"Key": "in/a.csv"}, {"Key": "out/a.csv"}]})
    want = {("ObjectCreated:Put", "in/a.csv"), ("ObjectCreated:Put", "in/sub/b.csv"),
            ("ObjectTagging:Put", "out/a.csv"), ("ObjectTagging:Delete", "out/a.csv"),
            ("ObjectRemoved:Delete", "in/a.csv")}
    records = wait_for(lambda: of_bucket(hook.records(), nbucket), len(want))
    time.sleep(0.5)  # anything that should not have come would have by now
    records = of_bucket(hook.records(), nbucket)
    assert {(r["eventName"], r["s3"]["object"]["key"]) for r in records} == want
    assert len(records) == len(want)
    assert {r["s3"]["configurationId"] for r in records if r["eventName"].startswith("ObjectTagging")} == {"tags"}


def test_metrics_count_deliveries(srv, client, nbucket, hook):
    import requests

    client.put_bucket_notification_configuration(Bucket=nbucket, NotificationConfiguration={
        "QueueConfigurations": [queue_config("hook", "webhook", ["s3:ObjectCreated:*"])]})
    client.put_object(Bucket=nbucket, Key="m", Body=b"")
    wait_for(lambda: of_bucket(hook.records(), nbucket), 1)
    deadline = time.monotonic() + 10
    while True:
        text = requests.get(srv.admin_endpoint + "/metrics", timeout=5).text
        delivered = [line for line in text.splitlines() if line.startswith('coffre_notify_delivered_total{target="hook"}')]
        if (delivered and float(delivered[0].split()[-1]) >= 1) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert delivered and float(delivered[0].split()[-1]) >= 1
    assert 'coffre_notify_queue_depth{target="hook"} 0' in text
    assert "coffre_notify_failures_total" in text and "coffre_notify_dropped_total" in text


# -- a target that is down, across a restart --

@pytest.mark.parametrize("crash", [False, True], ids=["stop", "kill"])
def test_queued_events_survive_a_restart(tmp_path: Path, loop, crash):
    port = free_port()  # nothing listens there yet
    data = str(tmp_path / "data")
    # Killed: only answers given after the messages were on disk promise them (notify_wait_durable).
    s = _server(data, [{"id": "late", "type": "webhook", "url": f"http://127.0.0.1:{port}/events",
                        "auth_token": TOKEN}], COFFRE_NOTIFY_WAIT_DURABLE="true" if crash else "false").start()
    receiver = Webhook(loop, port)
    try:
        c = make_client(s.endpoint, (ACCESS_KEY, SECRET_KEY))
        c.create_bucket(Bucket="late-events")
        c.put_bucket_notification_configuration(Bucket="late-events", NotificationConfiguration={
            "QueueConfigurations": [queue_config("late", "webhook", ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"])]})
        keys = [f"k{i:03d}" for i in range(40)]
        for k in keys:
            c.put_object(Bucket="late-events", Key=k, Body=k.encode())
        c.delete_objects(Bucket="late-events", Delete={"Objects": [{"Key": k} for k in keys[:10]]})
        if crash:
            queued = list((Path(data) / "notify" / "late").iterdir())
            assert queued, "the events wait on disk"
        log_text = Path(s.log_path).read_text(errors="replace")
        s.kill() if crash else s.stop()
        s.start()
        receiver.start()
        want = {("ObjectCreated:Put", k) for k in keys} | {("ObjectRemoved:Delete", k) for k in keys[:10]}
        got = wait_for(lambda: receiver.records(), len(want), timeout=60)
        assert {(r["eventName"], r["s3"]["object"]["key"]) for r in got} >= want  # every event, at least once
        deadline = time.monotonic() + 10
        while any((Path(data) / "notify" / "late").iterdir()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any((Path(data) / "notify" / "late").iterdir()), "delivered events leave the queue"
        # The failures were logged, without the target's token.
        log_text += Path(s.log_path).read_text(errors="replace")
        assert "late" in log_text and TOKEN not in log_text
    finally:
        receiver.stop()
        s.stop()


def test_bad_target_configuration_stops_the_start(tmp_path: Path):
    s = _server(str(tmp_path / "data"), [{"id": "x", "type": "kafka", "url": "kafka://127.0.0.1:9092"}])
    with pytest.raises(RuntimeError):
        s.start(timeout=15)
    assert "type must be one of" in Path(s.log_path).read_text(errors="replace")


def test_a_full_queue_drops_the_oldest(tmp_path: Path, loop):
    import requests

    port = free_port()
    s = Server(str(tmp_path / "data"), env={
        "COFFRE_NOTIFY_TARGETS": json.dumps([{"id": "small", "type": "webhook",
                                              "url": f"http://127.0.0.1:{port}/events"}]),
        "COFFRE_NOTIFY_QUEUE_LIMIT": "5", "COFFRE_NOTIFY_RETRY_MAX_SECONDS": "0.5",
        "COFFRE_NOTIFY_WAIT_DURABLE": "true"}).start()  # one file per PUT: the drops are exact
    receiver = Webhook(loop, port)
    try:
        c = make_client(s.endpoint, (ACCESS_KEY, SECRET_KEY))
        c.create_bucket(Bucket="small-queue")
        c.put_bucket_notification_configuration(Bucket="small-queue", NotificationConfiguration={
            "QueueConfigurations": [queue_config("small", "webhook", ["s3:ObjectCreated:*"])]})
        keys = [f"k{i:02d}" for i in range(12)]
        for k in keys:  # every write succeeds, whatever the state of the target
            c.put_object(Bucket="small-queue", Key=k, Body=b"x")
        text = requests.get(s.admin_endpoint + "/metrics", timeout=5).text
        assert 'coffre_notify_dropped_total{target="small"} 7' in text
        assert 'coffre_notify_queue_depth{target="small"} 5' in text
        receiver.start()
        got = wait_for(receiver.records, 5)
        time.sleep(0.5)
        # The file being retried when the queue filled is kept, then the newest; the rest was dropped.
        assert [r["s3"]["object"]["key"] for r in receiver.records()] == ["k00", "k08", "k09", "k10", "k11"], got
        assert "over notify_queue_limit" in Path(s.log_path).read_text(errors="replace")
    finally:
        receiver.stop()
        s.stop()


def test_browser_upload_sends_object_created_post(client, nbucket, hook):
    import requests

    client.put_bucket_notification_configuration(Bucket=nbucket, NotificationConfiguration={
        "QueueConfigurations": [queue_config("hook", "webhook", ["s3:ObjectCreated:Post"])]})
    post = client.generate_presigned_post(nbucket, "form/${filename}",
                                          Fields={"success_action_redirect": "http://127.0.0.1/done"},
                                          Conditions=[["starts-with", "$key", "form/"],
                                                      {"success_action_redirect": "http://127.0.0.1/done"}])
    resp = requests.post(post["url"], data=post["fields"], files={"file": ("up.txt", b"posted")},
                         allow_redirects=False, timeout=10)
    assert resp.status_code == 303  # a redirect is a success too
    client.put_object(Bucket=nbucket, Key="form/not-a-post.txt", Body=b"")  # Put, not configured
    records = wait_for(lambda: of_bucket(hook.records(), nbucket), 1)
    assert [(r["eventName"], r["s3"]["object"]["key"], r["s3"]["object"]["size"]) for r in records] == \
        [("ObjectCreated:Post", "form/up.txt", 6)]


def test_targets_from_the_toml_file(tmp_path: Path):
    from coffre.notify.config import parse_targets
    from coffre.settings import load_settings

    path = tmp_path / "coffre.toml"
    path.write_text('[notify]\nqueue_limit = 10\n\n[[notify.targets]]\nid = "a"\ntype = "redis"\n'
                    'url = "redis://127.0.0.1:6379/0"\nkey = "events"\npassword = "hunter2-secret"\n')
    s = load_settings(str(path), env={})
    assert s.notify_queue_limit == 10
    targets = parse_targets(s.notify_targets)
    assert targets["a"].type == "redis" and targets["a"].options["key"] == "events"
    assert "hunter2-secret" not in repr(s) and "hunter2-secret" not in repr(targets)
    env = load_settings(None, env={"COFFRE_NOTIFY_TARGETS": json.dumps([{"id": "b", "type": "webhook",
                                                                         "url": "http://127.0.0.1:1/"}])})
    assert [t.id for t in parse_targets(env.notify_targets).values()] == ["b"]
    for bad, why in [([{"id": "c", "type": "webhook"}], "url is required"),
                     ([{"id": "c", "type": "redis", "url": "redis://x", "key": "k", "colour": 1}], "unknown option"),
                     ([{"id": "c d", "type": "redis", "url": "redis://x", "key": "k"}], "id must be"),
                     ([{"id": "c", "type": "webhook", "url": "http://x"}] * 2, "used twice")]:
        with pytest.raises(ValueError, match=why):
            parse_targets(bad)


def test_webhook_over_https_trusts_only_its_ca_file(tmp_path: Path, loop):
    import subprocess
    import sys

    out = tmp_path / "cert"
    subprocess.run([sys.executable, "-m", "coffre", "dev-cert", "--out", str(out), "--host", "127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    cert, key = str(out / "coffre-dev.crt"), str(out / "coffre-dev.key")
    receiver = Webhook(loop, tls=(cert, key)).start()
    s = _server(str(tmp_path / "data"), [
        {"id": "pinned", "type": "webhook", "url": receiver.url, "ca_file": cert},
        {"id": "system", "type": "webhook", "url": receiver.url}]).start()  # the system CAs: refused
    try:
        c = make_client(s.endpoint, (ACCESS_KEY, SECRET_KEY))
        for b, target in (("tls-pinned", "pinned"), ("tls-system", "system")):
            c.create_bucket(Bucket=b)
            c.put_bucket_notification_configuration(Bucket=b, NotificationConfiguration={
                "QueueConfigurations": [queue_config(target, "webhook", ["s3:ObjectCreated:*"])]})
            c.put_object(Bucket=b, Key="k", Body=b"")
        assert [r["s3"]["bucket"]["name"] for r in wait_for(receiver.records, 1)] == ["tls-pinned"]
        deadline = time.monotonic() + 10
        while "CERTIFICATE_VERIFY_FAILED" not in Path(s.log_path).read_text(errors="replace"):
            assert time.monotonic() < deadline, "the unverifiable certificate was not refused"
            time.sleep(0.1)
        assert [r["s3"]["bucket"]["name"] for r in receiver.records()] == ["tls-pinned"]
    finally:
        s.stop()
        receiver.stop()
