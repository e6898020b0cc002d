"""ONNX export check for the image detectors: faithfulness and speed against PyTorch.

Each head (FastFlow, CFlow, U-Flow) x flow (``usf``, ``affine``) on MobileNetV2 (the
installed ImageNet weights when ``build_backbone("mobilenet_v2")`` finds them, else random
weights, said in the table), image size 256, the model's default head, trained for one
epoch on 32 synthetic training images (:func:`usfad.vision.data.make_synthetic_dataset`),
is exported with ``ImageDetector.export_onnx`` and checked with
:func:`usfad.export.verify_image_onnx` on 16 fresh test images of the same category (half
with planted defects) at batch sizes 1 and 8: the largest relative difference of the
scores and of the maps. Speed: ``predict`` (one torch thread, batches of 8) against ONNX
Runtime (one intra-op thread, batches of 8) on the same 16 images, medians of repeats.
Writes ``export_check_vision.csv`` and ``export_check_vision.md`` to ``--out``.

    PYTHONPATH=src .venv/bin/python benchmarks/export_check_vision.py
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import torch
from throughput import machine_note, median_seconds


def _images(dataset) -> torch.Tensor:
    return torch.stack([dataset[i].image for i in range(len(dataset))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--train", type=int, default=32, help="training images")
    parser.add_argument("--check", type=int, default=16, help="fresh images to check and time on")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from usfad.export import OPSET, onnx_session, run_onnx, verify_image_onnx
    from usfad.vision.backbone import WeightsNotFoundError, build_backbone
    from usfad.vision.data import ImageFolderDataset, make_synthetic_dataset
    from usfad.vision.detector import ImageDetector
    from usfad.vision.heads import HEADS

    try:
        build_backbone("mobilenet_v2")
        weights, weights_note = "default", "ImageNet weights (installed)"
    except WeightsNotFoundError:
        weights, weights_note = None, "random weights (the ImageNet ones are not installed here)"
    size = args.image_size
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    start_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        half = args.check // 2
        root = make_synthetic_dataset(
            Path(tmp) / "tiles", n_train=args.train, n_test_good=half, n_test_defect=args.check - half, image_size=size
        )
        train = _images(ImageFolderDataset(root, "train", image_size=size))
        check = _images(ImageFolderDataset(root, "test", image_size=size))
        for model in HEADS:
            for flow in ("usf", "affine"):
                detector = ImageDetector(
                    model, flow, backbone="mobilenet_v2", weights=weights, image_size=size, epochs=1, random_state=0
                ).fit(train)
                start = time.perf_counter()
                path = detector.export_onnx(Path(tmp) / f"{model}-{flow}.onnx")
                export_s = time.perf_counter() - start
                report = verify_image_onnx(detector, path, check, batch_sizes=(1, 8))
                session = onnx_session(path, threads=1)
                x = check.numpy()
                t_torch = median_seconds(lambda d=detector: d.score_maps(check), args.repeats, min_time=0)
                t_onnx = median_seconds(lambda s=session, x=x: run_onnx(s, x, batch_size=8), args.repeats, min_time=0)
                diffs = report.output_rel_diff
                row = {
                    "model": model,
                    "flow": flow,
                    "scores_rel_diff_batch_1": f"{diffs['scores'][1]:.2e}",
                    "scores_rel_diff_batch_8": f"{diffs['scores'][8]:.2e}",
                    "maps_rel_diff_batch_1": f"{diffs['maps'][1]:.2e}",
                    "maps_rel_diff_batch_8": f"{diffs['maps'][8]:.2e}",
                    "within_1e-5": report.worst <= 1e-5,
                    "export_seconds": round(export_s, 1),
                    "pytorch_ms_per_image": round(1000 * t_torch / len(check), 1),
                    "onnx_ms_per_image": round(1000 * t_onnx / len(check), 1),
                    "onnx_over_pytorch_speed": round(t_torch / t_onnx, 2),
                }
                results.append(row)
                print(row, flush=True)
    total = time.perf_counter() - start_all
    with open(args.out / "export_check_vision.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(results[0]))
        writer.writeheader()
        writer.writerows(results)
    lines = [
        f"# ONNX export check, image detectors (opset {OPSET}, TorchScript exporter; ONNX Runtime vs PyTorch)",
        "",
        f"MobileNetV2 backbone, {weights_note}; image size {size}; default heads trained 1 epoch on {args.train} "
        f"synthetic images. Relative difference = max |onnx - torch| / max(|torch|, 1) against `predict`, on "
        f"{len(check)} fresh images (half with defects), whole graph (normalisation, backbone, head, upsampling, "
        f"level combination, Gaussian blur, max). Speed: `predict` vs ONNX Runtime, one thread each, batches of 8, "
        f"ms per image. Total run {total:.0f} s. " + machine_note(),
        "",
        "| head | flow | scores, batch 1 | scores, batch 8 | maps, batch 1 | maps, batch 8 | within 1e-5 "
        "| PyTorch ms/img | ONNX ms/img | ONNX / PyTorch speed |",
        "|---|---|---:|---:|---:|---:|:---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['model']} | {r['flow']} | {r['scores_rel_diff_batch_1']} | {r['scores_rel_diff_batch_8']} | "
        f"{r['maps_rel_diff_batch_1']} | {r['maps_rel_diff_batch_8']} | {'yes' if r['within_1e-5'] else 'NO'} | "
        f"{r['pytorch_ms_per_image']} | {r['onnx_ms_per_image']} | {r['onnx_over_pytorch_speed']:.2f} |"
        for r in results
    ]
    (args.out / "export_check_vision.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
