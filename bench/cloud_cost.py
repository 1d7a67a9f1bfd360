#!/usr/bin/python3
"""cloud_cost.py - what a signed Bedrock request costs the worker next to
the same request to a plain Anthropic upstream (issue 17).

    bench/cloud_cost.py [--build DIR] [-n COUNT] [-t REPEAT]

One sluiced worker in front of the build's mockllm, with two upstreams on
it: `anthropic` (protocol anthropic, an API key) and `bedrock` (protocol
bedrock: the body rewritten, SHA-256 of it, the canonical request, one
HMAC with the day's signing key, the Authorization header; mockllm
answers /model/ID/invoke as Anthropic's Messages and does not check the
signature).  The same Messages requests of 1 KB and 100 KB go to each.

Two figures per kind: instructions per request under callgrind
(bench/callgrind_run.py: deterministic, the A/B that holds on a shared
machine) and CPU time per request without valgrind, from the worker's
/proc/PID/schedstat, the median of REPEAT runs (noisy: quote the ratio).
Everything talks to 127.0.0.1; every wait is bounded.
"""

import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import callgrind_ab as ab              # noqa: E402
import callgrind_run as cg             # noqa: E402

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

EXTRA = """upstream anthropic {
	url @MOCK@;
	protocol anthropic;
	api_key_file @TMP@/anthropic.key;
	idle_timeout 600s;
}
upstream bedrock {
	url @MOCK@;
	protocol bedrock;
	region us-east-1;
	aws_credentials_file @TMP@/aws-credentials;
	deployment claude-b* anthropic.claude-3-haiku-20240307-v1:0;
	idle_timeout 600s;
}
route claude-a* anthropic;
route claude-b* bedrock;
"""


def messages(model, size):
    doc = {"model": model, "max_tokens": 256,
           "messages": [{"role": "user", "content": ""}]}
    doc["messages"][0]["content"] = "x" * max(0, size - len(str(doc)) - 20)
    return cg.Request(path="/v1/messages", doc=doc,
                      headers={"anthropic-version": "2023-06-01"})


def kinds(n):
    return [("anthropic_1k", n, messages("claude-a-1", 1024)),
            ("bedrock_1k", n, messages("claude-b-1", 1024)),
            ("anthropic_100k", n, messages("claude-a-1", 100 * 1024)),
            ("bedrock_100k", n, messages("claude-b-1", 100 * 1024))]


def extra_with_files():
    # the files must exist before sluiced reads its config: write them
    # into a directory of our own and point @TMP@-free paths at it
    d = os.path.join("/tmp", "sluice-cloud-cost-%d" % os.getpid())
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "anthropic.key"), "w") as f:
        f.write("sk-ant-bench\n")
    with open(os.path.join(d, "aws-credentials"), "w") as f:
        f.write("[default]\naws_access_key_id = AKIDBENCH\n"
                "aws_secret_access_key = bench/secret/key\n")
    for name in ("anthropic.key", "aws-credentials"):
        os.chmod(os.path.join(d, name), 0o600)
    return d, EXTRA.replace("@TMP@", d)


def main():
    args = sys.argv[1:]
    build, n, repeat = os.path.join(TOP, "build"), 100, 5
    while args:
        a = args.pop(0)
        if a == "--build" and args:
            build = args.pop(0)
        elif a == "-n" and args:
            n = int(args.pop(0))
        elif a == "-t" and args:
            repeat = int(args.pop(0))
        else:
            sys.exit(__doc__)
    d, extra = extra_with_files()
    work = kinds(n)
    try:
        ir = cg.measure(build, work, extra=extra)
        cpu = {name: [] for name, _, _ in work}
        for _ in range(repeat):
            warm = [req for _, _, req in work for _ in range(ab.WARM)]
            got = cg.run(build, [[(k, req)] for _, k, req in work], warm,
                         ab.Cpu, conf=extra)
            for (name, k, _), c in zip(work, got):
                cpu[name].append(c["total"] / k / 1000.0)
    finally:
        for name in ("anthropic.key", "aws-credentials"):
            try:
                os.unlink(os.path.join(d, name))
            except OSError:
                pass
        os.rmdir(d)
    print("%-16s %14s %14s" % ("kind", "instructions", "CPU us (med)"))
    for name, _, _ in work:
        print("%-16s %14d %14.1f" % (name, round(ir[name]),
                                     statistics.median(cpu[name])))
    for size in ("1k", "100k"):
        a, b = "anthropic_" + size, "bedrock_" + size
        print("bedrock/anthropic %-5s instructions %.3f, CPU time %.3f" % (
            size, ir[b] / ir[a], statistics.median(cpu[b]) /
            statistics.median(cpu[a])))
    print("(one worker, %d requests a kind; instructions under callgrind, "
          "CPU time from /proc/PID/schedstat over %d runs)" % (n, repeat))


if __name__ == "__main__":
    main()
