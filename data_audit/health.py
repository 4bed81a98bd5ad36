"""Image health of file datasets: sizes and aspect ratios, grayscale and CMYK images, PNG data named
.JPEG (and other wrong extensions), truncated and unreadable files, with the file lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from litvision.data_audit.outputs import pyplot, save_figure, write_csv
from litvision.data_audit.scan import ISSUES, ScanResult
from litvision.data_audit.section import Section, Table, markdown_table
from litvision.data_audit.sources import AuditData
from litvision.utils.names import escape_name

# files listed per issue in the report (health.csv has them all)
LISTED = 50


def run_health(data: AuditData, scans: dict[str, ScanResult], out_dir: Path, bins: int = 40) -> Section:
    section = Section("health", "Image health")
    if not any(split.is_files for split in data.splits.values()):
        section.markdown.append(
            "The images are arrays in the dataset's own files (e.g. CIFAR pickles): no image files to check. "
            + ", ".join(
                f"{name}: {len(s.ids)} images of {s.width[0] if len(s.ids) else 0}x{s.height[0] if len(s.ids) else 0}"
                for name, s in scans.items()
            )
        )
        return section

    rows = [
        [sid, name, issue, detail]
        for name, scan in scans.items()
        for sid, issues in zip(scan.ids, scan.issues, strict=True)
        for issue, detail in issues
    ]
    section.files.append(write_csv(out_dir / "health.csv", ["id", "split", "issue", "detail"], rows))

    counts = [
        [
            name,
            len(scan.ids),
            *(sum(1 for issues in scan.issues if any(i == issue for i, _ in issues)) for issue in ISSUES),
        ]
        for name, scan in scans.items()
    ]
    columns = ["split", "images", *ISSUES]
    section.markdown += [
        "Every file decoded once with the decoder training uses. unreadable / truncated / oversized files "
        "(the header claims more than dataset.max_image_pixels, or sides over 100:1: refused before decoding) "
        "are skipped by a run (dataset.on_bad_image=skip) or stop it (raise); grayscale and CMYK images are converted to RGB; a "
        "wrong extension can trip other tools. All findings: `health.csv`.",
        "",
        *markdown_table(columns, counts),
        "",
    ]
    section.tables.append(Table("health_counts", columns, counts))
    for issue in ISSUES:
        listed = [row for row in rows if row[2] == issue]
        section.metrics[f"health/{issue}"] = float(len(listed))
        if listed:
            section.markdown += [f"**{issue}** ({len(listed)}):", ""]
            section.markdown += [
                f"- `{escape_name(sid)}` ({escape_name(detail)})" for sid, _, _, detail in listed[:LISTED]
            ]
            if len(listed) > LISTED:
                section.markdown.append(f"- ... and {len(listed) - LISTED} more in health.csv")
            section.markdown.append("")
    section.tables.append(Table("health_files", ["id", "split", "issue", "detail"], rows))

    sizes = []
    for name, scan in scans.items():
        ok = scan.width > 0
        if ok.any():
            w, h = scan.width[ok], scan.height[ok]
            sizes.append(
                [
                    name,
                    f"{w.min()}x{h[np.argmin(w)]}",
                    f"{int(np.median(w))}x{int(np.median(h))}",
                    f"{w.max()}x{h[np.argmax(w)]}",
                    float(np.median(w / h)),
                ]
            )
            section.metrics[f"health/{name}/median_width"] = float(np.median(w))
            section.metrics[f"health/{name}/median_height"] = float(np.median(h))
    section.markdown += markdown_table(["split", "narrowest", "median", "widest", "median aspect (w/h)"], sizes)
    section.figures.append(_histograms(scans, out_dir / "image_sizes.png", bins))
    section.markdown += ["", "![image sizes](image_sizes.png)"]
    return section


def _histograms(scans: dict[str, ScanResult], path: Path, bins: int) -> Path:
    plt = pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    for name, scan in scans.items():
        ok = scan.width > 0
        for ax, values in zip(
            axes, (scan.width[ok], scan.height[ok], scan.width[ok] / np.maximum(scan.height[ok], 1)), strict=True
        ):
            if len(values):
                ax.hist(values, bins=bins, alpha=0.6, label=name)
    for ax, title in zip(axes, ("width (px)", "height (px)", "aspect ratio (w/h)"), strict=True):
        ax.set_title(title)
        ax.set_ylabel("images")
    axes[0].legend(fontsize=8)
    return save_figure(figure, path)
