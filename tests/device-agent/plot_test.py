#!/usr/bin/env python3
"""`tinyfed-agent simulate --plot`: runs a short simulation through the
binary and reads the SVG back with the standard library's XML parser: it is
well-formed SVG, self-contained, has one accuracy and one loss point per
round of the JSON report at the values the report gives, placed on a
linear axis, and the centralized float accuracy as the reference line.

usage: plot_test.py TINYFED_AGENT"""
import json
import os
import random
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

SVG = "{http://www.w3.org/2000/svg}"
ROUNDS = 7


def fail(message):
    print("FAIL: " + message)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def write_blobs(path):
    rng = random.Random(11)
    means = [[1.5 * rng.gauss(0, 1) for _ in range(6)] for _ in range(3)]
    with open(path, "w") as f:
        f.write("f1,f2,f3,f4,f5,f6,label\n")
        for i in range(450):
            c = i % 3
            f.write(",".join("%.4f" % (m + rng.gauss(0, 1)) for m in means[c]) + ",%d\n" % c)


def linear_fit_error(points):
    """Largest distance of (value, y) points from the line through the two
    with the most different values."""
    lo = min(points)
    hi = max(points)
    check(hi[0] - lo[0] > 1e-3, "the points' values are too close to fix an axis: %s" % points)
    slope = (hi[1] - lo[1]) / (hi[0] - lo[0])
    return slope, max(abs(lo[1] + slope * (v - lo[0]) - y) for v, y in points)


def main():
    agent = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        csv = os.path.join(tmp, "blobs & more.csv")  # '&' must be escaped in the title
        write_blobs(csv)
        svg_path = os.path.join(tmp, "run.svg")
        json_path = os.path.join(tmp, "run.json")
        run = subprocess.run(
            [agent, "simulate", "--dataset", csv, "--devices", "15", "--rounds", str(ROUNDS),
             "--partition", "iid", "--clients-per-round", "5", "--noprogress",
             "--plot", svg_path, "--metrics-out", json_path],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        check(run.returncode == 0, "simulate exited %d:\n%s" % (run.returncode, run.stdout))
        with open(json_path) as f:
            report = json.load(f)
        root = ET.parse(svg_path).getroot()  # raises on malformed XML

    check(root.tag == SVG + "svg", "root is %s, not an SVG element" % root.tag)
    for attribute in ("width", "height", "viewBox"):
        check(attribute in root.attrib, "the svg element has no %s" % attribute)

    # Self-contained: nothing to fetch or run.
    for element in root.iter():
        tag = element.tag.replace(SVG, "")
        check(tag not in ("image", "script", "foreignObject", "use"), "a <%s> element" % tag)
        for name, value in element.attrib.items():
            check("href" not in name, "a link attribute %s=%s" % (name, value))
            check("url(" not in value and "http" not in value,
                  "an external reference %s=%s" % (name, value))
        if tag == "style":
            check("@import" not in (element.text or "") and "url(" not in (element.text or ""),
                  "the style sheet loads something")

    rounds = report["rounds"]
    check(len(rounds) == ROUNDS, "the report has %d rounds" % len(rounds))
    texts = ["".join(t.itertext()) for t in root.iter(SVG + "text")]
    check(any("blobs & more.csv" in t for t in texts), "the title does not name the data set")
    for label in ("test accuracy", "test loss (mean cross-entropy)", "round"):
        check(label in texts, "no axis label '%s'" % label)
    tick_labels = [t for t in root.iter(SVG + "text") if t.get("class") == "tick-label"]
    check(len(tick_labels) >= 2 * 2 + 2 * 2, "too few tick labels: %d" % len(tick_labels))

    axes = {}
    for series, key in (("accuracy", "accuracy"), ("loss", "loss")):
        points = [c for c in root.iter(SVG + "circle") if c.get("class") == series]
        check(len(points) == ROUNDS, "%d %s points for %d rounds" % (len(points), series, ROUNDS))
        xs = [float(c.get("cx")) for c in points]
        check(all(b > a for a, b in zip(xs, xs[1:])), "%s points not left to right" % series)
        steps = [b - a for a, b in zip(xs, xs[1:])]
        # Coordinates are written with 2 decimals: steps agree within 0.02.
        check(max(steps) - min(steps) < 0.02, "%s rounds unevenly spaced: %s" % (series, steps))
        pairs = []
        for c, row in zip(points, rounds):
            check(int(c.get("data-round")) == row["round"],
                  "%s point round %s, report round %s" % (series, c.get("data-round"), row["round"]))
            # data-value has 6 decimals.
            check(abs(float(c.get("data-value")) - row[key]) <= 5e-7,
                  "%s of round %d: plotted %s, report %r" % (series, row["round"],
                                                             c.get("data-value"), row[key]))
            pairs.append((row[key], float(c.get("cy"))))
        slope, error = linear_fit_error(pairs)
        check(slope < 0, "%s axis: larger values are not drawn higher" % series)
        # 2-decimal coordinates: within 0.01 px of the line, twice for slack.
        check(error < 0.02, "%s points off a linear axis by %.3f px" % (series, error))
        axes[series] = (pairs, slope)

    references = [e for e in root.iter() if e.get("class") == "reference"]
    check(len(references) == 1, "%d reference lines" % len(references))
    ref = references[0]
    check(ref.get("y1") == ref.get("y2"), "the reference line is not horizontal")
    pairs, slope = axes["accuracy"]
    lo = min(pairs)
    expected_y = lo[1] + slope * (report["centralized_float_accuracy"] - lo[0])
    check(abs(float(ref.get("y1")) - expected_y) < 0.02,
          "the reference line is at y %s, the accuracy axis puts %.4f at %.2f" %
          (ref.get("y1"), report["centralized_float_accuracy"], expected_y))
    print("OK: %d rounds, accuracy %.4f -> %.4f, reference %.4f" %
          (ROUNDS, rounds[0]["accuracy"], rounds[-1]["accuracy"],
           report["centralized_float_accuracy"]))


if __name__ == "__main__":
    main()
