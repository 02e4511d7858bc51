"""Losses and loss weightings on constructed cases with known answers."""

import math

import pytest
import torch
import torch.nn.functional as F

from stylenada.adapt.losses import directional_loss, global_clip_loss, image_direction, l2_loss
from stylenada.adapt.weighting import ConstrainedWeighting, FixedWeighting, LearnedWeighting, make_weighting
from stylenada.errors import StylenadaError


def test_directional_loss_known_values():
    t = torch.tensor([1.0, 0.0, 0.0])
    frozen = torch.tensor([[0.0, 1.0, 0.0]])
    # Moving exactly along the text direction: loss 0; against it: 2; orthogonal: 1.
    along = F.normalize(frozen + 0.1 * t, dim=-1)
    assert directional_loss(along, frozen, t).item() == pytest.approx(0.0, abs=0.01)
    against = F.normalize(frozen - 0.1 * t, dim=-1)
    assert directional_loss(against, frozen, t).item() == pytest.approx(2.0, abs=0.01)
    ortho = F.normalize(frozen + 0.1 * torch.tensor([[0.0, 0.0, 1.0]]), dim=-1)
    assert directional_loss(ortho, frozen, t).item() == pytest.approx(1.0, abs=0.01)


def test_directional_loss_is_scale_invariant_in_embeddings():
    torch.manual_seed(0)
    a, b, t = torch.randn(4, 8), torch.randn(4, 8), torch.randn(8)
    assert torch.allclose(directional_loss(a, b, t), directional_loss(3 * a, 0.5 * b, 7 * t))


def test_zero_change_guard():
    """Identical images at step 0: the loss is 1, finite, with a finite gradient along the text direction."""
    e = torch.randn(2, 8)
    x = e.clone().requires_grad_(True)
    t = torch.randn(8)
    loss = directional_loss(x, e, t)
    loss.backward()
    assert loss.item() == pytest.approx(1.0)
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # The gradient step decreases the loss, i.e. it moves the embedding toward the text direction.
    with torch.no_grad():
        assert directional_loss(x - 1e-7 * x.grad, e, t) < loss
        # Numerical noise of 1e-7 (CLIP with and without autograd on the same images) leaves it near 1.
        assert directional_loss(e + 1e-7 * torch.randn(2, 8), e, t).item() == pytest.approx(1.0, abs=0.01)


def test_global_and_l2():
    e = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert global_clip_loss(e, torch.tensor([1.0, 0.0])).item() == pytest.approx(0.5)
    a, b = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5)
    assert l2_loss(a, b).item() == pytest.approx(0.25)


def test_image_direction():
    src = torch.tensor([[1.0, 0.0], [1.0, 0.1]])
    tgt = torch.tensor([[0.0, 1.0], [0.1, 1.0]])
    d = image_direction(src, tgt)
    assert d.norm().item() == pytest.approx(1.0)
    assert d[1] > 0 > d[0]


def test_fixed_weighting():
    w = FixedWeighting({"clip": 2.0, "l2": 0.5})
    total = w.combine({"clip": torch.tensor(1.0), "l2": torch.tensor(4.0)})
    assert total.item() == pytest.approx(4.0)
    with pytest.raises(StylenadaError, match="lambda_clip"):
        FixedWeighting({"clip": 0.0, "l2": 1.0})
    with pytest.raises(StylenadaError, match="lambda_l2"):
        FixedWeighting({"clip": 1.0, "l2": float("nan")})
    with pytest.raises(StylenadaError, match="unknown weighting"):
        make_weighting("bogus", {"clip": 1.0})


def test_learned_lambda_l2_rises_when_l2_grows_and_clip_falls():
    w = LearnedWeighting({"clip": 1.0, "l2": 1.0}, lambda_lr=0.05)
    clip, l2 = 1.0, 0.01
    for _ in range(100):
        clip *= 0.99
        l2 *= 1.02
        w.update({"clip": clip, "l2": l2})
        lam = w.lambdas()
        assert 0.1 <= lam["clip"] <= 10 and 0.1 <= lam["l2"] <= 10  # within 10x of the initial values
    end = w.lambdas()  # a steady 2% growth per step is a log-ratio of ~0.18 to the 10-step average
    assert end["l2"] > 1.3 and end["clip"] < 0.9


