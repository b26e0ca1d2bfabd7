"""One network for any subset of modalities (image, clinical, lab) and three ways to fuse them.

Every modality has an encoder and its own two-class head, so every fusion trains every modality
to predict on its own (which is what lets the image branch alone be deployed on the device):

- ``evidential`` (default): each head's output is Dirichlet evidence; opinions are fused by the
  reduced Dempster rule (:mod:`model_build.models.evidential`); a missing modality is vacuous.
- ``concat``: the encoders' features (zeros where missing) and the presence flags go through
  one more head.
- ``late``: a logistic regression stacked on the heads' log-odds, fitted on held-out rows.

Several images of a participant are pooled as the mean of their logits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model_build.models import FUSIONS, MODALITIES, evidential
from model_build.models.image import EnsembleEncoder, FlipAveraged, build_image_encoder, freeze_early_layers
from model_build.models.tabular import TabularMLP


@dataclass
class NetworkConfig:
    """Everything needed to rebuild the network; stored in the bundle's config.json."""

    modalities: list[str]
    fusion: str = "evidential"
    backbone: str = "efficientnet-lite0"
    image_size: int = 128
    freeze_blocks: int = 0
    tabular_inputs: dict[str, int] = field(default_factory=dict)
    tabular_width: int = 32
    dropout: float = 0.2
    image_members: int = 1  # an ensemble of image encoders and heads (mean of their logits)
    flip_average: bool = False  # each image encoder averages the image and its mirror at inference

    def __post_init__(self) -> None:
        if self.image_members < 1:
            raise ValueError(f"image_members {self.image_members}; fix: use 1 or more")
        unknown = [m for m in self.modalities if m not in MODALITIES]
        if unknown or not self.modalities:
            raise ValueError(f"modalities {self.modalities!r}; fix: choose from {', '.join(MODALITIES)}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion {self.fusion!r}; fix: use one of {', '.join(FUSIONS)}")
        self.modalities = [m for m in MODALITIES if m in self.modalities]  # canonical order

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ModelBatch:
    """A batch of participants as the network takes it. ``image_owner[i]`` is the row of the participant of image i."""

    present: torch.Tensor                       # (N, V) bool, V = len(config.modalities)
    images: torch.Tensor | None = None          # (M, 1, H, W)
    image_owner: torch.Tensor | None = None     # (M,) long
    tables: dict[str, torch.Tensor] = field(default_factory=dict)  # modality -> (N, D)

    def to(self, device: torch.device) -> ModelBatch:
        move = (lambda t: None if t is None else t.to(device, non_blocking=True))
        return ModelBatch(move(self.present), move(self.images), move(self.image_owner),
                     {k: v.to(device) for k, v in self.tables.items()})


@dataclass
class Outputs:
    logits: torch.Tensor              # (N, V, 2): each modality's head
    fused_logits: torch.Tensor | None  # (N, 2): concat fusion only


class ImageScorer(nn.Module):
    """The deployable part: normalised grey images ``(M, 1, H, W)`` -> per-image logits ``(M, 2)``."""

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(images))


class FusionModel(nn.Module):
    def __init__(self, config: NetworkConfig, pretrained: bool = True, image_weights=None) -> None:
        super().__init__()
        self.config = config
        self.encoders = nn.ModuleDict()
        self.heads = nn.ModuleDict()
        for modality in config.modalities:
            if modality == "image":
                members = [build_image_encoder(config.backbone, config.image_size, pretrained, image_weights)
                           for _ in range(config.image_members)]
                for member in members:
                    freeze_early_layers(member, config.freeze_blocks)
                if config.flip_average:
                    members = [FlipAveraged(member, config.image_size) for member in members]
                encoder = members[0] if len(members) == 1 else EnsembleEncoder(members)
            else:
                encoder = TabularMLP(config.tabular_inputs[modality], config.tabular_width, config.dropout)
            self.encoders[modality] = encoder
            self.heads[modality] = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(encoder.out_features, 2))
        self.fused_head = None
        if config.fusion == "concat":
            width = sum(e.out_features for e in self.encoders.values()) + len(config.modalities)
            self.fused_head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(width, 2))

    def image_scorer(self) -> ImageScorer:
        return ImageScorer(self.encoders["image"], self.heads["image"])

    def forward(self, batch: ModelBatch) -> Outputs:
        rows = batch.present.shape[0]
        features, logits = [], []
        for view, modality in enumerate(self.config.modalities):
            encoder, head = self.encoders[modality], self.heads[modality]
            if modality in batch.tables:  # clinical, lab, or a frozen image branch's features
                feature = encoder(batch.tables[modality])
            elif batch.images is None or batch.images.shape[0] == 0:  # no participant here has one
                feature = batch.present.new_zeros((rows, encoder.out_features), dtype=torch.float32)
            else:
                # Pooling features before the linear head is the mean of the per-image logits
                # (exactly so at inference, where dropout is off): what the device computes.
                feature = _participant_mean(encoder(batch.images), batch.image_owner, rows)
            logit = head(feature)
            mask = batch.present[:, view:view + 1].to(feature.dtype)
            features.append(feature * mask)
            logits.append(logit * mask)
        fused = None
        if self.fused_head is not None:
            fused = self.fused_head(torch.cat(features + [batch.present.to(features[0].dtype)], dim=1))
        return Outputs(torch.stack(logits, dim=1), fused)


