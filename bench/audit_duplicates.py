"""Cost of the audit's duplicate search: measured on the real CIFAR subset and at full CIFAR-10 size,
projected to ImageNet.

    python bench/audit_duplicates.py [--data ../shared/data] [--max-base 50000]

Candidate and baseline run side by side in this process: the candidate is the audit's search (faiss
HNSW index, sub-quadratic), the baseline the same search on an exact all-pairs index (faiss flat).
Both are timed in CPU seconds of this process on ONE thread (faiss.omp_set_num_threads(1)), so the
numbers are per core and do not depend on what else the machine runs; wall times are printed too.

Sizes past the real subset use distinct synthetic thumbnails made from the real ones (random crops,
flips, noise, brightness), so the index sees realistic image statistics. Full CIFAR-10 (50,000 indexed
training images, 10,000 test images querying at 25 shifts) is measured directly; ImageNet (1.28M
indexed, 50k querying) is projected from the measured per-image costs: the HNSW add and search costs
grow with log(N) (they are measured at several N and extrapolated linearly in log N), and the scan
(read + decode + hash + thumbnail) is measured per real ImageNet sample JPEG.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np


def clock() -> tuple[float, float]:
    return time.process_time(), time.perf_counter()


def since(start: tuple[float, float]) -> tuple[float, float]:
    cpu, wall = clock()
    return cpu - start[0], wall - start[1]


def synthetic(real: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct 32x32 thumbnails derived from real ones."""
    import cv2

    out = np.empty((n, 32, 32), np.uint8)
    for i in range(n):
        image = real[rng.integers(len(real))].astype(np.float32)
        size = int(rng.integers(20, 32))
        y, x = rng.integers(0, 33 - size, 2)
        image = cv2.resize(image[y : y + size, x : x + size], (32, 32), interpolation=cv2.INTER_LINEAR)
        if rng.random() < 0.5:
            image = image[:, ::-1]
        image = image * rng.uniform(0.7, 1.3) + rng.normal(0, 6, image.shape)
        out[i] = np.clip(image, 0, 255)
    return out


def timed_search(search, base: np.ndarray, queries: np.ndarray) -> dict:
    """Index build, shifted queries and verification, timed apart."""
    start = clock()
    index = search.build_index(search.features(base))
    build = since(start)
    start = clock()
    k = min(search.neighbors, len(base))
    for dy, dx in search.offsets:
        index.search(search.features(queries, dy, dx), k)
    query = since(start)
    start = clock()
    q, b, d = search.search(base, queries)
    total = since(start)
    verify = (max(0.0, total[0] - build[0] - query[0]), max(0.0, total[1] - build[1] - query[1]))
    return {
        "build": build,
        "query": query,
        "verify": verify,
        "total": total,
        "pairs": set(zip(q.tolist(), b.tolist(), strict=True)),
    }


