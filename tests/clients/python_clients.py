#!/usr/bin/env python3
"""Third-party Kafka clients against a running Weir broker.

Run by tests/broker_python.rs, which starts the broker and passes its address:

    python_clients.py --bootstrap 127.0.0.1:PORT --sections confluent,kafka-python,kcat

Sections:
  confluent     confluent-kafka (librdkafka): produce/consume with headers and every
                compression codec, AdminClient create/delete topic.
  kafka-python  kafka-python (pure Python protocol code): produce/consume,
                offsets_for_times, beginning_offsets/end_offsets.
  kcat          the kcat command line tool: -L metadata, -P produce, -C -e consume.

Each check prints "ok: NAME" or "FAIL: NAME: why"; the exit status is 1 when any failed.
Every blocking call has a timeout, so a broker that stops answering fails the run instead
of hanging it.
"""

import argparse
import json
import shutil
import subprocess
import sys
import time

from checks import check, expect, fail, report

# Bound on any one client operation, in seconds.
TIMEOUT = 20.0


def records(count, tag):
    """Keys with some None, values with some None and empty, headers including a None value."""
    result = []
    for i in range(count):
        key = None if i % 7 == 3 else f"{tag}-key-{i}".encode()
        if i % 11 == 5:
            value = None
        elif i % 11 == 8:
            value = b""
        else:
            value = (f"{tag} value {i} " * (1 + i % 30)).encode()
        headers = [] if i % 3 == 0 else [("index", str(i).encode()), ("none", None), ("tag", tag.encode())]
        result.append((key, value, headers))
    return result


# ---------------------------------------------------------------------------------------------
# confluent-kafka


def confluent_section(bootstrap):
    from confluent_kafka import (
        OFFSET_BEGINNING,
        Consumer,
        KafkaError,
        KafkaException,
        Producer,
        TopicPartition,
    )
    from confluent_kafka.admin import AdminClient, NewTopic

    base = {
        "bootstrap.servers": bootstrap,
        "broker.address.family": "v4",
        "socket.timeout.ms": 10000,
    }

    def consume(topic, count):
        # assign() needs a group id in librdkafka; nothing joins a group or commits.
        consumer = Consumer({**base, "group.id": "weir-python", "enable.auto.commit": False})
        try:
            consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
            got = []
            deadline = time.monotonic() + TIMEOUT
            while len(got) < count:
                expect(time.monotonic() < deadline, f"{len(got)} of {count} records arrived in time")
                message = consumer.poll(0.5)
                if message is None:
                    continue
                if message.error():
                    raise KafkaException(message.error())
                got.append(message)
            return got
        finally:
            consumer.close()

    for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:

        @check(f"confluent-kafka produce/consume compression={codec}")
        def round_trip(codec=codec):
            topic = f"py-confluent-{codec}"
            sent = records(120, codec)
            producer = Producer({**base, "compression.type": codec, "linger.ms": 5, "message.timeout.ms": 15000})
            delivered = []

            def on_delivery(error, message):
                delivered.append((error, message.offset() if error is None else None))

            for key, value, headers in sent:
                producer.produce(topic, value=value, key=key, headers=headers, partition=0, on_delivery=on_delivery)
            left = producer.flush(TIMEOUT)
            expect(left == 0, f"{left} records still queued after {TIMEOUT}s")
            errors = [error for error, _ in delivered if error is not None]
            expect(not errors, f"delivery errors: {errors[:3]}")
            offsets = [offset for _, offset in delivered]
            expect(offsets == list(range(len(sent))), f"offsets are not contiguous: {offsets[:10]}...")

            got = consume(topic, len(sent))
            for i, (message, (key, value, headers)) in enumerate(zip(got, sent)):
                expect(message.offset() == i, f"record {i} at offset {message.offset()}")
                expect(message.key() == key, f"record {i}: key {message.key()!r} != {key!r}")
                expect(message.value() == value, f"record {i}: value differs")
                expect((message.headers() or []) == headers, f"record {i}: headers {message.headers()!r} != {headers!r}")

    @check("confluent-kafka AdminClient create/delete topic")
    def admin():
        client = AdminClient(base)
        futures = client.create_topics(
            [NewTopic("py-admin", num_partitions=4, replication_factor=1, config={"retention.ms": "3600000"})],
            request_timeout=10,
        )
        futures["py-admin"].result(timeout=TIMEOUT)
        metadata = client.list_topics(timeout=TIMEOUT)
        expect("py-admin" in metadata.topics, f"created topic not listed: {sorted(metadata.topics)}")
        expect(len(metadata.topics["py-admin"].partitions) == 4, "partition count")

        again = client.create_topics([NewTopic("py-admin", num_partitions=1, replication_factor=1)], request_timeout=10)
        try:
            again["py-admin"].result(timeout=TIMEOUT)
            raise AssertionError("creating an existing topic succeeded")
        except KafkaException as error:
            code = error.args[0].code()
            expect(code == KafkaError.TOPIC_ALREADY_EXISTS, f"creating an existing topic: {error}")

        client.delete_topics(["py-admin"], request_timeout=10)["py-admin"].result(timeout=TIMEOUT)
        metadata = client.list_topics(timeout=TIMEOUT)
        expect("py-admin" not in metadata.topics, "deleted topic still listed")


