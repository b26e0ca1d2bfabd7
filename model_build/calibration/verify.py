"""`sarco-calibrate verify BUNDLE BUNDLE_INT8 COHORT`: does the INT8 model agree with the float one?

Both graphs run in ONNX Runtime on the CPU on the development hold-out and on every other cohort
of COHORT; the INT8 graph of the cpu target with ONNX Runtime's fused integer kernels (what that
device runs), a TensorRT graph by reference Q/DQ arithmetic (model_build.calibration.onnx_run). Each
participant's inputs (still images prepared as in training; from each recording, up to
``video_frames`` frames that pass the device's quality gate, cropped and prepared as the device
does) are pooled as the mean of their logits, read out as the device does, and called positive
at the bundle's frozen threshold. Per cohort:

- AUC of each model and the paired DeLong test of the difference (model_build.stats);
- sensitivity and specificity of each at the frozen threshold;
- decisions that flip (participants whose call differs), and frames that flip;

plus the layers whose quantization added most error. The gate rejects when, in any cohort,
AUC(float) - AUC(INT8) > ``max_auc_drop`` (0.005) or the flip rate is significantly above
``max_flip_rate`` (2 %): a one-sided exact binomial test of H0 "the INT8 model flips at most
``max_flip_rate`` of the decisions" at ``flip_confidence`` (95 %), i.e. the one-sided
Clopper-Pearson lower bound of the flip rate lies above the limit. Comparing the observed rate
with the limit instead would, on the 82 participants of a proof-of-concept cohort, allow one flip
and reject a model that flips exactly 2 % of decisions half of the time (docs/calibration.md).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from model_build.calibration import CalibrationError
from model_build.calibration.bundles import SourceBundle
from model_build.calibration.cohorts import Group, evaluation_groups
from model_build.calibration.footprint import Footprint, compare
from model_build.calibration.frames import DECODE_WORKERS, passing_inputs, read_still
from model_build.calibration.onnx_run import logits, runs_fused
from model_build.calibration.sensitivity import LayerError, layer_errors, worst_layers
from model_build.cohort import Cohort
from sarco_core.bundle import GATE_ACCEPTED, GATE_REJECTED, record_gate
from sarco_core.files import write_json
from sarco_core.readout import ProbabilityReadout

LAYER_SAMPLE = 64
REPORTED_LAYERS = 10


@dataclass(frozen=True)
class GateLimits:
    max_auc_drop: float = 0.005
    max_flip_rate: float = 0.02
    flip_confidence: float = 0.95

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_auc_drop < 1.0 or not 0.0 <= self.max_flip_rate < 1.0:
            raise CalibrationError("--max-auc-drop and --max-flip-rate must lie in [0, 1)")
        if not 0.5 <= self.flip_confidence < 1.0:
            raise CalibrationError(f"--flip-confidence {self.flip_confidence}: must lie in [0.5, 1) (0.95: reject "
                                   "when the flip rate is above --max-flip-rate at 95% confidence)")


@dataclass(frozen=True)
class FlipTest:
    """Is the share of flipped decisions significantly above the limit? One-sided exact binomial
    test of H0: rate <= ``limit``; rejected when p < 1 - ``confidence``, which is the same as the
    one-sided Clopper-Pearson lower bound at ``confidence`` lying above ``limit``."""

    flips: int
    n: int
    limit: float
    confidence: float
    p: float  # P(at least ``flips`` of ``n`` flip | each flips with probability ``limit``)
    lower_bound: float  # the flip rate is at least this, at ``confidence``
    allowed: int  # the most flips that ``n`` participants may show and pass

    @classmethod
    def run(cls, flips: int, n: int, limit: float, confidence: float) -> FlipTest:
        from scipy.stats import binom, binomtest

        test = binomtest(flips, n, limit, alternative="greater")
        tails = binom.sf(np.arange(n + 1) - 1, n, limit)  # P(X >= k) for k = 0..n, decreasing
        return cls(flips=flips, n=n, limit=limit, confidence=confidence, p=float(test.pvalue),
                   lower_bound=float(test.proportion_ci(confidence, method="exact").low),
                   allowed=int(np.count_nonzero(tails >= 1.0 - confidence)) - 1)

    @property
    def significant(self) -> bool:
        return self.p < 1.0 - self.confidence


@dataclass
class CohortComparison:
    """Float vs INT8 on one group of participants (arrays kept for the plots, not serialised)."""

    name: str
    n: int
    n_positive: int
    frames: int
    auc_float: float | None
    auc_int8: float | None
    p: float | None
    auc_difference_ci: list[float] | None
    sensitivity_float: float | None
    sensitivity_int8: float | None
    specificity_float: float | None
    specificity_int8: float | None
    flips: int
    flip_rate: float
    flip_p: float  # FlipTest.p
    flip_rate_lower: float  # FlipTest.lower_bound
    flips_allowed: int  # FlipTest.allowed
    frame_flip_rate: float
    max_probability_change: float
    failures: list[str] = field(default_factory=list)
    files_without_input: list[str] = field(default_factory=list)
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    probability_float: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    probability_int8: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    @property
    def auc_drop(self) -> float | None:
        return None if self.auc_float is None or self.auc_int8 is None else self.auc_float - self.auc_int8

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        hidden = {"labels", "probability_float", "probability_int8"}
        return {**{k: v for k, v in asdict(self).items() if k not in hidden}, "auc_drop": self.auc_drop,
                "sensitivity_change": _change(self.sensitivity_float, self.sensitivity_int8),
                "specificity_change": _change(self.specificity_float, self.specificity_int8),
                "passed": self.passed}


def _change(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


@dataclass
class Verification:
    accepted: bool
    limits: GateLimits
    threshold: float
    cohorts: list[CohortComparison]
    layers: list[LayerError]
    footprint: list[Footprint]
    float_bundle: Path
    int8_bundle: Path
    cohort_path: Path
    quantization: dict

    def to_dict(self) -> dict:
        return {
            "accepted": self.accepted, "limits": asdict(self.limits), "threshold": self.threshold,
            "float_bundle": str(self.float_bundle), "int8_bundle": str(self.int8_bundle),
            "cohort": str(self.cohort_path),
            "quantization": {k: self.quantization.get(k) for k in ("target", "method", "high_precision",
                                                                   "excluded_nodes", "calibration")},
            "cohorts": {c.name: c.to_dict() for c in self.cohorts},
            "failures": [f"{c.name}: {reason}" for c in self.cohorts for reason in c.failures],
            "worst_layers": [e.to_dict() for e in self.layers],
            "footprint": {f.name: f.to_dict() for f in self.footprint},
        }


def verify(source: SourceBundle, quantized: SourceBundle, cohort: Cohort, limits: GateLimits,
           on_step: Callable[[str], None] = lambda _: None, latency_runs: int = 30,
           video_frames: int | None = 8) -> Verification:
    """Compare the graphs on every group; nothing is written (see :func:`record`). ``video_frames``
    None reads the inputs as the bundle's own predictions do (:func:`bundle_inputs`), so the float
    AUC is the model's."""
    if quantized.quantization.get("target") == "tensorrt-cache":
        raise CalibrationError(f"{quantized.path}: a TensorRT 8.x calibration cache cannot run on this CPU, so the "
                               "gate cannot check it here; verify the engine on the device (docs/calibration.md)")
    readout = ProbabilityReadout(source.device.readout)
    comparisons, samples = [], []
    for group in evaluation_groups(source, cohort):
        on_step(f"{group.name}: reading {len(group.rows)} participants' images")
        pixels, owner, skipped = (bundle_inputs(source, cohort, group) if video_frames is None
                                  else _frames(source, cohort, group, video_frames))
        if len(pixels) == 0:
            on_step(f"{group.name}: no images, skipped")
            continue
        on_step(f"{group.name}: running float and INT8 on {len(pixels)} frames")
        float_logits = logits(source.onnx_path, pixels)
        int8_logits = logits(quantized.onnx_path, pixels, optimized=runs_fused(quantized.quantization["target"]))
        comparisons.append(_compare(group, owner, float_logits, int8_logits, readout, source.device.threshold,
                                    limits, skipped))
        samples.append(pixels[np.linspace(0, len(pixels) - 1, min(len(pixels), LAYER_SAMPLE // 2)).astype(int)])
    if not comparisons:
        raise CalibrationError(f"{cohort.root}: no labelled participant with images in any cohort; nothing to verify")
    on_step("per-layer error")
    errors = layer_errors(source.onnx_path, quantized.onnx_path, np.concatenate(samples)[:LAYER_SAMPLE])
    on_step("size and CPU latency")
    footprint = compare(source.onnx_path, quantized.onnx_path, runs=latency_runs)
    return Verification(accepted=all(c.passed for c in comparisons), limits=limits,
                        threshold=source.device.threshold, cohorts=comparisons,
                        layers=worst_layers(errors, REPORTED_LAYERS), footprint=footprint,
                        float_bundle=source.path, int8_bundle=quantized.path, cohort_path=cohort.root,
                        quantization=quantized.quantization)


def bundle_inputs(source: SourceBundle, cohort: Cohort, group: Group) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Network inputs (M, 1, S, S), owners and files left out, read exactly as training and ``sarco
    evaluate`` read them (:func:`model_build.models.data.load_images`, the bundle's frames per
    recording, no quality gate): what the study's AUCs were computed on."""
    from model_build.models.data import load_images
    from sarco_core.preprocess import Preprocessor

    preprocessor = Preprocessor(source.device.preprocess)
    images = load_images(cohort, group.rows["participant_id"].tolist(), preprocessor, source.frames_per_video)
    return preprocessor.normalise(images.pixels.astype(np.float32))[:, np.newaxis], images.owner, images.skipped


def _frames(source: SourceBundle, cohort: Cohort, group: Group, video_frames: int) -> tuple[np.ndarray, np.ndarray,
                                                                                         list[str]]:
    """Network inputs (M, 1, S, S) of the group's participants, the row of each one's owner, and
    the files that gave no input. Stills as in training; recordings as on the device: up to
    ``video_frames`` frames that pass the quality gate, spread over the recording."""
    from concurrent.futures import ThreadPoolExecutor

    from model_build.models.data import media_rows
    from sarco_core.preprocess import PreprocessError, Preprocessor

    params = source.device.preprocess
    listed = media_rows(cohort, group.rows["participant_id"].tolist())
    jobs = [(row, media) for row, pid in enumerate(group.rows["participant_id"]) for media in listed[pid]]

    def inputs_of(job) -> tuple[int, list[np.ndarray], str | None]:
        row, media = job
        where = f"{media.listing} row {media.row} ({media.path.name})"
        try:
            if media.listing == "images.csv":
                return row, [Preprocessor(params)(read_still(media), media.mm_per_pixel, media.depth_mm)], None
            passing = passing_inputs(media, params)
        except PreprocessError as error:
            return row, [], f"{where}: {error}"
        except (OSError, ValueError) as error:
            raise CalibrationError(f"{where}: cannot be read ({error}); fix: run `sarco validate` on the cohort") \
                from None
        if not passing:
            return row, [], f"{where}: no frame passes the quality gate"
        chosen = np.unique(np.linspace(0, len(passing) - 1, min(len(passing), video_frames)).round().astype(int))
        return row, [passing[i][1] for i in chosen], None

    pixels, owner, skipped = [], [], []
    with ThreadPoolExecutor(max_workers=DECODE_WORKERS) as pool:
        for row, inputs, problem in pool.map(inputs_of, jobs):
            pixels += inputs
            owner += [row] * len(inputs)
            if problem:
                skipped.append(problem)
    size = params.size
    stacked = np.stack(pixels).astype(np.float32) if pixels else np.zeros((0, 1, size, size), np.float32)
    return stacked, np.asarray(owner, dtype=np.int64), skipped


def _compare(group: Group, owner: np.ndarray, float_logits: np.ndarray, int8_logits: np.ndarray,
             readout: ProbabilityReadout, threshold: float, limits: GateLimits, skipped: list[str]) -> CohortComparison:
    from model_build.stats import StatsInputError, compare_auc, roc_auc

    participants = np.unique(owner)  # rows of group.rows that have at least one frame
    labels = group.rows["label"].astype(int).to_numpy()[participants]
    pooled = [np.stack([values[owner == row].mean(axis=0) for row in participants])
              for values in (float_logits, int8_logits)]
    p_float, p_int8 = (readout.probability(values) for values in pooled)
    called_float, called_int8 = p_float >= threshold, p_int8 >= threshold
    frame_flips = (readout.probability(float_logits) >= threshold) != (readout.probability(int8_logits) >= threshold)
    auc_float = auc_int8 = p = ci = None
    if 0 < labels.sum() < len(labels):
        auc_float, auc_int8 = roc_auc(labels, p_float), roc_auc(labels, p_int8)
        try:
            test = compare_auc(labels, p_float, p_int8, paired=True)
            p, ci = test.p, [test.lower, test.upper]
        except StatsInputError:  # fewer than two of a class: AUCs without a test
            pass
    flips = int(np.sum(called_float != called_int8))
    flip_test = FlipTest.run(flips, len(labels), limits.max_flip_rate, limits.flip_confidence)
    comparison = CohortComparison(
        name=group.name, n=len(labels), n_positive=int(labels.sum()), frames=len(owner),
        auc_float=auc_float, auc_int8=auc_int8, p=p, auc_difference_ci=ci,
        sensitivity_float=_rate(called_float, labels == 1), sensitivity_int8=_rate(called_int8, labels == 1),
        specificity_float=_rate(~called_float, labels == 0), specificity_int8=_rate(~called_int8, labels == 0),
        flips=flips, flip_rate=flips / len(labels), flip_p=flip_test.p, flip_rate_lower=flip_test.lower_bound,
        flips_allowed=flip_test.allowed, frame_flip_rate=float(np.mean(frame_flips)),
        max_probability_change=float(np.max(np.abs(p_int8 - p_float))), files_without_input=skipped,
        labels=labels, probability_float=p_float, probability_int8=p_int8)
    if comparison.auc_drop is not None and comparison.auc_drop > limits.max_auc_drop:
        comparison.failures.append(f"AUC drops by {comparison.auc_drop:.4f} (> {limits.max_auc_drop})")
    if flip_test.significant:
        comparison.failures.append(
            f"{flips} of {len(labels)} decisions flip ({comparison.flip_rate:.1%}): above {limits.max_flip_rate:.1%} "
            f"at {limits.flip_confidence * 100:g}% confidence (rate >= {flip_test.lower_bound:.1%}, one-sided binomial "
            f"p = {flip_test.p:.2g}; of {len(labels)} participants at most {flip_test.allowed} may flip)")
    return comparison


def _rate(called: np.ndarray, members: np.ndarray) -> float | None:
    return float(np.mean(called[members])) if members.any() else None


def record(result: Verification, out: Path | None) -> None:
    """Mark the INT8 bundle accepted or rejected; with ``out``, write verify.json and verify.html."""
    summary = result.to_dict()
    record_gate(result.int8_bundle, {
        "status": GATE_ACCEPTED if result.accepted else GATE_REJECTED,
        "checked_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cohort": str(result.cohort_path), "limits": summary["limits"], "failures": summary["failures"],
        "cohorts": {name: {k: c[k] for k in ("n", "auc_float", "auc_int8", "p", "flips", "flip_rate", "flip_p",
                                             "flip_rate_lower", "flips_allowed")}
                    for name, c in summary["cohorts"].items()},
    })
    if out is not None:
        from model_build.calibration.report import write_html

        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "verify.json", summary)
        write_html(result, out / "verify.html")
