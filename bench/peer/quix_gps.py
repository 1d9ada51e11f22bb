#!/usr/bin/env python3
"""The GPS location index in Quix Streams: a peer of `fleetstream bench gps-ingest`.

Input: JSON GPS pings keyed by `driver_id`, e.g.

    {"event_id":"p17","driver_id":"d0000017","lat":52.4051,"lng":13.2,
     "speed_kmh":30.0,"heading":90.0,"ts":"2026-11-02T06:00:00.017Z"}

Per driver, in Quix state (RocksDB, with its changelog topic), the job keeps the latest position
(lat, lng, ts) and the ids of the last few pings. Like fleetstream's location index:

- a ping whose `event_id` is among the driver's recent ids is ignored (a redelivery);
- a ping that is not newer than the stored position never moves the driver back: it is dropped;
- every accepted ping gets its H3 cell at resolution 9 and goes to the output topic, keyed by
  `driver_id`, as `{"driver_id","lat","lng","cell","ts","event_id"}`.

The job runs at-least-once (Quix's default), with a fresh consumer group and state directory
each run, reading the input from the earliest offset. It stops once N input messages were
processed and prints one JSON line to stdout:

    {"peer":"quixstreams","version":"x.y.z","records":N,"seconds":S,"records_per_s":R,...}

`seconds` runs from the start of processing of the first message to the end of processing of the
N-th; `seconds_including_startup` runs from the start of this process (topic creation, group join
and partition assignment included) to the N-th; `seconds_until_committed` runs from the first
message until the application has stopped with its final checkpoint committed (output and
changelog flushed, offsets committed). Logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

# Taken before the heavy imports, so that startup includes loading the libraries.
PROCESS_STARTED = time.monotonic()

import h3  # noqa: E402
import quixstreams  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402
from quixstreams import Application, State  # noqa: E402
from quixstreams.models.topics import TopicConfig  # noqa: E402

logger = logging.getLogger("quix_gps")

# How many recent ping ids a driver keeps to recognise duplicates (as fleetstream does).
RECENT_IDS = 8
# H3 resolution of the published cell.
CELL_RESOLUTION = 9
# The single state key of a driver; Quix scopes state by message key, i.e. by driver.
DRIVER_STATE_KEY = "driver"
# Kafka's default `retention.ms` (7 days), which a Kafka broker reports for a topic created
# without one. Quix derives its changelog topic's config from the input topic's `retention.ms`
# and fails without it (KeyError: 'retention.ms'); tansu's DescribeConfigs answer only lists
# the configs a topic was created with.
KAFKA_DEFAULT_RETENTION_MS = str(7 * 24 * 3600 * 1000)

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
ONE_MS = timedelta(milliseconds=1)


def parse_ts_ms(text: str) -> int:
    """Milliseconds since the epoch of an RFC 3339 timestamp with an offset (`Z` included)."""
    # `fromisoformat` takes a trailing `Z` only from Python 3.11 on.
    parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset")
    return (parsed - EPOCH) // ONE_MS


def locate(ping: dict[str, Any], state: State) -> Optional[dict[str, Any]]:
    """The location index for one ping: the position to publish, or None when it is dropped.

    State per driver: `{"lat", "lng", "ts" (ms), "ids" (recent event ids, oldest first)}`.
    """
    driver = state.get(DRIVER_STATE_KEY)
    event_id = ping["event_id"]
    if driver is not None and event_id in driver["ids"]:
        # Seen before: a redelivered ping changes nothing.
        return None
    ts_ms = parse_ts_ms(ping["ts"])
    if driver is None:
        driver = {"lat": None, "lng": None, "ts": None, "ids": []}
    ids = driver["ids"]
    ids.append(event_id)
    if len(ids) > RECENT_IDS:
        del ids[: len(ids) - RECENT_IDS]

    newer = driver["ts"] is None or ts_ms > driver["ts"]
    position = None
    if newer:
        lat, lng = ping["lat"], ping["lng"]
        driver["lat"], driver["lng"], driver["ts"] = lat, lng, ts_ms
        position = {
            "driver_id": ping["driver_id"],
            "lat": lat,
            "lng": lng,
            "cell": h3.latlng_to_cell(lat, lng, CELL_RESOLUTION),
            "ts": ping["ts"],
            "event_id": event_id,
        }
    # The id is remembered even for a dropped out-of-order ping, so its redelivery is a no-op.
    state.set(DRIVER_STATE_KEY, driver)
    return position


class Run:
    """Counts processed input messages, times the run and stops the application at N."""

    def __init__(self, target: int):
        self.target = target
        self.processed = 0
        self.positions = 0
        self.first_started: Optional[float] = None
        self.last_done: Optional[float] = None
        self.app: Optional[Application] = None

    def on_value(self, ping: dict[str, Any], state: State) -> Optional[dict[str, Any]]:
        if self.first_started is None:
            self.first_started = time.monotonic()
        position = locate(ping, state)
        if position is not None:
            self.positions += 1
        return position

    def on_message_processed(self, _topic: str, _partition: int, _offset: int) -> None:
        self.processed += 1
        if self.processed == self.target:
            self.last_done = time.monotonic()
            assert self.app is not None
            # Ends the poll loop after this message; the final checkpoint is still committed.
            self.app.stop()


def run_job(
    args: argparse.Namespace, run: Run, output_topic_name: str, group: str, state_dir: str
) -> float:
    """Build the application and run it until `run` stops it; return when it stopped."""
    app = Application(
        broker_address=args.broker,
        consumer_group=group,
        auto_offset_reset="earliest",
        processing_guarantee="at-least-once",
        state_dir=state_dir,
        on_message_processed=run.on_message_processed,
        loglevel=args.loglevel,
    )
    run.app = app
    pings = app.topic(args.topic, key_deserializer="str", value_deserializer="json")
    # Must precede the stateful step, which derives the changelog topic's config from it.
    pings.broker_config.extra_config.setdefault("retention.ms", KAFKA_DEFAULT_RETENTION_MS)
    # The output is keyed like the input; a new output topic gets as many partitions.
    positions = app.topic(
        output_topic_name,
        key_serializer="str",
        value_serializer="json",
        config=TopicConfig(num_partitions=pings.broker_config.num_partitions, replication_factor=1),
    )

    sdf = app.dataframe(pings)
    sdf = sdf.apply(run.on_value, stateful=True)
    sdf = sdf.filter(lambda position: position is not None)
    sdf.to_topic(positions)

    logger.info(
        "location index over %s -> %s: group %s, state in %s, stopping after %d messages",
        args.topic, output_topic_name, group, state_dir, args.count,
    )
    # `collect=False`: the outputs go to Kafka only, not into a list in memory.
    app.run(timeout=args.idle_timeout, collect=False)
    return time.monotonic()


def main() -> int:
    parser = argparse.ArgumentParser(description="Quix Streams peer of fleetstream's GPS location index")
    parser.add_argument("--broker", required=True, help="bootstrap server, HOST:PORT")
    parser.add_argument("--topic", required=True, help="input topic of GPS pings")
    parser.add_argument("--count", type=int, required=True, help="stop after this many input messages")
    parser.add_argument("--output-topic", help="output topic of positions (default: TOPIC.quix.positions)")
    parser.add_argument(
        "--state-dir", help="state directory (default: a temporary one, removed afterwards)"
    )
    parser.add_argument("--consumer-group", help="consumer group (default: a fresh one)")
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=60.0,
        help="give up when no message arrives for this many seconds (default 60)",
    )
    parser.add_argument("--loglevel", default="INFO", help="Quix Streams log level (default INFO)")
    args = parser.parse_args()
    if args.count <= 0:
        parser.error("--count must be positive")

    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="[%(asctime)s] [%(levelname)s] [%(name)s] : %(message)s",
    )
    # Quix would create a missing input topic (one empty partition) and wait on it forever.
    if args.topic not in AdminClient({"bootstrap.servers": args.broker}).list_topics(timeout=30).topics:
        logger.error("input topic %s does not exist on %s", args.topic, args.broker)
        return 1
    run_id = uuid.uuid4().hex[:12]
    group = args.consumer_group or f"quix-gps-{run_id}"
    output_topic_name = args.output_topic or f"{args.topic}.quix.positions"
    temp_state = args.state_dir is None
    state_dir = args.state_dir or tempfile.mkdtemp(prefix="quix-gps-state-")

    run = Run(args.count)
    try:
        stopped = run_job(args, run, output_topic_name, group, state_dir)
    finally:
        if temp_state:
            shutil.rmtree(state_dir, ignore_errors=True)

    if run.processed < args.count or run.first_started is None or run.last_done is None:
        logger.error(
            "stopped after %d of %d messages (nothing new for %.0f s)",
            run.processed, args.count, args.idle_timeout,
        )
        return 1
    seconds = run.last_done - run.first_started
    result = {
        "peer": "quixstreams",
        "version": quixstreams.__version__,
        "records": run.processed,
        "seconds": round(seconds, 3),
        "records_per_s": round(run.processed / seconds, 1) if seconds > 0 else None,
        "seconds_including_startup": round(run.last_done - PROCESS_STARTED, 3),
        "seconds_until_committed": round(stopped - run.first_started, 3),
        "positions": run.positions,
        "input_topic": args.topic,
        "output_topic": output_topic_name,
        "consumer_group": group,
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
