// kafkajs (a pure JavaScript client, a fourth independent stack) against a running Weir broker:
// topic admin, configs, an idempotent acks=all producer with keys, headers and gzip, offsets.
// The records are read back by the Rust test with librdkafka (kafkajs' group consumer has its own
// test, kafkajs_group.js). Prints one JSON line with what was produced.
//
// usage: node kafkajs_client.js BOOTSTRAP TOPIC
'use strict';

const { Kafka, logLevel, CompressionTypes } = require('kafkajs');

const [bootstrap, topic] = process.argv.slice(2);
const PARTITIONS = 4;
const RECORDS = 60;

function check(condition, message) {
  if (!condition) {
    throw new Error(message);
  }
}

async function main() {
  const kafka = new Kafka({
    clientId: 'weir-kafkajs-test',
    brokers: [bootstrap],
    logLevel: logLevel.ERROR,
    retry: { retries: 3 },
    requestTimeout: 15000,
  });

  const admin = kafka.admin();
  await admin.connect();
  const created = await admin.createTopics({
    topics: [{
      topic,
      numPartitions: PARTITIONS,
      replicationFactor: 1,
      configEntries: [{ name: 'retention.ms', value: '3600000' }],
    }],
    waitForLeaders: true,
  });
  check(created === true, `createTopics answered ${created}`);
  const topics = await admin.listTopics();
  check(topics.includes(topic), `listTopics lacks ${topic}: ${topics}`);
  const metadata = await admin.fetchTopicMetadata({ topics: [topic] });
  check(metadata.topics[0].partitions.length === PARTITIONS, 'partition count');
  const configs = await admin.describeConfigs({
    resources: [{ type: 2 /* TOPIC */, name: topic, configNames: ['retention.ms'] }],
    includeSynonyms: false,
  });
  const retention = configs.resources[0].configEntries.find((e) => e.configName === 'retention.ms');
  check(retention && retention.configValue === '3600000', `retention.ms: ${JSON.stringify(retention)}`);

  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const messages = [];
  for (let i = 0; i < RECORDS; i++) {
    messages.push({ key: `key-${i}`, value: `value-${i}`, headers: { source: 'kafkajs', index: `${i}` } });
  }
  const half = RECORDS / 2;
  const plain = await producer.send({ topic, acks: -1, messages: messages.slice(0, half) });
  const gzip = await producer.send({
    topic, acks: -1, compression: CompressionTypes.GZIP, messages: messages.slice(half),
  });
  for (const result of [...plain, ...gzip]) {
    check(result.errorCode === 0, `produce error ${JSON.stringify(result)}`);
  }
  // kafkajs' default partitioner is the Java client's murmur2: the test checks where keys went.
  const offsets = await admin.fetchTopicOffsets(topic);
  const total = offsets.reduce((sum, p) => sum + Number(p.high) - Number(p.low), 0);
  check(total === RECORDS, `high - low over partitions is ${total}, expected ${RECORDS}`);

  await producer.disconnect();
  // UNKNOWN_TOPIC_OR_PARTITION, which kafkajs retries and then reports in its own words.
  await admin.deleteTopics({ topics: [`${topic}-absent`], timeout: 2000 }).then(
    () => { throw new Error('deleting a missing topic succeeded'); },
    (error) => check(/does not host this topic-partition|UNKNOWN_TOPIC/i.test(`${error.message} ${error.type}`), `delete error: ${error}`),
  );
  await admin.disconnect();
  console.log(JSON.stringify({
    records: RECORDS,
    partitions: offsets.map((p) => ({ partition: p.partition, high: Number(p.high) })),
  }));
}

main().catch((error) => {
  console.error(`kafkajs check failed: ${error.stack || error}`);
  process.exit(1);
});
