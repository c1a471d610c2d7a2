"""Serving benchmark: the tutorial's server, ours (Seldon), KServe's and a constant model, side by side in one run.

Starts, one after the other on loopback, timing each cold start (process start → first correct
prediction) with nothing else running: (a) the tutorial's class
(`../shared/baseline/seed_seldon_model.SeedModel`, its defaults: 1 worker × 1 thread), (b)
`runtime.seldon.Model` at our settings (`ours`, the Seldon server), (c)
`../shared/baseline/trivial_model.TrivialModel` (a constant row: the wrapper's own ceiling) at our
settings, (d) `constant+`: the same constant model with the one wrapper change ours installs
(`skip_empty_metric_updates`), the fair ceiling for ours, (e) `kserve`: the KServe runtime
(`python -m runtime.kserve_server` from .venv-kserve) on the same artifact, workers, torch threads
and precision as ours. The Seldon servers take one MNIST test digit posted as a multipart JPEG
(`../shared/baseline/multipart.lua`); kserve the same JPEG's bytes to
`/v2/models/mnist/infer`, twice over: as a base64 BYTES tensor in JSON (`v2-json`) and raw
after the JSON header with the binary tensor extension (`v2-binary`). Every server's answer to
every request it will be timed with is checked once first (shape, and for our network with
trained weights the right digits). Then the servers take turns under `wrk -cN -d5s` at 1, 4 and
16 connections, for 3 rounds; each figure is the median over the rounds, so a burst of other
work on this shared machine lands in one round of every server rather than in all of one
server's runs. Also measured: the memory of every server process, summed: RSS, and PSS (shared
pages counted once, so the sum is what the server costs the machine). Then ours takes JSON
batches of 1, 16 and 64 images (Seldon ndarray), kserve the same images as a V2 UINT8 `pixels`
tensor in JSON, reported as images/s. Every body wrk posts, but the multipart one, is a file
prepared here and posted as is by `body.lua`.

Prints the machine (CPU model, the flags that pick torch's kernels) and the precision each
server answered with, a table, Seldon beside KServe, then one JSON document; checks the goals
(at 16 connections ≥ 2.5× the tutorial's req/s, ≥ 85 % of `constant+`, p99 ≤ 20 ms; at
1 connection p50 ≤ 1.2 ms; cold start ≤ 2 s). Only ratios within one run mean much.
`--only ours,kserve` (or `seldon,kserve`) runs just those servers.

Run (heavy: take the lock):  flock /tmp/mlctl-heavy.lock .venv/bin/python bench/serve_bench.py
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

import machine  # noqa: E402  (bench/machine.py)

from mlctl.predict import encode_multipart  # noqa: E402
from mlctl.targets.local.server import KSERVE_MODULE, LocalServer, ServerConfig  # noqa: E402

SHARED = REPO.parent / "shared"
BASELINE = SHARED / "baseline"
MNIST_TEST_IMAGES = SHARED / "data" / "mnist" / "t10k-images-idx3-ubyte.gz"
MNIST_TEST_LABELS = SHARED / "data" / "mnist" / "t10k-labels-idx1-ubyte.gz"
MULTIPART_LUA = BASELINE / "multipart.lua"
BODY_LUA = BENCH / "body.lua"
RESULT_RE = re.compile(r"RESULT (.*)")
# What model.inference.MnistModel logs once its network is ready, in every process that loads it.
LOADED_RE = re.compile(r"loaded .* in pid (\d+)")
START_TIMEOUT_S = 120
KSERVE_MODEL = "mnist"
SERVERS = ("tutorial", "ours", "constant", "constant+", "kserve")
ALIASES = {"seldon": "ours"}
"""Other names `--only` takes: ours is the Seldon server."""
# The constant model plus the one wrapper change ours makes (runtime.wrapper_fixes.skip_empty_metric_updates):
# the fair ceiling for ours, since that change removes wrapper work, not model work.
CONSTANT_SKIP_EMPTY = """from runtime.wrapper_fixes import skip_empty_metric_updates
from trivial_model import TrivialModel


class TrivialModelSkipEmpty(TrivialModel):
    def __init__(self):
        skip_empty_metric_updates()
