import numpy as np
import pytest
import torch
from skimage.data import astronaut
from skimage.metrics import structural_similarity

from fewshot_th.metrics import (
    feature_statistics,
    frechet_distance,
    identity_retrieval,
    l1,
    psnr,
    ssim,
)


def _skimage_ssim(x, y):
    return structural_similarity(x.permute(1, 2, 0).numpy(), y.permute(1, 2, 0).numpy(),
                                 channel_axis=2, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=1.0)


def test_ssim_agrees_with_skimage_on_random_and_real_images():
    torch.manual_seed(0)
    photo = torch.from_numpy(astronaut()[100:228, 150:278].copy()).permute(2, 0, 1).float() / 255
    noisy = (photo + 0.1 * torch.randn_like(photo)).clamp(0, 1)
    random_a, random_b = torch.rand(3, 40, 50), torch.rand(3, 40, 50)
    for x, y in ((photo, noisy), (random_a, random_b), (photo, photo)):
        ours = ssim(x[None], y[None])[0].item()
        assert ours == pytest.approx(_skimage_ssim(x, y), abs=1e-3)
    assert ssim(photo[None], photo[None])[0].item() == pytest.approx(1.0, abs=1e-6)


def test_l1_and_psnr_by_hand():
    x = torch.zeros(1, 3, 16, 16)
    y = torch.full((1, 3, 16, 16), 0.1)
    assert l1(x, y).item() == pytest.approx(0.1)
    assert psnr(x, y).item() == pytest.approx(20.0, abs=1e-4)


def test_identity_retrieval_picks_the_closest_candidate():
    truth = torch.rand(2, 3, 16, 16)
    others = torch.rand(2, 3, 3, 16, 16)
    candidates = torch.cat([others[:, :1], truth[:, None], others[:, 1:]], dim=1)
    found = identity_retrieval(truth + 0.01, candidates, torch.tensor([1, 1]))
    assert found.tolist() == [True, True]
    assert identity_retrieval(truth, candidates, torch.tensor([0, 2])).tolist() == [False, False]


def test_metrics_reject_mismatched_or_tiny_images():
    with pytest.raises(ValueError, match="same shape"):
        ssim(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 17))
    with pytest.raises(ValueError, match="11 x 11"):
        ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="candidates"):
        identity_retrieval(torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16),
                           torch.tensor([0, 0]))
    assert np.isfinite(psnr(torch.ones(1, 3, 16, 16), torch.ones(1, 3, 16, 16)).item())


def test_feed_forward_evaluation_scores_the_model_and_the_copying_baselines():
    from fewshot_th.config import tiny
    from fewshot_th.meta import TalkingHeadModel
    from fewshot_th.metrics import evaluate_feed_forward

    torch.manual_seed(0)
    model = TalkingHeadModel.build(tiny(), num_videos=2)
    results = evaluate_feed_forward(model, identities=3, k_values=(1, 4),
                                    targets=("same-video",))["same-video"]
    assert set(results) == {1, 4}
    for by_method in results.values():
        assert set(by_method) == {"model", "mean of sources", "nearest-landmark source"}
        for scores in by_method.values():
            assert 0 <= scores["retrieval"] <= 1 and -1 <= scores["ssim"] <= 1
    assert results[4]["nearest-landmark source"]["ssim"] > results[4]["model"]["ssim"], \
        "an untrained model loses to copying"
    with pytest.raises(ValueError, match="K <= 32"):
        evaluate_feed_forward(model, identities=2, k_values=(33,))


def test_frechet_distance_agrees_with_a_scipy_reference():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 16))
    b = rng.normal(size=(300, 16)) @ rng.normal(size=(16, 16)) * 0.5 + 0.3
    mu1, sigma1 = feature_statistics(torch.tensor(a))
    mu2, sigma2 = feature_statistics(b)
    covmean = scipy_linalg.sqrtm(sigma1 @ sigma2).real
    reference = ((mu1 - mu2) ** 2).sum() + np.trace(sigma1 + sigma2 - 2 * covmean)
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(reference, abs=1e-4)
    assert frechet_distance(mu1, sigma1, mu1, sigma1) == pytest.approx(0, abs=1e-6)
    with pytest.raises(ValueError, match="same D"):
        frechet_distance(mu1, sigma1, mu2[:3], sigma2)
    with pytest.raises(ValueError, match="N >= 2"):
        feature_statistics(a[:1])
