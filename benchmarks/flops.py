"""How close the encoder passes of a DM/AVDD iteration come to this CPU's matmul peak, per pass.

An iteration has two passes: the real forward (no graph) over up to 128 real pairs per class,
and the synthetic forward + backward (gradient to the synthetic inputs only: the encoders are
frozen) over the expanded synthetic set. This script counts each pass's floating-point
operations (``torch.utils.flop_counter``: convolutions and matmuls, forward and backward), times
it in several variants (the levers of issue 18) and divides the achieved FLOP/s by the peak of a
2048 x 2048 matmul in the same precision, timed in the same run (fp32 against the fp32 peak,
bf16 autocast against the bf16 peak). Variants are interleaved round by round (A B C ... A B C)
and the median is reported, because the machine is shared.

The ``torch.compile`` variant compiles each encoder's forward (inductor, C++ kernels on a CPU)
with the weights as inputs (``torch.func.functional_call``): a DM/AVDD iteration draws fresh
encoders, which then reuse the compiled kernels instead of recompiling. Its one-off compilation
(cold inductor cache) is reported apart, and a fresh encoder pair checks that nothing recompiles
and that the compiled passes agree with eager ones.

  OMP_NUM_THREADS=1 python benchmarks/flops.py                                  # small preset, AV-Digits
  OMP_NUM_THREADS=1 python benchmarks/flops.py --preset avdd --classes 2 --real-per-class 4 --syn-per-class 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from docsection import shown_arguments, write_section

ROOT = Path(__file__).resolve().parents[1]


def matmul_peak(dtype, rounds: int, n: int = 2048) -> float:
    """FLOP/s of an n x n matmul in `dtype` (2 n^3 operations), best of `rounds`."""
    import torch

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times)


def measure_peaks(args) -> dict[str, float]:
    """fp32 at 2048²; bf16 at 512² (without native bf16 instructions, AVX2 CPUs run bf16 matmuls ~100x slower)."""
    import torch

    peaks = {"fp32": matmul_peak(torch.float32, args.rounds)}
    if args.bf16:
        peaks["bf16"] = matmul_peak(torch.bfloat16, args.rounds, n=512)
    return peaks


def compiled(net):
    """`net`'s forward compiled with the weights as inputs: call it as ``f(encoder, x)`` with any
    encoder of the same architecture (a fresh draw) without recompiling. The template is a copy, so
    that no call passes the template's own tensors (dynamo would guard on that identity). Shapes are
    static: each slice size and grad mode gets its own graph, a few per run."""
    import copy

    import torch
    from torch.func import functional_call

    template = copy.deepcopy(net)
    forward = torch.compile(lambda weights, x: functional_call(template, weights, (x,)), dynamic=False)
    return lambda encoder, x: forward({**dict(encoder.named_parameters()), **dict(encoder.named_buffers())}, x)


def passes(args):
    """{variant: (precision, real_fn, syn_fn)}, (real FLOPs, synthetic FLOPs), sizes, {compiled variant: check}."""
    import copy
    from functools import partial

    import torch
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    from avdistill.augment import DSA
    from avdistill.factor import expand
    from avdistill.methods.initial_set import initial_synthetic
    from avdistill.methods.real_means import CPU_CHUNK, RealSampler, encode, random_encoders
    from avdistill.models import get_encoders
    from avdistill.models.pooling import AvgPool2x2

    if args.preset == "avdd":
        from generated import vggs_shaped

        dataset = vggs_shaped(args.classes, args.real_per_class)
    else:
        from avdistill.data import load_dataset

        dataset = load_dataset(args.data)
    prep, C = dataset.preprocessing, dataset.num_classes
    real_audio, real_frames, real_labels = RealSampler(dataset, args.real_per_class).sample(0, 0)
    audio, frames, labels = initial_synthetic(dataset, args.syn_per_class // 4 if args.factor == 2 else args.syn_per_class,
                                              "real", 0, args.factor)
    syn_audio, syn_frames = expand(audio, args.factor), expand(frames, args.factor)
    augment = DSA()
    nets = get_encoders(args.preset, prep.audio_shape, prep.frame_shape, 0)
    for p in (*nets[0].parameters(), *nets[1].parameters()):
        p.requires_grad_(False)

    def with_avdd_code_pool(net):
        net = copy.deepcopy(net)
        for module in net.modules():
            for name, child in module.named_children():
                if isinstance(child, AvgPool2x2):
                    setattr(module, name, nn.AvgPool2d(2))
        return net

    code_nets = tuple(with_avdd_code_pool(n) for n in nets)
    cl_nets = tuple(copy.deepcopy(n).to(memory_format=torch.channels_last) for n in nets)
    by_class = [torch.nonzero(real_labels == c).flatten() for c in range(C)]
    syn_labels = labels.repeat_interleave(args.factor ** 2)
    syn_by_class = [torch.nonzero(syn_labels == c).flatten() for c in range(C)]

    def real(pair, chunk, per_class=False, layout=torch.contiguous_format, bf16=False):
        def run():
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                for net, x in zip(pair, (real_audio, real_frames)):
                    x = x.contiguous(memory_format=layout)
                    for part in ([x[i] for i in by_class] if per_class else [x]):
                        encode(net, augment, part, 1, chunk).float().mean(0)
        return run

    def syn(pair, chunk, per_class=False, layout=torch.contiguous_format, bf16=False):
        def run():
            a = syn_audio.detach().contiguous(memory_format=layout).requires_grad_(True)
            f = syn_frames.detach().contiguous(memory_format=layout).requires_grad_(True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                for net, x in zip(pair, (a, f)):
                    for part in ([x[i] for i in syn_by_class] if per_class else [x]):
                        encode(net, augment, part, 1, chunk).float().mean(0).pow(2).sum().backward()
        return run

    variants = {
        "AVDD code: one batch per class, nn.AvgPool2d": ("fp32", real(code_nets, len(real_labels), True),
                                                          syn(code_nets, len(syn_labels), True)),
        f"avdistill before issue 18: slices of {CPU_CHUNK}, nn.AvgPool2d": ("fp32", real(code_nets, 0), syn(code_nets, 0)),
        f"avdistill: slices of {CPU_CHUNK}, AvgPool2x2": ("fp32", real(nets, 0), syn(nets, 0)),
        "avdistill, one batch per class": ("fp32", real(nets, len(real_labels), True), syn(nets, len(syn_labels), True)),
        "avdistill, channels-last": ("fp32", real(cl_nets, 0, layout=torch.channels_last),
                                     syn(cl_nets, 0, layout=torch.channels_last)),
    }
    if args.bf16:
        variants["avdistill, bf16 autocast"] = ("bf16", real(nets, 0, bf16=True), syn(nets, 0, bf16=True))

    def agreement(forwards) -> dict:
        """Compiled and eager passes of a fresh encoder pair (another draw), against each other and against
        an fp64 eager pass: [real embeddings, synthetic input gradients] each, and the samples whose gradient
        differs between compiled and eager by more than 1e-4 of the largest (a ReLU input near zero flips)."""
        fresh, out = random_encoders(args.preset, prep, 0, 1), {"compiled": ([], []), "eager": ([], []), "fp64": ([], [])}
        for f, net, x, y in zip(forwards, fresh, (real_audio, real_frames), (syn_audio, syn_frames)):
            for name, model in (("compiled", partial(f, net)), ("eager", net), ("fp64", copy.deepcopy(net).double())):
                dtype = torch.float64 if name == "fp64" else torch.float32
                with torch.inference_mode():
                    out[name][0].append(encode(model, augment, x.to(dtype), 1, 0))
                leaf = y.detach().to(dtype).requires_grad_(True)
                encode(model, augment, leaf, 1, 0).mean(0).pow(2).sum().backward()
                out[name][1].append(leaf.grad)
        samples = sum(int(((a - b).abs().flatten(1).amax(1) > 1e-4 * b.abs().max()).sum())
                      for a, b in zip(out["compiled"][1], out["eager"][1]))
        c, e, r = ([torch.cat([t.double().flatten() for t in ts]) for ts in out[name]] for name in out)

        def relative(a, b):
            return [((u - v).norm() / v.norm()).item() for u, v in zip(a, b)]
        return {"max": [(u - v).abs().max().item() for u, v in zip(c, e)], "relative": relative(c, e),
                "compiled_fp64": relative(c, r), "eager_fp64": relative(e, r), "samples": samples}

    checks = {}
    if args.compile:
        torch._dynamo.config.recompile_limit = 64  # one code object: 2 encoders x 2 grad modes x slice sizes
        forwards = tuple(compiled(n) for n in nets)
        pair = tuple(partial(f, n) for f, n in zip(forwards, nets))
        variants["avdistill, torch.compile"] = ("fp32", real(pair, 0), syn(pair, 0))
        checks["avdistill, torch.compile"] = partial(agreement, forwards)
    flops = []
    for fn in (real(nets, 0), syn(nets, 0)):
        with FlopCounterMode(display=False) as counter:
            fn()
        flops.append(counter.get_total_flops())
    return variants, flops, (len(real_labels), len(syn_labels)), checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small", choices=("small", "avdd"))
    parser.add_argument("--data", default="av-digits")
    parser.add_argument("--classes", type=int, default=10, help="avdd preset: classes of the generated dataset")
    parser.add_argument("--real-per-class", type=int, default=128)
    parser.add_argument("--syn-per-class", type=int, default=40, help="expanded synthetic pairs per class (AVDD IPC 10 "
                                                                      "with the factor 2: 40)")
    parser.add_argument("--factor", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-bf16", dest="bf16", action="store_false", help="skip the bf16 autocast variant")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip the torch.compile variant")
    parser.add_argument("--doc", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    inductor_cache = tempfile.TemporaryDirectory(prefix="flops-inductor-")  # cold: torch.compile's compilation is timed
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = inductor_cache.name
    import torch
    from torch._dynamo.utils import counters

    load_start = os.getloadavg()
    peaks = measure_peaks(args)
    variants, (real_flops, syn_flops), (n_real, n_syn), checks = passes(args)
    times: dict[str, tuple[list, list]] = {name: ([], []) for name in variants}
    first_call, graphs = {}, {}
    for name, (_, real_fn, syn_fn) in variants.items():  # warm-up (and torch.compile's compilation)
        before = counters["stats"]["unique_graphs"]
        for k, fn in enumerate((real_fn, syn_fn)):
            start = time.perf_counter()
            fn()
            first_call[name, k] = time.perf_counter() - start
        graphs[name] = counters["stats"]["unique_graphs"] - before
    agreements = {}
    for name, check in checks.items():  # a fresh encoder pair: no new graphs, the eager results
        before = counters["stats"]["unique_graphs"]
        agreements[name] = check(), counters["stats"]["unique_graphs"] - before
    for _ in range(args.rounds):
        for name, (_, real_fn, syn_fn) in variants.items():
            for k, fn in enumerate((real_fn, syn_fn)):
                start = time.perf_counter()
                fn()
                times[name][k].append(time.perf_counter() - start)
        print({n: [round(min(t), 3) for t in ts] for n, ts in times.items()}, file=sys.stderr, flush=True)
    peaks_after = measure_peaks(args)
    peaks = {k: max(peaks[k], peaks_after[k]) for k in peaks}
    from avdistill.files import source_commit

    commit = source_commit()
    threads = torch.get_num_threads()
    data = f"generated VGGS-10K shapes, {args.classes} classes" if args.preset == "avdd" else args.data
    lines = [f"## Per pass against the matmul peak: `{args.preset}` encoders", "",
             f"Regenerate: `OMP_NUM_THREADS={threads} python benchmarks/flops.py {shown_arguments()}` (commit "
             f"{commit}; {threads} thread(s)). {data}: real forward over {n_real} pairs ({real_flops / 1e9:.2f} GFLOP), "
             f"synthetic forward + backward over {n_syn} expanded pairs ({syn_flops / 1e9:.2f} GFLOP), DSA included. "
             "Matmul peak (best of the runs before and after): "
             + ", ".join(f"{k} {v / 1e9:.2f} GFLOP/s" for k, v in peaks.items())
             + f" (fp32 2048², bf16 512²). Median of {args.rounds} interleaved rounds.", "",
             "| variant | real forward ms | of peak | synthetic fwd+bwd ms | of peak | vs AVDD code (real / syn) |",
             "|---|---|---|---|---|---|"]
    base = [statistics.median(t) for t in times["AVDD code: one batch per class, nn.AvgPool2d"]]
    for name, (precision, _, _) in variants.items():
        r, s = (statistics.median(t) for t in times[name])
        peak = peaks[precision]
        lines.append(f"| {name} ({precision}) | {1000 * r:.0f} | {100 * real_flops / r / peak:.0f}% | {1000 * s:.0f} | "
                     f"{100 * syn_flops / s / peak:.0f}% | {base[0] / r:.2f}x / {base[1] / s:.2f}x |")
    for name, (diffs, added) in agreements.items():
        compile_s = [first_call[name, k] - statistics.median(times[name][k]) for k in range(2)]
        lines += ["", compile_note(name, compile_s, graphs[name], added, diffs, 2 * n_syn)]
    lines += ["", f"Load average {load_start[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, on "
                  f"{os.cpu_count()} cores (shared machine), this process pinned to CPU(s) "
                  f"{', '.join(map(str, sorted(os.sched_getaffinity(0))))}. CPU: {torch.backends.cpu.get_cpu_capability()} kernels "
                  "(PyTorch's dispatch level)."]
    write_section(args.doc, f"flops-{args.preset}", "\n".join(lines))
    print("\n".join(lines))


def compile_note(name, compile_s, graphs, added, diffs, n_syn) -> str:
    def pairs(key):  # real embeddings / synthetic gradients
        return " / ".join(f"{v:.1e}" for v in diffs[key])
    return (f"*{name}* (inductor, static shapes, weights as inputs through `torch.func.functional_call`): one-off "
            f"compilation {compile_s[0]:.1f} s (real forward) + {compile_s[1]:.1f} s (synthetic forward + backward), "
            f"the first calls less the median, cold inductor cache, {graphs} graphs. A fresh encoder pair (another "
            f"draw) added {added} graphs. Its compiled passes against eager ones (real embeddings / synthetic input "
            f"gradients): max abs difference {pairs('max')}, relative L2 difference {pairs('relative')}; "
            f"{diffs['samples']} of the {n_syn} synthetic inputs (audio and visual) differ by more than 1e-4 of the "
            f"largest gradient. Against an fp64 eager pass, relative L2: compiled {pairs('compiled_fp64')}, eager "
            f"{pairs('eager_fp64')}.")


if __name__ == "__main__":
    main()
