"""The deployment examples of doc/README.md ("Deploying: containers and
shared access", issue #17) are checked, not just shown: run by
`make test-py` against bin/alloy and bin/alloy-go.

- Both YAML blocks parse (PyYAML); one is a Kubernetes Pod, one a Compose
  file.
- Their wiring is consistent: a memory-backed volume (emptyDir medium:
  Memory with a sizeLimit / a tmpfs volume) mounted where ALLOY_SHM_DIR
  points in every container, one pid namespace, every user in the ring's
  group, and a volume big enough for the ring `create` makes.
- Every command in them is a valid alloy / alloy-go invocation: the
  commands are run for real, in the order the orchestrator would, against a
  temporary directory standing for the volumes (ALLOY_SHM_DIR set as in the
  YAML, /data mapped to a temporary directory), and the consumer's output
  file holds exactly the batches the producer sent (pyarrow).
"""

import os
import re
import subprocess
import tempfile
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "doc" / "README.md"
TOOLS = {"alloy": ROOT / "bin" / "alloy", "alloy-go": ROOT / "bin" / "alloy-go"}
SECTION = "### Deploying: containers and shared access"


def blocks():
    text = README.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start)
    section = text[start:end]
    found = re.findall(r"```yaml\n(.*?)```", section, re.S)
    assert len(found) == 2, f"expected a Pod and a Compose file, found {len(found)} yaml blocks"
    docs = [yaml.safe_load(b) for b in found]
    pod = next(d for d in docs if d.get("kind") == "Pod")
    compose = next(d for d in docs if "services" in d)
    return pod, compose


def need_tools():
    missing = [str(p) for p in TOOLS.values() if not p.is_file()]
    if missing:
        msg = f"{', '.join(missing)} missing (run make build)"
        if os.environ.get("CI") or os.environ.get("ALLOY_REQUIRE_CROSS", "") not in ("", "0", "false"):
            pytest.fail(msg)
        pytest.skip(msg)


def size_bytes(s: str) -> int:
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|k|m|g)?", str(s))
    assert m, f"size {s!r}"
    unit = {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    return int(m.group(1)) * unit[m.group(2)]


def ring_bytes(create_cmd) -> int:
    """The ring size `create` will make: slots x (slot size + 64) plus the header area."""
    args = dict(zip(create_cmd[2::2], create_cmd[3::2]))
    slots, slot_size = int(args.get("--slots", 64)), int(args.get("--slot-size", 1 << 20))
    return slots * (slot_size + 64) + (1 << 20)  # a generous bound on the header and tables


def env_of(container) -> dict:
    env = container.get("env") or container.get("environment") or {}
    if isinstance(env, list):
        env = {e["name"]: e["value"] for e in env}
    return env


def run_commands(steps, tmp: Path, shm: str):
    """Runs create, then the consumer in the background, then the producer,
    as `steps` = (create, consumer, producer) command lists; returns the
    consumer's output path on the host."""
    data = tmp / "data"
    data.mkdir()
    os.chmod(data, 0o777)
    shm_host = tmp / "shm"
    shm_host.mkdir()

    def host(cmd):
        assert cmd[0] in TOOLS, f"not an Alloy tool: {cmd[0]!r}"
        out = [str(TOOLS[cmd[0]])]
        for a in cmd[1:]:
            out.append(str(data / a[len("/data/"):]) if a.startswith("/data/") else a)
        return out

    env = dict(os.environ, ALLOY_SHM_DIR=str(shm_host))
    create, consumer, producer = steps
    batch = pa.record_batch({"id": pa.array(range(1000), pa.int64()), "s": [f"row {i}" for i in range(1000)]})
    with pa.ipc.new_stream(str(data / "events.arrows"), batch.schema) as w:
        for _ in range(3):
            w.write_batch(batch)
    r = subprocess.run(host(create), env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"{create}: {r.stderr}"
    assert "created ring" in r.stdout
    ring = shm_host / create[create.index("--ring") + 1]
    st = ring.stat()
    group = int(create[create.index("--group") + 1])
    assert (st.st_mode & 0o777, st.st_gid) == (0o660, group), "the ring is shared with the group"
    rx = subprocess.Popen(host(consumer), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert rx.stdout.readline().strip() == "ready", "the consumer attached"
        r = subprocess.run(host(producer), env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"{producer}: {r.stderr}"
        out, err = rx.communicate(timeout=60)
        assert rx.returncode == 0, f"{consumer}: {err}"
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait()
    got = pa.ipc.open_stream(str(data / consumer[consumer.index("--out") + 1][len("/data/"):])).read_all()
    assert got == pa.Table.from_batches([batch] * 3)
    os.unlink(ring)


def test_kubernetes_pod():
    pod, _ = blocks()
    spec = pod["spec"]
    assert spec["shareProcessNamespace"] is True, "liveness needs one pid namespace"
    vols = {v["name"]: v for v in spec["volumes"]}
    containers = spec["initContainers"] + spec["containers"]
    by_name = {c["name"]: c for c in containers}
    create, consumer, producer = by_name["create-ring"], by_name["consumer"], by_name["producer"]
    assert consumer.get("restartPolicy") == "Always", "the consumer is a native sidecar, started first"
    group = int(create["command"][create["command"].index("--group") + 1])
    assert group in spec["securityContext"]["supplementalGroups"]
    for c in containers:
        shm = env_of(c)["ALLOY_SHM_DIR"]
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        vol = vols[mounts[shm]]["emptyDir"]
        assert vol["medium"] == "Memory"
        assert size_bytes(vol["sizeLimit"]) >= ring_bytes(create["command"])
        assert c["securityContext"]["runAsUser"] != 0
    assert producer["securityContext"]["runAsUser"] != consumer["securityContext"]["runAsUser"], "two users"
    need_tools()
    with tempfile.TemporaryDirectory() as tmp:
        run_commands([create["command"], consumer["command"], producer["command"]], Path(tmp), "/alloy")


def test_docker_compose():
    _, compose = blocks()
    svc = compose["services"]
    create, consumer, producer = svc["create-ring"], svc["consumer"], svc["producer"]
    group = create["command"][create["command"].index("--group") + 1]
    tmpfs = compose["volumes"]["alloy-shm"]["driver_opts"]
    assert tmpfs["type"] == "tmpfs"
    size = re.search(r"size=(\w+)", tmpfs["o"]).group(1)
    assert size_bytes(size) >= ring_bytes(create["command"])
    for s in (create, consumer, producer):
        shm = env_of(s)["ALLOY_SHM_DIR"]
        assert f"alloy-shm:{shm}" in s["volumes"]
        assert group in s["group_add"]
        assert not s["user"].startswith("0:")
    assert producer["user"] != consumer["user"], "two users"
    assert producer["pid"] == f"container:{consumer['container_name']}", "one pid namespace"
    assert consumer["depends_on"]["create-ring"]["condition"] == "service_completed_successfully"
    assert producer["depends_on"]["consumer"]["condition"] == "service_started"
    need_tools()
    with tempfile.TemporaryDirectory() as tmp:
        run_commands([create["command"], consumer["command"], producer["command"]], Path(tmp), "/alloy")
