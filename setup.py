from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def read_requirements(name):
    """Requirement lines of requirements/<name> (comments and blank lines dropped)."""
    lines = (HERE / 'requirements' / name).read_text().splitlines()
    return [ln.split('#')[0].strip() for ln in lines
            if ln.split('#')[0].strip()]


def config_packages():
    """configs/ and its folders as mlr_plugin.configs.* (no __init__ files needed)."""
    root = HERE / 'configs'
    folders = [p for p in sorted(root.rglob('*')) if p.is_dir() and p.name != '__pycache__']
    return ['mlr_plugin.configs'] + [
        'mlr_plugin.configs.' + '.'.join(p.relative_to(root).parts) for p in folders]


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
    # configs/ (kept at the top level) also ships as mlr_plugin/configs, so that a user's
    # config elsewhere can inherit ours by package path, as mmengine resolves it:
    #   with read_base(): from mlr_plugin.configs.demo.dualcoop_p10 import *
    packages=find_packages(include=['mlr_plugin', 'mlr_plugin.*']) + config_packages(),
    package_dir={'mlr_plugin.configs': 'configs'},
    package_data={
        **{name: ['*.md', '*.yml'] for name in config_packages()},
        'mlr_plugin.models.clip.model_configs': ['*.json'],
        'mlr_plugin.demo': ['*.safetensors', '*.json'],
    },
    include_package_data=True,
    install_requires=read_requirements('runtime.txt'),
    extras_require={
        'demo': read_requirements('demo.txt'),
        'tensorboard': read_requirements('tensorboard.txt'),
        # the tests cover the web demo and the TensorBoard option too
        'tests': (read_requirements('tests.txt') + read_requirements('demo.txt')
                  + read_requirements('tensorboard.txt')),
    },
    license='Apache-2.0',
)
