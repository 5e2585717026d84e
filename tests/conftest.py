import os

# Tests never reach a model hub: fail fast instead of retrying downloads.
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('OMP_NUM_THREADS', '1')

import torch  # noqa: E402

torch.set_num_threads(1)  # tiny tensors: threads cost more than they give

import mlr_plugin  # noqa: E402,F401  (registers every module)

import pytest  # noqa: E402


@pytest.fixture(scope='session')
def demo_features(tmp_path_factory):
    """Frozen tiny-CLIP features + labels of a freshly generated demo world (train 8000,
    test 500; tests/demo_helpers.py), computed once per session for every learning test;
    ``root``: the world's folder (images, COCO annotations with boxes)."""
    from demo_helpers import demo_features as compute
    root = tmp_path_factory.mktemp('demo') / 'world'
    return dict(compute(root), root=str(root))


@pytest.fixture(scope='session')
def demo_images(demo_features):
    """uint8 images + labels of the ``demo_features`` world (2000 train, all 500 test),
    loaded once per session for the learning tests that train image-tower blocks (MKT)."""
    from demo_helpers import demo_images as load
    return load(demo_features['root'])
