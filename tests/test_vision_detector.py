"""ImageDetector: training on cached features, maps at the image's size, save/load, errors."""

import numpy as np
import pytest
import torch

from usfad.errors import DataError, ModelFileError, TrainingDivergedError
from usfad.flows import FLOWS
from usfad.vision.detector import ImageDetector
from usfad.vision.heads import HEADS
from vision_standin import TinyBackbone, textured_images


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors: one torch thread is faster, and fair to a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _detector(model="fastflow", flow="usf", **params):
    settings = {"image_size": 32, "epochs": 2, "batch_size": 4, "n_blocks": 2, "random_state": 0}
    return ImageDetector(model, flow, backbone=TinyBackbone(), **{**settings, **params})


@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("model", HEADS)
def test_each_head_trains_and_gives_finite_maps_of_the_image_size(model, flow):
    det = _detector(model, flow).fit(textured_images(8))
    assert len(det.history_.train_loss) == 2 and np.isfinite(det.history_.train_loss).all()
    scores, maps = det.score_maps(textured_images(3, seed=1))
    assert scores.shape == (3,) and maps.shape == (3, 32, 32)
    assert np.isfinite(scores).all() and np.isfinite(maps).all()
    assert np.allclose(scores, maps.reshape(3, -1).max(1), rtol=1e-6)  # image score = max of the map


def test_training_lowers_the_loss():
    det = _detector("fastflow", epochs=6).fit(textured_images(8))
    assert det.history_.train_loss[-1] < det.history_.train_loss[0]


def test_maps_come_back_at_the_input_size_when_it_differs():
    det = _detector().fit(textured_images(6))
    scores, maps = det.score_maps(textured_images(2, size=48))
    assert maps.shape == (2, 48, 48)


def test_a_defect_scores_higher_than_normal_images():
    det = _detector("fastflow", epochs=8).fit(textured_images(12))
    normal = det.decision_function(textured_images(4, seed=5))
    defect = det.decision_function(textured_images(4, seed=5, defect=True))
    assert defect.min() > normal.max()


def test_scores_of_an_image_do_not_depend_on_its_batch():
    det = _detector("cflow").fit(textured_images(6))
    images = torch.cat([textured_images(3, seed=2), textured_images(3, seed=3, defect=True)])
    together = det.decision_function(images)
    alone = np.concatenate([det.decision_function(images[i : i + 1]) for i in range(6)])
    assert np.allclose(together, alone, rtol=1e-5)


@pytest.mark.parametrize("model", HEADS)
def test_save_load_round_trip_gives_identical_scores(model, tmp_path):
    det = _detector(model, "affine").fit(textured_images(6))
    images = textured_images(3, seed=4, defect=True)
    path = det.save(tmp_path / "model.usfad")
    again = ImageDetector.load(path, backbone=TinyBackbone())
    assert again.get_params()["model"] == model and again.flow == "affine"
    assert np.array_equal(det.decision_function(images), again.decision_function(images))
    assert again.history_.train_loss == det.history_.train_loss


@pytest.mark.parametrize("model", HEADS)
def test_density_maps_differ_from_the_published_ones_only_where_they_should(model, tmp_path):
    """CFlow's map is its density already; an affine FastFlow or U-Flow head's latent distance
    is not its density; the setting is saved with the model."""
    images = textured_images(3, seed=4, defect=True)
    det = _detector(model, "affine").fit(textured_images(6))
    published = det.score_maps(images)[1]
    det.set_params(maps="density")
    density = det.score_maps(images)[1]
    assert np.isfinite(density).all() and density.shape == published.shape
    assert np.allclose(density, published, atol=1e-6) is (model == "cflow")
    again = ImageDetector.load(det.save(tmp_path / "m.usfad"), backbone=TinyBackbone())
    assert again.maps == "density" and np.array_equal(again.score_maps(images)[1], density)
    with pytest.raises(ValueError, match="maps must be one of"):
        det.set_params(maps="latent").score_maps(images)


def test_usfad_load_reads_image_and_tabular_files_alike(tmp_path):
    import usfad

    det = _detector().fit(textured_images(6))
    images = textured_images(3, seed=4, defect=True)
    again = usfad.load(det.save(tmp_path / "image.usfad"), backbone=TinyBackbone())
    assert isinstance(again, ImageDetector)
    assert np.array_equal(again.decision_function(images), det.decision_function(images))
    X = np.random.default_rng(0).normal(size=(64, 3))
    tabular = usfad.load(usfad.USFlow(max_steps=2).fit(X).save(tmp_path / "tabular.usfad"))
    assert isinstance(tabular, usfad.USFlow)
    with pytest.raises(TypeError, match="takes no loading options"):
        usfad.load(tmp_path / "tabular.usfad", backbone=TinyBackbone())
    (tmp_path / "other.usfad").write_bytes(b"not a model")
    with pytest.raises(ModelFileError):
        usfad.load(tmp_path / "other.usfad")


def test_load_rejects_a_backbone_with_other_channels(tmp_path):
    path = _detector().fit(textured_images(4)).save(tmp_path / "m.usfad")
    other = TinyBackbone()
    other.channels = [4, 16]
    with pytest.raises(ModelFileError, match="channels"):
        ImageDetector.load(path, backbone=other)


def test_non_finite_loss_raises_training_diverged():
    det = _detector()
    features = [f.clone() for f in det.features(textured_images(4))]
    features[0][1, 0, 0, 0] = float("nan")
    with pytest.raises(TrainingDivergedError, match="loss became"):
        det.fit_features(features)


