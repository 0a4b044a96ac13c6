"""Scrapes a Prometheus endpoint and prints what prometheus_client's text
parser (an independent reader of the exposition format, Debian's
python3-prometheus-client) makes of it, for metrics_test.cc to compare
with the counts of its own run:

  # CONTENT_TYPE <the response's Content-Type>
  # TYPE <family> <counter|gauge|histogram|...>
  <sample name>{<label>="<value>",...} <value>     (labels sorted)

  metrics_scrape.py URL

Exits non-zero, naming the cause, when the endpoint cannot be read or the
text does not parse.
"""
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def main():
    url = sys.argv[1]
    with urllib.request.urlopen(url, timeout=10) as response:
        content_type = response.headers.get("Content-Type", "")
        text = response.read().decode("utf-8")
    print(f"# CONTENT_TYPE {content_type}")
    for family in text_string_to_metric_families(text):
        print(f"# TYPE {family.name} {family.type}")
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            print(f"{sample.name}{{{labels}}} {sample.value!r}")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the test shows this line as the reason
        print(f"metrics_scrape.py: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
