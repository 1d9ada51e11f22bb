"""Validate rendered Kubernetes manifests offline; run by scripts/check-k8s.sh.

usage: validate.py --k8s-version 1.32 --schemas k8s/schemas NAME=rendered.yaml ...

Every object must match a schema, or the run fails (an unknown kind is an error,
never a skip):
  - built-in kinds: the strict JSON schemas (additionalProperties: false) bundled in
    the kubernetes-validate package, for the given Kubernetes version;
  - custom resources: <schemas>/<group>/<version>/<kind>.json from this folder, which
    may refer to the bundled Kubernetes definitions (PodSpec, ...).
Then a few cross-object checks that no schema can express, and finally canaries:
deliberately broken copies of real objects that must be rejected, so a validator
that silently accepts everything cannot pass.
"""

import argparse
import copy
import importlib.resources
import json
import pathlib
import sys

import jsonschema
import kubernetes_validate
import yaml
from referencing import Registry, Resource

K8S_DEFS_URI = "https://kubernetes.io/api/_definitions.json"


class Schemas:
    def __init__(self, k8s_version: str, crd_dir: pathlib.Path):
        bundled = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
        self.k8s_dir = bundled / f"v{k8s_version}.0-local-strict"
        if not self.k8s_dir.is_dir():
            have = sorted(p.name for p in bundled.iterdir() if p.name.endswith("-strict"))
            sys.exit(
                f"kubernetes-validate {kubernetes_validate.__version__} has no schemas "
                f"for Kubernetes {k8s_version}; it has: {', '.join(have)}"
            )
        self.crd_dir = crd_dir.resolve()
        resources = [(K8S_DEFS_URI, self._load(self.k8s_dir / "_definitions.json"))]
        # Our schemas refer to each other by relative path: register them by file URI.
        for path in sorted(self.crd_dir.rglob("*.json")):
            schema = self._load(path)
            jsonschema.Draft202012Validator.check_schema(schema)
            schema["$id"] = path.as_uri()  # base URI for the relative $refs
            resources.append((path.as_uri(), schema))
        self.registry = Registry().with_resources(
            (uri, Resource.from_contents(s)) for uri, s in resources
        )
        self.validators = {}

    @staticmethod
    def _load(path):
        with path.open() as f:
            return json.load(f)

    def validator(self, api_version: str, kind: str):
        """(validator, source) for an object, or (None, reason)."""
        key = (api_version, kind)
        if key not in self.validators:
            group, _, version = api_version.rpartition("/")
            if group and "." in group and not group.endswith(".k8s.io"):
                path = self.crd_dir / group / version / f"{kind.lower()}.json"
                uri, source = path.as_uri(), f"k8s/schemas/{group}/{version}/{path.name}"
                found = path.is_file()
            else:
                # kubernetes-validate's naming: <kind>-<first label of group>-<version>.json
                prefix = group.split(".")[0] + "-" if group else ""
                path = self.k8s_dir / f"{kind.lower()}-{prefix}{version}.json"
                found = path.is_file()
                source = f"kubernetes {self.k8s_dir.name.split('-')[0][1:]} strict"
                if found:
                    schema = self._load(path)
                    uri = schema["$id"]
                    self.registry = self.registry.with_resource(uri, Resource.from_contents(schema))
            if not found:
                self.validators[key] = (None, f"no schema for {api_version} {kind} ({path.name})")
            else:
                schema = self.registry.contents(uri)
                self.validators[key] = (
                    jsonschema.Draft202012Validator(schema, registry=self.registry),
                    source,
                )
        return self.validators[key]

    def errors(self, obj):
        validator, source = self.validator(obj.get("apiVersion", ""), obj.get("kind", ""))
        if validator is None:
            return [source], source
        found = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
        return [
            f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {shorten(e.message)}"
            for e in found
        ], source


def shorten(message, limit=200):
    return message if len(message) <= limit else message[:limit] + " ..."


def ident(obj):
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind')}/{meta.get('name')}"


