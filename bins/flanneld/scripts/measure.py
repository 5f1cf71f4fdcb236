#!/usr/bin/env python3
"""Measure flanneld's resident memory and its time from start to READY=1.

Runs everything inside a network namespace that the script creates and
deletes: an underlay veth pair (10.99.0.1/24, MTU 1500, default route), an
etcd server on the namespace's loopback, and flanneld itself. Needs root,
iproute2, etcd-server and a built binary:

    cargo build --release -p flanneld
    sudo bins/flanneld/scripts/measure.py --binary target/release/flanneld

For each backend it reports:
  - start to READY=1 on a fresh etcd (a new lease is created),
  - start to READY=1 on restart (the lease and subnet.env are reused),
  - VmRSS, VmHWM, RssAnon and RssFile (KiB) one second after READY, from
    the last run,
  - the same after 1,000 peer leases were written to etcd before start,
    measured once flanneld has logged every peer.
"""

import argparse
import base64
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ETCD = "http://127.0.0.1:2379"
PREFIX = "/coreos.com/network"


def run(*args, **kwargs):
    return subprocess.run(args, check=True, **kwargs)


def etcd_post(path, **fields):
    """POST to etcd's v3 JSON gateway; byte fields are sent base64-encoded."""
    body = json.dumps({name: base64.b64encode(value.encode()).decode()
                       for name, value in fields.items()}).encode()
    request = urllib.request.Request(ETCD + path, data=body, method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        response.read()


def etcd_put(key, value):
    etcd_post("/v3/kv/put", key=key, value=value)


def etcd_delete_prefix(prefix):
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    etcd_post("/v3/kv/deleterange", key=prefix, range_end=end)


def wait_etcd():
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(ETCD + "/health", timeout=1) as response:
                if b'"health":"true"' in response.read():
                    return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit("etcd did not start (apt-get install etcd-server)")


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


class Flanneld:
    """One flanneld run: start, wait for READY=1, stop with SIGTERM."""

    def __init__(self, binary, workdir, name):
        self.log_path = os.path.join(workdir, name + ".log")
        notify_path = os.path.join(workdir, name + ".sock")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(notify_path)
        env = dict(os.environ, NOTIFY_SOCKET=notify_path)
        env.pop("RUST_LOG", None)
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [binary, f"-etcd-endpoints={ETCD}", f"-subnet-file={workdir}/subnet.env",
             "-iptables-forward-rules=false"],
            env=env, stdout=subprocess.DEVNULL, stderr=open(self.log_path, "w"))

    def wait_ready(self):
        self.notify.settimeout(30)
        while True:
            message = self.notify.recv(256).decode()
            if message == "READY=1":
                return (time.monotonic() - self.started) * 1000

    def wait_log_count(self, text, count, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path) as log:
                if log.read().count(text) >= count:
                    return
            time.sleep(0.1)
        sys.exit(f"flanneld logged fewer than {count} x {text!r}; see {self.log_path}")

    def memory(self):
        pid = self.process.pid
        return {field: status_kib(pid, field) for field in ("VmRSS", "VmHWM", "RssAnon", "RssFile")}

    def stop(self):
        self.process.terminate()
        code = self.process.wait(timeout=30)
        self.notify.close()
        if code != 0:
            sys.exit(f"flanneld exited with {code}; see {self.log_path}")


def measure_backend(binary, workdir, backend, runs, peers):
    etcd_delete_prefix(PREFIX + "/")
    config = {"Network": "10.0.0.0/8", "SubnetLen": 24, "Backend": {"Type": backend}}
    etcd_put(PREFIX + "/config", json.dumps(config))
    subnet_env = os.path.join(workdir, "subnet.env")
    result = {"backend": backend}

    fresh, restart = [], []
    for index in range(runs):
        etcd_delete_prefix(PREFIX + "/subnets/")
        if os.path.exists(subnet_env):
            os.remove(subnet_env)
        daemon = Flanneld(binary, workdir, f"{backend}-fresh-{index}")
        fresh.append(daemon.wait_ready())
        time.sleep(1)
        memory = daemon.memory()
        daemon.stop()
        daemon = Flanneld(binary, workdir, f"{backend}-restart-{index}")
        restart.append(daemon.wait_ready())
        daemon.stop()
    result["ready_fresh_ms"] = fresh
    result["ready_restart_ms"] = restart
    result["memory_kib"] = memory

    etcd_delete_prefix(PREFIX + "/subnets/")
    for index in range(1, peers + 1):
        subnet = f"10.{index // 256}.{index % 256}.0"
        peer_ip = f"10.99.{1 + index // 250}.{1 + index % 250}"
        etcd_put(f"{PREFIX}/subnets/{subnet}-24",
                 json.dumps({"PublicIP": peer_ip, "BackendType": backend}))
    with_peers = []
    for index in range(runs):
        daemon = Flanneld(binary, workdir, f"{backend}-peers-{index}")
        with_peers.append(daemon.wait_ready())
        daemon.wait_log_count("peer added", peers)
        time.sleep(1)
        memory = daemon.memory()
        daemon.stop()
    result["ready_with_peers_ms"] = with_peers
    result["peers"] = peers
    result["memory_with_peers_kib"] = memory
    return result


def inner(args):
    workdir = tempfile.mkdtemp(prefix="flanneld-measure-")
    etcd = subprocess.Popen(
        ["etcd", "--name=bench", f"--data-dir={workdir}/etcd",
         f"--listen-client-urls={ETCD}", f"--advertise-client-urls={ETCD}",
         "--listen-peer-urls=http://127.0.0.1:2380",
         "--initial-advertise-peer-urls=http://127.0.0.1:2380",
         "--initial-cluster=bench=http://127.0.0.1:2380"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(workdir, "etcd.log"), "w"))
    try:
        wait_etcd()
        results = [measure_backend(args.binary, workdir, backend, args.runs, args.peers)
                   for backend in args.backends.split(",")]
    finally:
        etcd.terminate()
        etcd.wait()
    shutil.rmtree(workdir, ignore_errors=True)
    for result in results:
        summary = dict(result)
        for key in ("ready_fresh_ms", "ready_restart_ms", "ready_with_peers_ms"):
            values = result[key]
            summary[key] = {"median": round(statistics.median(values), 1),
                            "min": round(min(values), 1), "max": round(max(values), 1)}
        print(json.dumps(summary))


def outer(args):
    netns = f"fl-bench-{os.getpid()}"
    run("ip", "netns", "add", netns)
    try:
        def ip(*words):
            run("ip", "netns", "exec", netns, "ip", *words)
        ip("link", "set", "lo", "up")
        ip("link", "add", "veth0", "type", "veth", "peer", "name", "veth1")
        ip("addr", "add", "10.99.0.1/24", "dev", "veth0")
        ip("link", "set", "veth0", "up")
        ip("link", "set", "veth1", "up")
        ip("route", "add", "default", "dev", "veth0")
        run("ip", "netns", "exec", netns, sys.executable, os.path.abspath(__file__), "--inner",
            "--binary", os.path.abspath(args.binary), "--runs", str(args.runs),
            "--peers", str(args.peers), "--backends", args.backends)
    finally:
        subprocess.run(["ip", "netns", "del", netns])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default="target/release/flanneld")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--peers", type=int, default=1000)
    parser.add_argument("--backends", default="udp,alloc")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        inner(args)
    else:
        outer(args)


if __name__ == "__main__":
    main()
