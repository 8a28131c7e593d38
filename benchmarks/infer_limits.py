"""How fast can fp32 yolov3 run on this CPU at batch 1? The floors behind issue 7's target.

``benchmarks/infer.py`` measures the engines; this script measures why the fastest of them
(ONNX Runtime on our export) cannot go much further, all in one process with the same
thread count:

1. OpenCV DNN's latency with its Winograd convolutions on (its default) and off;
2. ONNX Runtime's GFLOP/s on the network against the CPU's fp32 peak (a C loop of AVX2 fused
   multiply-adds, compiled when a C compiler is there), and its profile by operator kind: how
   much of the time is 3x3 stride-1 convolutions, the only layers a fast algorithm (Winograd)
   could shorten;
3. for each 3x3 stride-1 layer shape in the network, ONNX Runtime's own time for it against
   the Winograd F(m x m, 3 x 3) batched matrix product alone (m = 2, 4, 6; (m + 2)^2
   products of a (tiles x C) by a constant, pre-packed (C x K) matrix), with the input and
   output transforms left out, i.e. free;
4. the Winograd floor: the network's time with its 3x3 stride-1 layers made as much faster as
   those best matrix products are, and the ratio of that floor to OpenCV DNN.

Times are the fastest of ``--runs`` interleaved rounds, the figure least disturbed by other
load on a shared machine. ``python benchmarks/infer_limits.py`` (yolov3 at 416, 2 threads,
about a minute). A floor above 0.5 x OpenCV
means no engine built on these libraries' matrix products can reach the issue's target on
this machine, whatever the transforms cost.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

import yolov3
from yolov3.export import export_onnx
from yolov3.inference import DetectOptions
from yolov3.model.cfg import builtin_cfg_path
from yolov3.model.layers import ConvBlock

sys.path.insert(0, str(Path(__file__).parent))
from infer import machine, photo_batch, random_yolov3_weights


def fastest_ms(runs: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Each run's fastest time in ms over ``rounds`` interleaved rounds (after two warm-up
    calls): the figure least disturbed by other load on a shared machine."""
    for run in runs.values():
        run()
        run()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for key, run in runs.items():
            start = time.perf_counter()
            run()
            times[key].append(time.perf_counter() - start)
    return {k: 1000 * min(t) for k, t in times.items()}


def session(model: bytes | str, threads: int, profile: str | None = None
            ) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # idle pool threads must not spin while the other engines of a round run
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = profile
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def single_node(op: str, inputs: dict[str, list[int]], consts: dict[str, np.ndarray],
                out_shape: list[int], threads: int, **attrs) -> ort.InferenceSession:
    """A one-operator ONNX graph (plus LeakyRelu after a Conv, as in the network)."""
    nodes = [helper.make_node(op, [*inputs, *consts], ["y0" if op == "Conv" else "y"], **attrs)]
    if op == "Conv":
        nodes.append(helper.make_node("LeakyRelu", ["y0"], ["y"], alpha=0.1))
    graph = helper.make_graph(
        nodes, op,
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, s) for k, s in inputs.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(v, k) for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return session(model.SerializeToString(), threads)


