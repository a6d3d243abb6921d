"""The Kubernetes manifests (deploy/k8s/) under `podman kube play`, ready by their own probes.

The migrate Job, then the web, sockets, worker and beat Deployments, start from the image this
session built (`make image`), with deploy/k8s/configmap.yaml as it is and a Secret laid out as
secret.example.yaml, against PostGIS and Redis containers on a Podman network of the test's
own (the same stand-ins as the Compose test). The test then acts as the kubelet: it runs every
startup, readiness and liveness probe the manifests define (HTTP to the pod's address, or a
command inside the container) until each passes. Beat's heartbeat in /health/ shows that beat
sent a task and a worker ran it. The sockets pod, besides its probes, upgrades a WebSocket
handshake to the app's consumer (the Ingress's /ws/ route ends there) and stops on SIGTERM
within its terminationGracePeriodSeconds, exit 0. Finally the Redis container restarts without
persistence: beat keeps running, takes its lock again, and the heartbeat is back in /health/
within a minute.

What the test changes in the manifests: the image (the session's tag instead of the registry
placeholder), `replicas` (one pod each: Podman 4.3 publishes every containerPort on the host,
so a second web pod could not bind port 5000; two web replicas behind a load balancer are
proof/test_load_balancer.py's), the sockets pod's `hostPort` (a free one, for the same reason:
its containerPort is web's 5000), and the Secret's values. What Podman 4.3 does not do, and so
is not exercised here: it plays only Pod, Deployment and PersistentVolumeClaim (the Job runs as
a Pod made from its own template; Service, PodDisruptionBudget, HorizontalPodAutoscaler and
Ingress, with its /ws/ route, are left to a cluster and validated offline in
test_deploy_configs.py); it runs no probe on its own (the test runs them) and no rolling
update. It reads a `secretRef` from a Podman secret holding the Secret's data as
JSON, so the test makes that secret from the Secret's `stringData`.
"""

import base64
import json
import secrets
import time
from pathlib import Path

import httpx
import pytest
import yaml

from devstack import containers
from devstack.env import PROJECT_DIR
from devstack.ports import free_port
from devstack.wait import wait_for

pytestmark = pytest.mark.slow

K8S = PROJECT_DIR / "deploy" / "k8s"
SECRET = "delivery-secrets"  # the name the manifests' secretRef uses
READY_WITHIN = 300  # seconds, for every probe of every pod (the startup probe allows 600)


def manifests(name: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]


def with_image(docs: list[dict]) -> list[dict]:
    """The documents with every container's image set to the session's, one replica each."""
    for doc in docs:
        if doc["kind"] == "Deployment":
            doc["spec"]["replicas"] = 1
        spec = doc.get("spec", {}).get("template", {}).get("spec") or doc.get("spec", {})
        for container in spec.get("containers", []):
            container["image"] = containers.IMAGE
    return docs


def on_a_free_host_port(docs: list[dict]) -> list[dict]:
    """Podman 4.3 publishes a containerPort without hostPort on the host's same port: each port
    of these pods gets a free one instead, so they can run beside web's 5000."""
    for doc in docs:
        if doc["kind"] == "Deployment":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                for port in container.get("ports", []):
                    port["hostPort"] = free_port()
    return docs


def pod_templates(docs: list[dict]) -> dict[str, dict]:
    """Each Deployment's pod name under `kube play` ("<name>-pod-0") and its pod spec."""
    return {
        f"{doc['metadata']['name']}-pod-0": doc["spec"]["template"]["spec"]
        for doc in docs
        if doc["kind"] == "Deployment"
    }


