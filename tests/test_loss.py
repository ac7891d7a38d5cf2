"""Properties of the SoftCon objective (core.loss)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from core.loss import SoftContrastiveLoss, label_similarity


def test_disjoint_one_hot_labels_give_identity_targets():
    y = torch.eye(9)[torch.tensor([0, 3, 5, 8])]
    assert torch.equal(label_similarity(y, y), torch.eye(4))


def test_label_similarity_is_cosine_of_multi_hot():
    y = torch.tensor([[1.0, 1, 0], [1, 0, 0], [0, 0, 1]])
    s = label_similarity(y, y)
    assert s[0, 1] == pytest.approx(1 / 2 ** 0.5)
    assert s[0, 2] == 0 and s[1, 1] == pytest.approx(1.0)


def _labels(n=12, k=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, k, generator=g) < 0.3).float()
    y[y.sum(1) == 0, 0] = 1.0
    return y


@pytest.mark.parametrize("form", ["bce", "mse"])
def test_soft_term_minimal_where_embedding_similarities_match_label_similarities(form):
    """Embeddings = normalised label vectors reproduce y_ij exactly: the soft term is 0 there, and larger nearby."""
    y = _labels()
    loss = SoftContrastiveLoss(soft_form=form)
    z = F.normalize(y, dim=1).clone().requires_grad_(True)
    at_match = loss.soft(z, z.detach(), y, y, world=1)
    assert at_match.item() == pytest.approx(0.0, abs=1e-5)
    at_match.backward()
    assert z.grad.abs().max() < 1e-3                         # stationary point
    g = torch.Generator().manual_seed(1)
    for scale in (0.05, 0.3, 1.0):
        noisy = z.detach() + scale * torch.randn(z.shape, generator=g)
        assert loss.soft(noisy, z.detach(), y, y, world=1) > at_match + 1e-4


def test_soft_ce_minimal_at_label_distribution():
    """soft_ce >= entropy of the normalised targets, with equality when the row softmax equals them."""
    t_soft = 0.1
    loss = SoftContrastiveLoss(soft_form="soft_ce", soft_temperature=t_soft)
    y = torch.ones(4, 3)      # all share everything: uniform targets over 4 columns
    t = torch.full((4, 4), 0.25)
    entropy = -(t * t.log()).sum(1).mean()
    k = F.normalize(torch.randn(4, 8), dim=1)
    q_equal = (torch.linalg.pinv(k) @ torch.ones(4)).expand(4, -1)   # k q = 1: same cosine to every key
    assert loss.soft(q_equal, k, y, y, world=1).item() == pytest.approx(entropy.item(), abs=1e-5)
    assert loss.soft(k, k, y, y, world=1) > entropy + 0.1    # peaked on the diagonal: worse


def test_soft_term_prefers_label_consistent_embeddings():
    """All three forms score embeddings that follow the labels better than ones that follow shuffled labels."""
    y = _labels(16)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(3))
    good = F.normalize(y + 0.05, dim=1)
    bad = F.normalize(y[perm] + 0.05, dim=1)
    for form in ("bce", "soft_ce", "mse"):
        loss = SoftContrastiveLoss(soft_form=form)
        assert loss.soft(good, good, y, y, 1) < loss.soft(bad, bad, y, y, 1), form


def test_hard_term_is_infonce():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    loss = SoftContrastiveLoss(temperature=0.5, soft_weight=0.0)
    logits = F.normalize(q, dim=1) @ F.normalize(k, dim=1).t() / 0.5
    expect = F.cross_entropy(logits, torch.arange(6))
    out = loss([q], [k], torch.zeros(6, 9))
    assert out["loss"].item() == pytest.approx(expect.item(), rel=1e-6)
    # aligned pairs give a lower loss than random ones
    assert loss([k], [k], torch.zeros(6, 9))["loss"] < out["loss"]


def test_symmetrisation_averages_both_directions():
    g = torch.Generator().manual_seed(0)
    q1, q2, k1, k2 = (torch.randn(5, 4, generator=g) for _ in range(4))
    y = _labels(5)
    sym = SoftContrastiveLoss(symmetric=True)([q1, q2], [k1, k2], y)["loss"]
    one = SoftContrastiveLoss(symmetric=False)
    expect = (one([q1, q2], [k1, k2], y)["loss"] + one([q2, q1], [k2, k1], y)["loss"]) / 2
    assert sym.item() == pytest.approx(expect.item(), rel=1e-6)


def test_gradients_reach_the_student_only():
    g = torch.Generator().manual_seed(0)
    q = [torch.randn(8, 16, generator=g, requires_grad=True) for _ in range(2)]
    k = [torch.randn(8, 16, generator=g, requires_grad=True) for _ in range(2)]
    out = SoftContrastiveLoss()(q, k, _labels(8))
    out["loss"].backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in q)
    assert all(x.grad is None for x in k)


def test_unlabelled_images_take_part_in_the_hard_term_only():
    g = torch.Generator().manual_seed(0)
    y = _labels(6)
    y[2] = 0.0                                               # image 2 has no labels
    q = torch.randn(6, 16, generator=g, requires_grad=True)
    k = torch.randn(6, 16, generator=g)
    loss = SoftContrastiveLoss(soft_weight=1.0)
    soft = loss.soft(q, k, y, y, world=1)
    soft.backward()
    assert q.grad[2].abs().max() == 0                        # its row does not enter the soft term
    assert q.grad[[0, 1, 3]].abs().sum() > 0
    k2 = k.clone()
    k2[2] = torch.randn(16, generator=g)                     # nor does its column
    assert loss.soft(q, k2, y, y, 1).item() == pytest.approx(soft.item(), rel=1e-6)
    q.grad = None
    hard = loss.hard(q, k, 0)
    hard.backward()
    assert q.grad[2].abs().sum() > 0                         # but it takes part in the hard term
    assert SoftContrastiveLoss()([q], [k], torch.zeros(6, 9))["soft"] == 0


def test_bad_form_is_rejected():
    with pytest.raises(ValueError, match="soft_form"):
        SoftContrastiveLoss(soft_form="kl")


def test_hard_term_scaled_by_2t_as_moco_v3_and_terms_sum_to_the_loss():
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    y = _labels(8)
    ce = F.cross_entropy(F.normalize(q, dim=1) @ F.normalize(k, dim=1).t() / 0.2, torch.arange(8))
    scaled = SoftContrastiveLoss(temperature=0.2, soft_weight=0.7)([q], [k], y)
    plain = SoftContrastiveLoss(temperature=0.2, soft_weight=0.7, hard_scale=False)([q], [k], y)
    assert scaled["hard"].item() == pytest.approx(ce.item(), rel=1e-6) == plain["hard"].item()   # logged: plain CE
    assert scaled["hard_term"].item() == pytest.approx(0.4 * ce.item(), rel=1e-6)
    assert plain["hard_term"].item() == pytest.approx(ce.item(), rel=1e-6)
    for out in (scaled, plain):
        assert out["soft_term"].item() == pytest.approx(0.7 * out["soft"].item(), rel=1e-6)
        assert out["loss"].item() == pytest.approx((out["hard_term"] + out["soft_term"]).item(), rel=1e-6)
