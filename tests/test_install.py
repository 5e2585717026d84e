"""Install metadata: setup.py asks for version ranges (a user's torch 2.x stays), and the
lock file the CI and README install with pins one version inside each range."""
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / 'requirements' / 'lock.txt'


def _setup_kwargs():
    """Run setup.py with setuptools.setup replaced, returning what it would install."""
    import setuptools
    captured = {}
    original = setuptools.setup
    setuptools.setup = lambda **kw: captured.update(kw)
    try:
        code = compile((REPO / 'setup.py').read_text(), str(REPO / 'setup.py'), 'exec')
        exec(code, {'__file__': str(REPO / 'setup.py'), '__name__': '__main__'})
    finally:
        setuptools.setup = original
    return captured


def _lock_pins():
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.split('#')[0].strip()
        if not line:
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == '==', f'not an exact pin: {line}'
        pins[canonicalize_name(req.name)] = specs[0].version
    return pins


def _requirements():
    kw = _setup_kwargs()
    reqs = list(kw['install_requires'])
    for extra in kw.get('extras_require', {}).values():
        reqs += list(extra)
    return [Requirement(r) for r in reqs]


def test_install_requires_are_ranges_not_pins():
    """An exact pin would make `pip install -e .` replace the user's torch / mmengine."""
    for req in _requirements():
        for spec in req.specifier:
            assert spec.operator not in ('==', '==='), f'{req} pins one version'
    names = {canonicalize_name(r.name) for r in _requirements()}
    assert {'torch', 'torchvision', 'mmengine', 'mmpretrain', 'open-clip-torch'} <= names


@pytest.mark.parametrize('version, allowed', [('2.5.1', False), ('2.6.0', True),
                                              ('2.11.0', True), ('2.14.1', True)])
def test_torch_range_accepts_other_torch_2x(version, allowed):
    torch_req = next(r for r in _requirements() if canonicalize_name(r.name) == 'torch')
    assert torch_req.specifier.contains(version) is allowed


def test_every_lock_pin_satisfies_its_range_and_every_range_has_a_pin():
    pins = _lock_pins()
    for req in _requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f'{req.name} has a range but no pin in {LOCK.name}'
        assert req.specifier.contains(pins[name], prereleases=True), (
            f'lock pins {name}=={pins[name]}, outside {req}')
    unused = set(pins) - {canonicalize_name(r.name) for r in _requirements()}
    assert not unused, f'pins with no requirement: {sorted(unused)}'


def test_ci_and_readme_install_with_the_lock():
    ci = (REPO / '.ci' / 'run').read_text()
    readme = (REPO / 'README.md').read_text()
    command = 'pip install -e ".[tests]" -c requirements/lock.txt'
    assert command in ci.replace('install -q -e', 'install -e')
    assert command in readme.split('## ')[0], 'README first command block'
    assert 'python -m pytest tests -q' in ci
