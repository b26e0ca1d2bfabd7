"""verify.html: the gate's verdict, a table per cohort and three plots (INT8 vs float probability
per participant, ROC curves of both, the layers that quantization hurt most), one self-contained
file with the figures embedded as PNG. Paths are cited relative to the page's own folder, so they
still lead to the bundles and the cohort when the folder holding them all is renamed or moved
(`sarco study` writes into RUN.partial and renames it to RUN at the end)."""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path

import numpy as np

from model_build.calibration.verify import Verification
from sarco_core.files import atomic_write


def write_html(result: Verification, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    verdict = "ACCEPTED" if result.accepted else "REJECTED"
    float_bundle, int8_bundle, cohort = (_relative(target, path.parent) for target in
                                         (result.float_bundle, result.int8_bundle, result.cohort_path))
    colour = "#1b7f3b" if result.accepted else "#b00020"
    parts = [f"<h1>INT8 accuracy gate: <span style='color:{colour}'>{verdict}</span></h1>",
             f"<p>Float <code>{_e(float_bundle)}</code> vs INT8 <code>{_e(int8_bundle)}</code> "
             f"({_e(result.quantization.get('target'))}, {_e(result.quantization.get('method'))}) on "
             f"<code>{_e(cohort)}</code> (paths relative to this page's folder). Threshold {result.threshold:.4f}; "
             f"limits: AUC drop &le; {result.limits.max_auc_drop}, flip rate not significantly above "
             f"{result.limits.max_flip_rate:.1%} ({result.limits.flip_confidence:.0%} one-sided exact binomial "
             "test).</p>"]
    failures = [f"{c.name}: {reason}" for c in result.cohorts for reason in c.failures]
    if failures:
        parts.append("<ul>" + "".join(f"<li>{_e(f)}</li>" for f in failures) + "</ul>")
    parts += [_cohort_table(result), _figure(_probability_plot(result)), _figure(_roc_plot(result)),
              "<h2>Layers that quantization hurt most</h2>", _layer_table(result), _figure(_layer_plot(result)),
              "<h2>Size and CPU latency</h2>", _footprint_table(result)]
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>INT8 gate</title><style>"
            "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#eee}"
            "</style></head><body>" + "\n".join(parts) + "</body></html>\n")
    atomic_write(path, page)


def _relative(target: Path, folder: Path) -> str:
    return os.path.relpath(Path(target).resolve(), Path(folder).resolve())


def _e(value: object) -> str:
    return html.escape(str(value))


