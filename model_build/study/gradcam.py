"""Grad-CAM heatmaps of the image model, overlaid on the cropped scan, for right and wrong calls.

Grad-CAM (Selvaraju et al. 2017) weights the feature maps of a late convolutional layer by the
mean gradient of the sarcopenia logit and keeps the positive part: where in the scan the
features that pushed towards "sarcopenia" were. MONAI's :class:`monai.visualize.GradCAM` does
the computation; this module picks the layer for each backbone, keeps the model untouched and
draws the figure. The images are read and prepared exactly as for training
(:func:`model_build.models.data.load_images` and the bundle's preprocessor), so the heatmap is
over the very pixels the network saw.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import nn

from model_build.cohort import Cohort
from model_build.models import CLASSES, InputError
from model_build.models.bundle import load_bundle
from model_build.models.data import load_images, media_rows

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from sarco_core.preprocess import Preprocessor

GROUPS = {"TP": "True positive", "TN": "True negative", "FP": "False positive", "FN": "False negative"}
PREDICTION_COLUMNS = ("participant_id", "label", "probability", "threshold")

TARGET_LAYERS = (
    # EfficientNet-Lite0: the head convolution's batch norm, the last module before pooling. The
    # ReLU6 after it is the network's shared ``_swish``, also applied to the stem, so hooks there
    # would fire twice. Grad-CAM of the batch-normalised head differs from that of the head
    # convolution itself only by a constant per map (batch norm is per-channel affine in eval).
    "encoder.net._bn1",
    "encoder.features.norm5",  # MONAI DenseNet121: the last dense block's closing batch norm
    "encoder.net.layer4",      # MONAI ResNet18: the last residual stage
)


def target_layer(scorer: nn.Module) -> str:
    """The Grad-CAM layer of a known image backbone: the last spatial features before pooling."""
    names = {name for name, _ in scorer.named_modules()}
    for name in TARGET_LAYERS:
        if name in names:
            return name
    raise ValueError("no known image backbone in this model; fix: pass layer= with the name of its last "
                     "convolutional layer (see model.named_modules())")


def gradcam_maps(scorer: nn.Module, images: np.ndarray, target_class: int = 1,
                 layer: str | None = None) -> np.ndarray:
    """``(M, S, S)`` float32 Grad-CAM maps in [0, 1] (each scaled from its own minimum to its
    maximum; all zero where nothing favours the class) for normalised grey images ``(M, 1, S, S)``.

    ``scorer`` maps images to per-image logits (:meth:`FusionModel.image_scorer`);
    ``target_class`` 1 is sarcopenia (``model_build.models.CLASSES``). ``layer`` names the
    module to explain (default: :func:`target_layer`).

    MONAI's hooks are registered for good, switch the layer's ``inplace`` off and clear the
    gradients, so they are put on a throw-away copy: the caller's model keeps its parameters,
    ``requires_grad`` flags, gradients and hooks. On the copy only the layer's own parameters
    take gradients, which stops back-propagation there: nothing below the layer is needed, and
    it is several times faster on a CPU.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"images have shape {images.shape}; fix: pass normalised grey images shaped (M, 1, S, S)")
    layer = layer or target_layer(scorer)
    probe = copy.deepcopy(scorer).eval()
    modules = dict(probe.named_modules())
    if layer not in modules:
        raise ValueError(f"the model has no layer {layer!r}; fix: pass a name from model.named_modules()")
    if len(images) == 0:
        return np.zeros((0, *images.shape[2:]), np.float32)
    probe.requires_grad_(False)
    own = list(modules[layer].parameters())
    for parameter in own or probe.parameters():  # a parameter-free layer needs the whole graph
        parameter.requires_grad_(True)

    from monai.visualize import GradCAM

    cam = GradCAM(probe, target_layers=layer, postprocessing=_unit_range)
    device = next(probe.parameters()).device
    with warnings.catch_warnings(), torch.enable_grad():
        # Expected: the layer's input needs no gradient, so PyTorch fires the hook on its output.
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        maps = cam(torch.from_numpy(images).to(device), class_idx=target_class)
    return maps[:, 0].detach().cpu().numpy().astype(np.float32)


def _unit_range(maps: torch.Tensor) -> torch.Tensor:
    """Each map to [0, 1]. MONAI's default normaliser maps the maximum to 0 (it inverts)."""
    from monai.transforms.utils import rescale_array

    return torch.stack([rescale_array(one, 0.0, 1.0) for one in maps.detach()])


def pick_examples(predictions: pd.DataFrame, per_group: int = 2, seed: int = 0) -> pd.DataFrame:
    """Up to ``per_group`` participants of each of TP, TN, FP, FN, the most confident first.

    Confidence is the distance of the probability from the row's threshold (positive when
    ``probability >= threshold``); ``seed`` breaks ties only. Rows without a label are left out.
    Returns the chosen rows with a ``group`` column, in the order TP, TN, FP, FN.
    """
    if per_group < 1:
        raise InputError(f"per_group {per_group}; fix: show at least one participant per group")
    frame = _checked(predictions)
    truth, called = frame["label"].to_numpy() == 1, (frame["probability"] >= frame["threshold"]).to_numpy()
    group = np.select([truth & called, ~truth & ~called, ~truth & called], ["TP", "TN", "FP"], "FN")
    tie = np.random.default_rng(seed).permutation(len(frame))
    frame = frame.assign(group=group, confidence=(frame["probability"] - frame["threshold"]).abs(), tie=tie)
    frame = frame.sort_values(["confidence", "tie"], ascending=[False, True])
    chosen = frame.groupby("group", sort=False).head(per_group)
    order = {name: rank for rank, name in enumerate(GROUPS)}
    chosen = chosen.sort_values("group", key=lambda column: column.map(order), kind="stable")
    return chosen.drop(columns=["confidence", "tie"]).reset_index(drop=True)


