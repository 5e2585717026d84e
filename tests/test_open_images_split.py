"""The Open Images 7,186 / 400 split read from the protocol's own files
(classes-trainable.txt, unseen_labels.pkl + top_400_unseen.csv): column order, labels,
one-line errors for bad files, and a pickle that would run code is refused unrun."""
import builtins
import pickle
from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpretrain.registry import DATASETS

from mlr_plugin.datasets import OpenImagesMultiLabel
from mlr_plugin.datasets.open_images import RefusedPickleGlobal, read_pickled_label_names

REPO = Path(__file__).parent.parent
DESCRIBED = {'/m/s1': 'Seen one', '/m/s2': 'Seen, two', '/m/s3': 'Seen three',
             '/m/u0': 'Un zero', '/m/u1': 'Un one', '/m/u3': 'Un three',
             '/m/u4': 'Un four', '/m/x': 'Other'}
SEEN = ['/m/s2', '/m/s1', '/m/s3']  # file order, not sorted
# the pickled pool; '/m/nodesc' is not described but never selected, so it is fine
POOL = ['/m/u0', '/m/u1', '/m/nodesc', '/m/u3', '/m/u4']
TOP = [3, 0, 4]  # the unseen classes: /m/u3, /m/u0, /m/u4 (index order)
ROWS = [('imgB', '/m/s1', '1'), ('imgB', '/m/u3', '0'), ('imgB', '/m/x', '1'),
        ('imgA', '/m/u0', '1'), ('imgA', '/m/s2', '0'), ('imgA', '/m/u1', '1'),
        ('imgC', '/m/u4', '1'), ('imgC', '/m/s3', '1'), ('imgC', '/m/s1', '0')]


def _write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def _pickle(path: Path, obj, protocol=pickle.HIGHEST_PROTOCOL) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return str(path)


def _files(root: Path, pool=POOL, top='3\n0,extra column\n\n4\n') -> dict:
    """The protocol's layout under ``root/2018_04``; returns the dataset's file args."""
    d = root / '2018_04'
    _write(d / 'class-descriptions.csv',
           ''.join(f'{m},"{n}"\n' for m, n in DESCRIBED.items()))
    _write(d / 'classes-trainable.txt', ''.join(m + '\n' for m in SEEN))
    _pickle(d / 'unseen_labels.pkl', pool)
    _write(d / 'top_400_unseen.csv', top)
    _write(d / 'test' / 'labels.csv', 'ImageID,Source,LabelName,Confidence\n' +
           ''.join(f'{i},verification,{m},{c}\n' for i, m, c in ROWS))
    return dict(data_root=str(root), ann_file=str(d / 'test' / 'labels.csv'),
                class_desc_file='2018_04/class-descriptions.csv',
                seen_classes_file='2018_04/classes-trainable.txt',
                unseen_classes_file='2018_04/unseen_labels.pkl',
                unseen_index_file='2018_04/top_400_unseen.csv')


def _build(files, **kwargs):
    return OpenImagesMultiLabel(**files, class_subset=kwargs.pop('class_subset', 'all'),
                                check_images=False, **kwargs)


def _plain_expected():
    """Columns seen (file order) + POOL[i] for i in TOP; confidence 1 -> 1, 0 -> 0,
    no row -> -1; images sorted by ImageID."""
    columns = SEEN + [POOL[i] for i in TOP]
    images = sorted({i for i, _, _ in ROWS})
    target = [[-1.0] * len(columns) for _ in images]
    for image, mid, conf in ROWS:
        if mid in columns:
            target[images.index(image)][columns.index(mid)] = float(conf)
    return columns, images, np.array(target, dtype=np.float32)


