"""The SoftCon objective: hard InfoNCE plus a multi-label guided soft contrastive term.

Wang, Y., Albrecht, C. M., Zhu, X. X. (2024). *Multi-Label Guided Soft Contrastive Learning for
Efficient Earth Observation Pretraining.* arXiv:2405.20462.

Two images of the same scene form the positive pair of a contrastive loss; SoftCon adds that two
*different* scenes should be as similar as their land-cover content is. Each scene carries a multi-hot
vector ``l`` over the 9 Dynamic World classes, and the target similarity of scenes ``i`` and ``j`` is
the cosine similarity ``y_ij = <l_i, l_j> / (|l_i| |l_j|)`` (in [0, 1]; 1 on the diagonal, 0 for
scenes that share no class). The loss per direction is

    L = 2T * InfoNCE(q, k; T) + lambda * Soft(cos(q_i, k_j), y_ij)

(the ``2T`` factor is MoCo v3's, ``hard_scale``; it makes the hard gradient independent of T, so lambda
weighs the soft term against a hard term of fixed gradient size)

with ``q`` the (predictor) output of the student on its masked view and ``k`` the projector output of the
EMA teacher on the other, unmasked view (MoCo v3 layout, Chen et al. 2021). The hard term is MoCo v3's
``contrastive_loss`` (positive = the same scene, negatives = the other scenes of the *global* batch);
the soft term's targets cover the global batch as well. Scenes without labels (all-zero vector) take part
in the hard term only: every pair that involves one is left out of the soft term.

Forms of the soft term (``soft_form``), each with the fixed point stated:

- ``"bce"``: binary cross-entropy on the similarity matrix, prediction ``p_ij = (1 + cos_ij) / 2``
  against target ``t_ij = (1 + y_ij) / 2`` (the same map of [-1, 1] onto [0, 1] on both sides).
  Minimal exactly where ``cos(q_i, k_j) = y_ij``; gradients everywhere (no clamp at 0).
- ``"mse"``: squared error ``(cos_ij - y_ij)^2``; minimal where ``cos = y``.
- ``"soft_ce"``: soft-target cross-entropy per row, ``-sum_j y~_ij log softmax_j(cos_ij / T_soft)``
  with ``y~`` the row of ``y`` normalised to sum to 1 (over labelled columns); minimal where the row
  softmax equals the normalised label similarities.

Distributed training: the teacher embeddings and labels are all-gathered (the local slot keeps its
autograd graph, as in MoCo v3's ``concat_all_gather`` but differentiable for the local part), and
every term is normalised by *global* counts so that DDP's gradient averaging reproduces the
single-process loss on the same global batch exactly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SOFT_FORMS = ("bce", "soft_ce", "mse")


def _world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def gather_keep_local_grad(x: torch.Tensor) -> torch.Tensor:
    """All-gather (B, ...) from every rank into (W * B, ...); only this rank's slot carries gradients.

    All ranks must pass the same shape. Single process: ``x`` itself.
    """
    rank, world = _world()
    if world == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world)]
    torch.distributed.all_gather(parts, x.detach().contiguous())
    parts[rank] = x
    return torch.cat(parts, dim=0)


def label_similarity(labels_a: torch.Tensor, labels_b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of multi-hot label vectors, (Ba, K) x (Bb, K) -> (Ba, Bb) in [0, 1].

    Rows or columns with no label (all zeros) get similarity 0 (they are masked out of the loss anyway).
    """
    a = F.normalize(labels_a.float(), dim=1, eps=1e-12)
    b = F.normalize(labels_b.float(), dim=1, eps=1e-12)
    return a @ b.t()


