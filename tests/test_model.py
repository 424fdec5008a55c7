"Model contract tests (notebooks 03-06): config, shapes, determinism, ablations, gradients, parameter counts, bad input."
from dataclasses import asdict

import pytest
import torch

from storygan.story_encoder import StoryGANConfig, ABLATIONS, StoryEncoder, kl_loss
from storygan.context_encoder import ContextEncoder, dynamic_conv1d
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


def test_config_roundtrip_and_presets():
    for name in ('tiny', 'clevr', 'pororo'):
        cfg = StoryGANConfig.preset(name)
        assert StoryGANConfig(**asdict(cfg)) == cfg
    assert StoryGANConfig.preset('pororo').T == 5 and StoryGANConfig.preset('pororo').text_dim == 137
    assert StoryGANConfig.preset('tiny', ablation='svc').ablation == 'svc'


@pytest.mark.parametrize('kw, msg', [(dict(image_size=48), 'expected 32 or 64, got 48'),
                                     (dict(ablation='gan'), "got 'gan'"),
                                     (dict(filter_size=6), 'odd'),
                                     (dict(cond_dim=0), 'cond_dim')])
def test_config_bad_values(kw, msg):
    with pytest.raises(ValueError, match=msg): StoryGANConfig(**kw)


def test_preset_bad_name_and_field():
    with pytest.raises(ValueError, match="got 'big'"): StoryGANConfig.preset('big')
    with pytest.raises(ValueError, match='colour'): StoryGANConfig.preset('tiny', colour=1)


def test_tiny_preset_is_small():
    assert sum(count_params(m) for m in build_models(tiny())) < 2_000_000
    assert sum(count_params(m) for m in build_models(tiny(image_size=64))) < 2_000_000


@pytest.mark.parametrize('name, official', [('clevr', (35.0e6, 12.2e6, 28.0e6)), ('pororo', (38.3e6, 21.7e6, 21.5e6))])
def test_paper_presets_sized_like_official(name, official):
    for m, n in zip(build_models(StoryGANConfig.preset(name)), official):
        assert 0.75 * n <= count_params(m) <= 1.25 * n, (type(m).__name__, count_params(m), n)


def test_kl_matches_torch_and_has_gradient():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(7, 11, generator=g), torch.randn(7, 11, generator=g)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    assert torch.allclose(kl_loss(mu, logvar), torch.distributions.kl_divergence(q, p).sum(-1).mean(), atol=1e-5)
    E = StoryEncoder(tiny())
    kl_loss(*E.encode(torch.randn(4, 4, 75))).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in E.parameters())


def test_dynamic_conv_matches_loop():
    g = torch.Generator().manual_seed(0)
    h, f = torch.randn(5, 20, generator=g), torch.randn(5, 3, 7, generator=g)
    loop = torch.stack([torch.nn.functional.conv1d(h[b].view(1, 1, -1), f[b].unsqueeze(1), padding=3)[0] for b in range(5)])
    assert torch.allclose(dynamic_conv1d(h, f), loop, atol=1e-5)


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


def test_frames_share_h0():
    "With the story encoder, frame 1 depends on the last sentence (through h0); without it, it does not."
    S, _, _ = batch(tiny())
    S2 = S.clone(); S2[:, -1] += 1
    for a in ABLATIONS:
        G = StoryGenerator(tiny(ablation=a)).eval()
        with torch.no_grad():
            x1, x2 = (G(s, generator=torch.Generator().manual_seed(0))[0][:, 0] for s in (S, S2))
        assert ((x1 - x2).abs().max() > 1e-4) == (a in ('svfn', 'storygan')), a


def losses(cfg, G, D_I, D_S, seed=0):
    S, X, labels = batch(cfg, seed=seed)
    X_fake, mu, logvar = G(S, generator=torch.Generator().manual_seed(seed))
    x, x_fake, s_t = X[:, 1], X_fake[:, 1], S[:, 1]  # image batch: frame t=1 of each story
    l_di, st_i = image_d_loss(D_I, x, x_fake, s_t, S, labels, cfg)
    l_ds, st_s = story_d_loss(D_S, X, X_fake, S, cfg) if D_S is not None else (None, {})
    l_g, st_g = generator_loss(D_I, D_S, x_fake, s_t, S, labels, X_fake, S, mu, logvar, cfg)
    return l_di, l_ds, l_g, {**st_i, **st_s, **st_g}


@pytest.mark.parametrize('ablation', ABLATIONS)
def test_ablation_builds_runs_and_no_dead_modules(ablation):
    cfg = tiny(ablation=ablation)
    torch.manual_seed(0)
    G, D_I, D_S = build_models(cfg)
    assert (D_S is None) == (ablation == 'imagegan')
    assert (G.story_encoder is not None) == (ablation in ('svfn', 'storygan'))
    assert (G.story_encoder is not None and G.context_encoder.text2gist.filter_net is not None) == (ablation == 'storygan')
    l_di, l_ds, l_g, stats = losses(cfg, G, D_I, D_S)
    assert all(isinstance(v, float) for v in stats.values())
    l_g.backward()
    assert [n for n, p in G.named_parameters() if p.grad is None or p.grad.abs().sum() == 0] == []
    for D, l in ((D_I, l_di), (D_S, l_ds)):
        if D is None: continue
        D.zero_grad(); l.backward(retain_graph=True)
        assert [n for n, p in D.named_parameters() if p.grad is None or p.grad.abs().sum() == 0] == []


def test_ablations_differ_in_parameters():
    counts = {a: [count_params(m) for m in build_models(tiny(ablation=a))] for a in ABLATIONS}
    assert counts['imagegan'][0] == counts['svc'][0] < counts['svfn'][0] < counts['storygan'][0]
    assert counts['imagegan'][2] == 0 < counts['svc'][2]


def test_official_like_variant_trains():
    "Every conditioning knob off, spectral norm on: still builds and trains."
    cfg = tiny(d_spectral_norm=True, d_batch_norm=False, g_cond_norm=False, d_projection=False, g_hidden=0, g_coord=0,
               g_sentence=False)
    G, D_I, D_S = build_models(cfg)
    l_di, l_ds, l_g, _ = losses(cfg, G, D_I, D_S)
    (l_di + l_ds).backward(); l_g.backward()


def test_bad_input():
    cfg = tiny()
    G, D_I, D_S = build_models(cfg)
    S, X, labels = batch(cfg)
    cases = [(lambda: G(torch.randn(2, 5, 75)), 'expected T=4, got T=5'),
             (lambda: G(torch.randn(2, 4, 76)), 'expected D=75, got D=76'),
             (lambda: G(torch.full((2, 4, 75), float('nan'))), 'NaN'),
             (lambda: G(S, noise=torch.randn(3, 4, 1)), 'expected noise_dim=32, got noise_dim=1'),
             (lambda: D_I(torch.rand(3, 3, 64, 64), S[:, 0], S), 'expected H=32, got H=64'),
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
