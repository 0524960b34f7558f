#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft mode) from the jars in pom.xml, on loopback.
#
#   kafka.sh classpath                    resolve the jars (Maven Central, cached in ~/.m2)
#   kafka.sh start DIR [PORT] [CTRL_PORT] format DIR (once) and start a broker there; waits until it listens
#   kafka.sh stop DIR                     stop the broker started in DIR (SIGTERM, then SIGKILL)
#   kafka.sh consumer-groups ARGS...      Kafka's kafka-consumer-groups tool (e.g. --describe --group G)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${RVS_KAFKA_CACHE:-$HOME/.cache/rvs}"
cp_file="$cache/kafka-$(sha256sum "$here/pom.xml" | cut -c1-12).classpath"

classpath() {
  if [ ! -s "$cp_file" ]; then
    mkdir -p "$cache"
    mvn -q -B -f "$here/pom.xml" dependency:build-classpath -Dmdep.outputFile="$cp_file.tmp" >&2
    mv "$cp_file.tmp" "$cp_file"
  fi
  cat "$cp_file"
}

wait_port() {
  for _ in $(seq 1 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

start() {
  local dir="$1" port="${2:-9092}" ctrl="${3:-9093}"
  mkdir -p "$dir/data"
  dir="$(cd "$dir" && pwd)"
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$ctrl
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$ctrl
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
PROPS
  local cp java_opts
  cp="$(classpath)"
  java_opts=(-Xmx512m -Dlog4j2.configurationFile="$here/log4j2.properties" -Dkafka.logs.dir="$dir")
  if [ ! -f "$dir/data/meta.properties" ]; then
    java "${java_opts[@]}" -cp "$cp" kafka.tools.StorageTool format \
      -t "$(java -cp "$cp" kafka.tools.StorageTool random-uuid)" -c "$dir/server.properties" >/dev/null
  fi
  nohup java "${java_opts[@]}" -cp "$cp" kafka.Kafka "$dir/server.properties" > "$dir/stdout.log" 2>&1 &
  echo $! > "$dir/broker.pid"
  if ! wait_port "$port"; then
    echo "Kafka did not start; see $dir/server.log" >&2
    stop "$dir"
    exit 1
  fi
  echo "Kafka listening on 127.0.0.1:$port (pid $(cat "$dir/broker.pid"))"
}

stop() {
  local pid_file="$1/broker.pid" pid
  [ -f "$pid_file" ] || return 0
  pid="$(cat "$pid_file")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pid_file"
}

case "${1:-}" in
  classpath) classpath ;;
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  consumer-groups) shift; exec java -cp "$(classpath)" org.apache.kafka.tools.consumer.group.ConsumerGroupCommand "$@" ;;
  *) echo "usage: $0 classpath | start DIR [PORT] [CTRL_PORT] | stop DIR | consumer-groups ARGS" >&2; exit 2 ;;
esac
