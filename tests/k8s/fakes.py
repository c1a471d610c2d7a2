"""Stand-in `helm` and `kubectl` executables for the Kubernetes tests (no cluster here).

`FakeTools` writes one small Python script per tool into a temporary folder and points
MLCTL_HELM / MLCTL_KUBECTL at them. Each call appends a JSON line to `calls.jsonl`: the argv, and
for every `-f FILE` whether the file existed during the call, its mode, the kinds of objects in it,
and whether it held the expected secret (a boolean: the secret itself is never recorded). The
answer comes from `scenario.json`: per tool, the first rule whose `match` tokens all occur in argv
gives the next of its `responses` (the last one repeats). A response is `{stdout | json, stderr, rc}`,
`{passthrough: true}` (run the real binary, e.g. `helm template`), or `{serve: ANSWER}` (for
`kubectl port-forward`: answer every POST on the forwarded local port with ANSWER until killed).
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path
from typing import Any

SCRIPT = r"""#!{python}
import base64, json, os, re, sys
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
if response.get("passthrough"):
    real = os.environ["FAKE_REAL_" + TOOL.upper()]
    os.execv(real, [real, *argv])
if "serve" in response:
    from http.server import BaseHTTPRequestHandler, HTTPServer
    port = int(next(a for a in argv if re.fullmatch(r"\d+:\d+", a)).split(":")[0])
    body = json.dumps(response["serve"]).encode()
    class Answer(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
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
        self.save()

    def path(self, tool: str) -> Path:
        return self.folder / tool

    def on(self, tool: str, match: list[str], *responses: dict[str, Any]) -> FakeTools:
        """Add a rule: calls of `tool` whose argv holds every token of `match` get `responses`."""
        self.scenario[tool].append({"match": match, "responses": list(responses)})
        self.save()
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
