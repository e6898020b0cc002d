"""The CPU time of the gathers and searches that the kernel densities and the flows' permutations use.

Each operation is timed the way usfad once did it and the way it does it now, on the shapes it
meets in the largest fits: a block of 52 rows x 20,000 kernel centres (``KernelBase`` scores
``2^20`` terms a block), and a batch of 512 rows x 1,555 features (17_InternetAds) whose
columns a permutation gathers, forward and backward. Both ways give the same numbers (checked
here); only the time differs. One thread; the median of 7 timings, each of as many calls as
last about 0.25 s (``throughput.median_seconds``). Writes ``OUT.md``.

    .venv/bin/python benchmarks/block_ops.py -o benchmarks/results/block_ops
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from throughput import median_seconds  # this folder is on sys.path when run


def main() -> None:
    from usfad.density import _argmax_rows

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, required=True, help="OUT (writes OUT.md)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    block = -80 * torch.rand(52, 20_000, generator=generator)
    rows = torch.arange(0, 52, 2)  # half the block's rows, as the rows that may lie on a centre
    batch = torch.randn(512, 1555, generator=generator, requires_grad=True)
    order = torch.randperm(1555, generator=generator)
    upstream = torch.randn(512, 1555, generator=generator)

    def gather_backward(gather):
        def run():
            batch.grad = None
            gather().backward(upstream)
            return batch.grad.clone()

        return run

    cases = [
        ("nearest centre of 52 rows x 20,000", lambda: block.argmax(1), lambda: _argmax_rows(block)),
        ("26 of those rows, gathered", lambda: block[rows], lambda: block.index_select(0, rows)),
        (
            "columns of 512 x 1,555 permuted, forward",
            lambda: batch.detach()[:, order],
            lambda: batch.detach().index_select(1, order),
        ),
        (
            "... forward and backward",
            gather_backward(lambda: batch[:, order]),
            gather_backward(lambda: batch.index_select(1, order)),
        ),
    ]
    lines = [
        "# Gathers and searches on the CPU, as usfad did them and does them",
        "",
        f"`{' '.join(['benchmarks/block_ops.py', *sys.argv[1:]])}`: one thread, the median of 7 timings of about "
        f"0.25 s each; load average (1 min) at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.",
        "",
        "| operation | before | ms | now | ms | before / now | same result |",
        "|---|---|---:|---|---:|---:|---|",
    ]
    names = [
        ("`terms.argmax(1)`", "`_argmax_rows(terms)` (NumPy's argmax)"),
        ("`terms[rows]`", "`terms.index_select(0, rows)`"),
        ("`x[:, order]`", "`x.index_select(1, order)`"),
        ("`x[:, order]`", "`x.index_select(1, order)`"),
    ]
    for (label, before, now), (before_name, now_name) in zip(cases, names):
        same = torch.equal(before(), now())
        b, n = (1e3 * median_seconds(fn, repeats=7) for fn in (before, now))
        lines.append(f"| {label} | {before_name} | {b:.3f} | {now_name} | {n:.3f} | {b / n:.1f} | {same} |")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
