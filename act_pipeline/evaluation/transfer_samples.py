"""A small MATH-500 / GPQA-Diamond look-alike whose answers are known, written by the project itself.

Not the real sets (those are not bundled): a handful of problems in their schemas
(:mod:`act_pipeline.evaluation.transfer`), so the loader, the prompts, the answer extraction and the
scoring can be run and checked anywhere. ``EQUIVALENT`` gives, per MATH problem, answers written
in other forms that math-verify must find equal to the gold one, and ``WRONG`` one it must not.

    python -m act_pipeline.evaluation.transfer_samples DIR [--parquet]

writes ``DIR/math500.jsonl`` and ``DIR/gpqa_diamond.jsonl`` (or ``.parquet``); point
``transfer.math500`` / ``transfer.gpqa_diamond`` at them to try the evaluation.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from act_pipeline.files import atomic_file, atomic_write

MATH_SAMPLES = [
    {"problem": "Write $\\frac{3}{6}$ in lowest terms.", "answer": "\\frac{1}{2}", "subject": "Prealgebra",
     "level": 1, "unique_id": "sample/prealgebra/1.json"},
    {"problem": "What is $2^{10}$?", "answer": "1024", "subject": "Algebra", "level": 1,
     "unique_id": "sample/algebra/1.json"},
    {"problem": "Simplify $\\sqrt{50}$.", "answer": "5\\sqrt{2}", "subject": "Algebra", "level": 2,
     "unique_id": "sample/algebra/2.json"},
    {"problem": "Solve $2x + 3 = 11$ for $x$.", "answer": "4", "subject": "Algebra", "level": 1,
     "unique_id": "sample/algebra/3.json"},
    {"problem": "Factor $x^2 - 5x + 6$.", "answer": "(x-2)(x-3)", "subject": "Intermediate Algebra", "level": 2,
     "unique_id": "sample/intermediate_algebra/1.json"},
    {"problem": "What percent of 80 is 20?", "answer": "25\\%", "subject": "Prealgebra", "level": 1,
     "unique_id": "sample/prealgebra/2.json"},
    {"problem": "For which real $x$ is $x^2 < 4$? Give an interval.", "answer": "(-2, 2)",
     "subject": "Intermediate Algebra", "level": 2, "unique_id": "sample/intermediate_algebra/2.json"},
]
# unique_id -> answers equal to the gold one in other forms (each must score 1), and one that is not (0)
EQUIVALENT = {
    "sample/prealgebra/1.json": ["0.5", "1/2", "\\dfrac{1}{2}", "\\frac12"],
    "sample/algebra/1.json": ["1024.0", "2^{10}"],
    "sample/algebra/2.json": ["\\sqrt{50}", "5 \\sqrt 2"],
    "sample/algebra/3.json": ["x = 4", "4.0"],
    "sample/intermediate_algebra/1.json": ["(x-3)(x-2)", "(x - 3)(x - 2)"],
    "sample/prealgebra/2.json": ["25", "25\\%"],
    "sample/intermediate_algebra/2.json": ["(-2,2)", "\\left(-2, 2\\right)"],
}
WRONG = {
    "sample/prealgebra/1.json": "0.6", "sample/algebra/1.json": "1000", "sample/algebra/2.json": "2\\sqrt{5}",
    "sample/algebra/3.json": "7", "sample/intermediate_algebra/1.json": "(x-1)(x-6)",
    "sample/prealgebra/2.json": "4", "sample/intermediate_algebra/2.json": "[-2, 2]",
}

GPQA_SAMPLES = [
    {"Record ID": "sample-chem-1", "Question": "Which element has the chemical symbol Na?",
     "Correct Answer": "Sodium", "Incorrect Answer 1": "Nitrogen", "Incorrect Answer 2": "Neon",
     "Incorrect Answer 3": "Nickel", "High-level domain": "Chemistry"},
    {"Record ID": "sample-phys-1", "Question": "What is the SI unit of force?",
     "Correct Answer": "The newton ", "Incorrect Answer 1": "The joule", "Incorrect Answer 2": "The watt\n",
     "Incorrect Answer 3": "The pascal", "High-level domain": "Physics"},
    {"Record ID": "sample-bio-1", "Question": "Which organelle makes most of a eukaryotic cell's ATP?",
     "Correct Answer": "The mitochondrion", "Incorrect Answer 1": "The ribosome",
     "Incorrect Answer 2": "The Golgi apparatus", "Incorrect Answer 3": "The lysosome", "High-level domain": "Biology"},
    {"Record ID": "sample-phys-2", "Question": "A ball is dropped from rest; ignoring air, how far has it fallen "
     "after 2 s (g = 10 m/s^2)?", "Correct Answer": "20 m", "Incorrect Answer 1": "10 m",
     "Incorrect Answer 2": "40 m", "Incorrect Answer 3": "5 m", "High-level domain": "Physics"},
]


def write_samples(folder: str | Path, parquet: bool = False) -> dict[str, Path]:
    """Write ``math500`` and ``gpqa_diamond`` (JSONL, or Parquet) into ``folder``; their paths by set."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, rows in (("math500", MATH_SAMPLES), ("gpqa_diamond", GPQA_SAMPLES)):
        path = folder / f"{name}.{'parquet' if parquet else 'jsonl'}"
        if parquet:
            import pyarrow as pa
            import pyarrow.parquet as pq

            with atomic_file(path) as tmp:
                pq.write_table(pa.Table.from_pylist(rows), tmp)
        else:
            atomic_write(path, "".join(json.dumps(r) + "\n" for r in rows))
        out[name] = path
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--parquet", action="store_true", help="write Parquet instead of JSONL")
    args = ap.parse_args(argv)
    for name, path in write_samples(args.folder, args.parquet).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
