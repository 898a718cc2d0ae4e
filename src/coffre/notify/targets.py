"""Senders: one connection per target, and a ``send`` that returns only once the broker took it.

What counts as taken, per type: webhook, a 2xx answer; NATS, the JetStream publish
acknowledgement (``jetstream = true``) or a flush round trip to the server; AMQP, the
publisher confirm (with ``mandatory``, a message no queue would receive is refused, not
confirmed); MQTT, the PUBACK of a QoS 1 publish; Redis, the RPUSH reply. Anything else
raises, the deliverer keeps the message and retries.

Client libraries are imported when a target of their type is first used, so a server with no
such target never loads them.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit

from coffre.notify.config import Target


class DeliveryError(Exception):
    """The broker refused or did not acknowledge a message."""


def _tls(target: Target, wanted: bool) -> ssl.SSLContext | None:
    """A client TLS context from the target's ca_file / client_cert / client_key options."""
    o = target.options
    if not (wanted or o.get("ca_file") or o.get("client_cert")):
        return None
    ctx = ssl.create_default_context(cafile=o.get("ca_file") or None)
    if o.get("client_cert"):
        ctx.load_cert_chain(o["client_cert"], o.get("client_key") or None)
    if o.get("insecure_skip_verify"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Sender:
    def __init__(self, target: Target) -> None:
        self.target = target

    async def send(self, message: bytes) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        """Drop the connection (after a failure, or at shutdown); the next send reconnects."""


class WebhookSender(Sender):
    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self._session: Any = None

    async def send(self, message: bytes) -> None:
        import aiohttp

        if self._session is None:
            url = str(self.target.options["url"])
            connector = aiohttp.TCPConnector(ssl=_tls(self.target, url.startswith("https:")) or True)
            self._session = aiohttp.ClientSession(connector=connector)
        headers = {"Content-Type": "application/json"}
        token = self.target.options.get("auth_token")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with self._session.post(self.target.options["url"], data=message, headers=headers,
                                      allow_redirects=False) as resp:
            await resp.read()
            if not 200 <= resp.status < 300:
                raise DeliveryError(f"HTTP {resp.status}")

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


class RedisSender(Sender):
    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self._client: Any = None

    async def send(self, message: bytes) -> None:
        import redis.asyncio as aioredis

        o = self.target.options
        if self._client is None:
            kwargs: dict[str, Any] = {}
            if o.get("password"):
                kwargs["password"] = o["password"]
            if o.get("username"):
                kwargs["username"] = o["username"]
            if str(o["url"]).startswith("rediss:"):
                if o.get("ca_file"):
                    kwargs["ssl_ca_certs"] = o["ca_file"]
                if o.get("client_cert"):
                    kwargs["ssl_certfile"] = o["client_cert"]
                    kwargs["ssl_keyfile"] = o.get("client_key")
                if o.get("insecure_skip_verify"):
                    kwargs["ssl_cert_reqs"] = "none"
            self._client = aioredis.Redis.from_url(str(o["url"]), **kwargs)
        length = await self._client.rpush(str(o["key"]), message)
        if not isinstance(length, int) or length < 1:
            raise DeliveryError("RPUSH did not answer with the list length")

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


class NatsSender(Sender):
    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self._nc: Any = None
        self._js: Any = None

    async def send(self, message: bytes) -> None:
        import nats

        o = self.target.options
        if self._nc is None:
            url = str(o["url"])
            kwargs: dict[str, Any] = {"servers": [url], "allow_reconnect": False, "connect_timeout": 5,
                                      "max_reconnect_attempts": 0}
            tls = _tls(self.target, url.startswith("tls:"))
            if tls is not None:
                kwargs["tls"] = tls
            for opt in ("user", "password", "token"):
                if o.get(opt):
                    kwargs[opt] = o[opt]

            async def quiet(_exc: Exception) -> None:  # failures surface through send
                return None

            self._nc = await nats.connect(error_cb=quiet, **kwargs)
            self._js = self._nc.jetstream() if o.get("jetstream") else None
        if self._js is not None:
            ack = await self._js.publish(str(o["subject"]), message)
            if getattr(ack, "seq", None) is None:
                raise DeliveryError("JetStream did not acknowledge the message")
        else:
            await self._nc.publish(str(o["subject"]), message)
            await self._nc.flush()

    async def close(self) -> None:
        if self._nc is not None:
            nc, self._nc, self._js = self._nc, None, None
            try:
                await nc.close()
            except Exception:  # noqa: BLE001, S110 - closing a broken connection
                pass


class AmqpSender(Sender):
    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self._conn: Any = None
        self._exchange: Any = None

    async def send(self, message: bytes) -> None:
        import aio_pika

        o = self.target.options
        if self._conn is None:
            url = str(o["url"])
            tls = _tls(self.target, url.startswith("amqps:"))
            kwargs: dict[str, Any] = {"timeout": 10}
            if tls is not None:
                kwargs["ssl_context"] = tls
            self._conn = await aio_pika.connect(url, **kwargs)
            channel = await self._conn.channel(publisher_confirms=True)
            name = str(o.get("exchange", ""))
            self._exchange = channel.default_exchange if not name else await channel.get_exchange(name)
        msg = aio_pika.Message(message, content_type="application/json",
                               delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        confirm = await self._exchange.publish(msg, routing_key=str(o["routing_key"]),
                                               mandatory=bool(o.get("mandatory", True)))
        # A confirm is Basic.Ack; a Nack, or the message handed back (no queue bound to the
        # routing key, with mandatory), is not taken.
        kind = type(confirm).__name__
        if kind == "DeliveredMessage":
            raise DeliveryError("no queue is bound to the routing key: the broker returned the message")
        if kind != "Ack":
            raise DeliveryError(f"the broker did not confirm the message ({kind})")

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn, self._exchange = self._conn, None, None
            try:
                await conn.close()
            except Exception:  # noqa: BLE001, S110 - closing a broken connection
                pass


class MqttSender(Sender):
    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self._client: Any = None

    async def send(self, message: bytes) -> None:
        import aiomqtt

        o = self.target.options
        if self._client is None:
            parts = urlsplit(str(o["url"]) if "://" in str(o["url"]) else "mqtt://" + str(o["url"]))
            secure = parts.scheme in ("mqtts", "ssl", "tls")
            client = aiomqtt.Client(parts.hostname or "127.0.0.1", parts.port or (8883 if secure else 1883),
                                    username=o.get("username") or None, password=o.get("password") or None,
                                    identifier=o.get("client_id") or None,
                                    tls_context=_tls(self.target, secure), timeout=10)
            await client.__aenter__()
            self._client = client
        await self._client.publish(str(o["topic"]), message, qos=1, timeout=10)

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            try:
                await client.__aexit__(None, None, None)
            except Exception:  # noqa: BLE001, S110 - closing a broken connection
                pass


_SENDERS: dict[str, type[Sender]] = {"webhook": WebhookSender, "redis": RedisSender, "nats": NatsSender,
                                     "amqp": AmqpSender, "mqtt": MqttSender}


def sender(target: Target) -> Sender:
    return _SENDERS[target.type](target)