class SoftContrastiveLoss(nn.Module):
    """SoftCon loss (Wang et al. 2024, arXiv:2405.20462): hard InfoNCE + lambda x soft label term.

    Args:
        temperature: InfoNCE temperature T of the hard term (MoCo v3: 0.2 for ViT, 1.0 for ResNet).
        soft_weight: lambda, weight of the soft term (0 = plain MoCo v3).
        soft_form: ``"soft_ce"`` (default), ``"bce"`` or ``"mse"`` (see the module docstring). The default and
            its temperature were chosen by the ablation in ``docs/training.md``: at lambda = 1, ``bce`` gives the
            soft term ~5-12 % of the hard term's gradient on the encoder; ``soft_ce`` ~1.2-1.3x.
        soft_temperature: temperature of the ``soft_ce`` row softmax (unused by the other forms).
        symmetric: with two views, average the two directions (student view 1 -> teacher view 2 and
            student view 2 -> teacher view 1); False uses the first direction only.
        hard_scale: multiply the hard term by ``2 T`` as MoCo v3's ``contrastive_loss`` does (keeps the
            gradient size independent of T); on by default. The returned ``hard`` is always the plain
            cross-entropy, so logged values compare across settings.
    """

    def __init__(
        self,
        temperature: float = 0.2,
        soft_weight: float = 1.0,
        soft_form: str = "soft_ce",
        soft_temperature: float = 0.2,
        symmetric: bool = True,
        hard_scale: bool = True,
    ):
        super().__init__()
        if soft_form not in SOFT_FORMS:
            raise ValueError(f"soft_form must be one of {SOFT_FORMS}, not {soft_form!r}")
        self.temperature = temperature
        self.soft_weight = soft_weight
        self.soft_form = soft_form
        self.soft_temperature = soft_temperature
        self.symmetric = symmetric
        self.hard_scale = hard_scale

    def hard(self, q: torch.Tensor, k_all: torch.Tensor, offset: int) -> torch.Tensor:
        """InfoNCE of local queries (B, D) against global keys (N, D); positives at ``offset + i``."""
        logits = F.normalize(q, dim=1) @ F.normalize(k_all, dim=1).t() / self.temperature
        target = torch.arange(q.shape[0], device=q.device) + offset
        return F.cross_entropy(logits.float(), target)

    def soft(self, q: torch.Tensor, k_all: torch.Tensor, y_local: torch.Tensor, y_all: torch.Tensor,
             world: int) -> torch.Tensor:
        """Soft term of local rows against global columns, normalised by the global count of valid terms.

        Args:
            q: (B, D) student outputs; k_all: (N, D) gathered teacher outputs.
            y_local: (B, K), y_all: (N, K) multi-hot labels (all zeros = unlabelled).
        """
        has_row = y_local.float().sum(1) > 0                       # (B,)
        has_col = y_all.float().sum(1) > 0                         # (N,)
        n_lab = has_col.sum()                                      # labelled scenes, global batch
        if n_lab == 0:
            return q.sum() * 0.0
        target = label_similarity(y_local, y_all)                  # (B, N)
        cos = (F.normalize(q, dim=1) @ F.normalize(k_all, dim=1).t()).float()
        valid = has_row[:, None] & has_col[None, :]
        if self.soft_form == "soft_ce":
            logits = (cos / self.soft_temperature).masked_fill(~has_col[None, :], float("-inf"))
            logp = torch.log_softmax(logits, dim=1).masked_fill(~valid, 0.0)
            t = target * valid
            t = t / t.sum(1, keepdim=True).clamp_min(1e-12)
            per_row = -(t * logp).sum(1)                           # 0 for unlabelled rows
            return per_row.sum() / (n_lab.float() / world)
        if self.soft_form == "mse":
            per = (cos - target) ** 2
        else:  # bce on [-1, 1] -> [0, 1]
            p = ((1 + cos) / 2).clamp(1e-6, 1 - 1e-6)
            t = (1 + target) / 2
            per = F.binary_cross_entropy(p, t, reduction="none")
            # subtract the entropy of the target so the minimum is 0 (does not change gradients)
            per = per - F.binary_cross_entropy(t.clamp(1e-6, 1 - 1e-6), t, reduction="none")
        return (per * valid).sum() / (n_lab.float() ** 2 / world)

    def forward(
        self,
        student: list[torch.Tensor] | tuple[torch.Tensor, ...],
        teacher: list[torch.Tensor] | tuple[torch.Tensor, ...],
        labels: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Loss of this rank's part of the global batch.

        Args:
            student: per view, (B, D) student (predictor) outputs on the masked views.
            teacher: per view, (B, D) teacher (projector) outputs on the unmasked views (no grad).
            labels: (B, K) multi-hot labels of the local scenes (zeros where unknown).

        Returns:
            dict with ``loss`` = ``hard_term + soft_term`` (to back-propagate), ``hard`` and ``soft`` (detached
            plain values: cross-entropy, soft term before lambda), and ``hard_term`` / ``soft_term``, the two
            summands with their graphs (``2 T`` x hard if ``hard_scale``; lambda x soft), whose separate gradients
            give each term's share. Under DDP the per-rank losses average to the single-process loss of the
            global batch.
        """
        rank, world = _world()
        views = len(student)
        pairs = [(0, 1 % views)]
        if self.symmetric and views > 1:
            pairs.append((1, 0))
        y_all = gather_keep_local_grad(labels.float())
        k_all = [gather_keep_local_grad(k.detach()) for k in teacher]
        offset = rank * labels.shape[0]
        hard = sum(self.hard(student[s], k_all[t], offset) for s, t in pairs) / len(pairs)
        if self.soft_weight:
            soft = sum(self.soft(student[s], k_all[t], labels, y_all, world) for s, t in pairs) / len(pairs)
        else:
            soft = hard.new_zeros(())
        hard_term = hard * (2 * self.temperature) if self.hard_scale else hard
        soft_term = self.soft_weight * soft
        return {"loss": hard_term + soft_term, "hard": hard.detach(), "soft": soft.detach(),
                "hard_term": hard_term, "soft_term": soft_term}
