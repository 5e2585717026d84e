import os

# Tests never reach a model hub: fail fast instead of retrying downloads.
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('OMP_NUM_THREADS', '1')

import torch  # noqa: E402

torch.set_num_threads(1)  # tiny tensors: threads cost more than they give

import mlr_plugin  # noqa: E402,F401  (registers every module)