# ---------------------------------------------------------------------------------------------
# kafka-python


def kafka_python_section(bootstrap):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    timeout_ms = int(TIMEOUT * 1000)
    base_timestamp = 1_700_000_000_000

    for codec in [None, "gzip"]:

        @check(f"kafka-python produce/consume compression={codec}")
        def round_trip(codec=codec):
            topic = f"py-kafka-python-{codec or 'none'}"
            producer = KafkaProducer(
                bootstrap_servers=bootstrap,
                compression_type=codec,
                linger_ms=5,
                request_timeout_ms=timeout_ms,
                max_block_ms=timeout_ms,
            )
            sent = []
            futures = []
            for i in range(100):
                key = None if i % 9 == 4 else f"k{i}".encode()
                # kafka-python refuses a record with neither key nor value.
                value = None if i % 13 == 6 and key is not None else f"kafka-python {i} ".encode() * (1 + i % 20)
                headers = [("index", str(i).encode())] if i % 2 else []
                timestamp = base_timestamp + 1000 * i
                sent.append((key, value, headers, timestamp))
                futures.append(
                    producer.send(topic, key=key, value=value, headers=headers, partition=0, timestamp_ms=timestamp)
                )
            producer.flush(timeout=TIMEOUT)
            offsets = [future.get(timeout=TIMEOUT).offset for future in futures]
            producer.close(timeout=TIMEOUT)
            expect(offsets == list(range(len(sent))), f"offsets are not contiguous: {offsets[:10]}...")

            tp = TopicPartition(topic, 0)
            consumer = KafkaConsumer(
                bootstrap_servers=bootstrap,
                group_id=None,
                enable_auto_commit=False,
                request_timeout_ms=timeout_ms + 5000,
            )
            try:
                consumer.assign([tp])
                consumer.seek_to_beginning(tp)
                got = []
                deadline = time.monotonic() + TIMEOUT
                while len(got) < len(sent):
                    expect(time.monotonic() < deadline, f"{len(got)} of {len(sent)} records arrived in time")
                    for batch in consumer.poll(timeout_ms=500).values():
                        got.extend(batch)
                for i, (message, (key, value, headers, timestamp)) in enumerate(zip(got, sent)):
                    expect(message.offset == i, f"record {i} at offset {message.offset}")
                    expect(message.key == key, f"record {i}: key {message.key!r} != {key!r}")
                    expect(message.value == value, f"record {i}: value differs")
                    expect(list(message.headers) == headers, f"record {i}: headers {message.headers!r}")
                    expect(message.timestamp == timestamp, f"record {i}: timestamp {message.timestamp}")

                # offsets_for_times: the first record at or after each timestamp.
                cases = {
                    base_timestamp - 5000: 0,
                    base_timestamp: 0,
                    base_timestamp + 1: 1,
                    base_timestamp + 41_500: 42,
                    base_timestamp + 99_000: 99,
                }
                for query, expected in cases.items():
                    answer = consumer.offsets_for_times({tp: query}, timeout_ms=timeout_ms)
                    expect(answer[tp] is not None, f"offsets_for_times({query}) found nothing")
                    expect(answer[tp].offset == expected, f"offsets_for_times({query}) = {answer[tp]}, expected {expected}")
                past = consumer.offsets_for_times({tp: base_timestamp + 99_001}, timeout_ms=timeout_ms)
                expect(past[tp] is None, f"offsets_for_times past the last record = {past[tp]}")

                ends = consumer.end_offsets([tp], timeout_ms=timeout_ms)
                expect(ends == {tp: len(sent)}, f"end_offsets {ends}")
                starts = consumer.beginning_offsets([tp], timeout_ms=timeout_ms)
                expect(starts == {tp: 0}, f"beginning_offsets {starts}")
            finally:
                consumer.close()


