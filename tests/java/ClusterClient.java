// Kafka's Java client (org.apache.kafka:kafka-clients) against a Weir cluster, for
// tests/cluster_java.rs. Run as a single-file program (Java 11+):
//
//   java -cp 'target/java-lib/*' tests/java/ClusterClient.java BOOTSTRAP
//
// The Admin client creates the topic `java-client` (3 partitions, replication factor 3), describes
// it and the cluster; a producer with acks=all sends 10 records to each partition and waits for
// every send's offset; a consumer (assign, seekToBeginning) reads them all back; the Admin client
// deletes the topic and waits until it is no longer listed. Every step prints what it saw, the
// last line is `OK produced=30 consumed=30`. Any failure prints the exception and exits 1.

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class ClusterClient {
    static final String TOPIC = "java-client";
    static final int PARTITIONS = 3;
    static final short REPLICATION_FACTOR = 3;
    static final int RECORDS_PER_PARTITION = 10;
    /** Bound on each wait for the cluster (metadata to spread, records to arrive). */
    static final long WAIT_MS = 30_000;
    /** Bound on each single client call. */
    static final long CALL_SECONDS = 30;

    public static void main(String[] args) {
        if (args.length != 1) {
            System.err.println("usage: ClusterClient BOOTSTRAP");
            System.exit(2);
        }
        try {
            run(args[0]);
        } catch (Throwable error) {
            System.out.println("FAILED: " + error);
            error.printStackTrace(System.out);
            System.out.flush();
            System.exit(1);
        }
        System.out.flush();
        // Client threads that linger must not keep the JVM (and the test) waiting.
        System.exit(0);
    }

    static void run(String bootstrap) throws Exception {
        Properties adminConfig = new Properties();
        adminConfig.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        adminConfig.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 15_000);
        adminConfig.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 30_000);
        try (Admin admin = Admin.create(adminConfig)) {
            // CreateTopics goes to the active controller that Metadata names; the client does that.
            admin.createTopics(List.of(new NewTopic(TOPIC, PARTITIONS, REPLICATION_FACTOR)))
                .all()
                .get(CALL_SECONDS, TimeUnit.SECONDS);
            System.out.println("created " + TOPIC);

            // Every partition with a leader among its replicas (the node asked may learn of the
            // topic a moment after the controller committed it).
            TopicDescription description = waitForTopic(admin);
            System.out.println("topic " + description.name() + " id " + description.topicId());
            for (TopicPartitionInfo partition : description.partitions()) {
                System.out.println("partition " + partition.partition()
                    + " leader=" + partition.leader().id()
                    + " replicas=" + ids(partition.replicas())
                    + " isr=" + ids(partition.isr()));
            }

            DescribeClusterResult cluster = admin.describeCluster();
            String clusterId = cluster.clusterId().get(CALL_SECONDS, TimeUnit.SECONDS);
            Set<Integer> nodeIds = new TreeSet<>();
            for (Node node : cluster.nodes().get(CALL_SECONDS, TimeUnit.SECONDS)) {
                nodeIds.add(node.id());
            }
            Node controller = cluster.controller().get(CALL_SECONDS, TimeUnit.SECONDS);
            System.out.println("cluster id=" + clusterId
                + " nodes=" + nodeIds.stream().map(String::valueOf).collect(Collectors.joining(","))
                + " controller=" + (controller == null ? "none" : String.valueOf(controller.id())));

            int produced = produce(bootstrap);
            int consumed = consume(bootstrap);

            admin.deleteTopics(List.of(TOPIC)).all().get(CALL_SECONDS, TimeUnit.SECONDS);
            long deadline = System.currentTimeMillis() + WAIT_MS;
            while (admin.listTopics().names().get(CALL_SECONDS, TimeUnit.SECONDS).contains(TOPIC)) {
                if (System.currentTimeMillis() > deadline) {
                    throw new IllegalStateException(TOPIC + " still listed " + WAIT_MS + " ms after deleting it");
                }
                Thread.sleep(200);
            }
            System.out.println("deleted " + TOPIC);
            System.out.println("OK produced=" + produced + " consumed=" + consumed);
        }
    }

    static TopicDescription waitForTopic(Admin admin) throws Exception {
        long deadline = System.currentTimeMillis() + WAIT_MS;
        String last = "";
        while (true) {
            try {
                TopicDescription description = admin.describeTopics(List.of(TOPIC))
                    .allTopicNames()
                    .get(CALL_SECONDS, TimeUnit.SECONDS)
                    .get(TOPIC);
                List<TopicPartitionInfo> partitions = description.partitions();
                boolean complete = partitions.size() == PARTITIONS
                    && partitions.stream().allMatch(p -> p.leader() != null && !p.leader().isEmpty()
                        && p.replicas().size() == REPLICATION_FACTOR && p.replicas().contains(p.leader()));
                if (complete) {
                    return description;
                }
                last = description.toString();
            } catch (ExecutionException error) {
                if (!(error.getCause() instanceof UnknownTopicOrPartitionException)) {
                    throw error;
                }
                last = error.getCause().toString();
            }
            if (System.currentTimeMillis() > deadline) {
                throw new IllegalStateException(TOPIC + " not complete within " + WAIT_MS + " ms: " + last);
            }
            Thread.sleep(200);
        }
    }

    static int produce(String bootstrap) throws Exception {
        Properties config = new Properties();
        config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        config.put(ProducerConfig.ACKS_CONFIG, "all");
        config.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        config.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        config.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 30_000);
        config.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 15_000);
        config.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 30_000);
        int produced = 0;
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(config)) {
            for (int partition = 0; partition < PARTITIONS; partition++) {
                List<Long> offsets = new ArrayList<>();
                for (int index = 0; index < RECORDS_PER_PARTITION; index++) {
                    RecordMetadata metadata = producer
                        .send(new ProducerRecord<>(TOPIC, partition, "key-" + index, value(partition, index)))
                        .get(CALL_SECONDS, TimeUnit.SECONDS);
                    if (metadata.partition() != partition) {
                        throw new IllegalStateException("sent to partition " + partition + ", stored in " + metadata.partition());
                    }
                    offsets.add(metadata.offset());
                    produced++;
                }
                System.out.println("produced partition " + partition + " offsets=" + offsets);
            }
        }
        return produced;
    }

    static int consume(String bootstrap) throws Exception {
        Properties config = new Properties();
        config.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        config.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        config.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        config.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, 15_000);
        List<TopicPartition> partitions = new ArrayList<>();
        for (int partition = 0; partition < PARTITIONS; partition++) {
            partitions.add(new TopicPartition(TOPIC, partition));
        }
        Map<Integer, List<String>> read = new TreeMap<>();
        int consumed = 0;
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(config)) {
            consumer.assign(partitions);
            consumer.seekToBeginning(partitions);
            long deadline = System.currentTimeMillis() + WAIT_MS;
            while (consumed < PARTITIONS * RECORDS_PER_PARTITION) {
                if (System.currentTimeMillis() > deadline) {
                    throw new IllegalStateException("consumed " + consumed + " records within " + WAIT_MS + " ms: " + read);
                }
                for (ConsumerRecord<String, String> record : consumer.poll(Duration.ofMillis(500))) {
                    read.computeIfAbsent(record.partition(), p -> new ArrayList<>()).add(record.offset() + ":" + record.value());
                    consumed++;
                }
            }
        }
        // Every record exactly once, in order, in the partition it was sent to.
        for (int partition = 0; partition < PARTITIONS; partition++) {
            List<String> values = new ArrayList<>();
            for (String entry : read.getOrDefault(partition, List.of())) {
                values.add(entry.substring(entry.indexOf(':') + 1));
            }
            List<String> expected = new ArrayList<>();
            for (int index = 0; index < RECORDS_PER_PARTITION; index++) {
                expected.add(value(partition, index));
            }
            if (!values.equals(expected)) {
                throw new IllegalStateException("partition " + partition + " read " + values + ", expected " + expected);
            }
            System.out.println("consumed partition " + partition + " " + read.get(partition).size() + " records");
        }
        return consumed;
    }

    static String value(int partition, int index) {
        return "record " + index + " of partition " + partition;
    }

    static String ids(List<Node> nodes) {
        return nodes.stream().map(node -> String.valueOf(node.id())).collect(Collectors.joining(","));
    }
}
