"""Find and load CLIP weights without surprises when offline.

``pretrained`` may be
- ``None``: random init (tests);
- an open_clip tag (``'openai'``, ``'laion2b_s34b_b79k'``): looked up in open_clip's
  registry and searched for in the local caches only (HF hub cache and the plain url
  cache). A missing file raises a one-line ``FileNotFoundError`` at once, naming what
  to download and where to put it, unless ``allow_download=True``;
- a local file (``.pt``/``.pth``/``.bin``/``.safetensors``): an open_clip state dict
  (possibly fp16) or an OpenAI TorchScript archive;
- ``mlr_plugin://rel/path``: a file inside the installed package (the demo CLIP).
"""
import difflib
import os
import os.path as osp
import posixpath
import zipfile
from typing import Dict, List, Optional, Tuple

import torch

PACKAGE_SCHEME = 'mlr_plugin://'
# mlr_plugin/ itself, found from this file (mlr_plugin/models/clip/pretrained.py) so that
# resolving package data never imports (and registers) the whole package.
_PACKAGE_DIR = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
WEIGHT_SUFFIXES = ('.pt', '.pth', '.bin', '.safetensors', '.ckpt')
# Keys OpenAI's TorchScript archives carry that are not model weights.
_OPENAI_EXTRA_KEYS = ('input_resolution', 'context_length', 'vocab_size')


def check_model_name(model_name: str) -> str:
    """Return open_clip's config name for ``model_name`` or raise ValueError."""
    import open_clip
    cleaned = model_name.replace('/', '-')
    available = open_clip.list_models()
    if cleaned not in available:
        close = difflib.get_close_matches(cleaned, available, n=6, cutoff=0.4)
        raise ValueError(f'unknown open_clip model_name {model_name!r}; close names: '
                         f'{close or available[:10]}')
    return cleaned


def resolve_package_path(path: str) -> str:
    """``mlr_plugin://demo/x.safetensors`` -> ``<package dir>/demo/x.safetensors``."""
    if not path.startswith(PACKAGE_SCHEME):
        return path
    return osp.join(_PACKAGE_DIR, path[len(PACKAGE_SCHEME):])


def _looks_like_path(value: str) -> bool:
    return (value.startswith(PACKAGE_SCHEME) or os.sep in value or '/' in value
            or value.lower().endswith(WEIGHT_SUFFIXES))


