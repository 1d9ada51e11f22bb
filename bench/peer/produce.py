#!/usr/bin/env python3
"""Produce deterministic GPS pings to a Kafka topic.

The generator yields exactly the pings of `fleetstream bench gps-ingest` (same keys, same
JSON values, same record timestamps), so a peer job can be run over the same input:

    for i in 0..n:
        d        = i % drivers
        ts_ms    = BASE + (i // drivers) * 4000 + (d % 4000)     BASE = 2026-11-02T06:00:00Z
        event_id = f"p{i}"
        driver_id= f"d{d:07}"                                   (also the record key)
        lat      = 52.40 + (d % 1000) * 0.0003 + (i % 7) * 0.00001
        lng      = 13.20 + (d // 1000 % 1000) * 0.0004
        speed_kmh= 30.0, heading = 90.0

Every driver's pings are in event-time order, so every ping is accepted by the location index.
Records are partitioned by murmur2 of the key, like Kafka's default partitioner.

Usage:
    produce.py --broker HOST:PORT --topic T --count N [--drivers D] [--partitions P]

The topic is created with P partitions (default 4) if it does not exist; an existing topic is
used as it is. Progress and a summary go to stderr; the last stdout line is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from typing import Iterator

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

BASE_MS = int(datetime(2026, 11, 2, 6, 0, 0, tzinfo=timezone.utc).timestamp()) * 1000


def format_ts(ms: int) -> str:
    """RFC 3339 in UTC with milliseconds, e.g. `2026-11-02T06:00:00.017Z`."""
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def pings(n: int, drivers: int) -> Iterator[tuple[str, bytes, int]]:
    """Yield `(key, JSON value, timestamp ms)` for pings 0..n."""
    for i in range(n):
        d = i % drivers
        ts_ms = BASE_MS + (i // drivers) * 4000 + (d % 4000)
        driver_id = f"d{d:07}"
        ping = {
            "event_id": f"p{i}",
            "driver_id": driver_id,
            "lat": 52.40 + (d % 1000) * 0.0003 + (i % 7) * 0.00001,
            "lng": 13.20 + (d // 1000 % 1000) * 0.0004,
            "speed_kmh": 30.0,
            "heading": 90.0,
            "ts": format_ts(ts_ms),
        }
        yield driver_id, json.dumps(ping, separators=(",", ":")).encode(), ts_ms


def ensure_topic(broker: str, topic: str, partitions: int, timeout: float = 30.0) -> int:
    """Create `topic` with `partitions` partitions unless it exists; return its partition count."""
    admin = AdminClient({"bootstrap.servers": broker})
    existing = admin.list_topics(timeout=timeout).topics
    if topic not in existing:
        futures = admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1)],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
        try:
            futures[topic].result(timeout)
        except KafkaException as exc:
            # Another client may have created it in the meantime; anything else is fatal.
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    # Metadata for a new topic may take a moment to show every partition.
    deadline = time.monotonic() + timeout
    while True:
        meta = admin.list_topics(topic=topic, timeout=timeout).topics.get(topic)
        if meta is not None and meta.error is None and meta.partitions:
            return len(meta.partitions)
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {topic!r} did not appear within {timeout:.0f} s")
        time.sleep(0.2)


def produce(broker: str, topic: str, n: int, drivers: int) -> float:
    """Produce the pings; return the seconds it took until every record was acknowledged."""
    errors: list[str] = []

    def on_delivery(err, _msg) -> None:
        if err is not None and len(errors) < 10:
            errors.append(str(err))

    producer = Producer(
        {
            "bootstrap.servers": broker,
            "partitioner": "murmur2_random",
            "enable.idempotence": True,
            "linger.ms": 20,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 500000,
            "compression.type": "none",
        }
    )
    started = time.monotonic()
    for key, value, ts_ms in pings(n, drivers):
        while True:
            try:
                producer.produce(topic, value=value, key=key, timestamp=ts_ms, on_delivery=on_delivery)
                break
            except BufferError:
                # Local queue full: serve delivery reports until there is room.
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(120)
    took = time.monotonic() - started
    if remaining:
        raise RuntimeError(f"{remaining} records were not acknowledged within 120 s")
    if errors:
        raise RuntimeError("delivery failed: " + "; ".join(errors))
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", required=True, help="bootstrap server, HOST:PORT")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, required=True, help="number of pings")
    parser.add_argument("--drivers", type=int, default=5000, help="number of drivers (default 5000)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of a new topic (default 4)")
    args = parser.parse_args()
    if args.count <= 0 or args.drivers <= 0 or args.partitions <= 0:
        parser.error("--count, --drivers and --partitions must be positive")

    partitions = ensure_topic(args.broker, args.topic, args.partitions)
    took = produce(args.broker, args.topic, args.count, args.drivers)
    print(
        f"produced {args.count} pings for {args.drivers} drivers to {args.topic} "
        f"({partitions} partitions) in {took:.2f} s ({args.count / took:,.0f}/s)",
        file=sys.stderr,
    )
    print(
        json.dumps(
            {
                "topic": args.topic,
                "pings": args.count,
                "drivers": args.drivers,
                "partitions": partitions,
                "seconds": round(took, 3),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
