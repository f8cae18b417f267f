"""Throughput and latency of ``artquant serve`` against ``ArtQuant.score`` on the same files.

    python benchmarks/serve_throughput.py --size small --num-images 64 --clients 16

One process, one run: a random-weight checkpoint of the chosen size is written to a temporary
folder with the generated pictures of ``_bench.make_images``; then, on the same files and at the
same batch size,

1. ``direct``: ``ArtQuant.from_pretrained(folder).score(paths, batch_size=B)`` in this process;
2. ``server``: ``artquant serve`` (LitServe, dynamic batching) in a child process, ``--clients``
   threads each sending one picture per request until every file is scored; images/s over the
   whole run, p50/p99 latency per request, the batches the server formed;
3. ``plain`` (unless ``--no-plain``): the alternative the server was chosen against, a plain
   FastAPI endpoint (uvicorn, one process) scoring each request on its own (batch 1, one at a
   time), with the same clients;
4. ``direct`` once more, so a neighbour's load shifts both sides of the ratio alike.

The ratio ``server / direct`` (direct = mean of its two runs) is the acceptance figure (at least
0.85). Every line carries the machine, the UTC date and the load average; on a shared machine
rerun and compare.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _bench import SIZES, Recorder, machine_info, make_images

logger = logging.getLogger("serve_throughput")

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TOKENIZER = REPO_ROOT.parent / "shared" / "tokenizers" / "llama2"
START_TIMEOUT_S = 900.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--num-images", type=int, default=64, help="files scored per run")
    parser.add_argument("--unique-images", type=int, default=16, help="distinct pictures")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batch-timeout-ms", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16, help="concurrent client threads")
    parser.add_argument(
        "--tokenizer",
        type=Path,
        default=DEFAULT_TOKENIZER,
        help="folder with the LLaMA-2 tokenizer.model (default ../shared/tokenizers/llama2)",
    )
    parser.add_argument("--no-plain", action="store_true", help="skip the plain FastAPI server")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log", type=Path, help="also append the JSON lines to this file")
    args = parser.parse_args(argv)
    for name in ("num_images", "unique_images", "batch_size", "clients"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _load_average() -> float:
    return os.getloadavg()[0]


def _wait_ready(url: str, process: subprocess.Popen[bytes], path: str) -> None:
    import httpx

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server at {url} exited with {process.returncode}")
        try:
            if httpx.get(url + path, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    raise RuntimeError(f"{url} was not ready in {START_TIMEOUT_S} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    import signal

    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tree_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of a server's processes: the model workers (LitServe spawns
    them: ``spawn_main`` in their command line) apart from the rest (HTTP, queues)."""
    import psutil

    totals = {"model": 0.0, "http": 0.0}
    root = psutil.Process(pid)
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
            kind = "model" if "spawn_main" in " ".join(process.cmdline()) else "http"
        except psutil.Error:
            continue
        totals[kind] += times.user + times.system
    return totals


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[rank]


def drive(url: str, paths: list[Path], clients: int) -> dict[str, Any]:
    """``clients`` threads send one file per request until each file was sent once.

    Returns images/s over the run, per-request latencies (p50, p99, mean) and the scores by
    index. Any failed request raises: a benchmark of errors measures nothing.
    """
    import httpx

    blobs = [p.read_bytes() for p in paths]  # read before the clock starts, as a client would
    next_index = 0
    lock = threading.Lock()
    latencies: list[float] = []
    scores: dict[int, float] = {}
    failures: list[str] = []

    def client() -> None:
        nonlocal next_index
        with httpx.Client(base_url=url, timeout=600) as http:
            while True:
                with lock:
                    index = next_index
                    next_index += 1
                if index >= len(blobs) or failures:
                    return
                started = time.perf_counter()
                response = http.post(
                    "/v1/score", files={"files": (paths[index].name, blobs[index])}
                )
                elapsed = time.perf_counter() - started
                if response.status_code != 200:
                    failures.append(f"{response.status_code}: {response.text[:300]}")
                    return
                (result,) = response.json()["results"]
                with lock:
                    latencies.append(elapsed)
                    scores[index] = float(result["score"])

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} request(s) failed; first: {failures[0]}")
    return {
        "images": len(blobs),
        "seconds": seconds,
        "images_per_s": len(blobs) / seconds,
        "p50_ms": 1000 * _percentile(latencies, 0.50),
        "p99_ms": 1000 * _percentile(latencies, 0.99),
        "mean_ms": 1000 * statistics.fmean(latencies),
        "scores": scores,
    }


