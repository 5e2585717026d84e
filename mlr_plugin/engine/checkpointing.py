"""Checkpoints that survive a crash at any moment (SIGKILL, power loss).

mmengine writes ``epoch_N.pth``, ``best_*.pth`` and ``last_checkpoint`` in place and
deletes the old checkpoint before saving the new one, so a crash during a save can leave
a truncated file, an empty ``last_checkpoint`` and no loadable checkpoint at all. Here:

* every local checkpoint is written to a temporary file in the same folder, fsynced and
  renamed over the target (:func:`save_checkpoint_atomic`, which mmengine's
  ``Runner.save_checkpoint`` is routed to);
* :class:`AtomicCheckpointHook` writes ``last_checkpoint`` the same way and removes old
  checkpoints (rotated-out and previous best) only after the new one exists;
* :func:`find_resume_checkpoint` picks what ``tools/train.py --resume`` continues from
  when ``last_checkpoint`` is missing, empty or names a file that does not load.
"""
import io
import os
import os.path as osp
import re
from contextlib import contextmanager
from typing import List, Optional, Tuple

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.runner import checkpoint as mm_checkpoint
from mmengine.runner import runner as mm_runner
from mmpretrain.registry import HOOKS

from mlr_plugin.compat import CheckpointError, load_checkpoint_file
from mlr_plugin.fileio import atomic_open, write_text_atomic

_mmengine_save_checkpoint = mm_checkpoint.save_checkpoint


def _is_local(filename: str) -> bool:
    return '://' not in str(filename)


def _write_bytes(f, data: bytes) -> None:
    # one function, so a test can slow the write down and kill it half-way
    f.write(data)


def save_checkpoint_atomic(checkpoint, filename, file_client_args=None,
                           backend_args=None) -> None:
    """mmengine's ``save_checkpoint``; a local file is replaced in one step."""
    if not _is_local(filename) or file_client_args is not None or backend_args is not None:
        return _mmengine_save_checkpoint(checkpoint, filename, file_client_args,
                                         backend_args)
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    with atomic_open(filename, 'wb') as f:
        _write_bytes(f, buffer.getvalue())


def route_runner_saves() -> None:
    """``Runner.save_checkpoint`` calls the ``save_checkpoint`` it imported by name."""
    mm_runner.save_checkpoint = save_checkpoint_atomic


# atomic_open's temporary names: '.<target name>.<random>.tmp'
_TEMP_FILE = re.compile(r'^\.((epoch|iter)_\d+\.pth|best_.*\.pth|last_checkpoint)\..+\.tmp$')


def _remove_stale_temp_files(folder: str) -> None:
    """A run killed during a save leaves its temporary file behind."""
    for name in os.listdir(folder):
        if _TEMP_FILE.match(name):
            os.remove(osp.join(folder, name))


class _DeferredRemovals:
    """A file backend whose ``remove``/``rmtree`` only record the path."""

    def __init__(self, backend):
        self._backend = backend
        self.paths: List[str] = []

    def remove(self, path):
        self.paths.append(path)

    def rmtree(self, path):
        self.paths.append(path)

    def __getattr__(self, name):
        return getattr(self._backend, name)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` (same arguments) whose files are never partial and whose old
    files are removed only after the new checkpoint and ``last_checkpoint`` exist."""

    def before_train(self, runner) -> None:
        route_runner_saves()
        super().before_train(runner)
        if is_main_process() and _is_local(self.out_dir) and osp.isdir(self.out_dir):
            _remove_stale_temp_files(self.out_dir)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Record in the meta what this checkpoint holds because training changed it
        (the model's checkpoint rule, ``mlr_plugin.models.checkpoint``)."""
        super().before_save_checkpoint(runner, checkpoint)
        record = checkpoint.get('state_dict', {}).get('_extra_state')
        if record is not None:
            from mlr_plugin.models.checkpoint import read_record
            checkpoint.setdefault('meta', {})['trained'] = read_record(record)['trained']

    @contextmanager
    def _removals_after_save(self):
        """Inside the block old files are only recorded; they go when it ends well."""
        if isinstance(self.file_backend, _DeferredRemovals):  # nested: outer one removes
            yield
            return
        deferred = _DeferredRemovals(self.file_backend)
        self.file_backend = deferred
        try:
            yield
        finally:
            self.file_backend = deferred._backend
        keep = {self.last_ckpt, getattr(self, 'best_ckpt_path', None),
                *getattr(self, 'best_ckpt_path_dict', {}).values()}
        for path in deferred.paths:
            if path in keep:
                continue
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):
                self.file_backend.rmtree(path)

    def _save_checkpoint_with_step(self, runner, step, meta):
        with self._removals_after_save():
            self._rotate_and_save(runner, step, meta)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        with self._removals_after_save():
            super()._save_best_checkpoint(runner, metrics)

    def _rotate_and_save(self, runner, step, meta) -> None:
        # mmengine's _save_checkpoint_with_step, with last_checkpoint written atomically
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and
                                            self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                old_step = self.keep_ckpt_ids.popleft()
                if is_main_process():
                    self.file_backend.remove(self.file_backend.join_path(
                        self.out_dir, self.filename_tmpl.format(old_step)))
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir, filename, self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler, meta=meta,
            by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
        if is_main_process():
            write_text_atomic(self.last_ckpt, osp.join(runner.work_dir, 'last_checkpoint'))


_STEP_FILE = re.compile(r'^(epoch|iter)_(\d+)\.pth$')


def _numbered_checkpoints(work_dir: str) -> List[str]:
    """``epoch_*.pth`` / ``iter_*.pth`` in ``work_dir``, newest step first."""
    found = []
    for name in os.listdir(work_dir):
        match = _STEP_FILE.match(name)
        if match and osp.isfile(osp.join(work_dir, name)):
            found.append((int(match.group(2)), name))
    return [osp.join(work_dir, name) for _, name in sorted(found, reverse=True)]


def _loads(path: str) -> bool:
    try:
        load_checkpoint_file(path)
    except (CheckpointError, FileNotFoundError):
        return False
    return True


def _last_checkpoint_problem(work_dir: str) -> Tuple[Optional[str], str]:
    """(path named by last_checkpoint, '') when it loads, else (None, what is wrong)."""
    record = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(record):
        return None, 'no last_checkpoint file'
    with open(record) as f:
        named = f.read().strip()
    if not named:
        return None, 'last_checkpoint is empty'
    if not osp.isfile(named):
        return None, f'last_checkpoint names {named}, which does not exist'
    if not _loads(named):
        return None, f'last_checkpoint names {named}, which is truncated or corrupt'
    return named, ''


def find_resume_checkpoint(work_dir: str) -> Tuple[Optional[str], str]:
    """The checkpoint ``--resume`` continues from, and a one-line note when it is not
    the one ``last_checkpoint`` names ('' otherwise). ``(None, note)``: nothing to
    resume."""
    if not osp.isdir(work_dir):
        return None, f'nothing to resume in {work_dir} (no such folder): starting from scratch'
    named, problem = _last_checkpoint_problem(work_dir)
    if named is not None:
        return named, ''
    for path in _numbered_checkpoints(work_dir):
        if _loads(path):
            return path, f'{problem}: resuming from {path}, the newest loadable checkpoint'
    return None, f'{problem} and no loadable epoch_*/iter_*.pth in {work_dir}: ' \
        'nothing to resume, starting from scratch'
