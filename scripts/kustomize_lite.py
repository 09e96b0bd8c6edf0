#!/usr/bin/env python3
"""Renders a kustomization the way `kubectl kustomize` does, for the subset
k8s/ uses (resources: files and directories; labels with includeSelectors
false; namespace; images; inline JSON 6902 patches with a kind/name target).
Used by scripts/check-k8s where neither kubectl nor kustomize is installed;
where kubectl is, check-k8s renders with both and compares."""
import copy
import pathlib
import sys

import yaml


def load_kustomization(directory):
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        path = directory / name
        if path.exists():
            return yaml.safe_load(path.read_text()) or {}
    sys.exit(f"kustomize_lite: no kustomization in {directory}")


def pointer(path):
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def apply_op(doc, op):
    *parents, last = pointer(op["path"])
    target = doc
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    kind = op["op"]
    if isinstance(target, list):
        index = len(target) if last == "-" else int(last)
        if kind == "add":
            target.insert(index, op["value"])
        elif kind == "replace":
            target[index] = op["value"]
        elif kind == "remove":
            del target[index]
        else:
            sys.exit(f"kustomize_lite: unsupported patch op {kind}")
    else:
        if kind in ("add", "replace"):
            if kind == "replace" and last not in target:
                sys.exit(f"kustomize_lite: replace of a missing path {op['path']}")
            target[last] = op["value"]
        elif kind == "remove":
            del target[last]
        else:
            sys.exit(f"kustomize_lite: unsupported patch op {kind}")


def containers(doc):
    spec = doc.get("spec", {})
    pod = spec.get("jobTemplate", {}).get("spec", {}).get("template", {}) or spec.get("template", {})
    pod_spec = pod.get("spec", {})
    return pod_spec.get("containers", []) + pod_spec.get("initContainers", [])


def render(directory):
    directory = pathlib.Path(directory)
    k = load_kustomization(directory)
    unknown = set(k) - {"apiVersion", "kind", "resources", "labels", "namespace", "images", "patches"}
    if unknown:
        sys.exit(f"kustomize_lite: unsupported fields {sorted(unknown)} in {directory}")
    docs = []
    for resource in k.get("resources", []):
        path = directory / resource
        if path.is_dir():
            docs.extend(render(path))
        else:
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    for label in k.get("labels", []):
        if label.get("includeSelectors", False):
            sys.exit("kustomize_lite: includeSelectors is not supported")
        for doc in docs:
            doc.setdefault("metadata", {}).setdefault("labels", {}).update(label["pairs"])
    if "namespace" in k:
        for doc in docs:
            doc.setdefault("metadata", {})["namespace"] = k["namespace"]
    for image in k.get("images", []):
        for doc in docs:
            for c in containers(doc):
                name, _, tag = c["image"].partition(":")
                if name == image["name"]:
                    c["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
    for patch in k.get("patches", []):
        target = patch["target"]
        ops = yaml.safe_load(patch["patch"])
        matched = [d for d in docs if d.get("kind") == target.get("kind") and d["metadata"].get("name") == target.get("name")]
        if not matched:
            sys.exit(f"kustomize_lite: a patch matches nothing: {target}")
        for doc in matched:
            for op in ops:
                apply_op(doc, op)
    return docs


if __name__ == "__main__":
    print(yaml.safe_dump_all([copy.deepcopy(d) for d in render(sys.argv[1])], sort_keys=True), end="")