def test_learned_weighting_reacts_to_a_loss_that_grows():
    """A synthetic schedule: L2 starts at exactly 0 (as it does with shared noise), settles at 0.01, then
    triples at step 100. The L2 weight rises by half within 10 steps of the jump (before: the ratio to a
    1e-12 average exploded at the start and Adam's second moment then froze the lambdas), and returns to
    the user's value once the losses are steady."""
    w = LearnedWeighting({"clip": 1.0, "l2": 0.5}, lambda_lr=0.05)
    history = []
    for t in range(250):
        w.update({"clip": 0.5, "l2": 0.0 if t < 5 else (0.01 if t < 100 else 0.03)})
        history.append(w.lambdas()["l2"])
    assert all(0.05 <= v <= 5 for v in history)
    assert history[99] == pytest.approx(0.5, rel=0.15)  # steady: back at the initial weight
    assert max(history[100:110]) > 1.5 * history[99]  # the jump gains weight within 10 steps
    assert history[-1] == pytest.approx(0.5, rel=0.15)  # steady again
    assert w.lambdas()["clip"] == pytest.approx(1.0, rel=0.05)  # the steady CLIP term keeps its weight


def test_learned_lambdas_do_not_collapse_when_losses_are_steady():
    """With unchanging losses the lambdas stay at the user's values (not at zero, and not at equal weights
    whatever the user gave, as the entropy form did)."""
    w = LearnedWeighting({"clip": 1.9, "l2": 0.1}, lambda_lr=0.05)
    for _ in range(500):
        w.update({"clip": 0.8, "l2": 0.02})
    lam = w.lambdas()
    assert lam["clip"] == pytest.approx(1.9, rel=0.1) and lam["l2"] == pytest.approx(0.1, rel=0.1)


def test_learned_and_reversed_case():
    w = LearnedWeighting({"clip": 1.0, "l2": 1.0})
    clip, l2 = 1.0, 0.1
    for _ in range(200):
        clip *= 1.01
        l2 *= 0.98
        w.update({"clip": clip, "l2": l2})
    lam = w.lambdas()
    assert lam["clip"] > 1.1 and lam["l2"] < 0.8


def test_constrained_dual_ascent():
    w = ConstrainedWeighting({"clip": 1.0, "l2": 1.0}, l2_budget=0.05, lambda_lr=0.1)
    for _ in range(50):
        w.update({"clip": 0.5, "l2": 0.2})  # violated: the multiplier rises
    high = w.lambdas()["l2"]
    assert high > 1.0
    for _ in range(50):
        w.update({"clip": 0.5, "l2": 0.01})  # satisfied: it falls, but stays positive
    low = w.lambdas()["l2"]
    assert 0 < low < high
    for _ in range(5000):
        w.update({"clip": 0.5, "l2": 100.0})
    assert math.isfinite(w.lambdas()["l2"]) and w.lambdas()["l2"] <= 1e4 * 1.0001


def test_weighting_state_roundtrip():
    a = LearnedWeighting({"clip": 1.0, "l2": 1.0})
    for i in range(5):
        a.update({"clip": 1.0 - 0.1 * i, "l2": 0.01 * (i + 1)})
    b = LearnedWeighting({"clip": 1.0, "l2": 1.0})
    b.load_state_dict(a.state_dict())
    a.update({"clip": 0.3, "l2": 0.2})
    b.update({"clip": 0.3, "l2": 0.2})
    assert a.lambdas() == b.lambdas()


