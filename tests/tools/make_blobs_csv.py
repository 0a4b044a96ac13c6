#!/usr/bin/env python3
"""Writes a synthetic classification CSV (Gaussian blobs, label last) for
trying `tinyfed-agent simulate` at fleet scale, where the 1,797 digits are
too few samples to shard over thousands of devices.

    tests/tools/make_blobs_csv.py OUT.csv [--samples N] [--features F]
                                  [--classes C] [--seed S]
"""
import argparse
import random
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="CSV file to write")
    parser.add_argument("--samples", type=int, default=50000)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--separation", type=float, default=0.5,
                        help="standard deviation of the class means")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.samples < args.classes or args.classes < 2 or args.features < 1:
        print("make_blobs_csv: need samples >= classes >= 2 and features >= 1", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    means = [[rng.gauss(0, args.separation) for _ in range(args.features)]
             for _ in range(args.classes)]
    with open(args.out, "w") as out:
        for i in range(args.samples):
            label = i % args.classes
            row = [f"{m + rng.gauss(0, 1):.4f}" for m in means[label]]
            out.write(",".join(row) + f",{label}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
