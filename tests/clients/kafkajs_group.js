// kafkajs' group consumer against a running Weir broker: records produced over a 3-partition
// topic are read by a consumer in a group (join, sync, heartbeats, commits), the group's
// committed offsets are the log end offsets afterwards, the admin client lists and describes
// the group, and a second consumer in the group reads only what was produced after.
//
// usage: node kafkajs_group.js BOOTSTRAP
'use strict';

const { Kafka, logLevel } = require('kafkajs');

const [bootstrap] = process.argv.slice(2);
const TOPIC = 'kafkajs-group';
const GROUP = 'kafkajs-group-consumers';
const PARTITIONS = 3;
const RECORDS = 60;
const MORE = 6;
const TIMEOUT_MS = 30000;

function check(condition, message) {
  if (!condition) {
    throw new Error(message);
  }
}

/// Runs a group consumer until `count` records arrived; returns their values.
async function consumeInGroup(kafka, count) {
  const consumer = kafka.consumer({
    groupId: GROUP,
    sessionTimeout: 6000,
    heartbeatInterval: 500,
    rebalanceTimeout: 10000,
  });
  await consumer.connect();
  await consumer.subscribe({ topics: [TOPIC], fromBeginning: true });
  const got = [];
  let resolve;
  const done = new Promise((r) => { resolve = r; });
  await consumer.run({
    autoCommit: true,
    eachMessage: async ({ message }) => {
      got.push(message.value.toString());
      if (got.length >= count) {
        resolve();
      }
    },
  });
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${got.length} of ${count} records within ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
  });
  try {
    await Promise.race([done, timeout]);
  } finally {
    clearTimeout(timer);
    // Disconnecting commits the offsets resolved so far and leaves the group.
    await consumer.disconnect();
  }
  return got;
}

async function main() {
  const kafka = new Kafka({
    clientId: 'weir-kafkajs-group',
    brokers: [bootstrap],
    logLevel: logLevel.ERROR,
    retry: { retries: 5 },
    requestTimeout: 15000,
  });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic: TOPIC, numPartitions: PARTITIONS }], waitForLeaders: true });

  const producer = kafka.producer();
  await producer.connect();
  const send = async (from, count) => {
    const messages = [];
    for (let i = from; i < from + count; i++) {
      messages.push({ value: `j-${i}`, partition: i % PARTITIONS });
    }
    await producer.send({ topic: TOPIC, messages });
  };
  await send(0, RECORDS);

  const first = await consumeInGroup(kafka, RECORDS);
  check(new Set(first).size === RECORDS, `first member read ${first.length} records, ${new Set(first).size} distinct`);

  const [offsets] = await admin.fetchOffsets({ groupId: GROUP, topics: [TOPIC] });
  const committed = offsets.partitions.map((p) => Number(p.offset)).sort();
  check(
    committed.length === PARTITIONS && committed.every((o) => o === RECORDS / PARTITIONS),
    `committed offsets ${JSON.stringify(offsets.partitions)}`,
  );
  const { groups } = await admin.listGroups();
  check(groups.some((g) => g.groupId === GROUP && g.protocolType === 'consumer'), `listGroups: ${JSON.stringify(groups)}`);
  const described = await admin.describeGroups([GROUP]);
  check(described.groups[0].state === 'Empty', `describeGroups: ${JSON.stringify(described.groups[0])}`);

  await send(RECORDS, MORE);
  const second = await consumeInGroup(kafka, MORE);
  const expected = [];
  for (let i = RECORDS; i < RECORDS + MORE; i++) {
    expected.push(`j-${i}`);
  }
  check(
    JSON.stringify([...second].sort()) === JSON.stringify(expected.sort()),
    `second member read ${JSON.stringify(second)}`,
  );

  await producer.disconnect();
  await admin.disconnect();
  console.log(JSON.stringify({ first: first.length, second: second.length }));
}

main().catch((error) => {
  console.error(`kafkajs group check failed: ${error.stack || error}`);
  process.exit(1);
});