def _direct(scorer: Any, paths: list[Path], batch_size: int) -> dict[str, Any]:
    started = time.perf_counter()
    cpu = time.process_time()
    results = scorer.score(paths, batch_size=batch_size, progress=False)
    seconds = time.perf_counter() - started
    return {
        "images": len(paths),
        "seconds": seconds,
        "images_per_s": len(paths) / seconds,
        "cpu_s_per_image": (time.process_time() - cpu) / len(paths),
        "scores": {i: r.score for i, r in enumerate(results)},
    }


def _max_diff(a: dict[int, float], b: dict[int, float]) -> float:
    return max(abs(a[i] - b[i]) for i in a)


def _start_serve(args: argparse.Namespace, ckpt: Path, port: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "artquant_serve.cli",
        "--model", str(ckpt), "--tokenizer", str(args.tokenizer), "--device", "cpu",
        "--port", str(port), "--max-batch-size", str(args.batch_size),
        "--batch-timeout-ms", str(args.batch_timeout_ms), "--no-describe",
        "--max-images", "1", "--log-level", "warning",
    ]  # fmt: skip
    return subprocess.Popen(command, start_new_session=True)


def _start_plain(args: argparse.Namespace, ckpt: Path, port: int) -> subprocess.Popen[bytes]:
    server = Path(__file__).with_name("_plain_server.py")
    command = [sys.executable, str(server), str(port), str(ckpt), str(args.tokenizer)]
    return subprocess.Popen(command, start_new_session=True)


def _serve_run(
    recorder: Recorder,
    name: str,
    start: Callable[[int], subprocess.Popen[bytes]],
    args: argparse.Namespace,
    paths: list[Path],
    reference: dict[int, float],
) -> dict[str, Any]:
    import httpx

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = start(port)
    try:
        started = time.perf_counter()
        _wait_ready(url, process, "/readyz")
        logger.info("%s ready in %.0f s", name, time.perf_counter() - started)
        # warm-up: the first forward passes allocate; not what a running service pays
        drive(url, paths[: min(len(paths), args.clients)], args.clients)
        stats_before = httpx.get(f"{url}/v1/stats").json() if name == "server" else None
        load = _load_average()
        cpu_before, clients_cpu = _tree_cpu(process.pid), time.process_time()
        run = drive(url, paths, args.clients)
        cpu_after, clients_cpu = _tree_cpu(process.pid), time.process_time() - clients_cpu
        # plain: one process holds the model and the HTTP side; it counts as "model"
        if name == "plain":
            cpu_after = {"model": cpu_after["model"] + cpu_after["http"], "http": 0.0}
            cpu_before = {"model": cpu_before["model"] + cpu_before["http"], "http": 0.0}
        cpu = {
            f"cpu_s_per_image_{k}": (cpu_after[k] - cpu_before[k]) / run["images"]
            for k in ("model", "http")
        }
        cpu["cpu_s_per_image_clients"] = clients_cpu / run["images"]
        batching: dict[str, Any] = {}
        if stats_before is not None:
            after = httpx.get(f"{url}/v1/stats").json()
            batches = after["batches"] - stats_before["batches"]
            requests = after["requests"] - stats_before["requests"]
            batching = {"batches": batches, "mean_requests_per_batch": requests / batches}
    finally:
        _stop(process)
    record = recorder.emit(
        kind=name,
        clients=args.clients,
        batch_size=args.batch_size,
        images=run["images"],
        seconds=run["seconds"],
        images_per_s=run["images_per_s"],
        p50_ms=run["p50_ms"],
        p99_ms=run["p99_ms"],
        mean_ms=run["mean_ms"],
        max_score_diff_vs_direct=_max_diff(run["scores"], reference),
        load_average=load,
        **cpu,
        **batching,
    )
    return record