def test_training_noise_changes_the_fit_but_not_the_scoring():
    images, test = textured_images(6), textured_images(2, seed=7)
    quiet = _detector(noise=0.0).fit(images)
    noisy = _detector(noise=0.1).fit(images)
    assert quiet.history_.train_loss != noisy.history_.train_loss  # the noise reaches the training batches
    assert np.array_equal(noisy.decision_function(test), noisy.decision_function(test))  # and not the scores
    with pytest.raises(ValueError, match="noise must be a number >= 0"):
        _detector(noise=-0.1).fit(images)


def test_fit_features_and_score_maps_features_match_fit_and_predict():
    images, test = textured_images(6), textured_images(2, seed=7)
    a = _detector("uflow").fit(images)
    b = _detector("uflow")
    b.fit_features(b.features(images))
    assert np.array_equal(a.decision_function(test), b.score_maps_features(b.features(test))[0])


def test_on_step_sees_every_optimiser_step_and_its_batch_loss():
    det, seen = _detector(batch_size=3), []
    det.fit_features(det.features(textured_images(6)), on_step=lambda step, loss: seen.append((step, loss)))
    assert [step for step, _ in seen] == list(range(1, det.history_.steps + 1)) and det.history_.steps == 4
    losses = [loss for _, loss in seen]  # 2 epochs of 2 batches of 3 images: each epoch's loss is their mean
    assert det.history_.train_loss == pytest.approx([np.mean(losses[:2]), np.mean(losses[2:])], rel=1e-6)


def test_bad_settings_and_inputs_are_refused_with_what_was_given():
    with pytest.raises(ValueError, match="model must be one of"):
        _detector("padim").fit(textured_images(4))
    with pytest.raises(ValueError, match="flow must be one of"):
        _detector(flow="nice").fit(textured_images(4))
    with pytest.raises(DataError, match=r"\[N, 3, H, W\]"):
        _detector().fit(torch.rand(4, 32, 32))
    with pytest.raises(RuntimeError, match="not fitted"):
        _detector().score_maps(textured_images(1))


def test_fit_on_a_folder_equals_fit_on_its_images(tmp_path):
    from usfad.vision.data import ImageFolderDataset, make_synthetic_dataset

    root = make_synthetic_dataset(tmp_path / "cat", n_train=6, n_test_good=2, n_test_defect=2, image_size=32)
    train = torch.stack([s.image for s in ImageFolderDataset(root, "train", image_size=32)])
    from_folder = _detector("cflow").fit(root)
    from_tensor = _detector("cflow").fit(train)
    scores, maps = from_folder.score_maps(root)  # a folder is scored on its test split
    assert scores.shape == (4,) and maps.shape == (4, 32, 32)
    assert np.allclose(scores, from_tensor.score_maps(ImageFolderDataset(root, "test", image_size=32))[0], rtol=1e-5)


def test_features_are_standardised_per_position_with_training_statistics():
    train = [
        torch.randn(6, 8, 16, 16, generator=torch.Generator().manual_seed(1)) * 3 + 2,
        torch.randn(6, 16, 8, 8, generator=torch.Generator().manual_seed(2)),
    ]
    det = _detector().fit_features(train)
    for f, mean, scale in zip(train, det.feature_mean_, det.feature_scale_):
        assert mean.shape == f.shape[1:] and torch.allclose(mean, f.mean(0), atol=1e-5)
        assert torch.allclose(scale, f.std(0), rtol=1e-4)  # no position below the floor here
    standardised = det.standardized(train)
    assert torch.allclose(standardised[0].mean(0), torch.zeros(8, 16, 16), atol=1e-5)
    with pytest.raises(DataError, match="training size"):
        det.standardized([f[:, :, :4, :4] for f in train])
    off = _detector(standardize=False).fit_features(train)
    assert all(torch.equal(f, g) for f, g in zip(off.standardized(train), train))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"epochs": 1.5}, r"epochs must be an integer >= 1 or None, got 1\.5 \(float\)"),
        ({"batch_size": 1.5}, r"batch_size must be an integer >= 1, got 1\.5 \(float\)"),
        ({"n_blocks": 2.0}, r"n_blocks must be an integer >= 0 or None, got 2\.0 \(float\)"),
        ({"image_size": 4}, r"image_size must be an integer >= 8, got 4"),
        ({"hidden_ratio": 0}, r"hidden_ratio must be a number > 0 or None, got 0"),
        ({"lr": float("nan")}, r"lr must be a number > 0, got nan"),
        ({"alpha": None}, r"alpha must be a number in \(0, 1\), got None"),
        ({"alpha": 1}, r"alpha must be a number in \(0, 1\), got 1"),
        ({"threshold": "chi2"}, r"threshold must be one of \('conformal',\) or None, got 'chi2'"),
        ({"standardize": 1}, r"standardize must be True or False, got 1 \(int\)"),
        ({"sigma": -1.0}, r"sigma must be a number >= 0, got -1\.0"),
        ({"combine": "median"}, r"combine must be one of .* a callable or None, got 'median'"),
    ],
)
def test_each_setting_is_checked_against_its_constraint_before_any_work(params, message):
    # before the backbone runs: the check is the first thing fit and fit_features do
    with pytest.raises(ValueError, match=message):
        _detector(**params).fit(textured_images(4))
    with pytest.raises(ValueError, match=message):
        _detector(**params).fit_features([torch.zeros(4, 8, 8, 8)])