"""


@dataclass(frozen=True)
class Load:
    """One fixed request that wrk repeats, and the digits a right answer to it names."""

    name: str
    """What the tables call it: multipart, v2-json, v2-binary, json-ndarray, v2-uint8."""
    path: str
    body: Path
    """The image (multipart: multipart.lua wraps it) or the whole body, posted as is."""
    content_type: str = "application/json"
    header: str = ""
    """One more request header, "Name: value"."""
    images: int = 1
    expect: tuple[int, ...] | None = None
    """The digits a right answer names, one per image; None: any 200 answer."""

    def wrk_script(self) -> tuple[Path, dict[str, str]]:
        if self.content_type.startswith("multipart/"):
            return MULTIPART_LUA, {"IMG": str(self.body)}
        return BODY_LUA, {"BODY": str(self.body), "CONTENT_TYPE": self.content_type, "HEADER": self.header}

    def request(self) -> tuple[bytes, dict[str, str]]:
        """The body and headers to post from Python (the check and the cold start)."""
        data = self.body.read_bytes()
        if self.content_type.startswith("multipart/"):
            body, content_type = encode_multipart("binData", self.body.name, data)
            return body, {"Content-Type": content_type}
        headers = {"Content-Type": self.content_type}
        if self.header:
            name, value = self.header.split(":", 1)
            headers[name] = value.strip()
        return data, headers


@dataclass(frozen=True)
class Server:
    """One server of the run: how to start it, and what it is timed with."""

    name: str
    cfg: ServerConfig
    singles: tuple[Load, ...]
    """Timed at every connection count; the first also times the cold start."""
    batches: tuple[Load, ...] = ()
    """Timed at --batch-connections."""
    network: bool = False
    """It serves our network, which every worker loads (LOADED_RE): measuring waits for them all."""

    @property
    def label(self) -> str:
        return self.cfg.model_class if self.cfg.engine == "seldon" else f"{KSERVE_MODULE}.KServeModel"


@dataclass(frozen=True)
class Requests:
    """Every request of the run (make_requests)."""

    multipart: Load
    """The digit as multipart JPEG, any answer right (the tutorial's and the constant models)."""
    multipart_checked: Load
    """The same, the answer must name the digit (ours)."""
    v2_json: Load
    v2_binary: Load
    seldon_batches: tuple[Load, ...]
    kserve_batches: tuple[Load, ...]


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=False, capture_output=True)
        found = shutil.which("wrk")
    if not found:
        sys.exit("wrk not found: apt-get install -y wrk")
    return found


def find_artifact(explicit: str | None, tmp: Path) -> tuple[Path, str]:
    """An artifact folder: the one given, the newest test-model cache, or random weights
    (throughput does not depend on the weights' values; accuracy is the tests' business)."""
    if explicit:
        return Path(explicit), "given"
    cached = sorted((REPO / ".mlctl" / "cache").glob("test-model-*/metadata.json"), key=os.path.getmtime)
    if cached:
        return cached[-1].parent, "cached test model"
    import torch

    from model.net import Net

    out = tmp / "random-model"
    out.mkdir()
    torch.manual_seed(0)
    torch.save(Net().state_dict(), out / "model.pt")
    digest = hashlib.sha256((out / "model.pt").read_bytes()).hexdigest()
    (out / "metadata.json").write_text(
        json.dumps(
            {
                "format": "mlctl.mnist/v1",
                "weights": "model.pt",
                "sha256": digest,
                "test_accuracy": None,
                "training_hash": "bench-random",
                "created": "bench",
            }
        )
    )
    return out, "random weights"


def mnist_test(count: int) -> tuple[Any, list[int] | None]:
    """The first `count` MNIST test images (count × 28 × 28 uint8) and their labels; without the
    data set, blank images with a bar and no labels."""
    import numpy as np

    if MNIST_TEST_IMAGES.is_file():
        raw = gzip.open(MNIST_TEST_IMAGES).read()
        images = np.frombuffer(raw, np.uint8, offset=16, count=count * 784).reshape(count, 28, 28)
        labels = list(gzip.open(MNIST_TEST_LABELS).read()[8 : 8 + count])
        return images, labels
    images = np.zeros((count, 28, 28), np.uint8)
    images[:, 4:24, 12:16] = 255
    return images, None


