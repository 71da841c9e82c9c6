from setuptools import find_packages, setup


def requirements(path='requirements.txt'):
    with open(path) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith('#')]


setup(
    name='segkit',
    version='0.1.0',
    description='Config-driven semantic segmentation on PyTorch, compatible with MMSegmentation 1.x configs '
                'and checkpoints',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    # The configs folder also ships inside the package, so `_base_ = 'mmseg::...'` works from a wheel install.
    packages=find_packages(include=['segkit', 'segkit.*']) + ['segkit.configs'],
    package_dir={'segkit.configs': 'configs'},
    package_data={'segkit.configs': ['**/*.py']},
    python_requires='>=3.9',
    install_requires=requirements(),
    extras_require={
        'test': ['pytest', 'safetensors', 'setuptools>=70.1'],  # setuptools: the test that builds a wheel
        'torchvision': ['torchvision'],
    },
)