@pytest.mark.parametrize("name", sorted(__import__("stylenada.adapt.weighting", fromlist=["W"]).WEIGHTINGS))
def test_every_weighting_takes_any_set_of_terms(name):
    """A third term (here 'global') is weighted, combined and adapted like the others, by every weighting;
    a state round trip continues identically."""
    from stylenada.adapt.weighting import WEIGHTINGS

    assert name in WEIGHTINGS
    initial = {"clip": 1.0, "l2": 0.5, "global": 0.2}
    w = make_weighting(name, initial, lambda_lr=0.05, l2_budget=0.05)
    assert set(w.lambdas()) == set(initial)
    losses = {"clip": torch.tensor(0.5), "l2": torch.tensor(0.02), "global": torch.tensor(0.7)}
    assert w.combine(losses).item() == pytest.approx(sum(w.lambdas()[k] * float(v) for k, v in losses.items()))
    for i in range(30):
        w.update({"clip": 0.5, "l2": 0.02 * (1 + i), "global": 0.7})
    other = make_weighting(name, initial, lambda_lr=0.05, l2_budget=0.05)
    other.load_state_dict(w.state_dict())
    w.update({"clip": 0.4, "l2": 0.5, "global": 0.6})
    other.update({"clip": 0.4, "l2": 0.5, "global": 0.6})
    assert w.lambdas() == other.lambdas() and all(v > 0 for v in w.lambdas().values())
    with pytest.raises(ValueError, match="global"):
        w.combine({"clip": torch.tensor(0.5), "l2": torch.tensor(0.02)})


def test_a_registered_loss_term_is_one_function(tmp_path):
    """A new term is one registered function; the config weights it by name, unknown names are refused."""
    from stylenada.adapt.config import TrainConfig
    from stylenada.adapt.losses import LOSS_TERMS, register_loss_term

    @register_loss_term("mean_brightness")
    def mean_brightness(x):
        return x.img_train.mean()

    try:
        cfg = TrainConfig(generator="g.pt", target="x", lambdas={"mean_brightness": 0.3})
        cfg.validate()
        assert cfg.loss_weights() == {"clip": 1.0, "l2": 0.0, "mean_brightness": 0.3}
        with pytest.raises(StylenadaError, match="unknown loss term 'nope'"):
            TrainConfig(generator="g.pt", target="x", lambdas={"nope": 1.0}).validate()
    finally:
        del LOSS_TERMS["mean_brightness"]


def test_angle_consistency_sees_collapse_not_a_shared_rotation():
    """0 when the batch's angles are kept (the same rotation of every embedding), > 0 when the adapted
    samples collapse onto one, and its gradient pulls collapsed samples apart."""
    from stylenada.adapt.losses import LOSS_TERMS, angle_consistency_loss

    g = torch.Generator().manual_seed(0)
    frozen = torch.randn(8, 16, generator=g)
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=g))
    assert angle_consistency_loss(frozen @ q, frozen).item() < 1e-10
    collapsed = (frozen[:1] + 0.05 * torch.randn(8, 16, generator=g)).requires_grad_(True)
    loss = angle_consistency_loss(collapsed, frozen)
    assert loss.item() > 0.1
    loss.backward()
    step = collapsed.detach() - 0.5 * collapsed.grad
    assert angle_consistency_loss(step, frozen) < loss
    assert angle_consistency_loss(frozen[:1], frozen[:1]).item() == 0.0  # one sample: no pair
    assert "angle" in LOSS_TERMS