def sample_digit(tmp: Path, pixels: Any) -> Path:
    """The first test digit as the JPEG every server gets."""
    from PIL import Image

    path = tmp / "digit.jpg"
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    path.write_bytes(buf.getvalue())
    return path


def v2_binary_body(image: bytes) -> tuple[bytes, int]:
    """One image as an OIP BYTES tensor with the binary extension: the JSON header, then the
    element (4-byte little-endian length, the bytes). Returns the body and the header's length."""
    element = struct.pack("<I", len(image)) + image
    spec = {"name": "image", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(element)}}
    header = json.dumps({"inputs": [spec]}).encode()
    return header + element, len(header)


def make_requests(tmp: Path, sizes: list[int], checked: bool) -> Requests:
    """Every request of the run, written to files: the single image for each protocol, and the
    batches of the first N test images (Seldon JSON ndarray, V2 UINT8 JSON). `checked`: the
    answers must name the test labels (our network, trained weights)."""
    images, labels = mnist_test(max([1, *sizes]))
    img = sample_digit(tmp, images[0])
    one = (labels[0],) if checked and labels else None
    v2 = f"/v2/models/{KSERVE_MODEL}/infer"
    b64 = base64.b64encode(img.read_bytes()).decode("ascii")
    (tmp / "v2.json").write_text(
        json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [b64]}]})
    )
    binary, header_length = v2_binary_body(img.read_bytes())
    (tmp / "v2.bin").write_bytes(binary)
    seldon_batches, kserve_batches = [], []
    for n in sizes:
        expect = tuple(labels[:n]) if checked and labels else None
        flat = images[:n].reshape(n, 784)
        (tmp / f"ndarray-{n}.json").write_text(json.dumps({"data": {"ndarray": flat.tolist()}}))
        seldon = Load("json-ndarray", "/api/v1.0/predictions", tmp / f"ndarray-{n}.json", images=n, expect=expect)
        seldon_batches.append(seldon)
        pixels = {"name": "pixels", "datatype": "UINT8", "shape": [n, 784], "data": flat.ravel().tolist()}
        (tmp / f"uint8-{n}.json").write_text(json.dumps({"inputs": [pixels]}))
        kserve_batches.append(Load("v2-uint8", v2, tmp / f"uint8-{n}.json", images=n, expect=expect))
    return Requests(
        multipart=Load("multipart", "/predict", img, "multipart/form-data"),
        multipart_checked=Load("multipart", "/predict", img, "multipart/form-data", expect=one),
        v2_json=Load("v2-json", v2, tmp / "v2.json", expect=one),
        v2_binary=Load(
            "v2-binary",
            v2,
            tmp / "v2.bin",
            "application/octet-stream",
            header=f"Inference-Header-Content-Length: {header_length}",
            expect=one,
        ),
        seldon_batches=tuple(seldon_batches),
        kserve_batches=tuple(kserve_batches),
    )


def memory_mib(pids: list[int]) -> dict[str, float]:
    """RSS and PSS summed over the processes: RSS counts each shared page (torch's libraries,
    the pages a fork shares) once per process, PSS divides it among them."""
    import psutil

    rss = pss = 0
    for pid in pids:
        try:
            full = psutil.Process(pid).memory_full_info()
        except (psutil.Error, OSError):
            continue
        rss, pss = rss + full.rss, pss + full.pss
    return {"rss_mib": round(rss / 2**20, 1), "pss_mib": round(pss / 2**20, 1)}


def run_wrk(wrk: str, url: str, load: Load, connections: int, duration: int) -> dict[str, float]:
    """One wrk run of `load` against `url` (the server's base URL)."""
    script, env = load.wrk_script()
    argv = [wrk, f"-t{min(2, connections)}", f"-c{connections}", f"-d{duration}s", "-s", str(script), url + load.path]
    p = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **env}, timeout=duration + 30)
    m = RESULT_RE.search(p.stdout)
    if not m:
        raise RuntimeError(f"wrk gave no RESULT line:\n{p.stdout}\n{p.stderr}")
    return {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}


