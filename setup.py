from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def read_requirements(name):
    """Requirement lines of requirements/<name> (comments and blank lines dropped)."""
    lines = (HERE / 'requirements' / name).read_text().splitlines()
    return [ln.split('#')[0].strip() for ln in lines
            if ln.split('#')[0].strip()]


version = {}
exec((HERE / 'mlr_plugin' / 'version.py').read_text(), version)

setup(
    name='mlr_plugin',
    version=version['__version__'],
    description='Multi-label image recognition with limited labels on CLIP, '
    'as an mmpretrain / mmengine plugin',
    long_description=(HERE / 'README.md').read_text(),
    long_description_content_type='text/markdown',
    python_requires='>=3.9',
    packages=find_packages(include=['mlr_plugin', 'mlr_plugin.*']),
    package_data={
        'mlr_plugin.models.clip.model_configs': ['*.json'],
        'mlr_plugin.demo': ['*.safetensors', '*.json'],
    },
    include_package_data=True,
    install_requires=read_requirements('runtime.txt'),
    extras_require={'tests': read_requirements('tests.txt')},
    license='Apache-2.0',
)