def cross_checks(objs):
    """Consistency that no single-object schema can see. Returns error strings."""
    errs = []
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o.get("kind"), []).append(o)

    def name(o):
        return o["metadata"]["name"]

    def labels(o):
        return o["metadata"].get("labels") or {}

    # Strimzi: pools and topics name an existing Kafka; replication fits the brokers.
    kafkas = {name(k): k for k in by_kind.get("Kafka", [])}
    brokers = {k: 0 for k in kafkas}
    controllers = {k: 0 for k in kafkas}
    for pool in by_kind.get("KafkaNodePool", []):
        cluster = labels(pool).get("strimzi.io/cluster")
        if cluster not in kafkas:
            errs.append(f"{ident(pool)}: strimzi.io/cluster={cluster} names no Kafka")
            continue
        roles, replicas = pool["spec"]["roles"], pool["spec"]["replicas"]
        brokers[cluster] += replicas if "broker" in roles else 0
        controllers[cluster] += replicas if "controller" in roles else 0
    for k, kafka in kafkas.items():
        if brokers[k] < 1 or controllers[k] < 1:
            errs.append(
                f"{ident(kafka)}: needs node pools with broker and controller roles "
                f"(has {brokers[k]} brokers, {controllers[k]} controllers)"
            )
        if controllers[k] % 2 == 0 and controllers[k]:
            errs.append(f"{ident(kafka)}: {controllers[k]} controllers; use an odd quorum")
        config = kafka["spec"]["kafka"].get("config") or {}
        for key in (
            "offsets.topic.replication.factor",
            "transaction.state.log.replication.factor",
            "default.replication.factor",
        ):
            if int(config.get(key, 1)) > brokers[k]:
                errs.append(f"{ident(kafka)}: {key}={config[key]} > {brokers[k]} brokers")
        if int(config.get("transaction.state.log.min.isr", 1)) > int(
            config.get("transaction.state.log.replication.factor", 1)
        ):
            errs.append(f"{ident(kafka)}: transaction.state.log.min.isr > its replication factor")
    for topic in by_kind.get("KafkaTopic", []):
        cluster = labels(topic).get("strimzi.io/cluster")
        if cluster not in kafkas:
            errs.append(f"{ident(topic)}: strimzi.io/cluster={cluster} names no Kafka")
            continue
        replicas = topic["spec"]["replicas"]
        if replicas > brokers[cluster]:
            errs.append(f"{ident(topic)}: replicas {replicas} > {brokers[cluster]} brokers")
        min_isr = int((topic["spec"].get("config") or {}).get("min.insync.replicas", 1))
        if min_isr > replicas:
            errs.append(f"{ident(topic)}: min.insync.replicas {min_isr} > replicas {replicas}")

    # StatefulSet: serviceName is a headless Service selecting its pods.
    services = {name(s): s for s in by_kind.get("Service", [])}
    for sts in by_kind.get("StatefulSet", []):
        svc = services.get(sts["spec"].get("serviceName"))
        pod_labels = sts["spec"]["template"]["metadata"].get("labels") or {}
        if svc is None or svc["spec"].get("clusterIP") != "None":
            errs.append(f"{ident(sts)}: serviceName must name a headless Service in the render")
        elif not set((svc["spec"].get("selector") or {}).items()) <= set(pod_labels.items()):
            errs.append(f"{ident(sts)}: Service {name(svc)} does not select its pods")

    # Altinity: every template name used is defined.
    for chi in by_kind.get("ClickHouseInstallation", []) + by_kind.get(
        "ClickHouseKeeperInstallation", []
    ):
        spec = chi["spec"]
        defined = {
            "podTemplate": {t["name"] for t in spec.get("templates", {}).get("podTemplates", [])},
            "dataVolumeClaimTemplate": {
                t["name"] for t in spec.get("templates", {}).get("volumeClaimTemplates", [])
            },
        }
        defined["logVolumeClaimTemplate"] = defined["dataVolumeClaimTemplate"]
        uses = [spec.get("defaults", {}).get("templates", {})] + [
            c.get("templates", {}) for c in spec["configuration"]["clusters"]
        ]
        for use in uses:
            for kind, tname in use.items():
                if kind in defined and tname not in defined[kind]:
                    errs.append(f"{ident(chi)}: {kind} '{tname}' is not defined under templates")
    return errs


# (kind, mutation, what it breaks): each must make validation fail.
CANARIES = [
    (
        "StatefulSet",
        lambda o: o["spec"]["template"]["spec"]["containers"][0].update(imagePullPolicyy="Always"),
        "misspelt container field",
    ),
    ("StatefulSet", lambda o: o["spec"].update(replicas="3"), "replicas as a string"),
    ("Service", lambda o: o["spec"].update(clusterIp="None"), "misspelt clusterIP"),
    ("Kafka", lambda o: o["spec"]["kafka"]["listeners"][0].pop("tls"), "listener without tls"),
    ("KafkaNodePool", lambda o: o["spec"].update(roles=["brokers"]), "unknown role"),
    ("KafkaTopic", lambda o: o["spec"].update(partition=12), "misspelt partitions"),
    (
        "KafkaTopic",
        lambda o: o["spec"].setdefault("config", {}).update({"retention.msec": 1}),
        "unknown topic config",
    ),
    ("Cluster", lambda o: o["spec"]["bootstrap"]["initdb"].update(ownr="x"), "misspelt owner"),
    (
        "ClickHouseInstallation",
        lambda o: o["spec"]["templates"]["podTemplates"][0]["spec"]["containers"][0].update(
            imag="x"
        ),
        "misspelt field in a pod template",
    ),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--k8s-version", required=True)
    ap.add_argument("--schemas", required=True, type=pathlib.Path)
    ap.add_argument("renders", nargs="+", metavar="NAME=FILE")
    args = ap.parse_args()

    schemas = Schemas(args.k8s_version, args.schemas)
    passed = failed = 0
    samples = {}
    for arg in args.renders:
        name, _, path = arg.partition("=")
        with open(path) as f:
            objs = [o for o in yaml.safe_load_all(f) if o]
        for obj in objs:
            errs, source = schemas.errors(obj)
            status = "FAIL" if errs else "ok"
            print(f"{status:4} {name:5} {ident(obj):45} {source}")
            for e in errs:
                print(f"       {e}")
            passed, failed = passed + (not errs), failed + bool(errs)
            if not errs:  # canaries break valid objects only
                samples.setdefault(obj.get("kind"), obj)
        try:
            errs = cross_checks(objs)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            # Only reachable when an object is malformed, which the schemas reported above.
            errs = [f"could not run on malformed objects ({type(e).__name__}: {e})"]
        print(
            f"{'FAIL' if errs else 'ok':4} {name:5} {'cross-object checks':45} "
            f"Kafka/pools/topics, StatefulSet/Service, CHI templates"
        )
        for e in errs:
            print(f"       {e}")
        passed, failed = passed + (not errs), failed + bool(errs)

    for kind, mutate, what in CANARIES:
        if kind not in samples:
            print(f"FAIL canary {kind}: no valid {kind} in any render to break")
            failed += 1
            continue
        broken = copy.deepcopy(samples[kind])
        mutate(broken)
        caught = bool(schemas.errors(broken)[0])
        print(
            f"{'ok' if caught else 'FAIL':4} canary {kind:34} {what}: "
            f"{'rejected' if caught else 'ACCEPTED - the validator is not strict'}"
        )
        passed, failed = passed + caught, failed + (not caught)

    print(f"k8s: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
