#!/usr/bin/env bash
# Starts, stops and describes a local three-node Weir cluster on 127.0.0.1 (node1.toml,
# node2.toml, node3.toml next to this script). Run it from the repository root:
#
#   examples/cluster/cluster.sh start    # start the nodes not running, wait until all are unfenced
#   examples/cluster/cluster.sh status   # which nodes run, and `weir cluster describe`
#   examples/cluster/cluster.sh stop     # SIGTERM every node, wait until they exit
#
# Environment:
#   WEIR                      the weir binary (default: target/release/weir)
#   WEIR_CLUSTER_DIR          state directory: nodeN/ (log.dirs), nodeN.log, nodeN.pid
#                             (default: ./weir-cluster)
#   WEIR_CLUSTER_TIMEOUT      seconds `start` waits for three unfenced brokers (default: 60)
#   WEIR_CLUSTER_STOP_TIMEOUT seconds `stop` waits for the nodes to exit (default: 40; a node
#                             drains for up to shutdown.timeout.ms, 30 s by default)
set -euo pipefail

readonly NODES=(1 2 3)
CONFIG_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly CONFIG_DIR
WEIR=${WEIR:-target/release/weir}
# Absolute, so that the pid checks below can recognise a node by its --set log.dirs=... argument.
STATE_DIR=${WEIR_CLUSTER_DIR:-./weir-cluster}
STATE_DIR=${STATE_DIR%/}
[[ $STATE_DIR == /* ]] || STATE_DIR=$PWD/${STATE_DIR#./}
readonly STATE_DIR
START_TIMEOUT=${WEIR_CLUSTER_TIMEOUT:-60}
STOP_TIMEOUT=${WEIR_CLUSTER_STOP_TIMEOUT:-40}

# Kafka port of node N: the single-node default (9092) + 10000 + 100*(N-1); see node1.toml.
kafka_port() { echo $((19092 + ($1 - 1) * 100)); }

bootstrap_servers() {
    local node servers=()
    for node in "${NODES[@]}"; do
        servers+=("127.0.0.1:$(kafka_port "$node")")
    done
    local IFS=,
    echo "${servers[*]}"
}

usage() {
    echo "usage: $0 start|stop|status" >&2
    exit 2
}

require_weir() {
    if [[ ! -x $WEIR ]]; then
        echo "cluster.sh: no weir binary at '$WEIR'." >&2
        echo "Build it with 'cargo build --release -p weir' (from the repository root)," >&2
        echo "or point WEIR at one: WEIR=target/debug/weir $0 ${1:-start}" >&2
        exit 1
    fi
}

pid_file() { echo "$STATE_DIR/node$1.pid"; }

# The pid in node N's pid file if that process is still this node's `weir serve` (a pid file
# left by a crashed node may name an unrelated process by now); nothing otherwise.
running_pid() {
    local file pid args
    file=$(pid_file "$1")
    [[ -f $file ]] || return 0
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    args=$(ps -ww -o args= -p "$pid" 2>/dev/null) || return 0
    if [[ $args == *serve* && $args == *"log.dirs=$STATE_DIR/node$1"* ]]; then
        echo "$pid"
    fi
}

# The output of `weir cluster describe` if it succeeds and lists every node unfenced.
describe_if_ready() {
    local output
    output=$("$WEIR" cluster describe --bootstrap-server "127.0.0.1:$(kafka_port 1)" 2>&1) ||
        return 1
    # The table after the "BrokerId  Endpoint  Rack  Fenced" header: one line per broker.
    local unfenced
    unfenced=$(awk '$1 == "BrokerId" { table = 1; next } table && $NF == "false" { n++ }
                    END { print n + 0 }' <<<"$output")
    [[ $unfenced -eq ${#NODES[@]} ]] || return 1
    echo "$output"
}

start() {
    require_weir start
    local dir=$STATE_DIR node pid
    mkdir -p "$dir"
    for node in "${NODES[@]}"; do
        # A node still running is left alone: `start` after a kill restarts only the dead ones.
        pid=$(running_pid "$node")
        if [[ -n $pid ]]; then
            echo "node $node: already running, pid $pid"
            continue
        fi
        mkdir -p "$dir/node$node"
        echo "--- cluster.sh start, $(date)" >>"$dir/node$node.log"
        # Its own session (setsid, where there is one), so a Ctrl-C here or closing the
        # terminal does not reach the nodes: they run until `stop`. Logs are appended to.
        local launcher=()
        if command -v setsid >/dev/null; then launcher=(setsid); else launcher=(nohup); fi
        "${launcher[@]}" "$WEIR" serve --config "$CONFIG_DIR/node$node.toml" \
            --set "log.dirs=$dir/node$node" \
            </dev/null >>"$dir/node$node.log" 2>&1 &
        echo $! >"$dir/node$node.pid"
        echo "node $node: started, pid $!, Kafka 127.0.0.1:$(kafka_port "$node"), log $dir/node$node.log"
    done

    echo "waiting up to ${START_TIMEOUT}s for three unfenced brokers..."
    local deadline=$((SECONDS + START_TIMEOUT)) output
    while true; do
        for node in "${NODES[@]}"; do
            if [[ -z $(running_pid "$node") ]]; then
                echo "cluster.sh: node $node exited; the end of $dir/node$node.log:" >&2
                tail -n 20 "$dir/node$node.log" >&2
                stop
                exit 1
            fi
        done
        if output=$(describe_if_ready); then
            echo "$output"
            return 0
        fi
        if ((SECONDS >= deadline)); then
            echo "cluster.sh: the cluster did not have three unfenced brokers within" \
                "${START_TIMEOUT}s; the last 'weir cluster describe':" >&2
            "$WEIR" cluster describe --bootstrap-server "127.0.0.1:$(kafka_port 1)" >&2 || true
            echo "Logs: $dir/node*.log. The nodes are still running; '$0 stop' stops them." >&2
            exit 1
        fi
        sleep 0.5
    done
}

stop() {
    local node pid pids=() nodes=() failed=0
    for node in "${NODES[@]}"; do
        pid=$(running_pid "$node")
        if [[ -n $pid ]]; then
            echo "node $node: SIGTERM to pid $pid"
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
            nodes+=("$node")
        else
            echo "node $node: not running"
            rm -f "$(pid_file "$node")"
        fi
    done
    local deadline=$((SECONDS + STOP_TIMEOUT)) index
    for index in "${!pids[@]}"; do
        while kill -0 "${pids[$index]}" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.2
        done
        if kill -0 "${pids[$index]}" 2>/dev/null; then
            echo "cluster.sh: node ${nodes[$index]} (pid ${pids[$index]}) did not exit" \
                "within ${STOP_TIMEOUT}s; 'kill -KILL ${pids[$index]}' ends it" >&2
            failed=1
        else
            echo "node ${nodes[$index]}: stopped"
            rm -f "$(pid_file "${nodes[$index]}")"
        fi
    done
    return "$failed"
}

status() {
    require_weir status
    local node pid
    for node in "${NODES[@]}"; do
        pid=$(running_pid "$node")
        if [[ -n $pid ]]; then
            echo "node $node: running, pid $pid"
        else
            echo "node $node: not running"
        fi
    done
    echo
    "$WEIR" cluster describe --bootstrap-server "$(bootstrap_servers)"
}

[[ $# -eq 1 ]] || usage
case $1 in
start) start ;;
stop) stop ;;
status) status ;;
*) usage ;;
esac
