"""The benchmark's table and its SUMMARY line, from the rows the cases return."""

from __future__ import annotations


def table(rows: list[dict]) -> str:
    """Markdown: timed cases (roofline: the fraction of the bytes-read floor), memory, KL."""
    lines = ["| case | janus-cli | peer | peer/janus | roofline | images/min |", "|---|---|---|---|---|---|"]
    for r in rows:
        if "janus_ms" in r:
            extra = (
                f"{r['roofline_fraction']:.0%} of {r['floor_ms']:.0f} ms | {r['images_per_s'] * 60:.2f}"
                if "roofline_fraction" in r
                else "| "
            )
            lines.append(
                f"| {r['case']} | {r['janus_ms']:.0f} ms | {r['peer_ms']:.0f} ms "
                f"| x{r['speedup']:.2f} | {extra} |"
            )
        elif "janus_gb" in r:
            lines.append(
                f"| {r['case']} | {r['janus_gb']:.2f} GB | {r['peer_gb']:.2f} GB "
                f"| x{1 / r['ratio']:.2f} | | |"
            )
        elif "rss_7b_gb" in r:
            lines.append(f"| {r['case']} | {r['rss_7b_gb']:.2f} GB | | | | |")
        elif "guided_kl_mean" in r:
            lines.append(
                f"| {r['case']} | guided KL {r['guided_kl_mean']:.2e} (p99 {r['guided_kl_p99']:.2e}, "
                f"top-1 {r['guided_top1']:.1%}) | conditional KL {r['conditional_kl_mean']:.2e} "
                f"(p99 {r['conditional_kl_p99']:.2e}, top-1 {r['conditional_top1']:.1%}) | | | |"
            )
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    def pick(**want) -> dict:
        return next(r for r in rows if all(r.get(k) == v for k, v in want.items()))

    step = dict(dtype="bfloat16", compiled=False, context=40)
    bf16 = {n: pick(**step, quantize="none", n=n) for n in (1, 4)}
    int8 = {n: pick(**step, quantize="int8", n=n) for n in (1, 4)}
    int4 = {n: pick(**step, quantize="int4", n=n) for n in (1, 4)}
    flow = [r for r in rows if r["case"].startswith("JanusFlow")][-1]  # the long prompt
    rss = next(r for r in rows if "janus_gb" in r)
    rss_7b = [r["rss_7b_gb"] for r in rows if r.get("quantize") == "int4" and "rss_7b_gb" in r]
    kl = [r["guided_kl_mean"] for r in rows if r.get("quantize") == "int4" and r.get("variant") == "random"]
    ratio = lambda a, b: a["janus_ms"] / b["janus_ms"]  # noqa: E731  (how many times faster b is)
    return (
        f"SUMMARY decode_speedup_n1={bf16[1]['speedup']:.2f} decode_speedup_n4={bf16[4]['speedup']:.2f} "
        f"int8_speedup_n4={int8[4]['speedup']:.2f} "
        f"bandwidth_fraction={bf16[1]['roofline_fraction']:.2f} "
        f"flow_prefix_speedup={flow['speedup']:.2f} peak_rss_ratio={rss['ratio']:.2f} "
        f"int4_vs_bf16_n1={ratio(bf16[1], int4[1]):.2f} int4_vs_int8_n1={ratio(int8[1], int4[1]):.2f} "
        f"int4_vs_bf16_n4={ratio(bf16[4], int4[4]):.2f} int8_vs_bf16_n4={ratio(bf16[4], int8[4]):.2f} "
        f"int4_floor_n1={int4[1]['roofline_fraction']:.2f} "
        f"rss_7b_int4_gb={rss_7b[0] if rss_7b else float('nan'):.2f} "
        f"int4_kl_mean={kl[0] if kl else float('nan'):.2e}"
    )