def run(args: argparse.Namespace) -> Recorder:
    """Every measurement of one run; returns the recorder."""
    import torch
    from load_memory import write_random_checkpoint

    from artquant_sdk import ArtQuant

    if not (args.tokenizer / "tokenizer.model").is_file():
        raise SystemExit(f"no tokenizer.model in {args.tokenizer}; pass --tokenizer DIR")
    recorder = Recorder(
        {"script": "serve_throughput", "size": args.size, "device": "cpu"}, log_path=args.log
    )
    recorder.emit(kind="machine", **machine_info(), threads=torch.get_num_threads())
    with tempfile.TemporaryDirectory() as tmp:
        unique = make_images(Path(tmp) / "images", args.unique_images, seed=args.seed)
        paths = [unique[i % len(unique)] for i in range(args.num_images)]
        ckpt = Path(tmp) / "checkpoint"
        write_random_checkpoint(ckpt, SIZES[args.size], seed=args.seed)
        scorer = ArtQuant.from_pretrained(ckpt, tokenizer=args.tokenizer, device="cpu")
        scorer.score(paths[: args.batch_size], batch_size=args.batch_size, progress=False)
        load = _load_average()
        first = _direct(scorer, paths, args.batch_size)
        recorder.emit(kind="direct", round=1, batch_size=args.batch_size, load_average=load,
                      **{k: v for k, v in first.items() if k != "scores"})  # fmt: skip
        del scorer  # the server's worker needs the memory and the cores
        reference = first["scores"]
        server = _serve_run(
            recorder, "server", lambda p: _start_serve(args, ckpt, p), args, paths, reference
        )
        plain = None
        if not args.no_plain:
            plain = _serve_run(
                recorder, "plain", lambda p: _start_plain(args, ckpt, p), args, paths, reference
            )
        scorer = ArtQuant.from_pretrained(ckpt, tokenizer=args.tokenizer, device="cpu")
        scorer.score(paths[: args.batch_size], batch_size=args.batch_size, progress=False)
        load = _load_average()
        second = _direct(scorer, paths, args.batch_size)
        recorder.emit(kind="direct", round=2, batch_size=args.batch_size, load_average=load,
                      max_score_diff_vs_direct=_max_diff(second["scores"], reference),
                      **{k: v for k, v in second.items() if k != "scores"})  # fmt: skip
    direct_rate = (first["images_per_s"] + second["images_per_s"]) / 2
    summary = {
        "kind": "summary",
        "direct_images_per_s": direct_rate,
        "server_images_per_s": server["images_per_s"],
        "server_over_direct": server["images_per_s"] / direct_rate,
        "server_p50_ms": server["p50_ms"],
        "server_p99_ms": server["p99_ms"],
        "mean_requests_per_batch": server.get("mean_requests_per_batch"),
    }
    if plain is not None:
        summary.update(
            plain_images_per_s=plain["images_per_s"],
            plain_over_direct=plain["images_per_s"] / direct_rate,
            plain_p50_ms=plain["p50_ms"],
            plain_p99_ms=plain["p99_ms"],
        )
    recorder.emit(**summary)
    rows = [r for r in recorder.records if r["kind"] in ("direct", "server", "plain")]
    columns = ["kind", "images", "images_per_s", "p50_ms", "p99_ms", "mean_requests_per_batch",
               "load_average"]  # fmt: skip
    print(recorder.table(columns, rows), file=sys.stderr)
    print(
        f"server / direct = {summary['server_over_direct']:.3f} (acceptance: at least 0.85)",
        file=sys.stderr,
    )
    return recorder


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