def _hf_candidates(hf_hub: str) -> Tuple[str, List[str]]:
    """open_clip's ``hf_hub`` entry -> (repo id, filenames it would try, best first)."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
    repo_id, filename = posixpath.split(hf_hub)  # same split open_clip uses
    if not filename:
        return repo_id, [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME]
    names = [filename]
    if filename.endswith(('.bin', '.pth')):
        names.insert(0, filename[:-4] + '.safetensors')
    return repo_id, names


def _find_cached_hf_file(repo_id: str, filenames: List[str],
                         cache_dir: Optional[str]) -> Optional[str]:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for name in filenames:
        found = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
        if isinstance(found, str) and osp.isfile(found):
            return found
    return None


def url_cache_dir(cache_dir: Optional[str]) -> str:
    """Where open_clip puts plain-url downloads (``~/.cache/clip`` by default)."""
    return cache_dir or osp.expanduser('~/.cache/clip')


def resolve_pretrained(model_name: str, pretrained: str, cache_dir: Optional[str] = None,
                       allow_download: bool = False) -> Tuple[str, Dict]:
    """Resolve ``pretrained`` to a local weights file.

    Returns:
        (path, tag_cfg): the local file and open_clip's pretrained config for the tag
        (``{}`` for a plain file). Never touches the network unless ``allow_download``.
    """
    from open_clip.pretrained import get_pretrained_cfg, list_pretrained_tags_by_model
    path = resolve_package_path(pretrained)
    if osp.isfile(path):
        return path, {}
    tag_cfg = get_pretrained_cfg(model_name, pretrained)
    if not tag_cfg:
        if _looks_like_path(pretrained):
            raise FileNotFoundError(f'CLIP weights file not found: {path}')
        tags = list_pretrained_tags_by_model(model_name)
        raise ValueError(f'pretrained={pretrained!r} is neither a file nor a known open_clip '
                         f'tag for {model_name}; known tags: {tags}')

    url = tag_cfg.get('url', '')
    hf_hub = tag_cfg.get('hf_hub', '')
    url_target = osp.join(url_cache_dir(cache_dir), osp.basename(url)) if url else ''
    hf_repo, hf_files = _hf_candidates(hf_hub) if hf_hub else ('', [])
    found = _find_cached_hf_file(hf_repo, hf_files, cache_dir) if hf_hub else None
    if found is None and url_target and osp.isfile(url_target):
        found = url_target
    if found is not None:
        return found, tag_cfg

    if allow_download:
        from open_clip.pretrained import download_pretrained
        return download_pretrained(tag_cfg, cache_dir=cache_dir), tag_cfg

    # One line: what to fetch and where it has to go.
    if url:
        hint = f'download {url} and put it at {url_target}'
        if hf_hub:
            hint += (f' (or fetch HF repo {hf_repo} file {hf_files[-1]} into the HF cache '
                     f'{cache_dir or "~/.cache/huggingface/hub"})')
    else:
        hint = (f'download https://huggingface.co/{hf_repo}/resolve/main/{hf_files[-1]} '
                f'(`huggingface-cli download {hf_repo} {hf_files[-1]}'
                f'{" --cache-dir " + cache_dir if cache_dir else ""}`)')
    raise FileNotFoundError(f'CLIP weights {model_name}/{pretrained} not found locally: {hint}, '
                            f'or set pretrained=<local file> (or allow_download=True when online)')


def is_torchscript_archive(path: str) -> bool:
    """OpenAI's original ``RN50.pt`` etc. are TorchScript zips (they hold constants.pkl)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name == 'constants.pkl' or name.endswith('/constants.pkl')
                   for name in archive.namelist())


def read_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """Read an open_clip / OpenAI checkpoint into a plain CPU state dict."""
    if is_torchscript_archive(path):
        state_dict = torch.jit.load(path, map_location='cpu').state_dict()
        state_dict = {k: v for k, v in state_dict.items() if k not in _OPENAI_EXTRA_KEYS}
    else:
        from open_clip.factory import load_state_dict
        state_dict = load_state_dict(path, device='cpu', weights_only=True)
    return dict(state_dict)


def load_weights(model: torch.nn.Module, path: str) -> None:
    """Load ``path`` into an open_clip model, strictly, casting to the model's dtypes.

    Applies open_clip's own state-dict fix-ups (third-party formats, old text layout,
    logit-scale shape, position-embedding resize). ``load_state_dict`` copies into the
    existing parameters, which casts fp16 checkpoints to the model's dtype.
    """
    from open_clip.convert import convert_state_dict
    from open_clip.model import (convert_to_custom_text_state_dict, resize_pos_embed,
                                 resize_text_pos_embed)
    state_dict = read_state_dict(path)
    state_dict = convert_state_dict(model, state_dict)
    if 'positional_embedding' in state_dict and not hasattr(model, 'positional_embedding'):
        state_dict = convert_to_custom_text_state_dict(state_dict)
    for key in ('logit_scale', 'logit_bias'):
        target = getattr(model, key, None)
        if key in state_dict and target is not None:
            state_dict[key] = state_dict[key].reshape(target.shape)
    if getattr(model, 'logit_bias', None) is not None and 'logit_bias' not in state_dict:
        state_dict['logit_bias'] = torch.zeros_like(model.logit_bias)
    # TorchScript archives also save non-persistent buffers (e.g. the causal attn_mask).
    non_persistent = {name for name, _ in model.named_buffers()} - set(model.state_dict())
    state_dict = {k: v for k, v in state_dict.items() if k not in non_persistent}
    resize_pos_embed(state_dict, model)
    resize_text_pos_embed(state_dict, model)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()
        detail = ' '.join(line.strip() for line in first_line[:3])
        raise ValueError(f'CLIP weights {path} do not fit the model: {detail}') from None