class KubeStack:
    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.dependencies = containers.Dependencies("delivery-kube")
        self.network = self.dependencies.network
        self.redis = self.dependencies.redis
        self.pods: dict[str, dict] = {}  # pod name -> pod spec
        self.played: list[Path] = []

    def create_secret(self) -> None:
        """secret.example.yaml's keys, with this stack's values, as Podman 4.3 reads them."""
        (example,) = manifests("secret.example.yaml")
        values = dict(example["stringData"])
        values.update(
            DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
            DATABASE_URL=self.dependencies.database_url,
            REDIS_URL=self.dependencies.redis_url,
        )
        data = {key: base64.b64encode(value.encode()).decode() for key, value in values.items()}
        path = self.work_dir / "secret.json"
        path.write_text(json.dumps(data))
        containers.podman("secret", "rm", SECRET, check=False)
        containers.podman("secret", "create", SECRET, str(path))

    def play(self, name: str, docs: list[dict]) -> None:
        path = self.work_dir / name
        path.write_text(yaml.safe_dump_all(docs))
        self.played.append(path)
        containers.podman(
            "kube", "play", "--network", self.network,
            "--configmap", str(K8S / "configmap.yaml"), str(path), timeout=300,
        )  # fmt: skip
        self.pods.update(pod_templates(docs))

    def run_job(self, name: str) -> int:
        """A Job's pod template, played as a Pod (Podman 4.3 has no Jobs); its exit code."""
        (job,) = with_image(manifests(name))
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": job["metadata"]["name"]},
            "spec": job["spec"]["template"]["spec"],
        }
        self.play(name, [pod])
        (container,) = pod["spec"]["containers"]
        result = containers.podman(
            "wait", f"{pod['metadata']['name']}-{container['name']}", timeout=600
        )
        return int(result.stdout.strip())

    def container(self, pod: str, name: str) -> str:
        return f"{pod}-{name}"

    def pod_address(self, pod: str) -> str:
        infra = containers.podman(
            "pod", "inspect", "--format", "{{.InfraContainerID}}", pod
        ).stdout.strip()
        return self.dependencies.address(infra)

    def probe(self, pod: str, container: dict, probe: dict) -> bool:
        """One run of a probe, as the kubelet runs it."""
        timeout = probe.get("timeoutSeconds", 1)
        if "httpGet" in probe:
            get = probe["httpGet"]
            port = get["port"]
            if isinstance(port, str):
                (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
            url = f"http://{self.pod_address(pod)}:{port}{get['path']}"
            try:
                return 200 <= httpx.get(url, timeout=timeout).status_code < 400
            except httpx.HTTPError:
                return False
        command = probe["exec"]["command"]
        name = self.container(pod, container["name"])
        result = containers.run(
            ["podman", "exec", name, *command], timeout=timeout + 30, check=False
        )
        return result.returncode == 0

    def state(self, pod: str, name: str) -> dict:
        output = containers.podman("inspect", self.container(pod, name)).stdout
        return json.loads(output)[0]["State"]

    def logs(self) -> str:
        names = [self.dependencies.postgres, self.redis] + [
            self.container(pod, container["name"])
            for pod, spec in self.pods.items()
            for container in spec["containers"]
        ]
        return "\n".join(containers.logs(name, 20) for name in names)

    def down(self) -> None:
        for path in reversed(self.played):
            containers.podman("kube", "down", str(path), timeout=120, check=False)
        containers.podman("secret", "rm", SECRET, check=False)
        self.dependencies.remove()


def beat_reported(address: str) -> bool:
    try:
        response = httpx.get(f"http://{address}:5000/health/", timeout=5)
        return response.json()["checks"].get("celery_beat") == "ok"
    except (httpx.HTTPError, ValueError, KeyError):
        return False


@pytest.mark.checklist("P6.14")
def test_kube_play_starts_the_pods_which_pass_their_own_probes_and_outlive_a_redis_restart(
    image, tmp_path
):
    print(f"\n[kube] images:\n{containers.make_compose_standins()}")
    stack = KubeStack(tmp_path)
    try:
        # given PostGIS, Redis and the Secret, and the migrate Job run to its end
        stack.dependencies.start()
        stack.create_secret()
        assert stack.run_job("migrate-job.yaml") == 0, stack.logs()

        # when the web, sockets, worker and beat Deployments are played
        for name in ("web.yaml", "worker.yaml", "beat.yaml"):
            stack.play(name, with_image(manifests(name)))
        stack.play("sockets.yaml", on_a_free_host_port(with_image(manifests("sockets.yaml"))))
        assert set(stack.pods) == {
            "delivery-web-pod-0",
            "delivery-sockets-pod-0",
            "delivery-worker-pod-0",
            "delivery-worker-high-pod-0",
            "delivery-beat-pod-0",
        }

        # then every probe the manifests define passes, as the kubelet would run it
        started = time.monotonic()
        passed = []
        for pod, spec in stack.pods.items():
            for container in spec["containers"]:
                for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                    if kind not in container:
                        continue
                    try:
                        wait_for(
                            lambda p=pod, c=container, k=kind: stack.probe(p, c, c[k]),
                            max(1.0, started + READY_WITHIN - time.monotonic()),
                            f"{pod}'s {kind}",
                            interval=2,
                        )
                    except AssertionError as error:
                        raise AssertionError(f"{error}\n{stack.logs()}") from None
                    passed.append(f"{pod.removesuffix('-pod-0')} {kind}")
                state = stack.state(pod, container["name"])
                assert state["Status"] == "running", (pod, state, stack.logs())
        print(f"[kube] probes passed in {time.monotonic() - started:.1f} s: {passed}")
        assert set(passed) >= {
            "delivery-web startupProbe",
            "delivery-web readinessProbe",
            "delivery-web livenessProbe",
            "delivery-sockets startupProbe",
            "delivery-sockets readinessProbe",
            "delivery-sockets livenessProbe",
            "delivery-worker livenessProbe",
            "delivery-worker-high livenessProbe",
        }

        # and the pods run as the manifests say: the app user, /tmp an emptyDir it can write
        web = stack.container("delivery-web-pod-0", "web")
        assert containers.podman("exec", web, "id", "-u").stdout.strip() == "1000"
        containers.podman("exec", web, "touch", "/tmp/written")  # noqa: S108 (in the container)

        # and beat's heartbeat reached /health/: beat sent it and a worker ran it
        address = stack.pod_address("delivery-web-pod-0")
        try:
            wait_for(lambda: beat_reported(address), 60, "beat's heartbeat in /health/")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{stack.logs()}") from None

        # and the sockets pod, which the Ingress sends /ws/ to, upgrades a WebSocket handshake
        # on its address to the app's consumer (4401: no token), as the sockets role
        sockets_pod = "delivery-sockets-pod-0"
        (sockets_spec,) = stack.pods[sockets_pod]["containers"]
        sockets = stack.container(sockets_pod, sockets_spec["name"])
        (port,) = [p["containerPort"] for p in sockets_spec["ports"]]
        origin = f"ws://{stack.pod_address(sockets_pod)}:{port}"
        assert containers.anonymous_socket_close_code(origin) == 4401
        assert "starting gunicorn for the sockets" in containers.logs(sockets, 1000)
        # and stops on SIGTERM within its grace period, exit 0
        grace = stack.pods[sockets_pod]["terminationGracePeriodSeconds"]
        code, took = containers.stop(sockets, grace)
        print(f"[kube] sockets: exit {code} {took:.1f} s after SIGTERM")
        assert code == 0, containers.logs(sockets)
        assert took < grace, took

        # when the Redis container restarts, without persistence
        beat_started = stack.state("delivery-beat-pod-0", "beat")["StartedAt"]
        containers.podman("restart", "-t", "0", stack.redis)
        back_at = time.monotonic()

        # then beat is the same process and its heartbeat is back in /health/ within a minute
        try:
            wait_for(lambda: beat_reported(address), 60, "beat's heartbeat after the restart")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{stack.logs()}") from None
        print(f"[kube] heartbeat back {time.monotonic() - back_at:.1f} s after Redis restarted")
        beat = stack.state("delivery-beat-pod-0", "beat")
        assert beat["Status"] == "running" and beat["StartedAt"] == beat_started, beat
    finally:
        stack.down()
