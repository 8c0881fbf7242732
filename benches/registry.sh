#!/usr/bin/env bash
# The registry bench (benches/registry/): rmif-registry vs etcd vs ZooKeeper, 3 members each,
# on loopback. Installs what it needs from Debian when it is missing (etcd, ZooKeeper, a Java
# runtime, and protoc with the protobuf well-known types for etcd-client's build), builds the
# release rmif-registry server, then runs the bench. Arguments go to the bench, e.g.
#
#   benches/registry.sh --runs 3
#   benches/registry.sh --only rmif --scenario writes --duration 5
#   benches/registry.sh --scenario discovery --runs 3 --consumers 1,100,1000
#
# Honours CARGO_TARGET_DIR and CARGO_BUILD_JOBS (default 2). Builds run under `nice`; the
# measurement does not.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"

# Where Debian puts things: etcd-server ships /usr/bin/etcd; zookeeper ships
# /usr/share/java/zookeeper.jar (whose manifest names its dependency jars) and the start class
# org.apache.zookeeper.server.quorum.QuorumPeerMain (/usr/share/zookeeper/bin/zkServer.sh wraps
# it; the bench runs the class directly, with its own zoo.cfg per member).
etcd_bin=/usr/bin/etcd
zk_classpath=/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar

missing=()
[[ -x $etcd_bin ]] || missing+=(etcd-server)
[[ -f /usr/share/java/zookeeper.jar && -f /usr/share/java/slf4j-simple.jar ]] || missing+=(zookeeper)
command -v java >/dev/null || missing+=(default-jre-headless)
command -v protoc >/dev/null || missing+=(protobuf-compiler)
[[ -f /usr/include/google/protobuf/descriptor.proto ]] || missing+=(libprotobuf-dev)
if ((${#missing[@]})); then
    sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    echo "registry.sh: installing ${missing[*]}" >&2
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
    # Where systemd runs, the etcd-server package starts a system etcd; the bench starts its
    # own clusters and wants no other server competing for the CPU.
    if [[ " ${missing[*]} " == *" etcd-server "* ]] && command -v systemctl >/dev/null &&
        systemctl is-active --quiet etcd 2>/dev/null; then
        "${sudo[@]}" systemctl disable --now etcd
    fi
fi

nice -n 10 cargo build --release -p rmif-registry-server --bin rmif-registry
nice -n 10 cargo bench -p rmif-bench --bench registry --no-run

export RMIF_REGISTRY_BIN="$target_dir/release/rmif-registry"
export ETCD_BIN="$etcd_bin"
export ZOOKEEPER_CLASSPATH="$zk_classpath"
export JAVA="${JAVA:-$(command -v java)}"
exec cargo bench -p rmif-bench --bench registry -- "$@"
