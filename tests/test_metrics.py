import numpy as np
import pytest
import torch
from skimage.data import astronaut
from skimage.metrics import structural_similarity

from fewshot_th.fid import feature_statistics, frechet_distance
from fewshot_th.metrics import (
    attribute_recall,
    identity_retrieval,
    l1,
    person_l1,
    person_ssim,
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
    from fewshot_th.evaluation import evaluate_feed_forward
    from fewshot_th.meta import TalkingHeadModel

    torch.manual_seed(0)
    model = TalkingHeadModel.build(tiny(), num_videos=2)
    results = evaluate_feed_forward(model, identities=3, k_values=(1, 4),
                                    targets=("same-video",))["same-video"]
    assert set(results) == {1, 4}
    for by_method in results.values():
        assert set(by_method) == {"model", "mean of sources", "nearest-landmark source"}
        for scores in by_method.values():  # 3 people x 8 targets, each retrieved or not
            assert scores["retrieval"] * 24 == pytest.approx(round(scores["retrieval"] * 24))
            assert scores["ssim"] == pytest.approx(np.mean(scores["ssim_by_identity"]))
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


def test_attribute_recall_asks_which_of_truth_and_counterfactual_is_closer():
    torch.manual_seed(0)
    truth = torch.rand(4, 3, 16, 16) * 0.5
    counterfactual = truth.clone()
    counterfactual[:3, :, 4:8, 4:8] += 0.4  # frames 0-2 differ on 16 pixels; frame 3 not
    blend = [1.0, 0.0, 0.6, 0.3]  # how far each generated frame is from cf towards truth
    weights = torch.tensor(blend)[:, None, None, None]
    generated = weights * truth + (1 - weights) * counterfactual
    generated[:, :, 10:, 10:] = 1.0  # errors elsewhere do not count
    recall = attribute_recall(generated, truth, counterfactual)
    assert recall[:3].tolist() == [1.0, 0.0, 1.0] and recall[3].isnan()
    # A blur halfway between the two is not closer to the truth.
    halfway = (truth + counterfactual) / 2
    assert attribute_recall(halfway, truth, counterfactual)[:3].tolist() == [0.0] * 3
    # Too few differing pixels: nothing to show.
    tiny = truth.clone()
    tiny[:, :, 0, 0] += 0.4
    assert attribute_recall(truth, truth, tiny, min_pixels=2).isnan().all()
    assert attribute_recall(truth, truth, tiny, min_pixels=1).tolist() == [1.0] * 4
    with pytest.raises(ValueError, match="same shape"):
        attribute_recall(truth, truth, truth[:2])


def test_person_scores_equal_whole_frame_scores_with_a_full_mask_and_ignore_the_rest():
    torch.manual_seed(0)
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    full = torch.ones(2, 32, 32, dtype=torch.bool)
    assert torch.allclose(person_ssim(x, y, full), ssim(x, y), atol=1e-6)
    assert torch.allclose(person_l1(x, y, full), l1(x, y), atol=1e-6)
    mask = torch.zeros(2, 32, 32, dtype=torch.bool)
    mask[:, 8:24, 8:24] = True
    z = y.clone()
    z[:, :, :3] = 0.0  # outside the mask and every window centred in it
    assert torch.equal(person_l1(x, y, mask), person_l1(x, z, mask))
    assert torch.allclose(person_ssim(x, y, mask), person_ssim(x, z, mask))
    assert torch.allclose(person_ssim(y, y, mask), torch.ones(2))
    assert person_l1(x, y, torch.zeros_like(mask)).isnan().all()
    with pytest.raises(ValueError, match="boolean"):
        person_l1(x, y, mask.float())
    with pytest.raises(ValueError, match="boolean"):
        person_ssim(x, y, mask[:1])


def test_paired_gain_is_the_mean_difference_with_its_standard_error():
    from fewshot_th.metrics import paired_gain

    mean, error, positive = paired_gain([1.0, 2.0, 4.0], [0.0, 2.5, 1.0])
    assert mean == pytest.approx(3.5 / 3)
    assert error == pytest.approx(np.std([1.0, -0.5, 3.0], ddof=1) / np.sqrt(3))
    assert positive == 2
    with pytest.raises(ValueError, match="equal-length"):
        paired_gain([1.0, 2.0], [1.0])