def test_moment_directional_loss_rewards_a_shared_shift_and_punishes_collapse():
    """A shift of every sample along the text direction costs ~0; the same mean shift with the batch
    collapsed onto one embedding pays for the lost spread; a shift against the text costs ~2; per-image
    directions that only agree on average are not punished the way the plain directional loss punishes them."""
    from stylenada.adapt.losses import LOSS_TERMS, moment_directional_loss

    g = torch.Generator().manual_seed(0)
    frozen = F.normalize(torch.randn(16, 32, generator=g), dim=-1) * 5
    t = F.normalize(torch.randn(32, generator=g), dim=-1)
    shifted = F.normalize(frozen, dim=-1) + 0.05 * t
    shared = moment_directional_loss(shifted, frozen, t)
    assert shared.item() < 0.01
    collapsed = F.normalize(frozen, dim=-1).mean(0, keepdim=True).expand_as(frozen) + 0.05 * t
    lost_spread = moment_directional_loss(collapsed, frozen, t) - moment_directional_loss(collapsed, frozen, t, 0)
    assert lost_spread.item() > 0.5
    assert moment_directional_loss(F.normalize(frozen, dim=-1) - 0.05 * t, frozen, t).item() > 1.9
    # per-image directions: half the samples move along t + u, half along t - u (u orthogonal to t)
    u = F.normalize(torch.randn(32, generator=g) - (torch.randn(32, generator=g) @ t) * t, dim=-1)
    u = F.normalize(u - (u @ t) * t, dim=-1)
    sign = torch.tensor([1.0, -1.0]).repeat(8)[:, None]
    varied = F.normalize(frozen, dim=-1) + 0.01 * (t + sign * u)
    assert moment_directional_loss(varied, frozen, t, spread_weight=0).item() < 0.01
    assert directional_loss(varied, frozen, t).item() > 0.2
    # finite gradient at zero change (step 0)
    e = frozen.clone().requires_grad_(True)
    moment_directional_loss(e, frozen, t).backward()
    assert torch.isfinite(e.grad).all() and e.grad.abs().sum() > 0
    assert "moments" in LOSS_TERMS



def test_spread_loss_sees_collapse_not_a_shared_shift():
    from stylenada.adapt.losses import LOSS_TERMS, spread_loss

    g = torch.Generator().manual_seed(1)
    frozen = F.normalize(torch.randn(16, 32, generator=g), dim=-1)
    assert spread_loss(frozen * 3, frozen).item() < 1e-10  # the embedding's scale does not count
    mean = frozen.mean(0, keepdim=True)
    half = spread_loss(mean + 0.5 * (frozen - mean), frozen)
    full = spread_loss(mean.expand_as(frozen), frozen)
    assert 0 < half.item() < full.item() and full.item() > 0.5
    assert spread_loss(frozen[:1], frozen[:1]).item() == 0.0
    e = frozen.clone().requires_grad_(True)
    spread_loss(e, frozen).backward()
    assert torch.isfinite(e.grad).all()
    assert "spread" in LOSS_TERMS


def test_classify_asks_for_the_whole_change_where_the_directional_loss_stops():
    """A half change along the text direction already satisfies the directional loss; the classification
    term keeps falling until the image is the target, and it is blind to nothing but the two texts."""
    from stylenada.adapt.losses import LOSS_TERMS, TermInputs, target_classification_loss

    src, tgt = torch.tensor([1.0, 0.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0, 0.0])
    frozen = F.normalize(torch.tensor([[1.0, 0.0, 0.3, 0.0]]), dim=-1)
    half = F.normalize(frozen + 0.5 * (tgt - src), dim=-1)
    whole = F.normalize(frozen + 1.0 * (tgt - src), dim=-1)
    d = tgt - src
    assert directional_loss(half, frozen, d).item() < 0.1
    cls = [target_classification_loss(e, src, tgt, 30.0).item() for e in (frozen, half, whole)]
    assert cls[0] > cls[1] > cls[2] and cls[2] < 0.05 < cls[0]
    # per-sample targets (a multi-domain run) give the same value as one shared target
    assert target_classification_loss(whole, src, tgt[None], 30.0).item() == pytest.approx(cls[2])
    # the registered term: summed over teachers with their weights, 0 where there is no source text
    img = torch.zeros(1, 3, 4, 4)
    x = TermInputs(img, img, [whole, whole], [frozen, frozen], [d, d], [tgt, tgt], [0.5, 0.25],
                   [src, None], [30.0, 30.0])
    assert LOSS_TERMS["classify"](x).item() == pytest.approx(0.5 * cls[2])
    x.source_embeddings = None
    assert LOSS_TERMS["classify"](x).item() == 0.0
