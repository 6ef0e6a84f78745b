"""How close the real-data embedding pass comes to this machine's arithmetic peak.

The real half of a DM/AVDD iteration is one forward pass of the `small` audio and visual
encoders over 128 real pairs per class (1280 on AV-Digits). This script counts its
floating-point operations (``torch.utils.flop_counter``: convolutions and matmuls, the ops
that carry the arithmetic), times it in the variants that could speed it up (``no_grad`` as
the reference code runs it, ``inference_mode``, channels-last memory layout, a batch split
into chunks), and compares the achieved FLOP/s with a large float32 matmul measured in the
same run, the practical peak of this CPU. Best of `--repeats` timings, one thread and all threads.

  python benchmarks/flops.py              # writes the "flops" section of docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

from docsection import write_section

ROOT = Path(__file__).resolve().parents[1]


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up: allocator, kernel selection
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_peak(repeats: int, n: int = 2048) -> float:
    """FLOP/s of an n x n float32 matmul (2 n^3 operations)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / best_time(lambda: torch.mm(a, b), repeats)


def embedding_variants(real_per_class: int, repeats: int) -> tuple[int, dict[str, float]]:
    """(FLOPs of one real embedding pass, {variant: seconds})."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from avdistill.augment import DSA
    from avdistill.data import load_dataset
    from avdistill.methods.matching import RealSampler
    from avdistill.methods.real_means import CPU_CHUNK, encode
    from avdistill.models import get_encoders

    dataset = load_dataset("av-digits")
    prep = dataset.preprocessing
    sampler = RealSampler(dataset, real_per_class)
    audio, frames, _ = sampler.sample(0, 0)
    augment = DSA()
    audio, frames = augment(audio, 1), augment(frames, 1)
    no_augment = DSA("none")  # the batch is augmented once above, so every variant encodes the same tensors
    f_audio, f_visual = get_encoders("small", prep.audio_shape, prep.frame_shape, 0)
    for p in (*f_audio.parameters(), *f_visual.parameters()):
        p.requires_grad_(False)

    def forward(a=audio, f=frames):
        return f_audio(a), f_visual(f)

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        forward()
    flops = counter.get_total_flops()

    def no_grad():
        with torch.no_grad():
            forward()

    def inference():
        with torch.inference_mode():
            forward()

    audio_cl, frames_cl = audio.contiguous(memory_format=torch.channels_last), frames.contiguous(memory_format=torch.channels_last)

    audio_net_cl = copy.deepcopy(f_audio).to(memory_format=torch.channels_last)
    visual_net_cl = copy.deepcopy(f_visual).to(memory_format=torch.channels_last)

    def channels_last():
        with torch.inference_mode():
            audio_net_cl(audio_cl), visual_net_cl(frames_cl)

    def sliced():
        with torch.inference_mode():
            encode(f_audio, no_augment, audio, 0, CPU_CHUNK), encode(f_visual, no_augment, frames, 0, CPU_CHUNK)

    variants = {"no_grad (reference code)": no_grad, "inference_mode": inference,
                f"inference_mode, slices of {CPU_CHUNK} (avdistill's default)": sliced, "inference_mode, channels-last": channels_last}
    return flops, {name: best_time(fn, repeats) for name, fn in variants.items()}


def iteration_parts(real_per_class: int, repeats: int) -> dict[str, float]:
    """Seconds of each part of one AVDD iteration at IPC 10 with the IDM factor 2 (AVDD's defaults)."""
    import torch

    from avdistill.augment import DSA
    from avdistill.data import load_dataset
    from avdistill.methods.avdd import avdd_loss
    from avdistill.factor import expand, expand_labels
    from avdistill.methods.initial_set import initial_synthetic
    from avdistill.methods.matching import ClassMeans, RealSampler, class_means
    from avdistill.methods.real_means import CPU_CHUNK, encode
    from avdistill.models import get_encoders

    dataset = load_dataset("av-digits")
    prep, C = dataset.preprocessing, dataset.num_classes
    sampler, augment = RealSampler(dataset, real_per_class), DSA()
    audio, frames, labels = initial_synthetic(dataset, 10, "real", 0, factor=2)
    audio.requires_grad_(True), frames.requires_grad_(True)
    syn_labels = expand_labels(labels, 2)
    f_audio, f_visual = get_encoders("small", prep.audio_shape, prep.frame_shape, 0)
    real_audio, real_frames, real_labels = sampler.sample(0, 0)

    def build():
        get_encoders("small", prep.audio_shape, prep.frame_shape, 1)

    def sample():
        sampler.sample(0, 1)

    def real(chunk: int):
        with torch.no_grad():
            class_means(encode(f_audio, augment, real_audio, 1, chunk), real_labels, C)
            class_means(encode(f_visual, augment, real_frames, 1, chunk), real_labels, C)

    means = [torch.zeros(C, 512), torch.zeros(C, 512)]

    def synthetic(chunk: int):
        sa = class_means(encode(f_audio, augment, expand(audio, 2), 1, chunk), syn_labels, C)
        sv = class_means(encode(f_visual, augment, expand(frames, 2), 1, chunk), syn_labels, C)
        avdd_loss(ClassMeans(*means, sa, sv), 10.0, 10.0)["total"].backward()

    whole = len(real_labels) + len(syn_labels)  # a slice this size is one batch
    parts = {"build the random encoders": (build, None), "draw the real batch": (sample, None),
             f"real pass ({len(real_labels)} pairs)": (lambda: real(whole), lambda: real(CPU_CHUNK)),
             f"synthetic pass, forward + backward ({len(syn_labels)} pairs)": (lambda: synthetic(whole),
                                                                               lambda: synthetic(CPU_CHUNK))}
    return {name: (best_time(a, repeats), best_time(b, repeats) if b else None) for name, (a, b) in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real-per-class", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    import torch

    load_before = os.getloadavg()
    threads_all = torch.get_num_threads()
    results = {}
    for threads in sorted({1, threads_all}):
        torch.set_num_threads(threads)
        peak = matmul_peak(args.repeats)
        flops, times = embedding_variants(args.real_per_class, args.repeats)
        results[threads] = (peak, flops, times)
        if threads == 1:
            parts = iteration_parts(args.real_per_class, args.repeats)
        print(threads, peak / 1e9, flops / 1e9, times, flush=True)

    lines = ["# Embedding pass against the arithmetic peak", "",
             f"Regenerate: `python benchmarks/flops.py --real-per-class {args.real_per_class} --repeats {args.repeats}`. "
             f"One real embedding pass of DM/AVDD on AV-Digits: the `small` audio and visual encoders over "
             f"{args.real_per_class} real pairs per class, DSA-augmented. FLOPs counted by "
             "`torch.utils.flop_counter` (convolutions, matmuls); the peak is a 2048 x 2048 float32 matmul timed "
             f"in the same run; best of {args.repeats}. Load average {load_before[0]:.1f} at the start "
             f"({os.cpu_count()} cores).", ""]
    for threads, (peak, flops, times) in results.items():
        lines += [f"**{threads} thread{'s' if threads > 1 else ''}:** matmul peak {peak / 1e9:.1f} GFLOP/s; "
                  f"the pass is {flops / 1e9:.2f} GFLOP.", "",
                  "| variant | ms | GFLOP/s | of matmul peak | vs no_grad |", "|---|---|---|---|---|"]
        base = times["no_grad (reference code)"]
        for name, seconds in times.items():
            lines.append(f"| {name} | {1000 * seconds:.0f} | {flops / seconds / 1e9:.1f} | "
                         f"{100 * flops / seconds / peak:.0f}% | {base / seconds:.2f}x |")
        lines.append("")
    from avdistill.methods.real_means import CPU_CHUNK

    total = sum(whole for whole, _ in parts.values())
    lines += ["Where one AVDD iteration goes (IPC 10, IDM factor 2, one thread, best of "
              f"{args.repeats}; the optimiser step itself is negligible), with every pass as one batch (as the "
              f"reference code) and in avdistill's balanced slices of {CPU_CHUNK} samples (bit-identical result):", "",
              "| part | one batch (ms) | share | slices (ms) | speed-up |", "|---|---|---|---|---|",
              *(f"| {name} | {1000 * w:.0f} | {100 * w / total:.0f}% | "
                + (f"{1000 * sl:.0f} | {w / sl:.2f}x |" if sl else "– | – |") for name, (w, sl) in parts.items()), ""]
    best = {t: max(flops / s for s in times.values()) / peak for t, (peak, flops, times) in results.items()}
    low, high = 100 * min(best.values()), 100 * max(best.values())
    real = next(w for name, (w, _) in parts.items() if name.startswith("real pass"))
    lines += ["What this says:", "",
              f"- The real pass takes {100 * real / total:.0f}% of an iteration and reaches at best "
              + (f"{low:.0f}%" if round(low) == round(high) else f"{low:.0f}-{high:.0f}%") + " of the matmul peak"
              + (": small convolutions (32 channels, 3x3) on small images, instance norm and pooling keep it far "
                 "from compute-bound." if high < 50 else "."),
              f"- Memory, not arithmetic, is the limit: the same passes in slices of {CPU_CHUNK} samples, whose "
              "activations stay in cache, run " + " and ".join(f"{w / sl:.1f}x faster ({name.split(' (')[0]})"
                                                              for name, (w, sl) in parts.items() if sl) + ".",
              "- Beyond that, speed must come from doing fewer real passes (the real statistics computed once per "
              "draw and cached, draws cycled) and fewer iterations (see the speed section)."]
    write_section(args.out, "flops", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
