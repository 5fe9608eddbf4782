#!/usr/bin/env bash
# A single-node Apache Kafka broker (KRaft: broker and controller in one JVM) on 127.0.0.1, for
# tests and benches. Jars come from fetch.sh (Maven Central).
#
#   broker.sh start DIR PORT   format DIR once, start the broker in the background, wait until it
#                              answers on PORT (controller on PORT+1); DIR keeps its data, so a
#                              stopped broker started again on the same DIR has its topics back
#   broker.sh stop DIR         SIGTERM (a clean shutdown), wait for the process to end
#   broker.sh kill DIR         SIGKILL: the broker dies as in a crash
#   broker.sh pid DIR          prints the pid of a running broker, exit 1 if none
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cmd="${1:?usage: broker.sh start|stop|kill|pid DIR [PORT]}"
dir="${2:?a data directory}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
pidfile="$dir/broker.pid"

running() {
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

wait_gone() {
  local pid="$1"
  for _ in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  return 1
}

case "$cmd" in
  start)
    port="${3:?a port}"
    if running; then echo "broker already running (pid $(cat "$pidfile"))" >&2; exit 1; fi
    lib="$(bash "$here/fetch.sh")"
    cp="$lib/*"
    if [ ! -f "$dir/server.properties" ]; then
      cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$((port + 1))
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$((port + 1))
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=3
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
PROPS
      java -cp "$cp" kafka.tools.StorageTool format -t "$(java -cp "$cp" kafka.tools.StorageTool random-uuid)" -c "$dir/server.properties" > "$dir/format.log" 2>&1
    fi
    # A small heap and no JIT tiers beyond C1: the tests share two cores with the router.
    nohup java -Xms256m -Xmx512m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djava.awt.headless=true -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
      -cp "$cp" kafka.Kafka "$dir/server.properties" > "$dir/broker.log" 2>&1 &
    echo $! > "$pidfile"
    for _ in $(seq 1 600); do
      if ! running; then echo "the broker exited; see $dir/broker.log" >&2; tail -20 "$dir/broker.log" >&2; exit 1; fi
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$(cat "$pidfile")"; exit 0; fi
      sleep 0.1
    done
    echo "the broker did not listen on 127.0.0.1:$port within 60 s; see $dir/broker.log" >&2
    exit 1
    ;;
  stop|kill)
    running || exit 0
    pid="$(cat "$pidfile")"
    if [ "$cmd" = kill ]; then kill -KILL "$pid"; else kill -TERM "$pid"; fi
    wait_gone "$pid" || { kill -KILL "$pid" 2>/dev/null || true; wait_gone "$pid" || true; }
    rm -f "$pidfile"
    ;;
  pid)
    running || exit 1
    cat "$pidfile"
    ;;
  *)
    echo "unknown command $cmd" >&2
    exit 2
    ;;
esac