def _python2_pickle(form: str) -> bytes:
    """POOL as Python 2 pickles it (protocol 2, py2 ``str`` = SHORT_BINSTRING 'U'):
    a list of str, or a numpy 'S' array (numpy.core spelling, raw buffer as a str)."""
    if form == 'python2_list':
        return b'\x80\x02](' + b''.join(b'U' + bytes([len(m)]) + m.encode()
                                       for m in POOL) + b'e.'
    array = np.array([m.encode() for m in POOL])
    data = pickle.dumps(array, protocol=2).replace(b'numpy._core', b'numpy.core')
    # py3 writes bytes as _codecs.encode(<latin1 text>, 'latin1'); py2 as one str
    typecode = (b'c_codecs\nencode\nq\x03X\x01\x00\x00\x00bq\x04X\x06\x00\x00\x00latin1'
                b'q\x05\x86q\x06Rq\x07')
    raw = array.tobytes()
    buffer = (b'h\x03X' + len(raw).to_bytes(4, 'little') + raw +
              b'q\x11h\x05\x86q\x12Rq\x13')
    assert typecode in data and buffer in data and len(raw) < 256
    return data.replace(typecode, b'U\x01b').replace(
        buffer, b'U' + bytes([len(raw)]) + raw)


@pytest.mark.parametrize('form', ['list', 'tuple', 'object_array', 'str_array',
                                  'bytes_array', 'np_str_items', 'protocol2',
                                  'protocol2_numpy_core_spelling', 'python2_list',
                                  'python2_bytes_array'])
def test_columns_subsets_and_labels_from_protocol_files(tmp_path, form):
    files = _files(tmp_path)
    pool = dict(list=POOL, tuple=tuple(POOL), object_array=np.array(POOL, dtype=object),
                str_array=np.array(POOL), bytes_array=np.array([m.encode() for m in POOL]),
                np_str_items=np.array([np.str_(m) for m in POOL], dtype=object),
                protocol2=np.array(POOL, dtype=object),
                protocol2_numpy_core_spelling=np.array(POOL)).get(form)
    pkl = tmp_path / '2018_04' / 'unseen_labels.pkl'
    if form.startswith('python2'):
        data = _python2_pickle(form)
        # the MIDs travel as py2 str (SHORT_BINSTRING), never as py3 text or bytes
        assert b'_codecs' not in data and (b'U\x05/m/u0' in data or b'U-/m/u0' in data)
    else:
        data = pickle.dumps(pool, protocol=2 if form.startswith('protocol2') else 5)
    if form == 'protocol2_numpy_core_spelling':  # as numpy < 2 writes it
        assert b'numpy._core.multiarray' in data
        data = data.replace(b'numpy._core.multiarray', b'numpy.core.multiarray')
    pkl.write_bytes(data)

    ds = _build(files)
    columns, images, target = _plain_expected()
    assert ds.metainfo['label_names'] == tuple(columns)
    assert ds.metainfo['label_names'][3:] == ('/m/u3', '/m/u0', '/m/u4')
    assert ds.metainfo['classes'] == tuple(DESCRIBED[m] for m in columns)
    assert ds.metainfo['class_subsets'] == dict(
        seen=tuple(DESCRIBED[m] for m in SEEN),
        unseen=tuple(DESCRIBED[POOL[i]] for i in TOP))
    assert [ds.get_data_info(i)['img_id'] for i in range(len(ds))] == images
    np.testing.assert_array_equal(ds.get_label_matrix(), target)

    unseen = _build(files, class_subset='unseen')
    np.testing.assert_array_equal(unseen.get_label_matrix(), target[:, 3:])
    seen = _build(files, class_subset='seen')
    np.testing.assert_array_equal(seen.get_label_matrix(), target[:, :3])


def _error(files, **overrides):
    with pytest.raises(ValueError) as info:
        _build(dict(files, **overrides)).full_init()
    message = str(info.value)
    assert '\n' not in message
    return message


@pytest.mark.parametrize('top, expected', [
    ('3\n0\n5\n', 'top_400_unseen.csv: line 3: index 5 is out of range for 5'),
    ('3\n-1\n', 'top_400_unseen.csv: line 2: index -1 is out of range'),
    ('3\n1.0\n', "top_400_unseen.csv: line 2: '1.0' is not an integer index"),
    ('index\n3\n', "top_400_unseen.csv: line 1: 'index' is not an integer index"),
    ('3\n\n0\n3\n', 'top_400_unseen.csv: line 4: index 3 repeats line 1'),
    ('', 'top_400_unseen.csv: no indices'),
    ('\n \n', 'top_400_unseen.csv: no indices'),
    ('3\n2\n', "top_400_unseen.csv: line 2 (entry 2 of "),  # /m/nodesc
])
def test_bad_index_file_one_line_errors(tmp_path, top, expected):
    message = _error(_files(tmp_path, top=top))
    assert expected in message
    if top == '3\n2\n':
        assert "unseen_labels.pkl): LabelName '/m/nodesc' is not in the class " \
            'descriptions' in message