def main() -> None:
    import faiss

    from litvision.data_audit.duplicates import NearDuplicateSearch
    from litvision.data_audit.scan import gray_thumbnail, inspect_file, pixel_digest
    from litvision.datamodules.readers.cifar_pickle import CIFAR10_DIRNAME, load_split

    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--max-base", type=int, default=50000)
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    cifar = Path(args.data) / "cifar10-subset" / CIFAR10_DIRNAME
    if not cifar.is_dir():
        raise SystemExit(f"the real CIFAR subset is not at {cifar} (--data DIR)")
    print(f"load average at start: {os.getloadavg()}")

    train, _ = load_split(cifar, train=True)
    test, _ = load_split(cifar, train=False)
    start = clock()
    for image in np.concatenate([train, test]):
        pixel_digest(image)
        gray_thumbnail(image, 32)
    scan_cpu, _ = since(start)
    scan_per_array_image = scan_cpu / (len(train) + len(test))
    base = np.stack([gray_thumbnail(i, 32) for i in train])
    queries = np.stack([gray_thumbnail(i, 32) for i in test])

    hnsw, flat = NearDuplicateSearch(index="hnsw"), NearDuplicateSearch(index="flat")
    print("\n1. real subset: 4,660 train indexed, 846 test querying (25 shifts each); CPU s (wall s), one thread")
    results = {}
    for name, search in (("flat (baseline)", flat), ("hnsw (audit)", hnsw)):
        r = results[name] = timed_search(search, base, queries)
        print(
            f"  {name:16s} build {r['build'][0]:6.2f}  queries {r['query'][0]:6.2f}  verify {r['verify'][0]:6.2f}  "
            f"total {r['total'][0]:6.2f} ({r['total'][1]:.1f} wall)  pairs {len(r['pairs'])}"
        )
    subset_total = results["hnsw (audit)"]["total"][0] + scan_cpu
    recall = len(results["hnsw (audit)"]["pairs"] & results["flat (baseline)"]["pairs"]) / max(
        1, len(results["flat (baseline)"]["pairs"])
    )
    print(
        f"  scan (hash + thumbnail) of 5,506 arrays: {scan_cpu:.2f}; hnsw finds {recall:.3f} of the exact index's pairs"
    )

    print("\n2. scaling (synthetic thumbnails from the real ones; queries = base / 5)")
    rng = np.random.default_rng(0)
    sizes = [n for n in (5000, 20000, 50000) if n <= args.max_base]
    pool = synthetic(np.concatenate([base, queries]), max(sizes) + max(sizes) // 5, rng)
    per_add, per_query, per_verify, flat_ratio = {}, {}, {}, {}
    for n in sizes:
        b, q = pool[:n], pool[n : n + n // 5]
        r = timed_search(hnsw, b, q)
        per_add[n] = r["build"][0] / n
        per_query[n] = r["query"][0] / (len(q) * len(hnsw.offsets))
        per_verify[n] = r["verify"][0] / len(q)
        line = (
            f"  N={n:6d}: hnsw build {r['build'][0]:7.2f}  queries {r['query'][0]:7.2f}  verify {r['verify'][0]:6.2f}"
            f"  total {r['total'][0]:7.2f} ({r['total'][1]:.0f} wall)"
        )
        if n <= 20000:
            f = timed_search(flat, b, q)
            flat_ratio[n] = f["total"][0] / r["total"][0]
            line += f"  | flat total {f['total'][0]:7.2f}  flat/hnsw {flat_ratio[n]:.2f}x"
        print(line)
        if n == 50000:
            full_cifar = r["total"][0] + scan_per_array_image * 60000

    # per-image cost of the file scan on real ImageNet JPEGs
    samples = sorted((Path(args.data) / "imagenet-samples").glob("*.JPEG"))[:200]
    scan_per_jpeg = float("nan")
    if samples:
        start = clock()
        for path in samples:
            inspect_file(os.fsencode(path), 32)
        scan_per_jpeg = since(start)[0] / len(samples)

    # ImageNet projection: HNSW costs grow ~ log N; extrapolate linearly in log N from the measured sizes
    def at(costs: dict[int, float], n: int) -> float:
        xs = np.log([*costs])
        ys = np.array([*costs.values()])
        slope, intercept = np.polyfit(xs, ys, 1) if len(xs) > 1 else (0.0, ys[0])
        return max(float(slope * np.log(n) + intercept), float(ys.max()))

    n_train, n_val = 1_281_167, 50_000
    imagenet = {
        "scan (decode all 1.33M files)": scan_per_jpeg * (n_train + n_val),
        "hnsw build (1.28M)": at(per_add, n_train) * n_train,
        "shifted queries (50k x 25)": at(per_query, n_train) * n_val * len(hnsw.offsets),
        "verification": per_verify[max(per_verify)] * n_val,
    }
    print("\n3. projections (CPU s on one core)")
    if sizes and max(sizes) == 50000:
        print(f"  full CIFAR-10 (50k indexed + 10k querying, measured above, + scan of 60k arrays): {full_cifar:.0f} s")
    for k, v in imagenet.items():
        print(f"  ImageNet {k:32s} {v:10.0f} s")
    total = sum(imagenet.values())
    print(
        f"  ImageNet total {total:.0f} CPU s = {total / 3600:.1f} core-hours; {total / 16 / 60:.0f} min on 16 cores "
        f"(scan {scan_per_jpeg * 1000:.1f} ms per JPEG); memory ~{(n_train + n_val) * (32 * 32 + 14 * 14 * 4 + 64 * 4) / 2**30:.1f} GiB "
        "(thumbnails + features + HNSW links)"
    )
    ratios = ", ".join(f"{n}: {r:.2f}x" for n, r in flat_ratio.items())
    print(f"load average at end: {os.getloadavg()}")
    print(
        f"audit_duplicates: subset {subset_total:.1f} CPU s; full CIFAR-10 {full_cifar if sizes and max(sizes) == 50000 else float('nan'):.0f} CPU s; "
        f"ImageNet {total / 3600:.1f} core-hours projected; flat/hnsw time {ratios}; hnsw recall vs flat {recall:.3f}"
    )


if __name__ == "__main__":
    main()
