"""The README's ablation table from `pcdms evaluate` reports: `python benchmarks/ablation_table.py EVAL_DIR`.

EVAL_DIR holds `seed<S>/<stages>-metrics/report.json` (what `scripts/eval_demo.sh` writes). Prints one
markdown row per stage set (B1, B2, B3, full): each metric's mean over the seeds and, in brackets, every
seed's value, so the run-to-run spread is visible beside each difference. Writes `EVAL_DIR/table.json`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROWS = ("B1", "B2", "B3", "full")
METRICS = (("ssim_pidm", "SSIM (ssim_pidm) ↑", 3), ("l1", "L1 ↓", 4), ("fid_tf", "FID (fid_tf) ↓", 1))


def collect(eval_dir: Path) -> dict[str, dict[str, list[float]]]:
    """{stages: {metric: [value per seed, in seed order]}} from every report found."""
    table: dict[str, dict[str, list[float]]] = {}
    for seed_dir in sorted(eval_dir.glob("seed*")):
        for row in ROWS:
            report = seed_dir / f"{row}-metrics" / "report.json"
            if not report.is_file():
                continue
            summary = json.loads(report.read_text())["results"]["single_sample"]
            for key, _, _ in METRICS:
                table.setdefault(row, {}).setdefault(key, []).append(summary[key])
    return table


def markdown(table: dict[str, dict[str, list[float]]]) -> str:
    lines = ["| stages | " + " | ".join(title for _, title, _ in METRICS) + " |",
             "|---|" + "---|" * len(METRICS)]
    for row in ROWS:
        if row not in table:
            continue
        cells = []
        for key, _, digits in METRICS:
            values = table[row][key]
            mean = sum(values) / len(values)
            cells.append(f"{mean:.{digits}f} ({' / '.join(f'{v:.{digits}f}' for v in values)})")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("eval_dir", type=Path)
    args = parser.parse_args()
    table = collect(args.eval_dir)
    if not table:
        raise SystemExit(f"no {args.eval_dir}/seed*/<stages>-metrics/report.json found: run scripts/eval_demo.sh")
    (args.eval_dir / "table.json").write_text(json.dumps(table, indent=2) + "\n")
    print(markdown(table))


if __name__ == "__main__":
    main()