def post(url: str, load: Load, timeout: float = 10) -> tuple[int, bytes]:
    """Post `load` once from Python: (status, body); status 0 when the server did not answer."""
    body, headers = load.request()
    req = urllib.request.Request(url + load.path, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def answer_rows(answer: dict[str, Any]) -> Any:
    """The (N, 10) rows of a Seldon (`data.tensor`/`data.ndarray`) or OIP (`outputs[0]`) answer."""
    import numpy as np

    if "outputs" in answer:
        out = answer["outputs"][0]
        return np.asarray(out["data"], dtype=float).reshape(out["shape"])
    data = answer["data"]
    if "tensor" in data:
        return np.asarray(data["tensor"]["values"], dtype=float).reshape(data["tensor"]["shape"])
    return np.asarray(data["ndarray"], dtype=float)


def answer_precision(answer: dict[str, Any]) -> str | None:
    """The precision the server says it answered in (Seldon's meta.tags, OIP's parameters)."""
    facts = answer.get("parameters") or (answer.get("meta") or {}).get("tags") or {}
    return facts.get("precision") if isinstance(facts, dict) else None


def served_precision(url: str, load: Load) -> str | None:
    """The precision the server says it answered `load` in (None: it does not say)."""
    _, raw = post(url, load)
    try:
        return answer_precision(json.loads(raw))
    except (ValueError, AttributeError):
        return None


def check(url: str, load: Load) -> str | None:
    """Why `load`'s answer is wrong (None: right): a 200 whose rows are (N, 10) and, when
    `load.expect` is set, name those digits."""
    status, raw = post(url, load)
    if status != 200:
        return f"status {status}: {raw[:300]!r}"
    if load.expect is None:
        return None
    try:
        rows = answer_rows(json.loads(raw))
    except (ValueError, KeyError, TypeError, IndexError) as e:
        return f"unreadable answer ({e}): {raw[:300]!r}"
    if rows.shape != (load.images, 10):
        return f"answer shaped {rows.shape}, not ({load.images}, 10)"
    got = tuple(int(c) for c in rows.argmax(axis=1))
    if got != load.expect:
        wrong = sum(a != b for a, b in zip(got, load.expect, strict=True))
        return f"{wrong} of {load.images} digits wrong (first answers {got[:8]}, expected {load.expect[:8]})"
    return None


def wait_loaded(srv: LocalServer, log: Path, count: int, deadline: float) -> None:
    """Until `count` processes below the server's first (its workers) logged that our network is
    loaded. The log is read through its own file handle: LocalServer.log_text seeks the one the
    server writes through."""
    while len({int(p) for p in LOADED_RE.findall(log.read_text(errors="replace"))} - {srv.proc.pid}) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {count} workers loaded the model\n{srv.log_tail()}")
        time.sleep(0.05)


def start_server(server: Server, logs: Path) -> tuple[LocalServer, float, str | None]:
    """Start one server (nothing else loading the machine); return it, its cold start (process
    start → first right answer to its first single request) and the precision it answered in.
    Then wait for every process that loads the network, check every request it will be timed
    with once, and warm every worker."""
    cfg, first = server.cfg, server.singles[0]
    log = logs / f"{server.name}.log"
    srv = LocalServer(cfg, readiness=cfg.readiness_paths[:1], start_timeout=START_TIMEOUT_S, log_path=log)
    t0 = time.monotonic()
    srv.start()
    try:
        while (why := check(srv.url, first)) is not None:
            if time.monotonic() - t0 > START_TIMEOUT_S:
                raise RuntimeError(
                    f"{server.name}: no right answer within {START_TIMEOUT_S} s ({why})\n{srv.log_tail()}"
                )
            time.sleep(0.05)
        cold = time.monotonic() - t0
        if server.network:
            wait_loaded(srv, log, cfg.workers, t0 + START_TIMEOUT_S)
        for load in (*server.singles, *server.batches):
            why = check(srv.url, load)
            if why:
                raise RuntimeError(f"{server.name}, {load.name} ({load.images} image(s)): {why}")
        precision = served_precision(srv.url, first)
        for _ in range(50):  # warm every worker before measuring
            post(srv.url, first)
    except BaseException:
        srv.close()
        raise
    return srv, cold, precision


def median_load(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per field, the median over rounds (rounds: the servers take turns, so a burst of other
    load on the machine hits one round of each, not one server's every run)."""
    out = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    out["rounds"] = len(runs)
    out["rps_min"], out["rps_max"] = min(r["rps"] for r in runs), max(r["rps"] for r in runs)
    return out


def bench_servers(
    plan: list[Server], wrk: str, conns: list[int], duration: int, rounds: int, batch_conns: int, logs: Path
) -> list[dict]:
    """Start every server one after the other (cold start alone on the machine), then load
    them in turns: for each round and connection count, each server with each of its single
    requests for `duration` seconds; then each server's batches at `batch_conns` connections,
    as many rounds, batch size by batch size."""
    started: list[tuple[Server, LocalServer, float, str | None]] = []
    try:
        for server in plan:
            started.append((server, *start_server(server, logs)))
        runs = {s.name: {ld.name: {c: [] for c in conns} for ld in s.singles} for s, *_ in started}
        batch_runs: dict[str, list[list[dict[str, float]]]] = {s.name: [[] for _ in s.batches] for s, *_ in started}
        mem = {s.name: memory_mib(srv.pids()) for s, srv, *_ in started}
        for _ in range(rounds):
            for c in conns:
                for s, srv, *_ in started:
                    for load in s.singles:
                        runs[s.name][load.name][c].append(run_wrk(wrk, srv.url, load, c, duration))
        for _ in range(rounds):
            for i in range(max((len(s.batches) for s, *_ in started), default=0)):
                for s, srv, *_ in started:
                    if i < len(s.batches):
                        batch_runs[s.name][i].append(run_wrk(wrk, srv.url, s.batches[i], batch_conns, duration))
        for s, srv, *_ in started:
            now = memory_mib(srv.pids())
            mem[s.name] = {k: max(mem[s.name][k], now[k]) for k in now}
    finally:
        for _, srv, *_ in started:
            srv.close()
    results = []
    for s, _, cold, precision in started:
        loads = {ld.name: {str(c): median_load(runs[s.name][ld.name][c]) for c in conns} for ld in s.singles}
        batches = {
            str(ld.images): {**_images_per_s(median_load(r), ld.images), "request": ld.name}
            for ld, r in zip(s.batches, batch_runs[s.name], strict=True)
            if r
        }
        results.append(
            {
                "name": s.name,
                "engine": s.cfg.engine,
                "class": s.label,
                "workers": s.cfg.workers,
                "threads": s.cfg.threads,
                "torch_threads": s.cfg.torch_threads,
                "cold_start_s": round(cold, 2),
                **mem[s.name],
                "precision": precision,
                "request": s.singles[0].name,
                "load": loads[s.singles[0].name],
                "loads": loads,
                **({"batches": batches} if batches else {}),
            }
        )
    return results


def _images_per_s(load: dict[str, float], n: int) -> dict[str, float]:
    return {**load, "batch": n, "images_per_s": round(load["rps"] * n, 1)}


def build_plan(args: argparse.Namespace, artifact: Path, req: Requests, pypath: str) -> list[Server]:
    """The servers, in the order they start and take turns."""
    base_env = {"PYTHONPATH": pypath, "MODEL_PATH": str(artifact / "model.pt")}
    ours = dict(model_dir=artifact, workers=args.workers, threads=args.threads, torch_threads=args.torch_threads)
    constant = (req.multipart,)
    plan = [
        # The tutorial's SeedModel expects unnormalised input and a state_dict; the weights
        # are the same file. Its seldon-core settings are the wrapper's defaults (1 worker).
        Server(
            "tutorial",
            ServerConfig(
                model_dir=artifact,
                model_class="seed_seldon_model.SeedModel",
                workers=1,
                threads=1,
                torch_threads=1,
                extra_env=base_env,
            ),
            constant,
        ),
        Server(
            "ours",
            ServerConfig(**ours, extra_env=base_env),
            (req.multipart_checked,),
            req.seldon_batches,
            network=True,
        ),
        Server(
            "constant", ServerConfig(**ours, model_class="trivial_model.TrivialModel", extra_env=base_env), constant
        ),
        Server(
            "constant+",
            ServerConfig(**ours, model_class="trivial_skip_empty.TrivialModelSkipEmpty", extra_env=base_env),
            constant,
        ),
        # The same artifact, workers, torch threads and precision.
        Server(
            "kserve",
            ServerConfig(**ours, engine="kserve", model_name=KSERVE_MODEL),
            (req.v2_json, req.v2_binary),
            req.kserve_batches,
            network=True,
        ),
    ]
    return [s for s in plan if s.name in args.only]


def goals_of(by: dict[str, dict], conns: list[int]) -> dict[str, float]:
    """Issue 12's goals for ours, those whose servers ran."""
    if "ours" not in by:
        return {}
    hi, lo = str(max(conns)), str(min(conns))
    o, goals = by["ours"]["load"], {}
    if "tutorial" in by:
        goals[f"rps_vs_tutorial@{hi} >= 2.5"] = round(o[hi]["rps"] / by["tutorial"]["load"][hi]["rps"], 2)
    if "constant+" in by:
        goals[f"rps_vs_constant+@{hi} >= 0.85"] = round(o[hi]["rps"] / by["constant+"]["load"][hi]["rps"], 3)
    goals[f"p99_ms@{hi} <= 20"] = o[hi]["p99_ms"]
    if "constant" in by:
        goals[f"(info) rps_vs_constant@{hi}"] = round(o[hi]["rps"] / by["constant"]["load"][hi]["rps"], 3)
    goals[f"p50_ms@{lo} <= 1.2"] = o[lo]["p50_ms"]
    goals["cold_start_s <= 2"] = by["ours"]["cold_start_s"]
    return goals


def compare(seldon: dict, kserve: dict) -> dict[str, Any]:
    """KServe against ours (Seldon), as ratios KServe / Seldon: req/s per request form and
    connection count, cold start, memory, images/s per batch size."""
    base = seldon["load"]
    return {
        "rps": {
            name: {c: round(load[c]["rps"] / base[c]["rps"], 3) for c in load if c in base}
            for name, load in kserve["loads"].items()
        },
        "cold_start": round(kserve["cold_start_s"] / seldon["cold_start_s"], 2),
        "rss": round(kserve["rss_mib"] / seldon["rss_mib"], 2),
        "pss": round(kserve["pss_mib"] / seldon["pss_mib"], 2),
        "images_per_s": {
            n: round(b["images_per_s"] / seldon["batches"][n]["images_per_s"], 3)
            for n, b in (kserve.get("batches") or {}).items()
            if n in (seldon.get("batches") or {})
        },
    }


def print_tables(results: list[dict], args: argparse.Namespace, comparison: dict | None) -> None:
    print("served precision: " + ", ".join(f"{r['name']} {r['precision'] or '-'}" for r in results))
    print(
        f"{'server':<9} {'request':<10} {'w×t×tt':<7} {'conns':>5} {'req/s':>8} {'(min–max)':>13} {'p50 ms':>7} "
        f"{'p90 ms':>7} {'p99 ms':>7} {'errors':>6} {'cold s':>6} {'RSS MiB':>8} {'PSS MiB':>8}"
    )
    for r in results:
        for request, by_conns in r["loads"].items():
            for c, load in by_conns.items():
                spread = f"{load['rps_min']:.0f}–{load['rps_max']:.0f}"
                print(
                    f"{r['name']:<9} {request:<10} {r['workers']}×{r['threads']}×{r['torch_threads']:<3} {c:>5} "
                    f"{load['rps']:>8.1f} {spread:>13} {load['p50_ms']:>7.2f} {load['p90_ms']:>7.2f} "
                    f"{load['p99_ms']:>7.2f} {int(load['errors']):>6} {r['cold_start_s']:>6.2f} {r['rss_mib']:>8.1f}"
                    f" {r['pss_mib']:>8.1f}"
                )
    print(f"(medians over {args.rounds} rounds of {args.duration} s per server, request and connection count)")
    for r in results:
        single = r["load"].get(str(args.batch_connections))
        for n, b in (r.get("batches") or {}).items():
            vs = f", {b['images_per_s'] / single['rps']:.2f}× single-image {r['request']}" if single else ""
            print(
                f"{r['name']}, {b['request']} batch of {n:>2} at {args.batch_connections} connections: "
                f"{b['images_per_s']:>8.1f} images/s ({b['rps']:.1f} req/s, p50 {b['p50_ms']:.2f} ms, "
                f"p99 {b['p99_ms']:.2f} ms, errors {int(b['errors'])}){vs}"
            )
    if comparison is None:
        return
    by = {r["name"]: r for r in results}
    seldon, kserve = by["ours"], by["kserve"]
    print(
        f"\nSeldon (ours) beside KServe: same artifact, {seldon['workers']} workers × {seldon['torch_threads']} "
        f"torch thread, precision {seldon['precision'] or '-'} / {kserve['precision'] or '-'}"
    )
    print(f"{'conns':>5}  {'server, request':<22} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'÷ Seldon':>9}")
    for c, base in seldon["load"].items():
        rows = [("seldon " + seldon["request"], base, None)]
        rows += [(f"kserve {n}", load[c], comparison["rps"][n].get(c)) for n, load in kserve["loads"].items()]
        for label, load, ratio in rows:
            vs = f"{ratio:>8.2f}×" if ratio is not None else f"{'':>9}"
            print(f"{c:>5}  {label:<22} {load['rps']:>8.1f} {load['p50_ms']:>7.2f} {load['p99_ms']:>7.2f} {vs}")
    for key, unit, ratio in (
        ("cold_start_s", "cold start s", "cold_start"),
        ("rss_mib", "RSS MiB", "rss"),
        ("pss_mib", "PSS MiB", "pss"),
    ):
        print(f"{unit:<14} seldon {seldon[key]:>8.2f}   kserve {kserve[key]:>8.2f}   {comparison[ratio]:.2f}×")
    for n, ratio in comparison["images_per_s"].items():
        s, k = seldon["batches"][n], kserve["batches"][n]
        print(
            f"batch of {n:>2} at {args.batch_connections} conns: "
            f"seldon {s['request']} {s['images_per_s']:>8.1f} images/s   "
            f"kserve {k['request']} {k['images_per_s']:>8.1f} images/s   {ratio:.2f}×"
        )


def parse_only(text: str) -> list[str]:
    names = [ALIASES.get(n.strip(), n.strip()) for n in text.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SERVERS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown server(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(SERVERS)} "
            f"({', '.join(f'{a} = {n}' for a, n in ALIASES.items())})"
        )
    return names


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", help="model folder (metadata.json + model.pt)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=3, help="turns each server gets per connection count")
    ap.add_argument("--connections", default="1,4,16")
    ap.add_argument("--batches", default="1,16,64", help="batch sizes ours and kserve take ('' for none)")
    ap.add_argument("--batch-connections", type=int, default=4)
    ap.add_argument(
        "--only",
        type=parse_only,
        default=list(SERVERS),
        help=f"comma-separated servers to run, of {', '.join(SERVERS)} (seldon = ours); default all",
    )
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    wrk = ensure_wrk()
    conns = [int(c) for c in args.connections.split(",")]
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        artifact, origin = find_artifact(args.artifact, tmp)
        req = make_requests(tmp, [int(n) for n in args.batches.split(",") if n], checked=origin != "random weights")
        (tmp / "trivial_skip_empty.py").write_text(CONSTANT_SKIP_EMPTY)
        pypath = os.pathsep.join([str(REPO), str(BASELINE), str(tmp)])
        plan = build_plan(args, artifact, req, pypath)
        results = bench_servers(plan, wrk, conns, args.duration, args.rounds, args.batch_connections, tmp)
    by = {r["name"]: r for r in results}
    goals = goals_of(by, conns)
    comparison = compare(by["ours"], by["kserve"]) if {"ours", "kserve"} <= by.keys() else None
    info = machine.describe()
    report = {
        "machine": info,
        "artifact": str(artifact),
        "artifact_origin": origin,
        "servers": results,
        "kserve_vs_seldon": comparison,
        "goals": goals,
    }
    print(machine.headline(info))
    print_tables(results, args, comparison)
    for k, v in goals.items():
        print(f"goal {k}: {v}")
    doc = json.dumps(report, indent=2)
    print(doc)
    if args.json_out:
        args.json_out.write_text(doc + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