def conv_census(model: torch.nn.Module, size: int) -> tuple[dict[tuple[int, int, int], int],
                                                              float]:
    """(in channels, out channels, height) -> count of the 3x3 stride-1 convolutions, and the
    GFLOP of all convolutions (a multiply-add counted as two)."""
    shapes: dict[tuple[int, int, int], int] = defaultdict(int)
    flop = [0.0]

    def hook(block: ConvBlock, args: tuple, out: torch.Tensor) -> None:
        conv = block.conv
        flop[0] += 2 * conv.weight[0].numel() * out.numel()
        if conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.in_channels > 3:
            shapes[conv.in_channels, conv.out_channels, args[0].shape[-1]] += 1

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, ConvBlock)]
    with torch.inference_mode():
        model(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return dict(shapes), flop[0] / 1e9


# Independent chains of AVX2 fused multiply-adds on each thread: the CPU's fp32 peak.
FMA_PEAK_C = r"""
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#define CHAINS 10
#define ROUNDS 200000000L
static void *work(void *out) {
    __m256 acc[CHAINS], b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm256_set1_ps((float)i);
    for (long r = 0; r < ROUNDS; r++)
        for (int i = 0; i < CHAINS; i++) acc[i] = _mm256_fmadd_ps(acc[i], b, c);
    float sum = 0, lanes[8];
    for (int i = 0; i < CHAINS; i++) { _mm256_storeu_ps(lanes, acc[i]); sum += lanes[0]; }
    *(float *)out = sum;
    return NULL;
}
int main(int argc, char **argv) {
    int n = atoi(argv[1]);
    pthread_t t[64]; float sums[64]; struct timespec a, z;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n; i++) pthread_create(&t[i], NULL, work, &sums[i]);
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &z);
    double s = (z.tv_sec - a.tv_sec) + 1e-9 * (z.tv_nsec - a.tv_nsec);
    printf("%f %f\n", n * ROUNDS * CHAINS * 16.0 / s / 1e9, sums[0]);
    return 0;
}
"""


def fma_peak_gflops(threads: int, tmp: Path) -> float | None:
    """fp32 GFLOP/s of ``threads`` threads of AVX2 FMAs, or None without a C compiler / AVX2."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None or platform.machine() not in ("x86_64", "AMD64"):
        return None
    (tmp / "fma.c").write_text(FMA_PEAK_C)
    try:
        subprocess.run([compiler, "-O3", "-mavx2", "-mfma", "-pthread", str(tmp / "fma.c"),
                        "-o", str(tmp / "fma")], check=True, capture_output=True)
        out = subprocess.run([str(tmp / "fma"), str(min(threads, 64))], check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return float(out.split()[0])


def ort_profile(path: Path, x: np.ndarray, threads: int, tmp: Path, rounds: int
                ) -> dict[str, float]:
    """ONNX Runtime's median ms per operator kind; convolutions split by kernel and stride."""
    sess = session(str(path), threads, profile=str(tmp / "profile"))
    name = sess.get_inputs()[0].name
    for _ in range(rounds + 2):
        sess.run(None, {name: x})
    events = json.loads(Path(sess.end_profiling()).read_text())
    per_node: dict[tuple[str, str], list[float]] = defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            args = e.get("args", {})
            op = args.get("op_name", "?")
            if op == "Conv":
                shapes = [next(iter(d.values())) for d in args.get("input_type_shape", [])]
                out = next(iter(args.get("output_type_shape", [{}])[0].values()), [0])
                kernel, stride = shapes[1][-1], shapes[0][-1] // max(out[-1], 1)
                op = f"Conv {kernel}x{kernel} stride {stride}"
                op += " (first layer, 3 channels in)" if shapes[0][1] <= 3 else ""
            per_node[op, e["name"]].append(e["dur"] / 1000)
    kinds: dict[str, float] = defaultdict(float)
    for (op, _), durations in per_node.items():
        kinds[op] += statistics.median(durations[2:])
    return dict(kinds)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--img-size", type=int, default=416)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=9, help="timed rounds")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    size = args.img_size
    print(f"machine: {machine()}\nyolov3 at {size}, batch 1, {args.threads} threads\n")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        weights = tmp / "yolov3-random.weights"
        random_yolov3_weights(weights)
        model = yolov3.from_darknet("yolov3", weights)
        x = photo_batch(1, size)[0].numpy()

        net = cv2.dnn.readNetFromDarknet(str(builtin_cfg_path("yolov3")), str(weights))
        names = net.getUnconnectedOutLayersNames()

        def opencv(winograd: bool) -> Callable[[], object]:
            def run() -> object:
                net.enableWinograd(winograd)
                net.setInput(x)
                return net.forward(names)

            return run

        onnx_path = export_onnx(model, tmp / "yolov3.onnx", DetectOptions(img_size=size))
        sess = session(str(onnx_path), args.threads)
        input_name = sess.get_inputs()[0].name
        best = fastest_ms({"winograd": opencv(True), "direct": opencv(False),
                           "ort": lambda: sess.run(None, {input_name: x})}, args.runs)
        ort_ms = best["ort"]
        print(f"OpenCV DNN: {best['winograd']:.0f} ms with Winograd (its default), "
              f"{best['direct']:.0f} ms without\n")
        kinds = ort_profile(onnx_path, x, args.threads, tmp, args.runs)
        census, gflop = conv_census(model, size)
        peak = fma_peak_gflops(args.threads, tmp)
        print(f"ONNX Runtime on our export: {ort_ms:.0f} ms for {gflop:.1f} GFLOP = "
              f"{gflop / ort_ms * 1e3:.0f} GFLOP/s")
        if peak:
            print(f"fp32 peak of {args.threads} threads of AVX2 fused multiply-adds: {peak:.0f} "
                  f"GFLOP/s; direct convolution at that peak: {gflop / peak * 1e3:.0f} ms = "
                  f"{gflop / peak * 1e3 / best['winograd']:.2f} x OpenCV DNN")
        print("ONNX Runtime's profile (sum of operator medians):")
        for op, ms in sorted(kinds.items(), key=lambda kv: -kv[1])[:6]:
            print(f"  {op}: {ms:.1f} ms")

        print("\n3x3 stride-1 layers (ms): ONNX Runtime's Conv + LeakyRelu against the "
              "Winograd batched matrix product alone")
        print("| in -> out @ size | count | ORT conv | F(2) | F(4) | F(6) |")
        print("| --- | --- | --- | --- | --- | --- |")
        rng = np.random.default_rng(0)
        direct_total = winograd_total = 0.0
        shapes = sorted(census.items(), key=lambda s: -s[0][2])
        for (c, k, hw), count in shapes:
            w = (rng.standard_normal((k, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
            conv = single_node("Conv", {"x": [1, c, hw, hw]}, {"w": w}, [1, k, hw, hw],
                               args.threads, pads=[1, 1, 1, 1])
            xi = rng.standard_normal((1, c, hw, hw)).astype(np.float32)
            runs = {"direct": lambda conv=conv, xi=xi: conv.run(None, {"x": xi})}
            for m in (2, 4, 6):
                p_, t_ = (m + 2) ** 2, (-(-hw // m)) ** 2
                u = (rng.standard_normal((p_, c, k)) / np.sqrt(c)).astype(np.float32)
                v = rng.standard_normal((p_, t_, c)).astype(np.float32)
                mm = single_node("MatMul", {"v": [p_, t_, c]}, {"u": u}, [p_, t_, k], args.threads)
                runs[f"F({m})"] = lambda mm=mm, v=v: mm.run(None, {"v": v})
            layer = fastest_ms(runs, args.runs)
            direct = layer.pop("direct")
            products = list(layer.values())
            direct_total += count * direct
            winograd_total += count * min(products)
            print(f"| {c} -> {k} @ {hw} | {count} | {direct:.2f} | "
                  + " | ".join(f"{t:.2f}" for t in products) + " |", flush=True)

    share = kinds.get("Conv 3x3 stride 1", 0.0) / sum(kinds.values())
    speedup = direct_total / winograd_total
    floor = ort_ms * (1 - share + share / speedup)
    print(f"\n3x3 stride-1 layers one by one: {direct_total:.0f} ms in ONNX Runtime, "
          f"{winograd_total:.0f} ms as Winograd matrix products with free transforms "
          f"({speedup:.2f} x faster)")
    print(f"Winograd floor for the network: ONNX Runtime's {ort_ms:.0f} ms with its 3x3 "
          f"stride-1 share ({100 * share:.0f} % of the profile) {speedup:.2f} x faster: "
          f"{floor:.0f} ms = {floor / best['winograd']:.2f} x OpenCV DNN (default), "
          f"{floor / best['direct']:.2f} x OpenCV DNN without Winograd")
    print(f"ONNX Runtime today: {ort_ms / best['winograd']:.2f} x OpenCV DNN (default)")
    print(f"winograd_floor_vs_opencv={floor / best['winograd']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
