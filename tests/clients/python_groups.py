#!/usr/bin/env python3
"""Group consumers of confluent-kafka and kafka-python against a running Weir broker.

Run by tests/broker_groups.rs, which starts the broker and passes its address:

    python_groups.py --bootstrap 127.0.0.1:PORT

For each client: records are produced over a 3-partition topic; a consumer with a group id
subscribes, reads them all and commits synchronously; the committed offsets are the log end
offsets; the group is listed; after more records arrive, a new member of the group reads only
those. Each check prints "ok: NAME" or "FAIL: NAME: why"; the exit status is 1 when any failed.
Every blocking call has a timeout.
"""

import argparse
import sys
import time

from checks import check, expect, report

# Bound on any one client operation, in seconds.
TIMEOUT = 30.0
PARTITIONS = 3
RECORDS = 60
MORE = 6


def confluent_section(bootstrap):
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    base = {"bootstrap.servers": bootstrap, "broker.address.family": "v4", "socket.timeout.ms": 10000}
    topic = "py-group-confluent"
    group = "py-confluent-group"

    def produce(start, count):
        producer = Producer({**base, "linger.ms": 5, "message.timeout.ms": 15000})
        for i in range(start, start + count):
            producer.produce(topic, value=f"c-{i}".encode(), partition=i % PARTITIONS)
        left = producer.flush(TIMEOUT)
        expect(left == 0, f"{left} records still queued")

    def member():
        consumer = Consumer(
            {
                **base,
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 500,
            }
        )
        consumer.subscribe([topic])
        return consumer

    def read(consumer, count):
        got = []
        deadline = time.monotonic() + TIMEOUT
        while len(got) < count:
            expect(time.monotonic() < deadline, f"{len(got)} of {count} records arrived in time")
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                raise KafkaException(message.error())
            got.append(message.value().decode())
        return got

    @check("confluent-kafka group consumer reads all, commits, resumes")
    def consume_and_commit():
        admin = AdminClient(base)
        admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])[topic].result(
            timeout=TIMEOUT
        )
        produce(0, RECORDS)
        consumer = member()
        try:
            got = read(consumer, RECORDS)
            expect(sorted(got) == sorted(f"c-{i}" for i in range(RECORDS)), f"records {sorted(got)[:5]}...")
            consumer.commit(asynchronous=False)
            committed = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=TIMEOUT)
            offsets = {tp.partition: tp.offset for tp in committed}
            expected = {p: RECORDS // PARTITIONS for p in range(PARTITIONS)}
            expect(offsets == expected, f"committed {offsets}, expected {expected}")
        finally:
            consumer.close()

        listed = admin.list_consumer_groups(request_timeout=10).result(timeout=TIMEOUT)
        ids = [listing.group_id for listing in listed.valid]
        expect(group in ids, f"{group} not in {ids}")
        described = admin.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=TIMEOUT)
        expect(str(described.state).upper().endswith("EMPTY"), f"state after close: {described.state}")

        produce(RECORDS, MORE)
        consumer = member()
        try:
            got = read(consumer, MORE)
            expect(sorted(got) == sorted(f"c-{i}" for i in range(RECORDS, RECORDS + MORE)), f"resumed with {got}")
            consumer.commit(asynchronous=False)
        finally:
            consumer.close()


def kafka_python_section(bootstrap):
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic

    timeout_ms = int(TIMEOUT * 1000)
    topic = "py-group-kafka-python"
    group = "py-kafka-python-group"

    def produce(start, count):
        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, request_timeout_ms=timeout_ms, max_block_ms=timeout_ms)
        futures = [producer.send(topic, value=f"k-{i}".encode(), partition=i % PARTITIONS) for i in range(start, start + count)]
        producer.flush(timeout=TIMEOUT)
        for future in futures:
            future.get(timeout=TIMEOUT)
        producer.close(timeout=TIMEOUT)

    def member():
        return KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=6000,
            heartbeat_interval_ms=500,
            request_timeout_ms=timeout_ms + 5000,
        )

    def read(consumer, count):
        got = []
        deadline = time.monotonic() + TIMEOUT
        while len(got) < count:
            expect(time.monotonic() < deadline, f"{len(got)} of {count} records arrived in time")
            for batch in consumer.poll(timeout_ms=500).values():
                got.extend(record.value.decode() for record in batch)
        return got

    @check("kafka-python group consumer reads all, commits, resumes")
    def consume_and_commit():
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms)
        try:
            admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
            produce(0, RECORDS)
            consumer = member()
            try:
                got = read(consumer, RECORDS)
                expect(sorted(got) == sorted(f"k-{i}" for i in range(RECORDS)), f"records {sorted(got)[:5]}...")
                consumer.commit()
                for partition in range(PARTITIONS):
                    committed = consumer.committed(TopicPartition(topic, partition))
                    expect(committed == RECORDS // PARTITIONS, f"partition {partition} committed {committed}")
            finally:
                consumer.close()

            def group_id(entry):
                if isinstance(entry, dict):
                    return entry.get("group_id", entry.get("group"))
                if isinstance(entry, tuple):
                    return entry[0]
                return getattr(entry, "group_id", entry)

            groups = [group_id(entry) for entry in admin.list_groups(states_filter=["Empty"])]
            expect(group in groups, f"{group} not among the Empty groups {groups}")
            offsets = admin.list_group_offsets({group: None})[group]
            by_partition = {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}
            expected = {p: RECORDS // PARTITIONS for p in range(PARTITIONS)}
            expect(by_partition == expected, f"group offsets {by_partition}, expected {expected}")

            produce(RECORDS, MORE)
            consumer = member()
            try:
                got = read(consumer, MORE)
                expect(sorted(got) == sorted(f"k-{i}" for i in range(RECORDS, RECORDS + MORE)), f"resumed with {got}")
                consumer.commit()
            finally:
                consumer.close()
        finally:
            admin.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True, help="HOST:PORT of the broker")
    arguments = parser.parse_args()
    confluent_section(arguments.bootstrap)
    kafka_python_section(arguments.bootstrap)
    return report()


if __name__ == "__main__":
    sys.exit(main())
