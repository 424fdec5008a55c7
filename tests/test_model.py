"Model contract tests beyond the notebooks' own (04-07): shapes at T=4/5 and 32/64 px, noise, parameter counts, the official-like variant, D's bad input."
import pytest
import torch

from storygan.story_encoder import StoryGANConfig, ABLATIONS
from storygan.context_encoder import ContextEncoder
from storygan.generator import StoryGenerator
from storygan.discriminators import (ImageDiscriminator, StoryDiscriminator, build_models, count_params,
                                     image_d_loss, story_d_loss, generator_loss)


def tiny(**kw): return StoryGANConfig.preset('tiny', **kw)


def batch(cfg, B=3, seed=0):
    "A random story batch and the matching image batch (one frame per story)."
    g = torch.Generator().manual_seed(seed)
    S = torch.randn(B, cfg.T, cfg.text_dim, generator=g)
    X = torch.rand(B, cfg.T, 3, cfg.image_size, cfg.image_size, generator=g) * 2 - 1
    labels = (torch.rand(B, cfg.label_dim, generator=g) > 0.5).float()
    return S, X, labels


def test_tiny_preset_is_small():
    assert sum(count_params(m) for m in build_models(tiny())) < 2_000_000
    assert sum(count_params(m) for m in build_models(tiny(image_size=64))) < 2_000_000


@pytest.mark.parametrize('name, official', [('clevr', (35.0e6, 12.2e6, 28.0e6)), ('pororo', (38.3e6, 21.7e6, 21.5e6))])
def test_paper_presets_sized_like_official(name, official):
    for m, n in zip(build_models(StoryGANConfig.preset(name)), official):
        assert 0.75 * n <= count_params(m) <= 1.25 * n, (type(m).__name__, count_params(m), n)


@pytest.mark.parametrize('T', [4, 5])
@pytest.mark.parametrize('size', [32, 64])
def test_generator_shapes(T, size):
    cfg = tiny(T=T, image_size=size)
    X_hat, mu, logvar = StoryGenerator(cfg)(torch.randn(2, T, cfg.text_dim))
    assert X_hat.shape == (2, T, 3, size, size) and mu.shape == logvar.shape == (2, cfg.cond_dim)
    assert X_hat.min() >= -1 and X_hat.max() <= 1


def test_generator_seed_and_noise():
    cfg = tiny()
    G = StoryGenerator(cfg)
    S, _, _ = batch(cfg)
    with torch.no_grad():
        a = G(S, generator=torch.Generator().manual_seed(1))[0]
        b = G(S, generator=torch.Generator().manual_seed(1))[0]
        n1, n2 = torch.randn(2, 3, cfg.T, cfg.noise_dim, generator=torch.Generator().manual_seed(2))
        c = G(S, noise=n1, generator=torch.Generator().manual_seed(1))[0]
        d = G(S, noise=n2, generator=torch.Generator().manual_seed(1))[0]
    assert torch.equal(a, b)
    assert ((c - d).flatten(2).abs().mean(-1) > 1e-3).all()


def losses(cfg, G, D_I, D_S, seed=0):
    S, X, labels = batch(cfg, seed=seed)
    X_fake, mu, logvar = G(S, generator=torch.Generator().manual_seed(seed))
    x, x_fake, s_t = X[:, 1], X_fake[:, 1], S[:, 1]  # image batch: frame t=1 of each story
    l_di, st_i = image_d_loss(D_I, x, x_fake, s_t, S, labels, cfg)
    l_ds, st_s = story_d_loss(D_S, X, X_fake, S, cfg) if D_S is not None else (None, {})
    l_g, st_g = generator_loss(D_I, D_S, x_fake, s_t, S, labels, X_fake, S, mu, logvar, cfg)
    return l_di, l_ds, l_g, {**st_i, **st_s, **st_g}


def test_ablations_differ_in_parameters():
    counts = {a: [count_params(m) for m in build_models(tiny(ablation=a))] for a in ABLATIONS}
    assert counts['imagegan'][0] == counts['svc'][0] < counts['svfn'][0] < counts['storygan'][0]
    assert counts['imagegan'][2] == 0 < counts['svc'][2]


def test_official_like_variant_trains():
    "Every conditioning knob off, spectral norm on: it builds, every parameter gets a gradient, and a step of Adam lowers D's loss"
    cfg = tiny(d_spectral_norm=True, d_batch_norm=False, g_cond_norm=False, d_projection=False, g_hidden=0, g_coord=0,
               g_sentence=False)
    torch.manual_seed(0)
    G, D_I, D_S = build_models(cfg)
    assert all(torch.nn.utils.parametrize.is_parametrized(m, 'weight') for m in D_I.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    l_di, l_ds, l_g, stats = losses(cfg, G, D_I, D_S)
    assert all(torch.isfinite(torch.tensor(v)) for v in stats.values())
    l_g.backward(retain_graph=True)
    assert [n for n, p in G.named_parameters() if p.grad is None or p.grad.abs().sum() == 0] == []
    opt = torch.optim.Adam([*D_I.parameters(), *D_S.parameters()], 1e-3)
    opt.zero_grad(); (l_di + l_ds).backward(); opt.step()
    l_di2, l_ds2, _, _ = losses(cfg, G, D_I, D_S)
    assert (l_di2 + l_ds2).item() < (l_di + l_ds).item()


def test_bad_input():
    cfg = tiny()
    G, D_I, D_S = build_models(cfg)
    S, X, labels = batch(cfg)
    cases = [(lambda: D_I(torch.rand(3, 3, 64, 64), S[:, 0], S), 'expected H=32, got H=64'),
             (lambda: D_I(X[:, 0], torch.randn(3, 70), S), 'expected D=75, got D=70'),
             (lambda: D_I(X[:, 0], S[:, 0], S[:, :3]), 'expected T=4, got T=3'),
             (lambda: D_I(X[:, 0] * float('nan'), S[:, 0], S), 'NaN'),
             (lambda: D_S(X[:, :3], S), 'expected T=4, got T=3'),
             (lambda: D_S(X, S[..., :10]), 'expected D=75, got D=10'),
             (lambda: D_S(torch.rand(3, 4, 3, 64, 64), S), 'expected H=32, got H=64'),
             (lambda: ContextEncoder(cfg)(S, torch.randn(3, 4, 32), torch.randn(3, 7)), 'expected cond_dim=32, got cond_dim=7'),
             (lambda: image_d_loss(D_I, X[:, 0], X[:, 1], S[:, 0], S, labels[:, :2], cfg), 'expected L=15, got L=2')]
    for f, msg in cases:
        with pytest.raises(ValueError, match=msg): f()