def _checked(predictions: pd.DataFrame) -> pd.DataFrame:
    """The predictions with a 0/1 label (unlabelled rows dropped) and a probability and threshold
    for each labelled row; a bad value is named by its row (header = row 1, as in the CSV)."""
    missing = [column for column in PREDICTION_COLUMNS if column not in predictions.columns]
    if missing:
        raise InputError(f"predictions lack the column(s) {', '.join(missing)}; fix: give "
                         f"{', '.join(PREDICTION_COLUMNS)} (the threshold per row)")
    frame = predictions.loc[:, list(PREDICTION_COLUMNS)].reset_index(drop=True)
    frame["participant_id"] = frame["participant_id"].astype(str)
    repeated = frame["participant_id"][frame["participant_id"].duplicated()]
    if len(repeated):
        raise InputError(f"predictions row {repeated.index[0] + 2}: participant {repeated.iloc[0]} appears "
                         "twice; fix: one row per participant")
    labelled = frame["label"].notna()
    expected = {"label": ("0 or 1", lambda v: v.isin([0, 1])),
                "probability": ("a number in [0, 1]", lambda v: v.between(0.0, 1.0)),
                "threshold": ("a number", np.isfinite)}
    for column, (wanted, valid) in expected.items():
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = labelled & ~valid(values.astype(float))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InputError(f"predictions row {row + 2}, column {column}: '{frame[column].iloc[row]}' is not "
                             f"{wanted}; fix: predict every labelled participant")
        frame[column] = values
    return frame[labelled].astype({"label": int})


def gradcam_figure(bundle: Path, cohort: Cohort, predictions: pd.DataFrame, out: Path, per_group: int = 2,
                   seed: int = 0) -> Path | None:
    """A grid of Grad-CAM overlays (rows TP, TN, FP, FN; see :func:`pick_examples`) written
    atomically to ``out`` (format from its suffix); None when the model has no image branch.

    Each panel is the participant's first listed file the model can use (images.csv before
    videos.csv; a recording's middle frame), prepared as in training, with the map for the
    sarcopenia class over it. Only participants with such a file are candidates.
    """
    loaded = load_bundle(bundle)
    if "image" not in loaded.config.modalities:
        return None
    frame = _checked(predictions)
    unknown = sorted(set(frame["participant_id"]) - set(cohort.participants["participant_id"].astype(str)))
    if unknown:
        raise InputError(f"participant {unknown[0]} of the predictions is not in {cohort.root}; fix: pass the "
                         "cohort the predictions were made on")
    preprocessor = loaded.preprocessor
    with_image = _with_usable_image(cohort, frame["participant_id"].tolist(), preprocessor)
    chosen = pick_examples(frame[frame["participant_id"].isin(with_image)], per_group, seed)
    if chosen.empty:
        raise InputError(f"no labelled participant of the predictions has an image in {cohort.root} that the "
                         "model can use; fix: check images.csv / videos.csv")
    images = load_images(cohort, chosen["participant_id"].tolist(), preprocessor, frames_per_video=1)
    first = np.unique(images.owner, return_index=True)[1]  # each one's first file: loading keeps listing order
    prepared = images.pixels[first].astype(np.float32)
    maps = gradcam_maps(loaded.model.image_scorer(), preprocessor.normalise(prepared)[:, np.newaxis],
                        target_class=CLASSES.index("sarcopenia"))
    from model_build.stats.plots import save_figure

    return save_figure(_grid(chosen, prepared, maps, per_group), out, dpi=150)


def _with_usable_image(cohort: Cohort, participant_ids: list[str], preprocessor: Preprocessor) -> set[str]:
    """Who has a listed file the model can read: any, or one with a pixel size in physical mode
    (the rule of :func:`load_images`)."""
    physical = preprocessor.params.field_of_view_mm is not None
    return {pid for pid, rows in media_rows(cohort, participant_ids).items()
            if any(not physical or m.mm_per_pixel is not None or m.depth_mm is not None for m in rows)}


def _grid(chosen: pd.DataFrame, prepared: np.ndarray, maps: np.ndarray, per_group: int) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2.3 * per_group + 0.9, 2.5 * len(GROUPS)), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(GROUPS), per_group, squeeze=False)
    overlay = None
    for row, (group, name) in enumerate(GROUPS.items()):
        members = np.flatnonzero(chosen["group"].to_numpy() == group)
        for column, panel in enumerate(axes[row]):
            panel.set_xticks([])
            panel.set_yticks([])
            if column == 0:
                panel.set_ylabel(name, fontsize=10)
            if column >= len(members):
                for side in panel.spines.values():
                    side.set_visible(False)
                if column == 0:
                    panel.text(0.5, 0.5, f"no {name.lower()}s", ha="center", va="center", fontsize=9, color="0.4")
                continue
            index = members[column]
            example = chosen.iloc[index]
            panel.imshow(prepared[index], cmap="gray", vmin=0.0, vmax=1.0)
            overlay = panel.imshow(maps[index], cmap="jet", vmin=0.0, vmax=1.0, alpha=0.4)
            panel.set_title(f"{group} p={example['probability']:.2f}\n{example['participant_id']}", fontsize=9)
    if overlay is not None:
        figure.colorbar(overlay, ax=axes, shrink=0.5, label="Grad-CAM, sarcopenia (per image)")
    return figure
