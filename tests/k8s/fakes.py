"""Stand-in `helm` and `kubectl` executables for the Kubernetes tests (no cluster here).

`FakeTools` writes one small Python script per tool into a temporary folder and points
MLCTL_HELM / MLCTL_KUBECTL at them. Each call appends a JSON line to `calls.jsonl`: the argv, and
for every `-f FILE` whether the file existed during the call, its mode, the kinds of objects in it,
and whether it held the expected secret (a boolean: the secret itself is never recorded). The
answer comes from `scenario.json`: per tool, the first rule whose `match` tokens all occur in argv
gives the next of its `responses` (the last one repeats). A response is `{stdout | json, stderr, rc}`,
`{passthrough: true}` (run the real binary, e.g. `helm template`), or `{serve: ANSWER}` (for
`kubectl port-forward`: answer every POST on the forwarded local port with ANSWER until killed,
except one that carries a bad example of the shipped model's contract, which gets that example's
4xx status as a model server refuses it).

Two responses keep state between calls, so that what a test reads back is what the calls did,
never what the test scripted:
- `{release: VERB}` (helm): a release's revisions, as helm keeps them. `upgrade` records the
  merged `-f` files as a new revision (deployed when rc is 0; failed otherwise, and then with
  `--atomic` a further revision holding the last deployed values, as helm's rollback does);
  `rollback` records a copy of the named revision; `values`, `history` and `status` answer from
  the revisions. `FakeTools.revisions(...)` seeds them. With `{serve_release: ANSWER}`, the stand-in
  port-forward answers ANSWER with the digest of the weights the current revision names, as pods
  that load what the release says would.
- `{pod_files: true}` (kubectl exec): `rclone rcat PATH` stores its standard input under PATH in
  a folder beside the scripts, `rclone hashsum sha256 PATH` answers from what is stored there.
"""

from __future__ import annotations

import base64
import json
import stat
import sys
from pathlib import Path
from typing import Any

from mlctl.specload import load_contract

CONTRACT = load_contract(Path(__file__).resolve().parents[2] / "model")
"""The shipped model's contract: the stand-in server refuses its bad examples."""


def refusal(body: bytes) -> int | None:
    """The status a model server answers a body carrying one of the contract's bad examples."""
    for example in CONTRACT.examples:
        raw = example.input.read_bytes()
        if example.status and (raw in body or base64.b64encode(raw) in body):
            return example.status
    return None


