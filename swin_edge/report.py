"""report.json -> report.md and a PNG latency/accuracy chart, every row against FP32."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import SwinEdgeError
from .utils import atomic_path, write_json_atomic, write_text_atomic


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _db(v: float | None) -> str:
    """An SQNR; an exact match is inf in memory and null in report.json (strict JSON)."""
    return "exact" if v is None or v == float("inf") else f"{v:.1f} dB"


def speedup_of(row: dict[str, Any], reference: dict[str, Any]) -> float:
    """Speedup against the reference: the median of per-round ratios from interleaved rounds
    when the report has them (reports before those: the ratio of the two p50s)."""
    s = row.get("speedup")
    if s:
        return float(s["median"])
    return reference["latency"]["p50_ms"] / row["latency"]["p50_ms"]


def render_markdown(report: dict[str, Any]) -> str:
    rows = report["results"]
    ref = rows[0]
    labeled = ref.get("accuracy") is not None
    env = report.get("environment", {})
    lines = [
        f"# swin_edge report: {report['model']['name']}",
        "",
        f"Input {report['model']['input_shape']}, evaluated on {report['data']['count']} images "
        f"from `{report['data']['source']}`"
        + (" (labeled)." if labeled else " (no labels: fidelity against FP32)."),
        "",
    ]
    head = [
        "model",
        "backend",
        "precision",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "img/s",
        "speedup",
        "size MB",
    ]
    head += ["top-1", "top-5"] if labeled else []
    head += ["top-1 agree", "top-5 overlap", "cosine", "SQNR dB"]
    lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        lat, fid, acc = r["latency"], r.get("fidelity"), r.get("accuracy")
        cells = [
            r["name"],
            r["backend"],
            r["precision"],
            _fmt(lat["p50_ms"], ".2f"),
            _fmt(lat["p90_ms"], ".2f"),
            _fmt(lat["p99_ms"], ".2f"),
            _fmt(lat["throughput"], ".1f"),
            f"{speedup_of(r, ref):.2f}x" + _spread(r),
            _fmt(r["size_mb"], ".1f"),
        ]
        if labeled:
            cells += [_fmt(acc["top1"], ".4f"), _fmt(acc["top5"], ".4f")]
        if fid:
            cells += [
                _fmt(fid["top1_agreement"], ".4f"),
                _fmt(fid["top5_overlap"], ".4f"),
                _fmt(fid["cosine"], ".5f"),
                _fmt(fid["sqnr_db"], ".1f"),
            ]
        else:
            cells += ["reference"] + ["-"] * 3
        lines.append("| " + " | ".join(cells) + " |")
    for r in (r for r in rows if r.get("outputs")):
        lines += ["", f"Fidelity of `{r['name']}` per output against FP32:", ""]
        lines += ["| output | shape | cosine | SQNR dB |", "| --- | --- | --- | --- |"]
        lines += [
            f"| {o['name']} | {tuple(o['shape'])} | {_fmt(o['cosine'], '.5f')} | "
            f"{_fmt(o['sqnr_db'], '.1f')} |"
            for o in r["outputs"]
        ]
    lines += _placement_lines(report.get("quantization"))
    worst = [r for r in rows if r.get("worst_layers")]
    for r in worst:
        lines += ["", f"Lowest per-layer SQNR in `{r['name']}`:", ""]
        lines += [f"- {name}: {_db(db)}" for name, db in r["worst_layers"]]
    rounds = (ref.get("speedup") or {}).get("rounds")
    lines += [
        "",
        "Latency: batch {}, {} warm-up runs then {} timed runs (p50/p90/p99){}.".format(
            ref["latency"]["batch_size"],
            ref["latency"]["warmup"],
            ref["latency"]["iterations"],
            f", in {rounds} interleaved rounds over all models; speedup = median of per-round "
            "p50 ratios to the first row (range in brackets)"
            if rounds
            else "",
        ),
    ]
    for r in rows:
        n = (r.get("runtime") or {}).get("lowered_gemms")
        if n:
            lines += [
                "",
                f"`{r['name']}` ran with {n} Q/DQ Gemms lowered to ONNX Runtime's "
                "MatMulIntegerToFloat (same arithmetic; `compare --no-lowering` runs the file "
                "as written).",
            ]
    lines += _selection_lines(report.get("runtime_selection"))
    lines += ["", "Environment: " + ", ".join(f"{k} {v}" for k, v in env.items())]
    if report.get("notes"):
        lines += [""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def _placement_lines(q: dict[str, Any] | None) -> list[str]:
    """Where Q/DQ went: GEMM/Conv layers quantized per op type, and every layer kept float
    with the reason."""
    if not q:
        return []
    counts = ", ".join(f"{n} {op}" for op, n in sorted(q.get("quantized_by_op", {}).items()))
    lines = ["", f"INT8 placement ({q.get('recipe', '?')} recipe): quantized {counts or 'none'}."]
    kept = q.get("kept_float") or {}
    if kept:
        lines += ["", "Kept float:", ""]
        for reason in dict.fromkeys(kept.values()):
            names = ", ".join(f"`{n}`" for n, r in kept.items() if r == reason)
            lines.append(f"- {names}: {reason}")
    return lines


def _selection_lines(sel: dict[str, Any] | None) -> list[str]:
    """The CPU runtime selection (``deploy.json``): every candidate against the chosen one."""
    if not sel:
        return []
    cpu, chosen = sel.get("cpu", {}), sel["chosen"]
    bench = sel.get("benchmark", {})
    lines = [
        "",
        f"CPU runtime selection on {cpu.get('model', '?')} (class `{cpu.get('class', '?')}`): "
        f"**{chosen['runtime']}/{chosen['variant']}/{chosen['threads']}t** deployed for "
        f"{sel['precision']} (`deploy.json`); {bench.get('rounds', '?')} interleaved rounds of "
        f"{bench.get('iterations', '?')} runs:",
        "",
        "| runtime | variant | threads | p50 ms (median of rounds) | latency vs chosen "
        "| SQNR vs FP32 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for c in sel.get("candidates", []):
        cand = c["candidate"] if "candidate" in c else c
        median = c.get("median_p50_ms")
        rel = c.get("latency_vs_chosen")
        f = c.get("fidelity") or {}
        sqnr = f.get("sqnr_db")
        fid = _db(sqnr) if sqnr is not None or f.get("exact") else "-"
        if c.get("rejected"):
            fid += f" (not deployed: {c['rejected']})"
        lines.append(
            f"| {cand['runtime']} | {cand['variant']} | {cand['threads']} | "
            f"{_fmt(median, '.2f') if median else c.get('error') or '-'} | "
            f"{_fmt(rel, '.2f') + 'x' if rel else '-'} | {fid} |"
        )
    if cpu.get("u8s8_saturates") and sel["precision"] == "int8":
        lines += [
            "",
            "This CPU has no VNNI/AMX: ONNX Runtime ran the 8-bit model with its exact u8u8 "
            "kernels (`session.x64quantprecision`), as swin_edge does on every such CPU; its "
            "default u8s8 kernels would sum pairs of products in saturating int16.",
        ]
        from .runtime_select import SEVEN_BIT

        variants = {(c.get("candidate") or c).get("variant") for c in sel.get("candidates", [])}
        if variants & set(SEVEN_BIT):
            lines[-1] += (
                " The `-7bit` variants are the same recipe with 7-bit GEMM inputs "
                "(`model.int8-cpu7.onnx`): they run the fast kernels, exact for them."
            )
    return lines


def _spread(row: dict[str, Any]) -> str:
    s = row.get("speedup")
    if not s or s.get("rounds", 1) < 2 or s["min"] == s["max"]:
        return ""
    return f" ({s['min']:.2f}-{s['max']:.2f})"


def render_chart(report: dict[str, Any], path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["results"]
    names = [r["name"] for r in rows]
    p50 = [r["latency"]["p50_ms"] for r in rows]
    err_hi = [r["latency"]["p99_ms"] - r["latency"]["p50_ms"] for r in rows]
    labeled = rows[0].get("accuracy") is not None
    if labeled:
        quality = [r["accuracy"]["top1"] * 100 for r in rows]
        qlabel = "top-1 accuracy (%)"
    else:
        logits = all((r.get("fidelity") or {}).get("top1_agreement") is not None for r in rows[1:])
        key = "top1_agreement" if logits else "cosine"
        quality = [100.0 if r.get("fidelity") is None else r["fidelity"][key] * 100 for r in rows]
        qlabel = "top-1 agreement with FP32 (%)" if logits else "cosine to FP32 x100 (worst output)"
    colors = [
        "#7f7f7f"
        if r["precision"] == "fp32"
        else "#1f77b4"
        if r["precision"] == "fp16"
        else "#d62728"
        for r in rows
    ]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 0.6 * len(rows) + 2.4))
    y = range(len(rows))
    ax1.barh(y, p50, xerr=[[0] * len(rows), err_hi], color=colors, capsize=3)
    for i, (v, e) in enumerate(zip(p50, err_hi, strict=True)):
        x = speedup_of(rows[i], rows[0])
        ax1.text(v + e, i, f"  {v:.1f} ms ({x:.2f}x)", va="center", fontsize=8)
    ax1.set_yticks(list(y), names)
    ax1.invert_yaxis()
    ax1.set_xlabel("latency p50 (ms), whisker to p99")
    ax1.set_xlim(0, max(p + e for p, e in zip(p50, err_hi, strict=True)) * 1.45)
    ax2.barh(y, quality, color=colors)
    for i, v in enumerate(quality):
        ax2.text(v, i, f" {v:.2f}", va="center", fontsize=8)
    ax2.set_yticks(list(y), [""] * len(rows))
    ax2.invert_yaxis()
    ax2.set_xlim(max(0.0, min(quality) - 10), 104)
    ax2.set_xlabel(qlabel)
    fig.suptitle(f"{report['model']['name']}: every precision/backend vs FP32")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)


def write_report(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    out = Path(out_dir)
    paths = {"json": out / "report.json", "md": out / "report.md", "png": out / "report.png"}
    write_json_atomic(paths["json"], report)
    write_text_atomic(paths["md"], render_markdown(report))
    render_chart(report, paths["png"])
    return paths


def load_report(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        report = json.loads(path.read_text())
        report["results"][0]["latency"]["p50_ms"]  # noqa: B018 - shape check
    except FileNotFoundError:
        raise SwinEdgeError(f"'{path}' does not exist; run `python -m swin_edge build`") from None
    except (ValueError, KeyError, IndexError, TypeError):
        raise SwinEdgeError(
            f"'{path}' is not a swin_edge report.json; regenerate it with "
            "`python -m swin_edge build`"
        ) from None
    return report