# ---------------------------------------------------------------------------------------------
# kcat


def kcat_section(bootstrap, kcat):
    def run(arguments, stdin=None):
        try:
            completed = subprocess.run(
                [kcat, "-b", bootstrap, *arguments],
                input=stdin,
                capture_output=True,
                timeout=TIMEOUT,
            )
        except subprocess.TimeoutExpired as error:
            stderr = (error.stderr or b"").decode(errors="replace")
            raise AssertionError(f"kcat {' '.join(arguments)} did not finish within {TIMEOUT}s; stderr: {stderr!r}") from None
        expect(
            completed.returncode == 0,
            f"kcat {' '.join(arguments)} exited {completed.returncode}: {completed.stderr.decode(errors='replace')}",
        )
        return completed.stdout.decode()

    topic = "py-kcat"
    lines = [f"key-{i}:value {i} " + "x" * (i % 50) for i in range(60)]

    @check("kcat -P produce (gzip, keys, headers)")
    def produce():
        run(["-P", "-t", topic, "-p", "0", "-K:", "-z", "gzip", "-H", "origin=kcat"], stdin=("\n".join(lines) + "\n").encode())

    @check("kcat -L metadata")
    def metadata():
        listing = json.loads(run(["-L", "-J"]))
        brokers = listing.get("brokers", [])
        expect(len(brokers) == 1, f"brokers {brokers}")
        topics = {entry["topic"]: entry for entry in listing.get("topics", [])}
        expect(topic in topics, f"{topic} not listed: {sorted(topics)}")
        expect(len(topics[topic]["partitions"]) == 1, f"partitions {topics[topic]['partitions']}")

    @check("kcat -C -e consume")
    def consume():
        # -e exits at the end of the partition; -f prints key, value and headers per record.
        output = run(["-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-f", "%o|%k|%s|%h\n"])
        got = output.splitlines()
        expect(len(got) == len(lines), f"{len(got)} records consumed, {len(lines)} produced")
        for i, (line, sent) in enumerate(zip(got, lines)):
            key, value = sent.split(":", 1)
            expect(line == f"{i}|{key}|{value}|origin=kcat", f"record {i}: {line!r}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True, help="HOST:PORT of the broker")
    parser.add_argument("--sections", default="confluent,kafka-python,kcat", help="comma-separated sections to run")
    parser.add_argument("--kcat", default="kcat", help="the kcat executable")
    arguments = parser.parse_args()
    sections = [section.strip() for section in arguments.sections.split(",") if section.strip()]
    for section in sections:
        if section == "confluent":
            confluent_section(arguments.bootstrap)
        elif section == "kafka-python":
            kafka_python_section(arguments.bootstrap)
        elif section == "kcat":
            kcat = shutil.which(arguments.kcat)
            if kcat is None:
                fail("kcat", f"{arguments.kcat} is not on PATH")
            else:
                kcat_section(arguments.bootstrap, kcat)
        else:
            parser.error(f"unknown section {section!r}")
    return report()


if __name__ == "__main__":
    sys.exit(main())