def _participant_mean(values: torch.Tensor, owner: torch.Tensor, rows: int) -> torch.Tensor:
    total = values.new_zeros((rows, values.shape[1])).index_add_(0, owner, values)
    count = values.new_zeros(rows).index_add_(0, owner, values.new_ones(owner.shape[0]))
    return total / count.clamp_min(1.0).unsqueeze(1)


def training_loss(outputs: Outputs, target: torch.Tensor, present: torch.Tensor, fusion: str,
                  sample_weight: torch.Tensor, kl_weight: float) -> torch.Tensor:
    """Loss on every present modality's head plus, where fusion has one, the fused output.

    ``sample_weight`` balances the classes; each term is a weighted mean over the rows where
    it is defined, so a rarely present modality is not drowned by a common one.
    """
    logits = outputs.logits.float()
    terms = []
    for view in range(logits.shape[1]):
        per_row = _per_row_loss(logits[:, view], target, fusion, kl_weight)
        terms.append(_weighted_mean(per_row, sample_weight * present[:, view]))
    if fusion == "evidential":
        fused = evidential.combine(evidential.evidence_from_logits(logits), present)
        terms.append(_weighted_mean(evidential.evidential_loss(fused, target, kl_weight), sample_weight))
    elif fusion == "concat":
        per_row = F.cross_entropy(outputs.fused_logits.float(), target, reduction="none")
        terms.append(_weighted_mean(per_row, sample_weight))
    return torch.stack(terms).sum()


def _per_row_loss(logits: torch.Tensor, target: torch.Tensor, fusion: str, kl_weight: float) -> torch.Tensor:
    if fusion == "evidential":
        return evidential.evidential_loss(evidential.evidence_from_logits(logits), target, kl_weight)
    return F.cross_entropy(logits, target, reduction="none")


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (values * weights).sum() / weights.sum().clamp_min(1e-12)


@dataclass
class FusionOutput:
    """Per participant: P(sarcopenia), uncertainty and each modality's evidence share."""

    probability: np.ndarray            # (N,)
    uncertainty: np.ndarray            # (N,), NaN unless evidential
    contributions: np.ndarray          # (N, V, 2), NaN unless evidential


@dataclass
class Stacker:
    """``late`` fusion: logistic regression on each modality's log-odds (0 where missing)."""

    coef: list[float]
    intercept: float

    @classmethod
    def fit(cls, logits: np.ndarray, present: np.ndarray, labels: np.ndarray) -> Stacker:
        """Fitted on held-out participants' head logits ``(N, V, 2)``: a stacker fitted on the rows
        the heads trained on would learn how overconfident they are there, not elsewhere."""
        from sklearn.linear_model import LogisticRegression

        fitted = LogisticRegression(C=1.0, class_weight="balanced").fit(_log_odds(logits, present), labels)
        return cls(coef=[float(c) for c in fitted.coef_[0]], intercept=float(fitted.intercept_[0]))

    def probability(self, logits: np.ndarray, present: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(_log_odds(logits, present) @ np.asarray(self.coef) + self.intercept)))


def _log_odds(logits: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Each head's log-odds of sarcopenia, 0 for a missing modality (no evidence either way)."""
    return (logits[:, :, 1] - logits[:, :, 0]) * present


def fuse_outputs(outputs: Outputs, present: torch.Tensor, fusion: str, stacker: Stacker | None = None) -> FusionOutput:
    """Turn network outputs into the numbers a clinician and the evaluation see."""
    logits = outputs.logits.detach().float()
    rows, views = logits.shape[:2]
    nan = np.full(rows, np.nan)
    if fusion == "evidential":
        evidence = evidential.evidence_from_logits(logits)
        fused = evidential.combine(evidence, present)
        _, uncertainty = evidential.opinion(fused)
        return FusionOutput(evidential.expected_probability(fused)[:, 1].numpy(), uncertainty[:, 0].numpy(),
                            evidential.contributions(evidence, present).numpy())
    empty = np.full((rows, views, 2), np.nan)
    if fusion == "concat":
        return FusionOutput(torch.softmax(outputs.fused_logits.detach().float(), dim=1)[:, 1].numpy(), nan, empty)
    present_np = present.numpy().astype(float)
    if stacker is not None:
        return FusionOutput(stacker.probability(logits.numpy(), present_np), nan, empty)
    # Before the stacker is fitted (while training): the mean of the present heads' log-odds.
    log_odds = ((logits[:, :, 1] - logits[:, :, 0]).numpy() * present_np).sum(1) / present_np.sum(1).clip(1)
    return FusionOutput(1.0 / (1.0 + np.exp(-log_odds)), nan, empty)