def _number(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _cohort_table(result: Verification) -> str:
    header = ("<tr><th>cohort</th><th>n (pos)</th><th>frames</th><th>AUC float</th><th>AUC INT8</th><th>drop</th>"
              "<th>DeLong p</th><th>sens float / INT8</th><th>spec float / INT8</th><th>flips</th>"
              "<th>frame flips</th><th>max |&Delta;p|</th><th>pass</th></tr>")
    rows = []
    for c in result.cohorts:
        rows.append(f"<tr><td>{_e(c.name)}</td><td>{c.n} ({c.n_positive})</td><td>{c.frames}</td>"
                    f"<td>{_number(c.auc_float)}</td><td>{_number(c.auc_int8)}</td><td>{_number(c.auc_drop)}</td>"
                    f"<td>{_number(c.p, 3)}</td>"
                    f"<td>{_number(c.sensitivity_float, 3)} / {_number(c.sensitivity_int8, 3)}</td>"
                    f"<td>{_number(c.specificity_float, 3)} / {_number(c.specificity_int8, 3)}</td>"
                    f"<td>{c.flips} ({c.flip_rate:.1%})</td><td>{c.frame_flip_rate:.1%}</td>"
                    f"<td>{c.max_probability_change:.4f}</td><td>{'yes' if c.passed else 'NO'}</td></tr>")
    return "<table>" + header + "".join(rows) + "</table>"


def _layer_table(result: Verification) -> str:
    rows = "".join(f"<tr><td style='text-align:left'>{_e(e.node)}</td><td>{_e(e.op_type)}</td>"
                   f"<td>{'yes' if e.quantized else 'no'}</td><td>{e.added_error:.4f}</td>"
                   f"<td>{e.relative_error:.4f}</td></tr>" for e in result.layers)
    return ("<table><tr><th>node</th><th>op</th><th>INT8</th><th>added rel. error</th><th>rel. error</th></tr>"
            + rows + "</table>")


def _footprint_table(result: Verification) -> str:
    rows = "".join(f"<tr><td>{f.name}</td><td>{f.megabytes:.2f}</td><td>{f.latency_ms_median:.2f}</td>"
                   f"<td>{f.latency_ms_p90:.2f}</td><td>{f.threads}</td></tr>" for f in result.footprint)
    return ("<table><tr><th>graph</th><th>MB</th><th>median ms</th><th>p90 ms</th><th>threads</th></tr>" + rows
            + "</table><p>One frame per run, ONNX Runtime CPU on this machine. INT8 Q/DQ graphs are often slower "
              "here than float; the gain is on TensorRT.</p>")


def _probability_plot(result: Verification):
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(result.cohorts), figsize=(4 * len(result.cohorts), 4), squeeze=False)
    for ax, c in zip(axes[0], result.cohorts):
        flipped = (c.probability_float >= result.threshold) != (c.probability_int8 >= result.threshold)
        for label, marker in ((0, "o"), (1, "^")):
            chosen = c.labels == label
            ax.scatter(c.probability_float[chosen & ~flipped], c.probability_int8[chosen & ~flipped], s=14,
                       marker=marker, alpha=0.7, label=f"label {label}")
            ax.scatter(c.probability_float[chosen & flipped], c.probability_int8[chosen & flipped], s=40,
                       marker=marker, color="red")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
        ax.axvline(result.threshold, color="grey", ls=":")
        ax.axhline(result.threshold, color="grey", ls=":")
        ax.set(title=f"{c.name} ({c.flips} flip{'' if c.flips == 1 else 's'}, red)", xlabel="P float",
               ylabel="P INT8", xlim=(0, 1), ylim=(0, 1))
        ax.legend(loc="upper left", fontsize=7)
    return figure


def _roc_plot(result: Verification):
    import matplotlib.pyplot as plt

    from model_build.stats import roc_curve

    usable = [c for c in result.cohorts if c.auc_float is not None]
    figure, axes = plt.subplots(1, max(1, len(usable)), figsize=(4 * max(1, len(usable)), 4), squeeze=False)
    for ax, c in zip(axes[0], usable):
        for name, scores, style in (("float", c.probability_float, "-"), ("INT8", c.probability_int8, "--")):
            curve = roc_curve(c.labels, scores)
            auc = c.auc_float if name == "float" else c.auc_int8
            ax.plot(1 - curve.specificity, curve.sensitivity, style, label=f"{name} AUC {auc:.3f}")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
        ax.set(title=c.name, xlabel="1 - specificity", ylabel="sensitivity")
        ax.legend(loc="lower right", fontsize=8)
    return figure


def _layer_plot(result: Verification):
    import matplotlib.pyplot as plt

    layers = result.layers[::-1]
    figure, ax = plt.subplots(figsize=(9, 0.35 * len(layers) + 1.2))
    positions = np.arange(len(layers))
    ax.barh(positions, [e.relative_error for e in layers], color="#cfd8dc", label="relative error (accumulated)")
    ax.barh(positions, [e.added_error for e in layers], color="#d84315", label="added by the layer")
    ax.set_yticks(positions, [e.node[-45:] for e in layers], fontsize=7)
    ax.set_xlabel("RMS(INT8 - float) / RMS(float) of the layer output")
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def _figure(figure) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return f"<p><img alt='plot' src='data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}'></p>"
