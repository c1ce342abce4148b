// Small admin/consumer helper for the local single-node Kafka (tools/kafka_node.py).
// Compiled by tools/bootstrap.py into .cache/kafka/classes; runs on the Kafka client jars in
// .cache/kafka/libs. One JVM per command; every command prints JSON lines on stdout.
//
//   ready   <bootstrap> <timeoutMs>                   exit 0 once the broker answers
//   topics  <bootstrap> <name:partitions> ...        create missing topics, print all of them
//   consume <bootstrap> <topic> <timeoutMs>          print every record from the beginning
//                                                    up to the end offsets seen at start
//   produce <bootstrap> <topic> <key|-> [h=v ...]    write one record, value read from stdin

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public final class TaskflowKafkaTool {

    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            usage();
        }
        String cmd = args[0];
        String bootstrap = args[1];
        switch (cmd) {
            case "ready" -> System.exit(ready(bootstrap, args.length > 2 ? Long.parseLong(args[2]) : 30000));
            case "topics" -> topics(bootstrap, List.of(args).subList(2, args.length));
            case "consume" -> {
                if (args.length < 4) usage();
                consume(bootstrap, args[2], Long.parseLong(args[3]));
            }
            case "produce" -> {
                if (args.length < 4) usage();
                produce(bootstrap, args[2], args[3], List.of(args).subList(4, args.length));
            }
            default -> usage();
        }
    }

    private static void usage() {
        System.err.println("usage: TaskflowKafkaTool ready|topics|consume|produce <bootstrap> ...");
        System.exit(2);
    }

    private static Properties adminProps(String bootstrap) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "5000");
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "10000");
        return p;
    }

    private static int ready(String bootstrap, long timeoutMs) {
        long deadline = System.currentTimeMillis() + timeoutMs;
        String last = "";
        while (System.currentTimeMillis() < deadline) {
            try (Admin admin = Admin.create(adminProps(bootstrap))) {
                int nodes = admin.describeCluster().nodes().get(5, TimeUnit.SECONDS).size();
                admin.listTopics().names().get(5, TimeUnit.SECONDS);
                System.out.println("{\"ready\":true,\"nodes\":" + nodes + "}");
                return 0;
            } catch (Exception e) {
                last = String.valueOf(e.getMessage());
                try {
                    Thread.sleep(500);
                } catch (InterruptedException ie) {
                    return 1;
                }
            }
        }
        System.out.println("{\"ready\":false,\"error\":" + q(last) + "}");
        return 1;
    }

    private static void topics(String bootstrap, List<String> specs) throws Exception {
        try (Admin admin = Admin.create(adminProps(bootstrap))) {
            Set<String> existing = admin.listTopics().names().get(10, TimeUnit.SECONDS);
            List<NewTopic> wanted = new ArrayList<>();
            for (String spec : specs) {
                String[] parts = spec.split(":");
                int partitions = parts.length > 1 ? Integer.parseInt(parts[1]) : 1;
                if (!existing.contains(parts[0])) {
                    wanted.add(new NewTopic(parts[0], partitions, (short) 1));
                }
            }
            for (NewTopic t : wanted) {
                try {
                    admin.createTopics(List.of(t)).all().get(15, TimeUnit.SECONDS);
                    System.err.println("created topic " + t.name() + " (" + t.numPartitions() + " partitions)");
                } catch (ExecutionException e) {
                    if (!(e.getCause() instanceof TopicExistsException)) {
                        throw e;
                    }
                }
            }
            Set<String> names = new TreeSet<>(admin.listTopics().names().get(10, TimeUnit.SECONDS));
            Map<String, TopicDescription> desc = admin.describeTopics(names).allTopicNames().get(10, TimeUnit.SECONDS);
            for (String n : names) {
                System.out.println("{\"topic\":" + q(n) + ",\"partitions\":" + desc.get(n).partitions().size() + "}");
            }
        }
    }

    private static void consume(String bootstrap, String topic, long timeoutMs) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, String.valueOf(Math.max(timeoutMs, 5000)));
        long deadline = System.currentTimeMillis() + timeoutMs;
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p)) {
            List<PartitionInfo> infos = c.partitionsFor(topic, Duration.ofMillis(Math.max(timeoutMs, 1000)));
            if (infos == null || infos.isEmpty()) {
                System.err.println("topic " + topic + " does not exist");
                System.exit(3);
            }
            List<TopicPartition> tps = new ArrayList<>();
            for (PartitionInfo i : infos) {
                tps.add(new TopicPartition(topic, i.partition()));
            }
            c.assign(tps);
            c.seekToBeginning(tps);
            Map<TopicPartition, Long> end = new HashMap<>(c.endOffsets(tps));
            Map<TopicPartition, Long> pos = new HashMap<>();
            for (TopicPartition tp : tps) {
                pos.put(tp, c.position(tp));
            }
            while (System.currentTimeMillis() < deadline && !done(pos, end)) {
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(200))) {
                    print(r);
                    pos.put(new TopicPartition(r.topic(), r.partition()), r.offset() + 1);
                }
                for (TopicPartition tp : tps) {
                    pos.put(tp, Math.max(pos.get(tp), c.position(tp)));
                }
            }
        }
    }

    private static boolean done(Map<TopicPartition, Long> pos, Map<TopicPartition, Long> end) {
        for (Map.Entry<TopicPartition, Long> e : end.entrySet()) {
            if (pos.getOrDefault(e.getKey(), 0L) < e.getValue()) {
                return false;
            }
        }
        return true;
    }

    private static void print(ConsumerRecord<byte[], byte[]> r) {
        StringBuilder h = new StringBuilder("{");
        boolean first = true;
        for (Header header : r.headers()) {
            if (!first) h.append(',');
            first = false;
            h.append(q(header.key())).append(':')
                .append(header.value() == null ? "null" : q(new String(header.value(), StandardCharsets.UTF_8)));
        }
        h.append('}');
        System.out.println("{\"topic\":" + q(r.topic()) + ",\"partition\":" + r.partition()
            + ",\"offset\":" + r.offset() + ",\"timestamp\":" + r.timestamp()
            + ",\"key\":" + (r.key() == null ? "null" : q(new String(r.key(), StandardCharsets.UTF_8)))
            + ",\"value\":" + (r.value() == null ? "null" : q(new String(r.value(), StandardCharsets.UTF_8)))
            + ",\"headers\":" + h + "}");
    }

    private static void produce(String bootstrap, String topic, String key, List<String> headers) throws Exception {
        byte[] value = System.in.readAllBytes();
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        try (KafkaProducer<byte[], byte[]> prod = new KafkaProducer<>(p)) {
            ProducerRecord<byte[], byte[]> rec = new ProducerRecord<>(topic, null,
                "-".equals(key) ? null : key.getBytes(StandardCharsets.UTF_8), value);
            for (String hv : headers) {
                int i = hv.indexOf('=');
                if (i > 0) {
                    rec.headers().add(hv.substring(0, i), hv.substring(i + 1).getBytes(StandardCharsets.UTF_8));
                }
            }
            RecordMetadata md = prod.send(rec).get(15, TimeUnit.SECONDS);
            System.out.println("{\"topic\":" + q(md.topic()) + ",\"partition\":" + md.partition()
                + ",\"offset\":" + md.offset() + "}");
        }
    }

    private static String q(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (int i = 0; i < s.length(); i++) {
            char ch = s.charAt(i);
            switch (ch) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                case '\n' -> b.append("\\n");
                case '\r' -> b.append("\\r");
                case '\t' -> b.append("\\t");
                default -> {
                    if (ch < 0x20) {
                        b.append(String.format("\\u%04x", (int) ch));
                    } else {
                        b.append(ch);
                    }
                }
            }
        }
        return b.append('"').toString();
    }
}