SCRIPT = r"""#!{python}
import base64, hashlib, json, os, re, sys
TOOL = {tool!r}
here = os.path.dirname(os.path.abspath(__file__))
argv = sys.argv[1:]
record = {{"tool": TOOL, "argv": argv, "files": {{}}}}
secret = os.environ.get("FAKE_EXPECT_SECRET", "")
for i, arg in enumerate(argv[:-1]):
    if arg == "-f":
        path = argv[i + 1]
        info = {{"exists": os.path.isfile(path)}}
        if info["exists"]:
            info["mode"] = oct(os.stat(path).st_mode & 0o777)
            text = open(path, encoding="utf-8").read()
            info["kinds"] = re.findall(r"(?m)^kind: (\w+)", text)
            if secret:
                info["has_secret"] = secret in text or base64.b64encode(secret.encode()).decode() in text
        record["files"][path] = info
with open(os.path.join(here, "calls.jsonl"), "a") as log:
    log.write(json.dumps(record) + "\n")
rules = json.load(open(os.path.join(here, "scenario.json"))).get(TOOL, [])
state_file = os.path.join(here, "state.json")
state = json.load(open(state_file)) if os.path.exists(state_file) else {{}}
response = None
for n, rule in enumerate(rules):
    if all(tok in argv for tok in rule["match"]):
        key = f"{{TOOL}}:{{n}}"
        used = state.get(key, 0)
        state[key] = used + 1
        response = rule["responses"][min(used, len(rule["responses"]) - 1)]
        break
json.dump(state, open(state_file, "w"))
if response is None:
    sys.stderr.write(f"fake {{TOOL}}: no rule for {{argv}}\n")
    sys.exit(97)

def merged(files):
    import yaml
    out = {{}}
    def merge(into, new):
        for k, v in new.items():
            if isinstance(v, dict) and isinstance(into.get(k), dict):
                merge(into[k], v)
            else:
                into[k] = v
    for path in files:
        merge(out, yaml.safe_load(open(path, encoding="utf-8")) or {{}})
    return out

def record_revision(revs, values, status):
    for r in revs:
        if r["status"] == "deployed" and status == "deployed":
            r["status"] = "superseded"
    revs.append({{"revision": len(revs) + 1, "status": status, "values": values}})

def not_found():
    sys.stderr.write("Error: release: not found\n")
    sys.exit(1)

if response is not None and "release" in response:
    revs = state.setdefault("revisions", [])
    verb, rc = response["release"], response.get("rc", 0)
    if verb == "upgrade":
        files = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "-f"]
        good = [r for r in revs if r["status"] == "deployed"]
        record_revision(revs, merged(files), "deployed" if rc == 0 else "failed")
        if rc and ("--atomic" in argv or "--rollback-on-failure" in argv):
            if good:
                record_revision(revs, good[-1]["values"], "deployed")
            else:  # a failed first install is uninstalled
                revs.clear()
    elif verb == "rollback":
        wanted = int(argv[argv.index("rollback") + 2])
        record_revision(revs, revs[wanted - 1]["values"], "deployed")
        response = {{"stdout": "Rollback was a success! Happy Helming!\n", **response}}
    elif not revs:
        json.dump(state, open(state_file, "w"))
        not_found()
    elif verb == "values":
        which = int(argv[argv.index("--revision") + 1]) if "--revision" in argv else len(revs)
        response = {{"json": revs[which - 1]["values"]}}
    elif verb == "history":
        response = {{"json": [{{"revision": r["revision"], "status": r["status"]}} for r in revs]}}
    elif verb == "status":
        last = revs[-1]
        response = {{"json": {{"name": "release", "version": last["revision"], "info": {{"status": last["status"]}},
                               "chart": {{"metadata": {{"version": "0.1.0"}}}}}}}}
    json.dump(state, open(state_file, "w"))
    if verb == "upgrade" and rc == 0:
        response = {{"stdout": "Release has been upgraded.\n"}}

if response is not None and response.get("pod_files"):
    store = os.path.join(here, "pod-files")
    command = argv[argv.index("--") + 1 :]
    path = os.path.join(store, command[-1].lstrip("/"))
    if command[:2] == ["rclone", "rcat"]:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(sys.stdin.buffer.read())
        response = {{"stdout": ""}}
    elif command[:3] == ["rclone", "hashsum", "sha256"]:
        if os.path.isfile(path):
            digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
            response = {{"stdout": f"{{digest}}  {{os.path.basename(path)}}\n"}}
        else:
            response = {{"rc": 3, "stderr": "directory not found\n"}}

if response is not None and "serve_release" in response:
    revs = state.get("revisions") or []
    answer = json.loads(json.dumps(response["serve_release"]))
    sha = ((revs[-1]["values"].get("model") or {{}}).get("sha256") if revs else None) or ""
    answer.setdefault("meta", {{}}).setdefault("tags", {{}})["model_sha256"] = sha
    response = {{"serve": answer}}

if response.get("passthrough"):
    real = os.environ["FAKE_REAL_" + TOOL.upper()]
    os.execv(real, [real, *argv])
if "serve" in response:
    from http.server import BaseHTTPRequestHandler, HTTPServer
    port = int(next(a for a in argv if re.fullmatch(r"\d+:\d+", a)).split(":")[0])
    body = json.dumps(response["serve"]).encode()
    refusals = json.load(open(os.path.join(here, "refusals.json")))
    class Answer(BaseHTTPRequestHandler):
        def do_POST(self):
            sent = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, answer = 200, body
            for b64, code in refusals:
                if base64.b64decode(b64) in sent or b64.encode() in sent:
                    status, answer = code, json.dumps({{"error": f"refused with {{code}}"}}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        def log_message(self, *args):
            pass
    HTTPServer(("127.0.0.1", port), Answer).serve_forever()
out = json.dumps(response["json"]) if "json" in response else response.get("stdout", "")
sys.stdout.write(out)
sys.stderr.write(response.get("stderr", ""))
sys.exit(response.get("rc", 0))
"""

