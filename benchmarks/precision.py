"""Is bfloat16 autocast safe for distribution matching? Gradient fidelity against float32.

DM/AVDD's loss is a difference of class means, so rounding in the embeddings could swamp the
signal. This script computes the gradient of AVDD's loss on the synthetic set at the same
draws in float32 and under bfloat16 autocast (``precision="bf16"``) and reports their cosine
similarity and norm ratio. It runs on the CPU (bf16 autocast is slow there, hence the small
batch); on a GPU pass ``--device cuda``.

  python benchmarks/precision.py            # writes the "precision" section of docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from docsection import write_section

ROOT = Path(__file__).resolve().parents[1]


def gradients(precision: str, ipc: int, real_per_class: int, draws: int, device: str):
    import torch

    from avdistill.data import load_dataset
    from avdistill.methods.avdd import avdd_loss
    from avdistill.methods.base import RunContext, get_method, make_config
    from avdistill.methods.initial_set import initial_synthetic
    from avdistill.methods.matching import MeanMatcher

    dataset = load_dataset("av-digits")
    cfg = make_config(get_method("avdd"), {"real_cache": "off", "precision": precision, "init": "real", "factor": 1,
                                           "real_per_class": real_per_class})
    audio, frames, labels = initial_synthetic(dataset, ipc, "real", 0)
    audio, frames = audio.to(device).requires_grad_(True), frames.to(device).requires_grad_(True)
    matcher = MeanMatcher(dataset, cfg, labels, RunContext(device=device, progress=False))
    out = []
    for draw in range(draws):
        loss = avdd_loss(matcher(draw, audio, frames), cfg.lam_jm, cfg.lam_mgm)["total"]
        out.append((float(loss.detach()), *torch.autograd.grad(loss, [audio, frames])))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ipc", type=int, default=2)
    parser.add_argument("--real-per-class", type=int, default=16)
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    import torch

    torch.set_num_threads(1)
    seconds = {}
    for precision in ("fp32", "bf16"):
        start = time.perf_counter()
        seconds[precision] = (gradients(precision, args.ipc, args.real_per_class, args.draws, args.device),
                              time.perf_counter() - start)
    (fp32, fp32_s), (bf16, bf16_s) = seconds["fp32"], seconds["bf16"]
    cos = lambda x, y: float(torch.nn.functional.cosine_similarity(x.flatten(), y.flatten(), dim=0))  # noqa: E731
    lines = ["# Mixed precision: bf16 autocast against fp32", "",
             f"Regenerate: `python benchmarks/precision.py --ipc {args.ipc} --real-per-class {args.real_per_class} "
             f"--draws {args.draws} --device {args.device}`. AVDD's loss (DM + 10 JM + 10 MGM) on AV-Digits, "
             f"synthetic set initialised from real pairs, its gradient at the same draws (encoders, DSA, real batch) "
             f"in float32 and under bfloat16 autocast; device {args.device}, load average "
             f"{os.getloadavg()[0]:.1f}.", "",
             "| draw | loss fp32 | loss bf16 | cosine, audio gradient | cosine, frame gradient | norm ratio (audio) |",
             "|---|---|---|---|---|---|"]
    for draw, ((l32, a32, f32), (l16, a16, f16)) in enumerate(zip(fp32, bf16)):
        lines.append(f"| {draw} | {l32:.2f} | {l16:.2f} | {cos(a32, a16):.4f} | {cos(f32, f16):.4f} | "
                     f"{float(a16.norm() / a32.norm()):.3f} |")
    worst = min(min(cos(a, b), cos(f, g)) for (_, a, f), (_, b, g) in zip(fp32, bf16))
    lines += ["", f"The bf16 gradient points where the fp32 one does (worst cosine {worst:.4f}), with the same norm: "
                  "bfloat16 keeps float32's exponent range, so no loss scaling is needed, and the class means and "
                  "the loss are taken in float32.",
              f"- Time for the {args.draws} gradients on {args.device}: fp32 {fp32_s:.1f} s, bf16 {bf16_s:.1f} s "
              f"({bf16_s / fp32_s:.1f}x). " + ("On a CPU without native bf16 arithmetic autocast only adds casts, so "
                                               "fp32 stays the default; `--precision bf16` is meant for GPUs."
                                               if bf16_s > fp32_s else "")]
    write_section(args.out, "precision", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