@pytest.mark.parametrize('pool, expected', [
    ({'/m/u0': 0}, 'unseen_labels.pkl: expected a list of LabelName strings, got dict'),
    (np.array([POOL, POOL]), 'unseen_labels.pkl: expected a 1-D array of LabelName '
                             'strings, got shape (2, 5)'),
    (np.arange(5), 'expected a 1-D array of LabelName strings, got shape (5,) dtype int64'),
    ('/m/u0', 'expected a list of LabelName strings, got str'),
    ([], 'unseen_labels.pkl: no LabelNames'),
    (['/m/u0', 7, '/m/u3'], 'unseen_labels.pkl: entry 1 is 7; expected a non-empty'),
    (['/m/u0', ' ', '/m/u3'], "unseen_labels.pkl: entry 1 is ' '; expected a non-empty"),
    (np.array(['/m/u0', None], dtype=object), 'entry 1 is None'),
    ([b'/m/\xff'], "unseen_labels.pkl: entry 0 b'/m/\\xff' is not ASCII"),
])
def test_bad_pickle_content_one_line_errors(tmp_path, pool, expected):
    files = _files(tmp_path, top='0\n')
    _pickle(tmp_path / '2018_04' / 'unseen_labels.pkl', pool)
    assert expected in _error(files)


def test_split_rules_and_unreadable_files(tmp_path):
    files = _files(tmp_path)
    # the selected MIDs must not be seen ones, nor selected twice
    pool_with_seen = ['/m/u0', '/m/s1', '/m/u0']
    bad = _pickle(tmp_path / 'seen_inside.pkl', pool_with_seen)
    assert "seen_inside.pkl: LabelName '/m/s1' is also in 2018_04/classes-trainable.txt" in \
        _error(files, unseen_classes_file=bad, unseen_index_file=_write(
            tmp_path / 'i1.csv', '1\n'))
    message = _error(files, unseen_classes_file=bad,
                     unseen_index_file=_write(tmp_path / 'i2.csv', '0\n2\n'))
    assert "i2.csv: line 2 (entry 2 of " in message and \
        "LabelName '/m/u0' is listed twice (also at " in message
    # a file that is no pickle, a truncated one, a missing one
    _write(tmp_path / 'text.pkl', '/m/u0\n/m/u1\n')
    assert _error(files, unseen_classes_file=str(tmp_path / 'text.pkl')).startswith(
        f'{tmp_path / "text.pkl"}: not a readable pickle (')
    data = pickle.dumps(np.array(POOL, dtype=object))
    (tmp_path / 'cut.pkl').write_bytes(data[:len(data) // 2])
    assert 'cut.pkl: not a readable pickle (' in _error(
        files, unseen_classes_file=str(tmp_path / 'cut.pkl'))
    with pytest.raises(FileNotFoundError, match='nothere.pkl'):
        _build(dict(files, unseen_classes_file='nothere.pkl')).full_init()
    with pytest.raises(FileNotFoundError, match='nothere.csv'):
        _build(dict(files, unseen_index_file='nothere.csv')).full_init()


def test_option_combinations_are_checked_up_front(tmp_path):
    files = _files(tmp_path)
    with pytest.raises(ValueError, match=r"'2018_04/unseen_labels.pkl' is a pickled MID "
                                         r'sequence; it needs unseen_index_file'):
        _build(dict(files, unseen_index_file=None), lazy_init=True)
    text_list = _write(tmp_path / 'unseen.txt', '/m/u3\n/m/u0\n')
    with pytest.raises(ValueError, match=r"unseen_index_file '2018_04/top_400_unseen.csv' "
                                         r'goes only with a pickled \(\.pkl\)'):
        _build(dict(files, unseen_classes_file=text_list), lazy_init=True)
    # the one-MID-per-line list still works as before
    ds = _build(dict(files, unseen_classes_file=text_list, unseen_index_file=None))
    assert ds.metainfo['label_names'] == tuple(SEEN) + ('/m/u3', '/m/u0')


class _WriteMarker:
    """Unpickling this calls builtins.open(marker, 'w'), which creates the file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, 'w')


class _RunsSystem:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os
        return os.system, (f'touch {self.marker}', )


@pytest.mark.parametrize('payload', [
    lambda m: _WriteMarker(m),                                      # the whole pickle
    lambda m: ['/m/u0', _WriteMarker(m)],                           # inside a list
    lambda m: np.array(['/m/u0', _WriteMarker(m)], dtype=object),   # inside an array
    lambda m: ['/m/u0', _RunsSystem(m)],                            # os.system
])
def test_code_running_pickle_is_refused_and_not_run(tmp_path, payload):
    marker = tmp_path / 'marker'
    files = _files(tmp_path)
    pkl = tmp_path / 'evil.pkl'
    pkl.write_bytes(pickle.dumps(payload(marker)))
    with pytest.raises(RefusedPickleGlobal) as info:
        read_pickled_label_names(str(pkl))
    message = str(info.value)
    assert message.startswith(f'{pkl}: refused global ') and '\n' not in message
    assert message.split(' (only')[0].endswith(('.open', '.system'))
    assert not marker.exists()
    # through the dataset too (RefusedPickleGlobal is a ValueError)
    assert 'refused global' in _error(files, unseen_classes_file=str(pkl))
    assert not marker.exists()
    # the payload is live: plain pickle.load would have run it
    try:
        pickle.loads(pkl.read_bytes())
    finally:
        assert marker.exists()


def test_other_numpy_globals_are_refused(tmp_path):
    # numpy.load is an importable numpy name but no array rebuilder: PROTO 2,
    # GLOBAL numpy.load, BINUNICODE 'evil', TUPLE1, REDUCE, STOP
    crafted = b'\x80\x02cnumpy\nload\nX\x04\x00\x00\x00evil\x85R.'
    with pytest.raises(FileNotFoundError, match='evil'):  # plain pickle would call it
        pickle.loads(crafted)
    (tmp_path / 'load.pkl').write_bytes(crafted)
    with pytest.raises(RefusedPickleGlobal, match=r'load.pkl: refused global numpy.load '):
        read_pickled_label_names(str(tmp_path / 'load.pkl'))


def test_protocol_config_names_the_files_and_builds(tmp_path):
    cfg = Config.fromfile(str(REPO / 'configs/_base_/datasets/openimages_mkt.py'))
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        d = loader.dataset
        assert d.class_desc_file == '2018_04/class-descriptions.csv'
        assert d.seen_classes_file == '2018_04/classes-trainable.txt'
        assert d.unseen_classes_file == '2018_04/unseen_labels.pkl'
        assert d.unseen_index_file == '2018_04/top_400_unseen.csv'
    assert tuple(cfg.test_evaluator.ks) == (10, 20)
    for stage in (1, 2):
        stage_cfg = Config.fromfile(str(REPO / f'configs/mkt/openimages_stage{stage}.py'))
        assert stage_cfg.test_dataloader.dataset.unseen_index_file == \
            '2018_04/top_400_unseen.csv'
    # the config's relative paths resolve against data_root: the protocol's layout
    files = _files(tmp_path)
    init_default_scope('mmpretrain')
    test = DATASETS.build(dict(cfg.test_dataloader.dataset, data_root=files['data_root'],
                               ann_file=files['ann_file'], check_images=False))
    columns, images, target = _plain_expected()
    keep = (target == 1).any(axis=1)  # the config's drop_no_positive=True
    assert test.metainfo['label_names'] == tuple(columns)
    np.testing.assert_array_equal(test.get_label_matrix(), target[keep])