NOT_FOUND_RELEASE = {"rc": 1, "stderr": "Error: release: not found\n"}


def not_found(kind: str, name: str) -> dict[str, Any]:
    return {"rc": 1, "stderr": f'Error from server (NotFound): {kind} "{name}" not found\n'}


class FakeTools:
    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.scenario: dict[str, list[dict[str, Any]]] = {"helm": [], "kubectl": []}
        for tool in ("helm", "kubectl"):
            path = folder / tool
            path.write_text(SCRIPT.format(python=sys.executable, tool=tool))
            path.chmod(path.stat().st_mode | stat.S_IXUSR)
        refusals = [(base64.b64encode(e.input.read_bytes()).decode(), e.status) for e in CONTRACT.examples if e.status]
        (folder / "refusals.json").write_text(json.dumps(refusals))
        self.save()

    def path(self, tool: str) -> Path:
        return self.folder / tool

    def on(self, tool: str, match: list[str], *responses: dict[str, Any]) -> FakeTools:
        """Add a rule: calls of `tool` whose argv holds every token of `match` get `responses`."""
        self.scenario[tool].append({"match": match, "responses": list(responses)})
        self.save()
        return self

    def revisions(self, *values: dict[str, Any]) -> FakeTools:
        """Seed the stand-in release with these revisions' values (the last one deployed)."""
        state_file = self.folder / "state.json"
        state = json.loads(state_file.read_text()) if state_file.exists() else {}
        n = len(values)
        state["revisions"] = [
            {"revision": i + 1, "status": "deployed" if i == n - 1 else "superseded", "values": v}
            for i, v in enumerate(values)
        ]
        state_file.write_text(json.dumps(state))
        return self

    def stateful_release(self) -> FakeTools:
        """Rules for every helm verb mlctl uses on a release, all answered from its revisions."""
        for verb, match in (
            ("upgrade", ["upgrade"]),
            ("rollback", ["rollback"]),
            ("values", ["get", "values"]),
            ("history", ["history"]),
            ("status", ["status"]),
        ):
            self.on("helm", match, {"release": verb})
        return self

    def save(self) -> None:
        (self.folder / "scenario.json").write_text(json.dumps(self.scenario))

    def calls(self, tool: str | None = None) -> list[dict[str, Any]]:
        log = self.folder / "calls.jsonl"
        if not log.exists():
            return []
        records = [json.loads(line) for line in log.read_text().splitlines()]
        return [r for r in records if tool is None or r["tool"] == tool]

    def verbs(self, tool: str) -> list[str]:
        """The first non-flag word of each call (`status`, `upgrade`, `get`, …), in order."""
        return [next(a for a in r["argv"] if not a.startswith("-")) for r in self.calls(tool)]

    def log_text(self) -> str:
        log = self.folder / "calls.jsonl"
        return log.read_text() if log.exists() else ""


def env_for(fakes: FakeTools, real_helm: str | None) -> dict[str, str]:
    env = {"MLCTL_HELM": str(fakes.path("helm")), "MLCTL_KUBECTL": str(fakes.path("kubectl"))}
    if real_helm:
        env["FAKE_REAL_HELM"] = real_helm
    return env
